"""Per-call overhead of aotpack's guards + dispatch, side by side with torch.compile.

One graph, 4 tensor inputs (two [batch, 16] sharing a dynamic ``batch`` Dim, two [16]), compiled once with
AOTInductor. In fresh processes it measures, best of 7 runs of 20,000 calls:

- backend: the AOTInductor runner called directly (no checks at all),
- aotpack: ``aotpack.load(...)(a, b, c, d)``: binding, guards, dispatch, backend,
- torch.compile: the same function under ``torch.compile`` (its guards + dispatch),
  after warm-up.

aotpack's overhead is aotpack - backend; the target is <= 2.5 us (DESIGN.md), strides,
requires_grad, stored-value bits and global state (autocast, default dtype, torch
function modes, forward AD) checked (the "Correct or refused" contract).

Bound module: the same program as an nn.Module with one parameter, loaded plain and
with ``load(path, module=m)`` (binding.py: the live weights, their kinds and the
module's changes checked at each call); the row is the difference. The same for a
module with a tensor attribute and 8 Python values its forward reads, and for one of
100 weights (50 Linear layers): what binding costs as a model grows.

Two variants: a program that depends on its batch being 1 (``a + b + c + d`` at batch 1,
``a - b + c + d`` at any other), compiled from a batch of one: the package holds the
variant of batch 1 and, since 2026-12-08, ``default.from-2`` for the others; called at
batch 8, the first variant's guard fails before the second runs.

Int argument: the same 4 inputs and a Python int ``n`` with a Dim (``a + b + c + d + n``),
called with n = 5: the int is checked and carried as an empty tensor's size (treespec.IntLeaf),
side by side with its runner called directly and with torch.compile(dynamic=True), which
makes the int dynamic too.

    python bench/guard_overhead.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

SETUP = r"""
import json, sys, timeit, torch
torch.set_num_threads(1)
def f(a, b, c, d):
    return a + b + c + d
xs = [torch.randn(8, 16), torch.randn(8, 16), torch.randn(16), torch.randn(16)]
def best(fn):
    for _ in range(1000):
        fn()
    return min(timeit.repeat(fn, number=20000, repeat=7)) / 20000 * 1e6
"""

AOTPACK = SETUP + r"""
import aotpack
fn = aotpack.load(sys.argv[1])
v = fn._variants[0]
raw = v.fn
ws = v.weights
print(json.dumps({"backend_us": best(lambda: raw(ws + xs)), "aotpack_us": best(lambda: fn(*xs))}))
"""

# The bound-module case's program: one source, run by this script and by the child.
MODULE = r"""
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(16), requires_grad=False)
    def forward(self, a, b, c, d):
        return a + b + c + d + self.w
"""

# A module with what else a bound package follows: a plain tensor attribute (checked to
# be the bound tensor at each call) and 8 Python values its forward reads (compared with
# the values compiled in at each call).
MODULE_ATTRIBUTES = r"""
class MA(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(16), requires_grad=False)
        self.gain = torch.ones(16)
        self.a0, self.a1, self.a2, self.a3, self.a4, self.a5, self.a6, self.a7 = 1.0, 2, 0.5, True, 3.0, 4, 0.25, "x"
    def forward(self, a, b, c, d):
        s = self.a0 + self.a1 + self.a2 + self.a3 + self.a4 + self.a5 + self.a6 + len(self.a7)
        return a + b + c + d + self.w * s + self.gain
"""

# A module of 100 weights (50 Linear layers of 16 x 16): what binding costs as a model grows.
MODULE_MANY = r"""
class MM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(50))
        self.requires_grad_(False)  # (an inference package: bound, its weights must not require grad)
    def forward(self, a, b, c, d):
        h = a + b + c + d
        for layer in self.layers:
            h = layer(h)
        return h
"""

BOUND = SETUP + MODULE + MODULE_ATTRIBUTES + MODULE_MANY + r"""
import aotpack
m, ma, mm = M(), MA(), MM()
plain, bound = aotpack.load(sys.argv[1]), aotpack.load(sys.argv[1], module=m)
plain_a, bound_a = aotpack.load(sys.argv[2]), aotpack.load(sys.argv[2], module=ma)
plain_m, bound_m = aotpack.load(sys.argv[3]), aotpack.load(sys.argv[3], module=mm)
print(json.dumps({"plain_us": best(lambda: plain(*xs)), "bound_us": best(lambda: bound(*xs)),
                  "plain_attributes_us": best(lambda: plain_a(*xs)), "bound_attributes_us": best(lambda: bound_a(*xs)),
                  "plain_100_weights_us": best(lambda: plain_m(*xs)), "bound_100_weights_us": best(lambda: bound_m(*xs))}))
"""

TWO = SETUP + r"""
import aotpack
fn = aotpack.load(sys.argv[1])
assert fn.variants == ["default", "default.from-2"], fn.variants
v = fn._variants[1]
raw, ws = v.fn, v.weights
print(json.dumps({"two_backend_us": best(lambda: raw(ws + xs)), "two_aotpack_us": best(lambda: fn(*xs))}))
"""

INT = SETUP + r"""
def fi(a, b, c, d, n):
    return a + b + c + d + n
import aotpack
fn = aotpack.load(sys.argv[1])
v = fn._variants[0]
raw, ws, carrier = v.fn, v.weights, torch.empty((5, 0), dtype=torch.uint8)
print(json.dumps({"int_backend_us": best(lambda: raw(ws + xs + [carrier])), "int_aotpack_us": best(lambda: fn(*xs, 5))}))
"""

TORCH_COMPILE = SETUP + r"""
def fi(a, b, c, d, n):
    return a + b + c + d + n
g = torch.compile(f, dynamic=False)
g(*xs)
gi = torch.compile(fi, dynamic=True)
gi(*xs, 5), gi(*xs, 6)
print(json.dumps({"torch_compile_us": best(lambda: g(*xs)), "int_torch_compile_us": best(lambda: gi(*xs, 5))}))
"""


def main() -> None:
    import torch

    import aotpack
    from aotpack import Dim

    def f(a, b, c, d):
        return a + b + c + d

    xs = [torch.randn(8, 16), torch.randn(8, 16), torch.randn(16), torch.randn(16)]
    batch = Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as d:
        print("compiling the benchmark graph with AOTInductor ...", flush=True)
        path = aotpack.compile(f, tuple(xs), dynamic={"a": {0: batch}, "b": {0: batch}}, backend="aoti").save(
            os.path.join(d, "f.aot"))
        a = fresh(AOTPACK, path)

        scope = {"torch": torch}
        exec(MODULE, scope)  # noqa: S102 - the program above, as the child defines it
        mpath = aotpack.compile(scope["M"](), tuple(xs), dynamic={"a": {0: batch}, "b": {0: batch}}, backend="aoti").save(
            os.path.join(d, "m.aot"))
        exec(MODULE_ATTRIBUTES, scope)  # noqa: S102
        apath = aotpack.compile(scope["MA"](), tuple(xs), dynamic={"a": {0: batch}, "b": {0: batch}},
                                backend="aoti").save(os.path.join(d, "ma.aot"))
        exec(MODULE_MANY, scope)  # noqa: S102
        mmpath = aotpack.compile(scope["MM"](), tuple(xs), dynamic={"a": {0: batch}, "b": {0: batch}},
                                 backend="aoti").save(os.path.join(d, "mm.aot"))
        b = fresh(BOUND, mpath, apath, mmpath)
        def batch_of_one_apart(a, b, c, d):
            return a + b + c + d if a.shape[0] == 1 else a - b + c + d

        two = aotpack.compile(batch_of_one_apart, (xs[0][:1], xs[1][:1], xs[2], xs[3]), backend="aoti",
                              dynamic={"a": {0: batch}, "b": {0: batch}}).save(os.path.join(d, "two.aot"))
        w = fresh(TWO, two)
        ipath = aotpack.compile(lambda a, b, c, d, n: a + b + c + d + n, (*xs, 5), backend="aoti",
                                dynamic={"a": {0: batch}, "b": {0: batch}, "n": Dim("n", min=0, max=4096)}
                                ).save(os.path.join(d, "i.aot"))
        i = fresh(INT, ipath)
        with tempfile.TemporaryDirectory() as cache:
            t = fresh(TORCH_COMPILE, env={"TORCHINDUCTOR_CACHE_DIR": cache})
    overhead = a["aotpack_us"] - a["backend_us"]
    bound = b["bound_us"] - b["plain_us"]
    bound_attributes = b["bound_attributes_us"] - b["plain_attributes_us"]
    bound_many = b["bound_100_weights_us"] - b["plain_100_weights_us"]
    int_overhead = i["int_aotpack_us"] - i["int_backend_us"]
    two_overhead = w["two_aotpack_us"] - w["two_backend_us"]
    row = {**a, **t, **b, **i, **w, "aotpack_overhead_us": overhead, "int_overhead_us": int_overhead,
           "two_variants_overhead_us": two_overhead, "bound_module_us": bound,
           "bound_module_attributes_us": bound_attributes, "bound_module_100_weights_us": bound_many,
           "target_us": 2.5}
    print(table(["case", "per call", "vs backend"], [
        ["AOTInductor runner, direct", f"{a['backend_us']:.2f} us", "-"],
        ["aotpack (guards + dispatch + runner)", f"{a['aotpack_us']:.2f} us", f"+{overhead:.2f} us"],
        ["torch.compile (its guards + dispatch)", f"{t['torch_compile_us']:.2f} us",
         f"+{t['torch_compile_us'] - a['backend_us']:.2f} us"],
        ["aotpack, module with 1 parameter, unbound", f"{b['plain_us']:.2f} us", "-"],
        ["aotpack, the same bound to a live module", f"{b['bound_us']:.2f} us", f"+{bound:.2f} us"],
        ["aotpack, + a tensor attribute and 8 Python values, unbound", f"{b['plain_attributes_us']:.2f} us", "-"],
        ["aotpack, the same bound to a live module", f"{b['bound_attributes_us']:.2f} us",
         f"+{bound_attributes:.2f} us"],
        ["aotpack, module with 100 weights (50 Linear layers), unbound", f"{b['plain_100_weights_us']:.2f} us", "-"],
        ["aotpack, the same bound to a live module", f"{b['bound_100_weights_us']:.2f} us", f"+{bound_many:.2f} us"],
        ["AOTInductor runner of the variant from 2, direct", f"{w['two_backend_us']:.2f} us", "-"],
        ["aotpack, two variants (batch 1 and from 2), at batch 8", f"{w['two_aotpack_us']:.2f} us",
         f"+{two_overhead:.2f} us"],
        ["AOTInductor runner, 4 tensors + an int's carrier, direct", f"{i['int_backend_us']:.2f} us", "-"],
        ["aotpack, 4 tensors + an int with a Dim", f"{i['int_aotpack_us']:.2f} us", f"+{int_overhead:.2f} us"],
        ["torch.compile(dynamic=True), 4 tensors + an int", f"{t['int_torch_compile_us']:.2f} us",
         f"+{t['int_torch_compile_us'] - i['int_backend_us']:.2f} us"],
    ]))
    print(f"aotpack overhead {overhead:.2f} us for 4 tensor inputs (target <= 2.5 us): "
          f"{'OK' if overhead <= 2.5 else 'OVER TARGET'}; a bound module adds {bound:.2f} us")
    print("wrote", write("guard_overhead", [row]))


if __name__ == "__main__":
    main()

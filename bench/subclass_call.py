"""A program on a tensor subclass input (torch's TwoTensor), side by side: eager, torch.compile and
an aotpack package (AOTInductor), each in a fresh process.

The program is ``(x * 2 + y).sin()`` with ``x`` a TwoTensor of two [64, 64] tensors and ``y`` a plain
one: each op runs on both inner tensors. Per row: the time to the first output in a fresh process
(torch.compile compiles there, with an empty inductor cache; aotpack loads the package), and the
time per call after warm-up (best of 7 runs of 2,000 calls; single thread). aotpack's per call
includes its guards on the subclass (class, inner tensors, flatten context) and rebuilding the
output TwoTensor.

    python bench/subclass_call.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

SETUP = r"""
import json, sys, time, timeit
t0 = time.perf_counter()
import torch
from torch.testing._internal.two_tensor import TwoTensor
torch.set_num_threads(1)
def f(x, y):
    return (x * 2 + y).sin()
g = torch.Generator().manual_seed(0)
x = TwoTensor(torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g))
y = torch.randn(64, 64, generator=g)
def best(fn):
    for _ in range(200):
        fn()
    return min(timeit.repeat(fn, number=2000, repeat=7)) / 2000 * 1e6
"""

EAGER = SETUP + r"""
with torch.no_grad():
    f(x, y)
    first = time.perf_counter() - t0
    print(json.dumps({"first_output_s": first, "per_call_us": best(lambda: f(x, y))}))
"""

TORCH_COMPILE = SETUP + r"""
h = torch.compile(f, dynamic=False)
with torch.no_grad():
    h(x, y)
    first = time.perf_counter() - t0
    print(json.dumps({"first_output_s": first, "per_call_us": best(lambda: h(x, y))}))
"""

AOTPACK = SETUP + r"""
import aotpack
fn = aotpack.load(sys.argv[1])
with torch.no_grad():
    out = fn(x, y)
    first = time.perf_counter() - t0
    want = f(x, y)
    assert type(out) is TwoTensor and torch.allclose(out.a, want.a, atol=1e-5) and torch.allclose(out.b, want.b, atol=1e-5)
    print(json.dumps({"first_output_s": first, "per_call_us": best(lambda: fn(x, y))}))
"""


def main() -> None:
    import torch
    from torch.testing._internal.two_tensor import TwoTensor

    import aotpack

    def f(x, y):
        return (x * 2 + y).sin()

    x = TwoTensor(torch.randn(64, 64), torch.randn(64, 64))
    with tempfile.TemporaryDirectory() as d:
        print("compiling the package with AOTInductor ...", flush=True)
        path = aotpack.compile(f, (x, torch.randn(64, 64)), backend="aoti").save(os.path.join(d, "f.aot"))
        a = fresh(AOTPACK, path)
        e = fresh(EAGER)
        with tempfile.TemporaryDirectory() as cache:
            t = fresh(TORCH_COMPILE, env={"TORCHINDUCTOR_CACHE_DIR": cache})
    row = {"eager": e, "torch_compile": t, "aotpack": a,
           "first_output_vs_torch_compile": t["first_output_s"] / a["first_output_s"],
           "per_call_vs_torch_compile": t["per_call_us"] / a["per_call_us"]}
    print(table(["case", "first output, fresh process", "per call"], [
        ["eager", f"{e['first_output_s']:.2f} s", f"{e['per_call_us']:.1f} us"],
        ["torch.compile (cold cache)", f"{t['first_output_s']:.2f} s", f"{t['per_call_us']:.1f} us"],
        ["aotpack (AOTInductor package)", f"{a['first_output_s']:.2f} s", f"{a['per_call_us']:.1f} us"],
    ]))
    print(f"aotpack vs torch.compile: first output {row['first_output_vs_torch_compile']:.1f}x sooner, "
          f"per call {row['per_call_vs_torch_compile']:.2f}x")
    print("wrote", write("subclass_call", [row]))


if __name__ == "__main__":
    main()

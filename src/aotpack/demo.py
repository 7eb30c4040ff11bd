"""``aotpack demo``: why aotpack exists, in one table.

For an MLP and a transformer block on CPU it: compiles each with aotpack (once), saves
the package, then in fresh processes measures (a) aotpack load + first call and (b)
torch.compile's first call with an empty cache, which is what every restart pays
without a package. Outputs of the fresh process are checked against eager.

Every number comes from a fresh ``python`` subprocess; ``import torch`` is timed apart
and excluded from both columns, ``import aotpack`` is counted in aotpack's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

__all__ = ["run_demo", "MODELS"]


class MLP(torch.nn.Module):
    """512 -> 1024 -> 1024 -> 10 (the MLP of the demo and of docs/benchmarks.md)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
            torch.nn.Linear(1024, 10))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(torch.nn.Module):
    """Pre-norm attention + MLP block (d=256, 4 heads)."""

    def __init__(self, d: int = 256, heads: int = 4):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def _mlp():
    torch.manual_seed(0)
    return MLP().eval(), (torch.randn(8, 512),)


def _block():
    torch.manual_seed(0)
    return TransformerBlock().eval(), (torch.randn(2, 64, 256),)


MODELS = {"mlp": _mlp, "transformer_block": _block}

_LOAD_CHILD = r"""
import time, sys, json
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import aotpack
fn = aotpack.load(sys.argv[1])
from safetensors.torch import load_file
x = load_file(sys.argv[2])["x"]
y = fn(x)
t2 = time.perf_counter()
ref = load_file(sys.argv[2])["y"]
print(json.dumps({"import_torch": t1 - t0, "load_first_call": t2 - t1,
                  "max_abs_err": (y - ref).abs().max().item()}))
"""

_COMPILE_CHILD = r"""
import time, sys, json
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from aotpack.demo import MODELS
model, args = MODELS[sys.argv[1]]()
compiled = torch.compile(model)
with torch.no_grad():
    compiled(*args)
t2 = time.perf_counter()
print(json.dumps({"import_torch": t1 - t0, "first_call": t2 - t1}))
"""


def _child(code: str, *argv: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"fresh process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_demo(backend: str = "aoti", out_dir: str | None = None, models=None, torch_compile: bool = True,
             say=print) -> list[dict]:
    """Run the demo; returns one row per model (the numbers in the printed table).
    ``out_dir``: where the packages are kept; without one they go to a temporary folder
    removed at the end (each run left 13 MB in /tmp)."""
    unknown = [m for m in models or () if m not in MODELS]
    if unknown:
        from .errors import AotpackError

        raise AotpackError(f"no demo model {', '.join(map(repr, unknown))}", hint=f"choose among {', '.join(MODELS)}")
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="aotpack-demo-") as tmp:
            rows = run_demo(backend, tmp, models, torch_compile, say)
        say("(the packages were in a temporary folder, now removed: `aotpack demo --out DIR` keeps them)")
        return rows
    from safetensors.torch import save_file

    import aotpack

    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name in models or list(MODELS):
        model, args = MODELS[name]()
        say(f"[{name}] compiling with aotpack (backend={backend}) ...")
        t = time.perf_counter()
        pkg = aotpack.compile(model, args, backend=backend)
        compile_s = time.perf_counter() - t
        path = pkg.save(os.path.join(out_dir, f"{name}.aot"))
        with torch.no_grad():
            ref = model(*args)
        io = os.path.join(out_dir, f"{name}.io.safetensors")
        save_file({"x": args[0].contiguous(), "y": ref.contiguous()}, io)
        say(f"[{name}] compiled in {compile_s:.1f}s, saved {path} ({os.path.getsize(path) / 1e6:.1f} MB); "
            "loading in a fresh process ...")
        loaded = _child(_LOAD_CHILD, path, io)
        row = {"model": name, "backend": backend, "aotpack_compile_s": compile_s,
               "fresh_load_first_call_s": loaded["load_first_call"], "import_torch_s": loaded["import_torch"],
               "max_abs_err": loaded["max_abs_err"], "package_mb": os.path.getsize(path) / 1e6}
        if torch_compile:
            say(f"[{name}] torch.compile first call in a fresh process with an empty cache ...")
            with tempfile.TemporaryDirectory(prefix="aotpack-demo-inductor-") as cache:
                tc = _child(_COMPILE_CHILD, name, env={"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache,
                                                         "TMPDIR": cache})
            row["torch_compile_first_call_s"] = tc["first_call"]
        rows.append(row)
    say("")
    say(_table(rows))
    return rows


def _table(rows: list[dict]) -> str:
    head = ["model", "aotpack compile (once)", "fresh process: aotpack load + 1st call",
            "fresh process: torch.compile 1st call", "speed-up", "package", "max |err| vs eager"]
    lines = []
    for r in rows:
        tc = r.get("torch_compile_first_call_s")
        lines.append([
            r["model"], f"{r['aotpack_compile_s']:.1f} s", f"{r['fresh_load_first_call_s'] * 1000:.0f} ms",
            f"{tc:.1f} s" if tc else "-", f"{tc / r['fresh_load_first_call_s']:.0f}x" if tc else "-",
            f"{r['package_mb']:.1f} MB", f"{r['max_abs_err']:.1e}",
        ])
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*head), "-+-".join("-" * w for w in widths)] + [fmt.format(*x) for x in lines]
    out.append(f"(import torch, excluded from both: {rows[0]['import_torch_s']:.2f} s; torch {torch.__version__}; "
               f"{os.cpu_count()} CPU cores)" if rows else "")
    return "\n".join(out)

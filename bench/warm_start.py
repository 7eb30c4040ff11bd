"""Warm start: first output in a fresh process, aotpack against PyTorch's own ways.

Each case runs in a fresh ``python`` with empty inductor/triton cache folders and a
fresh TMPDIR (inductor keeps precompiled headers and CPU-probe binaries there), except
"torch.compile warm", whose cache a cold run filled first. ``import torch`` is timed
apart; ``import aotpack`` counts as aotpack's. Eager and torch.compile build the model
(a restarting service has to); aotpack needs no model code.

    python bench/warm_start.py [--device cuda] [--models mlp,block,convnet]

Cases: eager first call; torch.compile cold; torch.compile warm (local cache);
AOTInductor's aoti_load_package on a .pt2; aotpack load + first call with backend
inductor (kernels compiled on import) and with backend aoti.
Writes bench/results/warm_start-<tag>.json (tag: cpu, or h100 on the GPU machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

PRELUDE = r"""
import json, os, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
sys.path.insert(0, {bench!r})
def inputs(path):
    # Read before the clock restarts: loading the example inputs is not the loader's cost.
    global t1
    from safetensors.torch import load_file
    x = load_file(path)
    x = [x[f"a{{i}}"].to(sys.argv[2]) for i in range(len(x))]
    if sys.argv[2] == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    return x
def done(out):
    if out.is_cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    print(json.dumps({{"import_torch_s": t1 - t0, "first_output_s": t2 - t1}}))
"""

EAGER = r"""
from models import build
model, args = build(sys.argv[1], sys.argv[2])
with torch.no_grad():
    done(model(*args))
"""

COMPILE = r"""
from models import build
model, args = build(sys.argv[1], sys.argv[2])
with torch.no_grad():
    done(torch.compile(model)(*args))
"""

AOTI_LOAD = r"""
x = inputs(sys.argv[4])
import torch._inductor
fn = torch._inductor.aoti_load_package(sys.argv[3])
done(fn(*x))
"""

AOTPACK = r"""
x = inputs(sys.argv[4])
import aotpack
fn = aotpack.load(sys.argv[3])
done(fn(*x))
"""


def _case(code: str, model: str, device: str, *extra: str, cache: str | None = None) -> dict:
    tmp = tempfile.mkdtemp(prefix="aotpack-bench-")
    cache = cache or os.path.join(tmp, "cache")
    env = {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": os.path.join(cache, "triton"), "TMPDIR": tmp}
    try:
        src = PRELUDE.format(bench=os.path.dirname(os.path.abspath(__file__))) + code
        return fresh(src, model, device, *extra, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="mlp,block,convnet")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--skip", default="", help="comma-separated cases to skip (e.g. aoti_load_package)")
    a = ap.parse_args()

    import torch
    from models import build
    from safetensors.torch import save_file

    import aotpack

    skip = set(filter(None, a.skip.split(",")))
    rows = []
    work = tempfile.mkdtemp(prefix="aotpack-warm-")
    for name in a.models.split(","):
        model, args = build(name, a.device)
        inputs = os.path.join(work, f"{name}.inputs.safetensors")
        save_file({f"a{i}": x.cpu().contiguous() for i, x in enumerate(args)}, inputs)
        print(f"[{name}] compiling the aotpack package ...", flush=True)
        t = time.perf_counter()
        pkg = aotpack.compile(model, args, backend="aoti")
        compile_s = time.perf_counter() - t
        path = pkg.save(os.path.join(work, f"{name}.aot"))
        row = {"model": name, "device": a.device, "aotpack_compile_s": compile_s,
               "package_mb": os.path.getsize(path) / 1e6}
        print(f"[{name}] aotpack load + first call ...", flush=True)
        r = _case(AOTPACK, name, a.device, path, inputs)
        row["import_torch_s"] = r["import_torch_s"]
        row["aotpack_s"] = r["first_output_s"]
        print(f"[{name}] eager ...", flush=True)
        row["eager_s"] = _case(EAGER, name, a.device)["first_output_s"]
        if "inductor" not in skip:
            print(f"[{name}] aotpack, backend inductor ...", flush=True)
            ipath = aotpack.compile(model, args, backend="inductor").save(os.path.join(work, f"{name}.ind.aot"))
            row["aotpack_inductor_s"] = _case(AOTPACK, name, a.device, ipath, inputs)["first_output_s"]
        if "torch_compile" not in skip:
            print(f"[{name}] torch.compile cold, then warm ...", flush=True)
            cache = tempfile.mkdtemp(prefix="aotpack-bench-cache-")
            row["torch_compile_cold_s"] = _case(COMPILE, name, a.device, cache=cache)["first_output_s"]
            row["torch_compile_warm_s"] = _case(COMPILE, name, a.device, cache=cache)["first_output_s"]
            shutil.rmtree(cache, ignore_errors=True)
        if "aoti_load_package" not in skip:
            print(f"[{name}] AOTInductor .pt2 for aoti_load_package ...", flush=True)
            import torch._inductor

            ep = torch.export.export(model, args)
            pt2 = torch._inductor.aoti_compile_and_package(ep, package_path=os.path.join(work, f"{name}.pt2"))
            row["aoti_load_package_s"] = _case(AOTI_LOAD, name, a.device, pt2, inputs)["first_output_s"]
        rows.append(row)
        print(row, flush=True)
    shutil.rmtree(work, ignore_errors=True)

    cases = [("eager first call", "eager_s"), ("torch.compile cold", "torch_compile_cold_s"),
             ("torch.compile warm cache", "torch_compile_warm_s"), ("aoti_load_package", "aoti_load_package_s"),
             ("aotpack, backend inductor", "aotpack_inductor_s"), ("aotpack load + first call", "aotpack_s")]
    lines = []
    for r in rows:
        for label, key in cases:
            if key in r:
                lines.append([r["model"], label, f"{r[key]:.3f} s", f"{r[key] / r['aotpack_s']:.1f}x"])
    print()
    print(table(["model", "case (fresh process, after import torch)", "first output", "vs aotpack"], lines))
    print(f"import torch: {rows[0]['import_torch_s']:.2f} s (excluded); torch {torch.__version__}; device {a.device}")
    print("wrote", write("warm_start", rows, a.tag))


if __name__ == "__main__":
    main()

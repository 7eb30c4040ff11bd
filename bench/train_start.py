"""Warm start of *training*: load + first forward+backward in a fresh process.

Side by side, each case in a fresh ``python`` with empty inductor caches and TMPDIR
(``import torch`` timed apart; every case builds the model, since training needs its
parameters): eager; torch.compile cold; torch.compile with a warm local cache; torch's
aot_compile -> load_compiled_function of the training step's forward (where it works);
aotpack training package (backend aoti), bound to the model with ``module=``.
Target (issue 4/5): aotpack <= 0.5 s on CPU for the MLP and the transformer block.

    python bench/train_start.py [--models mlp,block]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write  # noqa: E402
from warm_start import AOT_SAVE, _case  # noqa: E402

STEP = r"""
def step(fn, args):
    out = fn(*args)
    out.float().square().mean().backward()
    return out
"""

EAGER = STEP + r"""
from models import build
model, args = build(sys.argv[1], sys.argv[2])
model.train()
done(step(model, args))
"""

COMPILE = STEP + r"""
from models import build
model, args = build(sys.argv[1], sys.argv[2])
model.train()
done(step(torch.compile(model), args))
"""

AOT_LOAD = STEP + r"""
import models
model, args = models.build(sys.argv[1], sys.argv[2])
model.train()
models.MODEL = model
with open(sys.argv[3], "rb") as f:
    fn = torch.compiler.load_compiled_function(f, f_globals=vars(models))
done(step(fn, args))
"""

AOTPACK = STEP + r"""
from models import build
model, args = build(sys.argv[1], sys.argv[2])
model.train()
import aotpack
fn = aotpack.load(sys.argv[3], module=model)
out = step(fn, args)
assert model.parameters().__next__().grad is not None
done(out)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="mlp,block")
    a = ap.parse_args()
    import torch

    import aotpack
    from models import build

    rows = []
    work = tempfile.mkdtemp(prefix="aotpack-train-")
    for name in a.models.split(","):
        model, args = build(name, a.device)
        model.train()
        print(f"[{name}] compiling the training package ...", flush=True)
        path = aotpack.compile(model, args, backend="aoti", train=True).save(os.path.join(work, f"{name}.aot"))
        row = {"model": name, "device": a.device}
        r = _case(AOTPACK, name, a.device, path)
        row.update(import_torch_s=r["import_torch_s"], aotpack_s=r["first_output_s"])
        row["eager_s"] = _case(EAGER, name, a.device)["first_output_s"]
        cache = tempfile.mkdtemp(prefix="aotpack-bench-cache-")
        row["torch_compile_cold_s"] = _case(COMPILE, name, a.device, cache=cache)["first_output_s"]
        row["torch_compile_warm_s"] = _case(COMPILE, name, a.device, cache=cache)["first_output_s"]
        shutil.rmtree(cache, ignore_errors=True)
        if hasattr(torch.compiler, "load_compiled_function"):
            blob = os.path.join(work, f"{name}.aotc")
            try:
                _case(AOT_SAVE.replace("with torch.no_grad():", "if True:"), name, a.device, blob)
                row["aot_compile_load_s"] = _case(AOT_LOAD, name, a.device, blob)["first_output_s"]
            except RuntimeError as e:  # recorded, not hidden
                row["aot_compile_error"] = str(e).strip().splitlines()[-1][:200]
        rows.append(row)
        print(row, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    cases = [("eager first step", "eager_s"), ("torch.compile cold", "torch_compile_cold_s"),
             ("torch.compile warm cache", "torch_compile_warm_s"),
             ("aot_compile + load_compiled_function", "aot_compile_load_s"),
             ("aotpack training package", "aotpack_s")]
    lines = [[r["model"], label, f"{r[key]:.3f} s", f"{r[key] / r['aotpack_s']:.1f}x"]
             for r in rows for label, key in cases if key in r]
    print(table(["model", "case (fresh process, after import torch): build + first fwd+bwd", "time", "vs aotpack"],
                lines))
    for r in rows:
        if "aot_compile_error" in r:
            print(f"aot_compile failed for {r['model']}: {r['aot_compile_error']}")
    print("wrote", write("train_start", rows))


if __name__ == "__main__":
    main()

"""Peak memory of ``aotpack.add_variant`` on a large package, in a fresh process.

A package of W GB of weights (a stack of Linear layers, backend eager) is saved once.
A fresh process builds the same model (W in memory), then adds a variant:

- ``same dtype``: another batch size; every weight is shared with the stored ones;
- ``bfloat16``: the model cast to bf16; W/2 of new weights join the file.

Reported: the process's peak RSS above what it held before the call (the model), split
into anonymous memory (copies aotpack made) and file-backed pages (the package file,
memory-mapped: the kernel can drop them), as ``/proc/self/status`` counts them. The
goal (issue "One stage, one module"): about one copy of the weights, never one per step.

    python bench/add_variant_memory.py [--gb 0.5]
Writes bench/results/add_variant_memory-cpu.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

MODEL = r"""
import torch
def build(gb):
    d = 4096
    layers = max(1, round(gb * 1e9 / (4 * d * d)))
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(layers)]), d
"""

SAVE = MODEL + r"""
import sys, aotpack
model, d = build(float(sys.argv[2]))
aotpack.compile(model, (torch.randn(2, d),), backend="eager").save(sys.argv[1])
print("{}")
"""

ADD = MODEL + r"""
import json, sys, threading, time, aotpack
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out
model, d = build(float(sys.argv[2]))
if sys.argv[3] == "bfloat16":
    model = model.bfloat16()
dtype = next(model.parameters()).dtype
before = status()
peak = dict(before)
stop = False
def sample():  # VmHWM has no anon/file split: sample both while the call runs
    while not stop:
        for k, v in status().items():
            peak[k] = max(peak[k], v)
        time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
t0 = time.perf_counter()
aotpack.add_variant(sys.argv[1], model, (torch.randn(3, d, dtype=dtype),), variant="extra", backend="eager")
seconds = time.perf_counter() - t0
stop = True; t.join()
print(json.dumps({"seconds": seconds, "weights_gb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9,
                  **{f"peak_{k}_above_gb": (peak[k] - before[k]) / 1e9 for k in before}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=0.5)
    a = ap.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("float32", "bfloat16"):
            path = os.path.join(tmp, f"{case}.aot")
            fresh(SAVE, path, str(a.gb))
            r = fresh(ADD, path, str(a.gb), case)
            results[case] = r
            rows.append([case, f"{r['weights_gb']:.2f} GB", f"{r['peak_RssAnon_above_gb']:.2f} GB",
                         f"{r['peak_RssFile_above_gb']:.2f} GB", f"{r['peak_VmRSS_above_gb']:.2f} GB",
                         f"{r['seconds']:.1f} s"])
    print(table(["new variant", "model weights", "peak anon above", "peak file pages above", "peak RSS above",
                 "time"], rows))
    print("wrote", write("add_variant_memory", [{"case": k, "gb": a.gb, **r} for k, r in results.items()]))


if __name__ == "__main__":
    main()

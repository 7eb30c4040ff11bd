"""Where a fresh process spends aotpack's load + first call, step by step.

    python bench/load_breakdown.py [--device cuda] [--model block]

Compiles the workload once, then in a fresh process times: import aotpack, open +
verify (sha256 of every member), weights (mmap, and the copy to the GPU), the backend's
load (the .so written and opened), the first call, a second call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table  # noqa: E402

CHILD = r"""
import json, sys, time
T = [("start", time.perf_counter())]
def mark(name):
    T.append((name, time.perf_counter()))
import torch
mark("import torch")
if sys.argv[2] == "cuda":
    torch.cuda.init(); torch.empty(1, device="cuda")
    mark("CUDA context (eager pays it too)")
import aotpack
from aotpack.package.reader import PackageReader
from aotpack.package import fmt
mark("import aotpack")
r = PackageReader(sys.argv[1]); r.verify()
mark("open + verify sha256")
w = r.tensors(fmt.WEIGHTS)
ws = [t.to(sys.argv[2]) for t in w.values()]
if sys.argv[2] == "cuda": torch.cuda.synchronize()
mark("weights mmap + to device")
r.close()
fn = aotpack.load(sys.argv[1])
mark("aotpack.load (all of it again)")
x = [a.to(sys.argv[2]) for a in torch.load(sys.argv[3])]
mark("inputs")
y = fn(*x)
if sys.argv[2] == "cuda": torch.cuda.synchronize()
mark("first call")
y = fn(*x)
if sys.argv[2] == "cuda": torch.cuda.synchronize()
mark("second call")
print(json.dumps([(T[i][0], T[i][1] - T[i - 1][1]) for i in range(1, len(T))]))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="block")
    a = ap.parse_args()
    import torch

    import aotpack
    from models import build

    model, args = build(a.model, a.device)
    with tempfile.TemporaryDirectory() as d:
        path = aotpack.compile(model, args).save(os.path.join(d, "m.aot"))
        torch.save([x.cpu() for x in args], os.path.join(d, "x.pt"))
        steps = fresh(CHILD, path, a.device, os.path.join(d, "x.pt"))
    print(table(["step", "seconds"], [[name, f"{s:.4f}"] for name, s in steps]))


if __name__ == "__main__":
    main()

"""Steady-state per-call latency: a loaded aotpack package vs torch.compile, same graph.

Both live in one process and are timed in alternating rounds (so machine noise, CPU
frequency and the other core's load hit both alike); medians of the per-call times.
The package is loaded in that process from its file, as a service would; torch.compile
is warmed up first. Target (issue 5): aotpack within 5% of torch.compile.

    python bench/steady_state.py [--device cuda] [--models mlp,block,convnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write  # noqa: E402


def per_call_us(fn, args, calls: int, sync) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="mlp,block,convnet")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50)
    a = ap.parse_args()
    import torch

    import aotpack
    from models import build

    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    rows = []
    work = tempfile.mkdtemp(prefix="aotpack-steady-")
    for name in a.models.split(","):
        model, args = build(name, a.device)
        path = aotpack.compile(model, args, backend="aoti").save(os.path.join(work, f"{name}.aot"))
        pkg = aotpack.load(path)
        compiled = torch.compile(model)
        results = {"aotpack": [], "torch.compile": [], "eager": []}
        with torch.no_grad():
            for fn in (pkg, compiled, model):  # warm-up: compile, caches, allocator
                for _ in range(10):
                    fn(*args)
            sync()
            for _ in range(a.rounds):
                for label, fn in (("aotpack", pkg), ("torch.compile", compiled), ("eager", model)):
                    results[label].append(per_call_us(fn, args, a.calls, sync))
        row = {"model": name, "device": a.device, **{f"{k}_us": statistics.median(v) for k, v in results.items()},
               "rounds": results}
        row["ratio"] = row["aotpack_us"] / row["torch.compile_us"]
        rows.append(row)
        print(f"[{name}] aotpack {row['aotpack_us']:.0f} us, torch.compile {row['torch.compile_us']:.0f} us, "
              f"eager {row['eager_us']:.0f} us", flush=True)
    print(table(["model", "aotpack us/call", "torch.compile us/call", "eager us/call", "aotpack / torch.compile"],
                [[r["model"], f"{r['aotpack_us']:.0f}", f"{r['torch.compile_us']:.0f}", f"{r['eager_us']:.0f}",
                  f"{r['ratio']:.3f}"] for r in rows]))
    print("wrote", write("steady_state", rows))


if __name__ == "__main__":
    main()

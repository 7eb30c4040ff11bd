"""What tracing adds to torch.compile's compile time (target: <= 10%).

Each case in a fresh process with an empty inductor cache and TMPDIR: torch.compile
(inductor) of a model, first call timed (that is the compile), with and without
``aotpack.trace``. Repeated; medians compared. On a shared 2-core machine the compile
itself varies by +-10% run to run, more than tracing costs, so the traced runs also
report the time measured inside the process: the recorder's own (runnable scripts,
event parsing) plus torch's structured-logging time (payloads it builds only while
someone listens), both summed over the trace's records. Writes bench/results/trace_overhead-<machine>.json.

    python bench/trace_overhead.py [--repeat 3] [--models mlp,block]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

CHILD = r"""
import json, os, sys, time
import torch
sys.path.insert(0, os.environ["BENCH_DIR"])
import models
model, args = models.build(sys.argv[1], "cpu")
traced = sys.argv[2] == "trace"
if traced:
    import aotpack
    ctx = aotpack.trace(os.path.join(os.environ["TMPDIR"], "trace"))
    ctx.__enter__()
fn = torch.compile(model)
t = time.perf_counter()
with torch.no_grad():
    fn(*args)
compile_s = time.perf_counter() - t
inside = 0.0
if traced:
    ctx.__exit__(None, None, None)
    records = aotpack.trace.read_trace(os.path.join(os.environ["TMPDIR"], "trace"))
    inside = sum(r["trace_overhead_s"] + (r.get("torch_logging_overhead_s") or 0) for r in records)
print(json.dumps({"compile_s": compile_s, "inside_s": inside}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="mlp,block")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for name in a.models.split(","):
        times = {"plain": [], "trace": []}
        inside = []
        for _ in range(a.repeat):
            for mode in ("plain", "trace"):  # interleaved, so drift hits both alike
                with tempfile.TemporaryDirectory() as tmp:
                    env = {"TMPDIR": tmp, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor"),
                           "BENCH_DIR": here}
                    r = fresh(CHILD, name, mode, env=env)
                    times[mode].append(r["compile_s"])
                    if mode == "trace":
                        inside.append(r["inside_s"])
        plain, traced = statistics.median(times["plain"]), statistics.median(times["trace"])
        rows.append({"model": name, "torch_compile_s": plain, "with_trace_s": traced,
                     "overhead": traced / plain - 1, "inside_s": statistics.median(inside),
                     "inside_overhead": statistics.median(inside) / plain, "runs": times})
    print(table(["model", "torch.compile (median)", "with aotpack.trace", "wall-clock difference",
                 "tracing time inside (recorder + torch logging)"],
                [[r["model"], f"{r['torch_compile_s']:.2f} s", f"{r['with_trace_s']:.2f} s",
                  f"{100 * r['overhead']:+.1f}%", f"{r['inside_s']:.3f} s ({100 * r['inside_overhead']:.1f}%)"]
                 for r in rows]))
    print("wrote", write("trace_overhead", rows))


if __name__ == "__main__":
    main()

"""Compile farm: the variants of one package compiled serially, by N local processes and
by a Ray cluster of N CPUs (``aotpack.farm.compile(..., workers=...)``), each case in a fresh
process with an empty inductor cache.

The program: an MLP block (d=512, 4 layers) compiled with AOTInductor for 6 batch sizes
(6 variants). Times are the wall clock of ``aotpack.compile`` (Ray: its cluster start
is timed separately and left out: a farm's cluster is up before its jobs). Every case
must give the same outputs per variant.

    python bench/farm.py [--workers 2] [--variants 6] [--no-ray] [--tag T]
Writes bench/results/farm-<cpu|gpu>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

CASE = r"""
import json, os, sys, time
import torch, aotpack
workers, n = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
layers = []
for _ in range(4):
    layers += [torch.nn.Linear(512, 512), torch.nn.GELU()]
model = torch.nn.Sequential(*layers).eval()
batches = [1, 2, 4, 8, 16, 32, 64, 128][:n]
variants = [{"name": f"b{b}", "args": (torch.randn(b, 512),)} for b in batches[1:]]
setup = 0.0
if workers.startswith("ray"):
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=int(sys.argv[3]), include_dashboard=False, log_to_driver=False)
    setup = time.perf_counter() - t
    workers = "ray"
t = time.perf_counter()
compile_kwargs = dict(backend="aoti", variant="b1", variants=variants)
if workers == "serial":
    pkg = aotpack.compile(model, (torch.randn(1, 512),), **compile_kwargs)
else:
    pkg = aotpack.farm.compile(model, (torch.randn(1, 512),), workers=workers, **compile_kwargs)
wall = time.perf_counter() - t
fn = aotpack.load(pkg.save(os.path.join(os.environ["TMPDIR"], "farm.aot")))
x = torch.randn(max(batches), 512, generator=torch.Generator().manual_seed(1))
outs = [fn(x[:b]).sum().item() for b in batches]
from aotpack.cache import stats
print(json.dumps({"compile_s": wall, "setup_s": setup, "outs": outs, "caller_compiles": stats["compiles"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray case out (no ray installed)")
    parser.add_argument("--tag", default=None, help="results file tag (default: cpu or gpu)")
    opts = parser.parse_args()
    n, w = opts.variants, opts.workers
    rows = []
    cases = [("serial (one process)", "serial"), (f"local:{w}", f"local:{w}")]
    if not opts.no_ray:
        cases.append((f"Ray, {w} CPUs", "ray"))
    for case, how in cases:
        with tempfile.TemporaryDirectory(prefix="aotpack-farm-") as tmp:
            env = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor"), "TMPDIR": tmp,
                   "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
            r = fresh(CASE, how, str(n), str(w), env=env, timeout=1800)
        rows.append({"case": case, "variants": n, "workers": 1 if how == "serial" else w, **r})
        print(f"{case}: {r['compile_s']:.1f} s", file=sys.stderr)
    base = rows[0]["compile_s"]
    same = all(r["outs"] == rows[0]["outs"] for r in rows)
    for r in rows:
        r["speedup"] = base / r["compile_s"]
        r.pop("outs")
    print(table(["case", "compile", "speed-up", "cluster start"],
                [[r["case"], f"{r['compile_s']:.1f} s", f"{r['speedup']:.2f}x",
                  f"{r['setup_s']:.1f} s" if r["setup_s"] else "-"] for r in rows]))
    print(f"\n{n} aoti variants, {os.cpu_count()} CPUs here; same outputs in every case: {same}")
    print("wrote", write("farm", [*rows, {"same_outputs": same}], tag=opts.tag))


if __name__ == "__main__":
    main()

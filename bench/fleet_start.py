"""A fleet starting at once: N servers compile the same model against one shared Redis.

Each server is a fresh process with its own empty inductor cache and TMPDIR (separate machines),
all N launched together, each compiling an MLP (d=512 x 4, batch 8) and running it once.
Side by side, in one run, against one real redis-server on loopback (emptied between cases):

- ``torch.compile + inductor's Redis cache``: torch.compile with inductor's FX graph
  remote cache on (``TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE=1``), the PyTorch feature for a
  fleet: servers that start together all miss and all compile;
- ``torch.compile + aotpack cache``: ``torch.compile(model, backend=aotpack.cache.backend(
  "inductor", redis))``: one server compiles under the key's lease, the others wait and hit;
- ``aotpack.compile (aoti) + cache``: the package path (compile, save, load, call).

Reports, per case: when the last server had its first output (the fleet is ready), the
first's, and how many of the N compiled. Writes bench/results/fleet_start-<tag>.json.

    python bench/fleet_start.py [--servers 1,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import start_redis, table, write  # noqa: E402

SERVER = r"""
import json, os, sys, time
t_launch, mode, url, work = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(512, 512), torch.nn.GELU())]).eval()
x = torch.randn(8, 512)
with torch.no_grad():
    if mode == "inductor-remote":
        from torch._dynamo.utils import counters  # (bench only) inductor's own hit/miss counts
        fn = torch.compile(model)
        y = fn(x)
        compiled = counters["inductor"]["fxgraph_cache_miss"] > 0
    elif mode == "aotpack-backend":
        import aotpack.cache
        fn = torch.compile(model, backend=aotpack.cache.backend("inductor", url))
        y = fn(x)
        compiled = aotpack.cache.stats["compiles"] > 0
    else:
        import aotpack, aotpack.cache
        pkg = aotpack.compile(model, (x,), backend="aoti", cache=url)
        fn = aotpack.load(pkg.save(os.path.join(work, f"mlp-{os.getpid()}.aot")))
        y = fn(x)
        compiled = aotpack.cache.stats["compiles"] > 0
ready = time.time() - t_launch
torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-4)
print(json.dumps({"ready_s": ready, "compiled": bool(compiled)}))
"""

CASES = [("inductor-remote", "torch.compile + inductor's Redis cache"),
         ("aotpack-backend", "torch.compile + aotpack cache"),
         ("aotpack-package", "aotpack.compile (aoti) + cache")]


def run_fleet(mode: str, n: int, url: str, port: int) -> dict:
    import redis

    redis.Redis(port=port).flushall()
    with tempfile.TemporaryDirectory(prefix="aotpack-fleet-") as work:
        procs = []
        t = time.time()
        for i in range(n):
            tmp = os.path.join(work, f"tmp{i}")  # inductor's precompiled headers go under TMPDIR
            os.makedirs(tmp)
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(work, f"inductor{i}"),
                   "AOTPACK_CACHE": os.path.join(work, f"aotpack{i}"), "TMPDIR": tmp}
            if mode == "inductor-remote":
                env.update(TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE="1", TORCHINDUCTOR_REDIS_HOST="127.0.0.1",
                           TORCHINDUCTOR_REDIS_PORT=str(port))
            procs.append(subprocess.Popen([sys.executable, "-c", SERVER, repr(t), mode, url, work], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(f"{mode} server failed:\n{err[-4000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    ready = sorted(o["ready_s"] for o in outs)
    return {"case": mode, "servers": n, "first_ready_s": ready[0], "all_ready_s": ready[-1],
            "compiled": sum(o["compiled"] for o in outs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="1,4,8")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(tmp)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        try:
            for n in [int(s) for s in a.servers.split(",")]:
                for mode, _ in CASES:
                    rows.append(run_fleet(mode, n, url, port))
                    print(rows[-1], file=sys.stderr)
        finally:
            server.terminate()
    names = dict(CASES)
    print(table(["servers", "case", "first ready", "all ready", "compiled"],
                [[str(r["servers"]), names[r["case"]], f"{r['first_ready_s']:.1f} s", f"{r['all_ready_s']:.1f} s",
                  f"{r['compiled']} of {r['servers']}"] for r in rows]))
    print("wrote", write("fleet_start", rows))


if __name__ == "__main__":
    main()

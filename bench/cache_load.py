"""Load test of the Redis cache store: N clients x M get/put of 1-10 MB entries.

Side by side, in one run, against one real redis-server on loopback:

- ``aotpack RedisStore``: framed entries, sha256 checked on every read, first-writer-wins
  puts (``store``/``fetch``), i.e. everything a fleet's compile cache does per entry;
- ``raw redis-py GET/SET``: what inductor's remote Redis cache does (no framing, no
  checksum): the floor.

Each client is a fresh process; half its operations are puts (random 1-10 MB payloads
over a small key space of its own, so gets hit), half gets. Prints p50/p99 latency and
throughput and writes bench/results/cache_load-<machine>.json.

    python bench/cache_load.py [--clients 8] [--ops 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import start_redis, table, write  # noqa: E402

CLIENT = r"""
import json, random, sys, time
import numpy as np
url, mode, seed, ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
blobs = [np.random.default_rng(seed * 100 + i).bytes(rng.randint(1 << 20, 10 << 20)) for i in range(8)]
keys = [f"client{seed}-{i}" for i in range(16)]
put_s, get_s, errors, moved = [], [], 0, 0
if mode == "aotpack":
    from aotpack.cache import CacheKey, RedisStore
    store = RedisStore(url, timeout=30)
    ckeys = {k: CacheKey.of(graph=k, inputs="", backend="bench") for k in keys}
    def put(k, blob):
        return store.store(ckeys[k], blob, overwrite=True)
    def get(k):
        e = store.fetch(ckeys[k].digest)
        return None if e is None else e.payload
else:
    import redis
    client = redis.Redis.from_url(url, socket_timeout=30)
    def put(k, blob):
        return client.set("raw:" + k, blob)
    def get(k):
        return client.get("raw:" + k)
written = {}
for i in range(ops):
    k = rng.choice(keys)
    try:
        if i % 2 == 0 or k not in written:
            blob = rng.choice(blobs)
            t = time.perf_counter(); ok = put(k, blob); put_s.append(time.perf_counter() - t)
            written[k] = blob
            errors += not ok
            moved += len(blob)
        else:
            t = time.perf_counter(); got = get(k); get_s.append(time.perf_counter() - t)
            errors += got != written[k]
            moved += len(got or b"")
    except Exception as e:
        errors += 1
        print("error:", type(e).__name__, e, file=sys.stderr)
print(json.dumps({"put": put_s, "get": get_s, "errors": errors, "bytes": moved}))
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_case(url: str, mode: str, clients: int, ops: int) -> dict:
    import json

    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, url, mode, str(i), str(ops)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(clients)]
    outs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err[-3000:])
        outs.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - t
    puts = [x for o in outs for x in o["put"]]
    gets = [x for o in outs for x in o["get"]]
    moved = sum(o["bytes"] for o in outs)
    return {"case": mode, "clients": clients, "ops_per_client": ops, "errors": sum(o["errors"] for o in outs),
            "put_p50_ms": pct(puts, 0.5) * 1e3, "put_p99_ms": pct(puts, 0.99) * 1e3,
            "get_p50_ms": pct(gets, 0.5) * 1e3, "get_p99_ms": pct(gets, 0.99) * 1e3,
            "wall_s": wall, "throughput_MBps": moved / wall / 1e6, "ops": len(puts) + len(gets)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--ops", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(tmp)
        try:
            rows = [run_case(url, mode, a.clients, a.ops) for mode in ("aotpack", "raw")]
        finally:
            server.terminate()
    base = {r["case"]: r for r in rows}
    print(f"{a.clients} clients x {a.ops} get/put of 1-10 MB entries, redis-server on loopback")
    print(table(["case", "errors", "put p50/p99 ms", "get p50/p99 ms", "MB/s", "get p50 vs raw"],
                [[r["case"] if r["case"] != "raw" else "raw redis-py GET/SET", str(r["errors"]),
                  f"{r['put_p50_ms']:.1f} / {r['put_p99_ms']:.1f}", f"{r['get_p50_ms']:.1f} / {r['get_p99_ms']:.1f}",
                  f"{r['throughput_MBps']:.0f}", f"{r['get_p50_ms'] / base['raw']['get_p50_ms']:.2f}x"]
                 for r in rows]))
    print("wrote", write("cache_load", rows))
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Shared by the benchmarks: fresh-process cases, machine facts, results as JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def ensure_bytecode() -> None:
    """Compile aotpack's modules to .pyc once, as ``pip install`` of a wheel does.

    An editable install never does, and where PYTHONDONTWRITEBYTECODE is set (these
    machines set it) every fresh process would compile aotpack's source again: 15-25 ms
    that no installed user pays, counted as aotpack's load time. torch ships its .pyc.
    """
    import compileall

    import aotpack

    compileall.compile_dir(os.path.dirname(aotpack.__file__), quiet=1)


ensure_bytecode()


def machine() -> dict:
    import torch

    facts = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
             "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def fresh(code: str, *argv: str, env: dict | None = None, timeout: int = 900) -> dict:
    """Run ``code`` in a fresh ``python``; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case failed:\n{proc.stderr[-4000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    # echoed as it finishes: a run cut short by a machine's time limit still shows its cases
    print(f"case {' '.join(a for a in argv if len(a) < 40)}: {last[:300]}", file=sys.stderr, flush=True)
    return json.loads(last)


def write(name: str, rows: list[dict], tag: str | None = None) -> str:
    """``rows`` as ``<name>-<tag>.json`` in ``$OUT`` (the device tool's folder, so that a
    GPU run's results come back) or bench/results/."""
    out_dir = os.environ.get("OUT") or RESULTS
    os.makedirs(out_dir, exist_ok=True)
    tag = tag or os.environ.get("AOTPACK_BENCH_TAG") or ("gpu" if machine().get("gpu") else "cpu")
    path = os.path.join(out_dir, f"{name}-{tag}.json")
    with open(path, "w") as f:
        json.dump({"date": datetime.date.today().isoformat(), "machine": machine(), "rows": rows}, f, indent=1)
    return path


def write_gpu_result(name: str, result: dict) -> str:
    """``result`` as ``<name>-<gpu>-...json`` in ``$OUT`` (the device tool's folder) or
    bench/results/; ``name`` may hold ``{gpu}`` (e.g. ``decode_profile-{gpu}-8x2048``)."""
    import torch

    out_dir = os.environ.get("OUT") or RESULTS
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name.format(gpu=torch.cuda.get_device_name().split()[-1].lower()) + ".json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path


def cuda_seconds(torch, fn, repeat: int) -> float:
    """Seconds one call of ``fn`` takes on the GPU: ``repeat`` calls timed between two
    CUDA events (warm it up first)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / repeat


def cuda_graph_seconds(torch, run, rounds: int = 5, replays: int = 10) -> float:
    """Seconds one replay of a CUDA graph of ``run()`` takes, the best of ``rounds`` runs
    of ``replays`` replays: ``run`` is warmed up on a side stream, then captured
    thread-local (inductor's compile threads may call CUDA while this thread captures)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        run()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(rounds):
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / replays)
    return best


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), "-+-".join("-" * w for w in widths), *(fmt.format(*r) for r in rows)])


def start_redis(tmp: str) -> tuple[subprocess.Popen, str]:
    """A real redis-server on a free loopback port, no persistence; (process, URL)."""
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (make bench installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"

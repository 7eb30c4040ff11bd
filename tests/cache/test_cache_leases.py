"""Compile locks are leases: a holder that keeps compiling keeps its lock, one that is
stopped (SIGSTOP: alive, silent) delays the others by about one lease, then they compile
themselves. On both stores: a local folder (flock + a touched file) and a real
redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from aotpack.cache import CacheKey, LocalStore, lookup_or_compile

LEASE = 0.5

HOLDER = r"""
import os, sys, time
from aotpack.cache import CacheKey, LocalStore, lookup_or_compile
url, flag, started, name = sys.argv[1:5]
if url.startswith("redis://"):
    from aotpack.cache import RedisStore
    store = RedisStore(url, lock_lease=LEASE)
else:
    store = LocalStore(url, lock_lease=LEASE)
def compile_fn():  # a compile that lasts until the test says so
    open(started, "w").close()
    while not os.path.exists(flag):
        time.sleep(0.01)
    return b"from the holder"
lookup_or_compile(CacheKey.of(graph=name), compile_fn, store, kind="test")
""".replace("LEASE", repr(LEASE))


def _store(kind, tmp_path, request):
    if kind == "local":
        return str(tmp_path / "store"), LocalStore(tmp_path / "store", lock_lease=LEASE)
    from aotpack.cache import RedisStore

    url = request.getfixturevalue("redis_url")
    return url, RedisStore(url, lock_lease=LEASE)


def _start_holder(url, tmp_path):
    flag, started = tmp_path / "go", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(flag), str(started), str(tmp_path)])
    deadline = time.monotonic() + 60
    while not started.exists():  # the holder has its lock and is compiling
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start compiling"
        time.sleep(0.01)
    return proc, flag


def _waiter(store, tmp_path):
    result = {}

    def run():
        result["payload"] = lookup_or_compile(CacheKey.of(graph=str(tmp_path)), lambda: b"from the waiter", store,
                                              kind="test")
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_compiling_holder_keeps_its_lease(kind, tmp_path, request):
    url, store = _store(kind, tmp_path, request)
    proc, flag = _start_holder(url, tmp_path)
    try:
        thread, result = _waiter(store, tmp_path)
        thread.join(timeout=8 * LEASE)  # eight leases: only renewals keep the lock this long
        assert thread.is_alive() and not result, "the waiter stopped waiting for a live holder"
        flag.touch()
        thread.join(timeout=60)
        assert result["payload"] == b"from the holder"  # the holder's entry, not a second compile
    finally:
        flag.touch()
        proc.wait(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_stopped_holder_delays_others_by_about_one_lease(kind, tmp_path, request):
    url, store = _store(kind, tmp_path, request)
    proc, flag = _start_holder(url, tmp_path)
    os.kill(proc.pid, signal.SIGSTOP)  # alive and holding its flock / token, renewing nothing
    try:
        t0 = time.monotonic()
        thread, result = _waiter(store, tmp_path)
        thread.join(timeout=60)
        assert result["payload"] == b"from the waiter"
        assert result["at"] - t0 < 10 * LEASE, f"waited {result['at'] - t0:.1f} s for a stopped holder"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        flag.touch()
        proc.wait(timeout=60)

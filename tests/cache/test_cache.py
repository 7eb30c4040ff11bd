"""Compile cache: keys, stores (a directory and a real redis-server), Context, CLI.

Fast tests use the eager backend (its artifact is graph source, so compiling costs
milliseconds); test_cache_fleet.py has the AOTInductor and torch.compile ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

import aotpack
import aotpack.cache as cache
from aotpack.cache.entry import CorruptEntry, pack_entry, unpack_entry
from conftest import TORCH_BEFORE_2_13, run_fresh


@pytest.fixture(autouse=True)
def fresh_stats():
    cache.stats.clear()


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()


X = torch.randn(3, 8)


def compile_eager(store, x=X, m=None, **kw):
    return aotpack.compile(m or mlp(), (x,), backend="eager", cache=store, **kw)


def run_package(pkg, tmp_path, x=X):
    return aotpack.load(pkg.save(os.fspath(tmp_path / f"p{time.monotonic_ns()}.aot")))(x)


@pytest.fixture(params=["local", "redis"])
def store(request, tmp_path):
    if request.param == "local":
        return cache.LocalStore(tmp_path / "cache")
    return cache.RedisStore(request.getfixturevalue("redis_url"), timeout=2)


# -- keys and misses -----------------------------------------------------------------
def test_miss_then_hit_compiles_once(store, tmp_path):
    first = compile_eager(store)
    assert (cache.stats["misses"], cache.stats["compiles"], cache.stats["hits"]) == (1, 1, 0)
    second = compile_eager(store)
    assert (cache.stats["compiles"], cache.stats["hits"]) == (1, 1)
    assert first.members == second.members
    torch.testing.assert_close(run_package(second, tmp_path), mlp()(X))


def test_miss_names_the_part_that_differs(store):
    compile_eager(store)
    lines = []
    compile_eager(store, x=torch.randn(5, 8), progress=lines.append)
    miss = next(line for line in lines if line.startswith("cache miss"))
    assert "differs in 1 part(s): inputs: float32[3,8]@cpu -> float32[5,8]@cpu" in miss
    lines.clear()
    aotpack.compile(mlp(), (X,), backend="eager", cache=store, progress=lines.append,
                    dynamic={"input": {0: aotpack.Dim("batch", min=1, max=64)}})
    miss = next(line for line in lines if line.startswith("cache miss"))
    assert re.search(r"inputs: float32\[[35],8\]@cpu -> float32\[batch,8\]@cpu \| batch=1\.\.64$", miss), miss


def test_key_covers_weights_layout_options_and_versions(store):
    compile_eager(store)
    m = mlp()
    m[0] = torch.nn.Linear(8, 16, bias=False)  # a different graph
    compile_eager(store, m=m)
    from custom_backend import CountingInterpreter  # a backend with an option (eager takes none)

    for scale in (1.0, 2.0, 2.0):
        aotpack.compile(mlp(), (X,), backend=CountingInterpreter(), cache=store, options={"scale": scale})
    assert cache.stats["compiles"] == 4  # the options are in the key: scale 2.0 missed once, then hit
    key = cache.CacheKey.of(**{h: "x" for h in ("graph", "inputs", "backend")}, torch="2.12.0")
    other = dict(key.parts, torch="2.13.0")
    assert key.differences(other) == [("torch", "2.13.0", "2.12.0")]
    parts = next(store.entries())["parts"]
    assert set(parts) == {"graph", "inputs", "backend", "options", "aotpack", "torch", "python", "device"}
    assert parts["torch"] == torch.__version__


def test_inductor_config_is_part_of_the_key():
    import torch._inductor.config as config

    from aotpack.cache.cached import _options_part

    before = _options_part({}, True)
    with config.patch(max_autotune=not config.max_autotune):
        assert _options_part({}, True) != before
    assert _options_part({}, True) == before


# -- corruption, atomicity -------------------------------------------------------------
def flip_one_byte(store, digest):
    if isinstance(store, cache.LocalStore):
        path = store._file(digest)
        data = bytearray(open(path, "rb").read())
        data[-10] ^= 0xFF
        open(path, "wb").write(bytes(data))
    else:
        key = store._key("entry", digest)
        data = store._client.get(key)
        store._client.setrange(key, len(data) - 10, bytes([data[-10] ^ 0xFF]))


def test_corrupt_entry_is_evicted_and_recompiled(store, tmp_path):
    compile_eager(store)
    (digest,) = store.digests()
    flip_one_byte(store, digest)
    with pytest.warns(cache.CacheWarning, match=rf"cache entry {digest[:16]} .* is corrupt \(payload checksum"):
        pkg = compile_eager(store)
    assert cache.stats["corrupt"] == 1 and cache.stats["compiles"] == 2
    assert store.fetch(digest) is not None  # stored again, whole
    torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))


def test_entry_checks_key_size_and_checksum():
    raw = pack_entry("ab" * 32, {"graph": "g"}, b"payload" * 100, kind="t")
    assert unpack_entry(raw).payload == b"payload" * 100
    for bad, reason in [(raw[:-1], "payload is"), (raw[:5], "bad magic"), (b"X" + raw[1:], "bad magic")]:
        with pytest.raises(CorruptEntry, match=reason):
            unpack_entry(bad)
    with pytest.raises(CorruptEntry, match="expected cdcd"):
        unpack_entry(raw, "cd" * 32)


def test_readers_never_see_half_an_entry(store):
    """Writers keep replacing a 4 MB entry while readers fetch it: every read is whole."""
    key = cache.CacheKey.of(graph="g", inputs="i", backend="b")
    payloads = [bytes([i]) * (4 << 20) for i in range(4)]
    store.store(key, payloads[0])
    stop = threading.Event()
    seen, errors = [], []

    def write():
        i = 0
        while not stop.is_set():
            i += 1
            store.store(key, payloads[i % 4], overwrite=True)

    def read():
        while not stop.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a corrupt read would warn
                try:
                    e = store.fetch(key.digest)
                except Exception as ex:  # noqa: BLE001
                    errors.append(ex)
                    return
            if e is not None:
                seen.append(e.payload[0])
                assert e.payload in payloads

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(seen) > 5


def test_local_store_evicts_least_recently_used(tmp_path):
    store = cache.LocalStore(tmp_path / "c", max_bytes=3 * 1024 * 1024 + 4096)
    keys = [cache.CacheKey.of(graph=str(i), inputs="", backend="b") for i in range(4)]
    for i, k in enumerate(keys[:3]):
        store.store(k, bytes(1 << 20))
        os.utime(store._file(k.digest), (1000 + i, 1000 + i))  # distinct, old mtimes
    assert store.get(keys[0].digest) is not None  # keys[0] is now the most recently used
    store.store(keys[3], bytes(1 << 20))
    left = set(store.digests())
    assert keys[1].digest not in left  # least recently used went first
    assert {keys[0].digest, keys[3].digest} <= left
    assert store.size() <= store.max_bytes


def test_local_store_unwritable_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(aotpack.CacheError, match="cannot create the cache directory"):
        cache.LocalStore(blocker / "sub")


# -- Context -------------------------------------------------------------------------------
def test_context_records_edits_and_bundles(tmp_path):
    from aotpack.cache.entry import pack_files, unpack_files

    with cache.Context() as ctx:
        compile_eager(None)
    (key,) = ctx.keys()
    assert ctx.parts(key)["backend"] == "eager"
    files, meta = unpack_files(ctx.get(key))
    assert b"torch.ops.aten" in files["graph.py"]

    def add_one(blob):  # an edit with a visible effect: the program's output + 1
        files, meta = unpack_files(blob)
        src = files["graph.py"].decode()
        files["graph.py"] = src.replace("return (", "return (1 + ").encode()
        return pack_files(files, meta)

    ctx.edit(key, add_one)
    blob = ctx.bundle()

    cache.stats.clear()
    other = cache.Context()
    assert other.load_bundle(blob) == [key]
    with other:
        pkg = compile_eager(None)
    assert cache.stats["compiles"] == 0 and cache.stats["hits"] == 1
    torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X) + 1)
    other.clear()
    assert other.keys() == []


def test_damaged_bundle_is_refused_whole():
    with cache.Context() as ctx:
        compile_eager(None)
    blob = bytearray(ctx.bundle())
    blob[-3] ^= 1
    fresh = cache.Context()
    with pytest.raises(aotpack.CacheError, match="bundle entry 0 is damaged"):
        fresh.load_bundle(bytes(blob))
    with pytest.raises(aotpack.CacheError, match="truncated"):
        fresh.load_bundle(ctx.bundle()[:20])
    with pytest.raises(aotpack.CacheError, match="not an aotpack cache bundle"):
        fresh.load_bundle(b"hello")
    assert fresh.keys() == []


def test_context_with_store_writes_edits_through(tmp_path):
    store = cache.LocalStore(tmp_path / "c")
    with cache.Context(store) as ctx:
        compile_eager(store)
    (key,) = ctx.keys()
    ctx.edit(key, lambda b: b)
    assert store.fetch(key).header.get("edited") is True


@pytest.mark.parametrize("damage", ["folder", "fifo", "readonly_disk"])
def test_local_store_failures_warn_and_compile_locally(tmp_path, damage):
    """The cache folder fails us: a folder or a fifo where the entry should be, a disk
    that refuses writes. One CacheWarning, the compile runs, the package is right."""
    store = cache.LocalStore(tmp_path / "c")
    compile_eager(store)  # learn the entry's file name
    (entry,) = [e for e in os.listdir(store._entries) if e.endswith(".entry")]
    path = os.path.join(store._entries, entry)
    os.unlink(path)
    if damage == "folder":
        os.mkdir(path)
    elif damage == "fifo":
        os.mkfifo(path)
    else:  # root ignores permissions: make every write fail as a read-only disk would
        real = cache.LocalStore._write

        def readonly(self, *a):
            raise OSError(30, "Read-only file system", self._entries)
        cache.LocalStore._write = readonly
    try:
        cache.stats.clear()
        with pytest.warns(cache.CacheWarning, match="local cache at .* failed during"):
            pkg = compile_eager(cache.LocalStore(tmp_path / "c"))
        torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))
    finally:
        if damage == "readonly_disk":
            cache.LocalStore._write = real


def test_local_store_shared_by_two_umasks(tmp_path):
    """Entries and locks get the umask's mode (not 0600): with a group-shared umask, a
    second user of the folder can read and lock them."""
    old = os.umask(0o002)
    try:
        store = cache.LocalStore(tmp_path / "c")
        compile_eager(store)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(os.stat(os.path.join(store._entries, e)).st_mode) for e in os.listdir(store._entries)}
    assert modes == {0o664}
    locks = {stat.S_IMODE(os.stat(os.path.join(store._locks, e)).st_mode) for e in os.listdir(store._locks)}
    assert locks <= {0o664}


# -- Redis: down, unreachable, hanging ------------------------------------------------------
def test_redis_unreachable_warns_and_compiles_locally(tmp_path):
    port = __import__("conftest").free_port()  # nothing listens there
    store = cache.RedisStore(f"redis://127.0.0.1:{port}/0", timeout=1)
    t = time.monotonic()
    with pytest.warns(cache.CacheWarning, match=rf"Redis cache at redis://127.0.0.1:{port}/0 is unreachable"):
        pkg = compile_eager(store)
    assert time.monotonic() - t < 10
    torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))
    assert cache.stats["compiles"] == 1 and cache.stats["unavailable"] >= 1


def test_redis_that_never_answers_is_bounded_by_the_timeout(tmp_path):
    """A server that accepts connections and never replies (a hung Redis, a firewall
    black hole): each command gives up after `timeout`; then the store stays off."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        store = cache.RedisStore(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.5)
        t = time.monotonic()
        with pytest.warns(cache.CacheWarning, match="unreachable .*Timeout"):
            pkg = compile_eager(store)
        assert time.monotonic() - t < 0.5 * 3 + 5  # one timed-out command, then off for retry_after
        torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))
    finally:
        stop.set()
        listener.close()
        for s in held:
            s.close()


@contextlib.contextmanager
def refusing(redis_server, redis_url, refusal):
    """The test server made to refuse writes (maxmemory reached, a READONLY replica) or
    every command (``db99``: a database index out of range); yields the URL to use."""
    from conftest import free_port

    client, url = redis_server.client, redis_url
    if refusal == "maxmemory":
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
    elif refusal == "readonly":
        client.replicaof("127.0.0.1", free_port())  # a replica of nothing: refuses writes
    elif refusal == "db99":
        url = url.rsplit("/", 1)[0] + "/99"
    try:
        yield url
    finally:
        client.config_set("maxmemory", "0")
        client.replicaof("no", "one")


@pytest.mark.parametrize("refusal", ["maxmemory", "readonly", "db99", "wrongtype"])
def test_redis_that_refuses_warns_and_compiles_locally(redis_server, redis_url, tmp_path, refusal):
    """A Redis that answers but refuses (maxmemory reached, a READONLY replica, a db index
    out of range, a key of another type): one CacheWarning and a local compile, as the
    README promises, not an exception out of aotpack.compile."""
    client = redis_server.client
    with refusing(redis_server, redis_url, refusal) as url:
        store = cache.RedisStore(url, timeout=2)
        if refusal == "wrongtype":  # every key the compile touches is a list, not a string
            real = store._key
            store._key = lambda kind, digest: (client.rpush(real(kind, digest), b"x"), real(kind, digest))[1]
        with pytest.warns(cache.CacheWarning, match="refused a command"):
            pkg = compile_eager(store)
        torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))
        assert cache.stats["compiles"] == 1


@pytest.mark.parametrize("refusal", ["maxmemory", "readonly", "db99"])
def test_a_store_opened_to_raise_names_the_refusal(redis_server, redis_url, refusal):
    """open_store(..., on_error="raise") (what `aotpack cache` uses): the refusal is a
    CacheError with a hint, not a warning and an empty answer."""
    with refusing(redis_server, redis_url, refusal) as url:
        store = cache.open_store(url, on_error="raise")
        with pytest.raises(aotpack.CacheError, match=rf"Redis cache at {re.escape(url)} refused a command") as e:
            store.put("ab" * 32, b"entry")
        assert e.value.hint
    with pytest.raises(aotpack.CacheError, match="not a Redis URL: the database 'x' is not a number"):
        cache.open_store(redis_url.rsplit("/", 1)[0] + "/x")


def test_redis_going_down_mid_session(redis_server, tmp_path):
    from conftest import RedisServer

    server = RedisServer(str(tmp_path))
    store = cache.RedisStore(server.url, timeout=1)
    compile_eager(store)
    server.stop()
    with pytest.warns(cache.CacheWarning, match="unreachable"):
        pkg = compile_eager(store)
    torch.testing.assert_close(run_package(pkg, tmp_path), mlp()(X))


def test_redis_first_writer_wins_and_lock(redis_url):
    a = cache.RedisStore(redis_url)
    b = cache.RedisStore(redis_url)
    key = cache.CacheKey.of(graph="g", inputs="i", backend="b")
    assert a.store(key, b"one") is True
    assert b.store(key, b"two") is False
    assert b.fetch(key.digest).payload == b"one"
    assert a.try_lock(key.digest) and not b.try_lock(key.digest) and b.is_locked(key.digest)
    a.unlock(key.digest)
    assert not b.is_locked(key.digest) and b.try_lock(key.digest)
    b.unlock(key.digest)


def test_open_store_by_url(tmp_path, redis_url):
    assert isinstance(cache.open_store(tmp_path), cache.LocalStore)
    assert isinstance(cache.open_store(redis_url), cache.RedisStore)
    assert cache.open_store(None).path.endswith("aotpack")


# -- CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["local", "redis"])
def test_cli_ls_explain_rm_export_import(which, tmp_path, capsys, request):
    from aotpack.cli import main

    where = str(tmp_path / "c") if which == "local" else request.getfixturevalue("redis_url")
    store = cache.open_store(where)
    compile_eager(store)
    compile_eager(store, x=torch.randn(6, 8))
    digests = store.digests()
    assert main(["cache", "ls", "--store", where]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and all(d[:16] in out for d in digests) and "aotpack/eager" in out
    assert main(["cache", "explain", digests[0][:10], "--store", where]) == 0
    out = capsys.readouterr().out
    assert digests[0] in out and "graph" in out and f"torch    {torch.__version__}" in out
    bundle = str(tmp_path / "all.aotc")
    assert main(["cache", "export", "-o", bundle, "--store", where]) == 0
    assert main(["cache", "rm", "--all", "--store", where]) == 0
    assert store.digests() == []
    assert main(["cache", "explain", "ff", "--store", where]) == 1
    assert "no entries" in capsys.readouterr().err
    assert main(["cache", "import", bundle, "--store", where]) == 0
    assert sorted(store.digests()) == sorted(digests)
    cache.stats.clear()
    compile_eager(store)
    assert cache.stats["compiles"] == 0


def test_cache_keys_do_not_depend_on_the_working_folder(tmp_path):
    """inductor's config holds paths of this machine (xpu.cutlass_dir is the working
    folder): the key's config hash leaves them out, so the same compile from another
    folder hits; a real config change still changes it."""
    code = ("import aotpack.cache.key as k, torch._inductor.config as c, json; "
            "print(json.dumps([k.inductor_config_hash(), c.get_hash().hex()]))")
    runs = []
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        out = run_fresh(["-c", code], cwd=str(folder), timeout=120)
        runs.append(json.loads(out.stdout))
    if not TORCH_BEFORE_2_13:  # (torch 2.11's config holds no such path: its own hash agrees too)
        assert runs[0][1] != runs[1][1]  # torch's own hash differs by folder...
    assert runs[0][0] == runs[1][0]  # ...aotpack's key does not
    import torch._inductor.config as config

    from aotpack.cache.key import inductor_config_hash

    before = inductor_config_hash()
    with config.patch({"max_autotune": not config.max_autotune}):
        assert inductor_config_hash() != before


def test_what_inductor_probed_of_the_machine_leaves_the_key_alone():
    """inductor notes in its config whether the CPU's vector ISA works (None until a
    compile probes it, then True): a compile farm's Ray workers had probed it and their
    caller had not (after importing torchao), so every variant missed the workers'
    entries and compiled again in the caller."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_VEC_ISA_OK"}  # (tests/conftest.py's)
    hashes = []
    for probed in ("", "c.cpp.vec_isa_ok = True; "):
        code = f"import aotpack.cache.key as k, torch._inductor.config as c; {probed}print(k.inductor_config_hash())"
        hashes.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                     check=True, env=env).stdout.strip())
    assert hashes[0] == hashes[1] and len(hashes[0]) >= 16


def test_an_earlier_aoti_compile_leaves_the_next_key_alone():
    """AOTInductor writes its output metadata into inductor's global config in place; the
    key's config hash must not see it, or a process's second compile (a Ray worker's, a
    service's) misses what a fresh process stored."""
    import torch._inductor.config as config

    from aotpack.cache.key import inductor_config_hash

    fresh = run_fresh(["-c", "import aotpack.cache.key as k; print(k.inductor_config_hash())"],
                      timeout=120).stdout.strip()
    aotpack.compile(torch.nn.Linear(4, 4).eval(), (torch.randn(2, 4),), backend="aoti")
    assert config.aot_inductor.metadata  # what the compile left behind
    with config.patch({"max_autotune": config.max_autotune}):  # marks the config dirty, as any patch does
        assert inductor_config_hash() == fresh


def test_a_context_is_seen_only_by_its_own_thread():
    """Two threads each in their own Context record only their own compiles (a list of
    active contexts shared by the process mixed them up)."""
    from aotpack.cache import CacheKey, Context, active_context, lookup_or_compile

    seen, barrier = {}, threading.Barrier(2)

    def work(name):
        with Context() as ctx:
            barrier.wait()  # both contexts are active at once
            seen[name] = active_context() is ctx
            lookup_or_compile(CacheKey.of(graph=name), lambda: name.encode(), None, kind="test")
            barrier.wait()
            seen[name + " entries"] = [ctx.get(k) for k in ctx.keys()]
        seen[name + " after"] = active_context()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": True, "b": True, "a entries": [b"a"], "b entries": [b"b"], "a after": None, "b after": None}
    assert active_context() is None


def test_without_a_cache_or_context_no_key_is_computed_whatever_was_imported(monkeypatch):
    """aotpack.cache is imported here (this test module does): a compile with no cache
    and no active Context still goes straight to the backend, and one inside a Context
    goes through the cache, decided by the Context, not by what was imported."""
    import aotpack.cache.cached as cached

    calls = []
    real = cached.compile_captured
    monkeypatch.setattr(cached, "compile_captured", lambda *a, **k: calls.append(1) or real(*a, **k))
    aotpack.compile(lambda x: x + 1, (torch.ones(2),), backend="eager")
    assert calls == []
    with aotpack.cache.Context():
        aotpack.compile(lambda x: x + 1, (torch.ones(2),), backend="eager")
    assert calls == [1]


def test_each_context_counts_its_own_lookups_across_threads():
    """Two threads compiling under their own Context: each Context's stats count only the
    lookups made in it (aotpack.cache.stats counts both)."""
    before = aotpack.cache.stats["compiles"]
    counts = {}

    def work(name, n):
        with aotpack.cache.Context() as ctx:
            for i in range(n):
                aotpack.compile(lambda x, i=i: x + i, (torch.ones(2),), backend="eager")
            counts[name] = ctx.stats["compiles"]

    threads = [threading.Thread(target=work, args=("a", 1)), threading.Thread(target=work, args=("b", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == {"a": 1, "b": 2}
    assert aotpack.cache.stats["compiles"] - before == 3

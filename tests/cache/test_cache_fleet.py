"""The cache across processes: a fleet against one redis-server, torch.compile's backend.

Each child (cache_child.py) gets its own empty inductor cache directory, so a hit can
only come from aotpack's store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import run_fresh

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def child_cmd(store, how, out):
    return [sys.executable, os.path.join(HERE, "cache_child.py"), store, how, out]


def child_env(tmp_path, i):
    """An empty inductor cache of its own; the machine's TMPDIR, where inductor keeps the
    torch headers it precompiles (~14 s to build, and no compiled program)."""
    return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor{i}")}


def test_a_fleet_of_4_compiles_once(redis_url, tmp_path):
    """Four servers start together on one Redis: one compiles, three wait on its key's
    lease and hit. (Four, not eight: each is a fresh interpreter importing torch on the
    suite's 2 cores, and the suite has a 15-minute budget; bench/fleet_start.py times 8.)"""
    outs = [str(tmp_path / f"r{i}.json") for i in range(4)]
    procs = [subprocess.Popen(child_cmd(redis_url, "aoti", out), env=child_env(tmp_path, i),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, out in enumerate(outs)]
    for p in procs:
        log = p.communicate(timeout=600)[0]
        assert p.returncode == 0, log[-3000:]
    results = [json.load(open(o)) for o in outs]
    for r in results:
        torch.testing.assert_close(torch.tensor(r["out"]), torch.tensor(r["eager"]), rtol=1e-4, atol=1e-5)
        assert not r["warnings"]
    compiles = sum(r["stats"].get("compiles", 0) for r in results)
    hits = sum(r["stats"].get("hits", 0) for r in results)
    assert compiles == 1 and hits == 3, [r["stats"] for r in results]


@pytest.mark.parametrize("how", ["torch.compile", "torch.compile:llama"])
def test_torch_compile_backend_hit_in_a_fresh_process(tmp_path, how):
    """Our MLP with its backward, and a transformers Llama (inference): the second
    process, on an empty inductor cache, compiles nothing and gives the first's output."""
    store = str(tmp_path / "store")
    first, second = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    # the C++ compiler inductor calls, through a wrapper that logs each call per process
    cxx = tmp_path / "cxx"
    cxx.write_text('#!/bin/sh\necho "$@" >> "$CXX_LOG"\nexec g++ "$@"\n')
    cxx.chmod(0o755)
    logs = [tmp_path / "cxx-a.log", tmp_path / "cxx-b.log"]
    for i, out in enumerate([first, second]):
        # (the machine's precompiled headers are shared: the second would log their build too)
        env = {**child_env(tmp_path, i), "CXX": str(cxx), "CXX_LOG": str(logs[i])}
        run_fresh(child_cmd(store, how, out)[1:], env=env)  # (forked from a process that imported torch only)
    a, b = json.load(open(first)), json.load(open(second))
    assert a["stats"]["compiles"] >= 1 and a["inductor"].get("fxgraph_cache_miss", 0) >= 1
    # the second process compiled nothing: no aotpack compile, no inductor FX graph compile,
    # and no C++ kernel: the entry brought the kernel libraries the CPU code loads
    assert b["stats"].get("compiles", 0) == 0 and b["stats"]["hits"] == a["stats"]["compiles"]
    assert b["inductor"].get("fxgraph_cache_miss", 0) == 0
    def builds(log):  # compiler calls that write a file (-o); `--version` / `-v` are probes
        return [line for line in log.read_text().splitlines() if " -o " in line] if log.exists() else []

    assert len(builds(logs[0])) >= 2  # the first built its kernels
    assert builds(logs[1]) == []
    for k in ("out", "grad") if how == "torch.compile" else ("out",):
        torch.testing.assert_close(torch.tensor(b[k]), torch.tensor(a[k]))
    torch.testing.assert_close(torch.tensor(a["out"]), torch.tensor(a["eager"]), rtol=1e-4, atol=1e-5)
    if how == "torch.compile":
        assert b["wgrad"] == pytest.approx(a["wgrad"])


def test_two_folders_and_two_umasks_share_one_store():
    """A compiles in one working folder with umask 022; B, in another folder with umask
    077, hits A's aoti entry: the key holds no machine-local path. A's entries are
    readable by another user as A's umask allows (read as the user nobody when the tests
    run as root: the interpreter itself may not be reachable by nobody, cat is)."""
    import pwd
    import shutil
    import tempfile

    shared = tempfile.mkdtemp(prefix="aotpack-share-")  # under /tmp: reachable by another user
    try:
        os.chmod(shared, 0o755)
        folders = [os.path.join(shared, name) for name in ("a", "b")]
        results = []
        store = os.path.join(shared, "store")
        for folder, umask in zip(folders, [0o022, 0o077]):
            os.mkdir(folder)
            out = os.path.join(folder, "r.json")
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(folder, "inductor"), "TMPDIR": folder}
            proc = subprocess.run(child_cmd(store, "aoti", out), cwd=folder, env=env, capture_output=True, text=True,
                                  timeout=600, umask=umask)
            assert proc.returncode == 0, proc.stderr[-3000:]
            results.append(json.load(open(out)))
        a, b = results
        assert a["stats"]["compiles"] == 1 and not a["warnings"]
        assert b["stats"].get("compiles", 0) == 0 and b["stats"]["hits"] == 1, (b["stats"], b["warnings"])
        assert b["out"] == a["out"]
        entries = [os.path.join(store, "entries", n) for n in os.listdir(os.path.join(store, "entries"))]
        assert entries and all(os.stat(e).st_mode & 0o777 == 0o644 for e in entries)
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for e in entries:
                subprocess.run(["cat", e], stdout=subprocess.DEVNULL, check=True, user=nobody.pw_uid,
                               group=nobody.pw_gid, extra_groups=[])
    finally:
        shutil.rmtree(shared, ignore_errors=True)


_DYNAMIC = r"""
import json, sys, torch, aotpack.cache as cache
def f(x, y):
    return (x @ y).relu() + x.sum(0)
fn = torch.compile(f, dynamic=True, backend=cache.backend("inductor", sys.argv[1]))
for n in (3, 5, 9):
    x, y = torch.randn(n, 4), torch.randn(4, 4)
    torch.testing.assert_close(fn(x, y), f(x, y))
print(json.dumps(dict(cache.stats)))
"""


def test_torch_compile_backend_with_dynamic_shapes(tmp_path):
    """A graph with symbolic sizes is compiled in dynamo's shape environment: one compile
    serves every size (the guards reach dynamo), and a fresh process hits it."""
    store = str(tmp_path / "store")
    stats = []
    for i in range(2):
        proc = run_fresh(["-c", _DYNAMIC, store], env=child_env(tmp_path, i))
        stats.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert stats[0].get("compiles") == 1 and stats[1].get("compiles", 0) == 0 and stats[1]["hits"] == 1

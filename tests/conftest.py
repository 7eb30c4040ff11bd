"""Shared fixtures. Compiling is slow on 2 cores (AOTInductor: ~15 s a program), so each
backend compiles the program set once per session, and one fresh process loads them all.
Fresh processes are forked from a process that imported torch (tests/zygote.py): four
files of mostly fresh processes took 98 s, 57 s so (2026-12-06)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Inductor checks which vector instructions the C++ compiler can build by compiling a
# probe program per instruction set, once per inductor cache folder: ~6 s at each of the
# tests' fresh folders (the cache tests give every process one, as separate machines
# have). These machines' compiler builds all that the CPU lists, so the tests take the
# CPU's list as it is (set for the fresh processes too; a user's machine still probes).
os.environ.setdefault("TORCHINDUCTOR_VEC_ISA_OK", "1")
# Inductor compiles its kernels in a pool of worker processes where compile_threads > 1
# (the CPU count): on 2 cores, under 2 test workers, starting that pool in each compiling
# process costs more than it saves (tests/packages/test_packages.py's aoti half: 84.6 s
# with the pool, 81.5 s without). The farm's tests set their own thread counts.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
# AOTInductor compiles each graph's C++ wrapper (host code: it allocates and calls the
# kernels, no arithmetic of the program's) at -O1 with line tables: about 5 s of g++ a
# graph on these machines. The tests compile it at -O0 without them (set for the fresh
# processes too): a tiny model's aoti compile took 10.4 s, 9.2 s so (ad hoc, fresh
# inductor caches, 2026-12-05). The kernels keep their -O3, so the numbers are the same.
os.environ.setdefault("AOT_INDUCTOR_COMPILE_WRAPPER_OPT_LEVEL", "O0")
os.environ.setdefault("AOT_INDUCTOR_ENABLE_LINE_TABLES", "0")
# load remembers verified files (package/reader.py); the tests keep that out of ~/.cache,
# in a folder of this run that goes when the run ends
if "AOTPACK_VERIFIED_DIR" not in os.environ:
    os.environ["AOTPACK_VERIFIED_DIR"] = tempfile.mkdtemp(prefix="aotpack-test-verified-")
    atexit.register(shutil.rmtree, os.environ["AOTPACK_VERIFIED_DIR"], ignore_errors=True)


# torch before 2.13 (the GPU machine's 2.11): what some tests find there differs, by torch
TORCH_BEFORE_2_13 = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13)


def run_fresh(args: list[str], *, env: dict | None = None, cwd: str | None = None, timeout: int = 600,
              check: bool = True, new_python: bool = False) -> subprocess.CompletedProcess:
    """Run ``python ARGS...`` in a fresh process; on failure, show its output. Forked from
    this worker's zygote (tests/zygote.py: a process that imported torch and nothing
    else) where a new ``python`` would run alike, else (or with ``new_python``: a test
    reading the process's own call stack) a new ``python``."""
    full_env = {**os.environ, **(env or {})}
    proc = _ZYGOTE.run(args, full_env, cwd, timeout) if not new_python and _ZYGOTE.takes(args, full_env) else None
    if proc is None:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"fresh process failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


# what Python or torch read from the environment as they start (a fresh ``python`` where
# one of these differs from the zygote's start); AOTPACK_TRACE too: torch's backend
# autoload runs aotpack's trace hook at ``import torch`` (src/aotpack_trace_autoload.py)
_STARTUP_ENV = ("PYTHON", "TORCH_", "OMP_", "MKL_", "KMP_", "LD_", "CUDA", "NVIDIA", "GOMP_", "AOTPACK_TRACE")


class _Zygote:
    """This worker's tests/zygote.py, started at the first fresh process asked for."""

    def __init__(self):
        self.proc = None
        self.env: dict = {}

    def takes(self, args: list[str], env: dict) -> bool:
        if not hasattr(os, "fork") or not args or args[0] in ("-X", "-u", "-O", "-W", "-I", "-E", "-S"):
            return False
        start = self.env or os.environ
        keys = {k for k in {*start, *env} if k.startswith(_STARTUP_ENV) and k != "PYTHONPATH"}  # (the zygote sets it)
        return all(start.get(k) == env.get(k) for k in keys)

    def run(self, args: list[str], env: dict, cwd: str | None, timeout: float) -> subprocess.CompletedProcess | None:
        """The child's result, or None where the zygote cannot be had (a new ``python`` then)."""
        import select

        if self.proc is None or self.proc.poll() is not None:
            self.env = dict(os.environ)
            self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "zygote.py")], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=self.env)
            atexit.register(self.proc.kill)
        with tempfile.TemporaryDirectory(prefix="aotpack-fresh-") as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            request = {"argv": args, "env": env, "cwd": os.path.abspath(cwd or os.getcwd()), "stdout": out,
                       "stderr": err}
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                pid = int(self.proc.stdout.readline())
            except (OSError, ValueError):  # (the zygote died: a new python this time)
                self.proc.kill()
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
            status = int(self.proc.stdout.readline())
            with open(out, encoding="utf-8", errors="replace") as f, open(err, encoding="utf-8", errors="replace") as g:
                stdout, stderr = f.read(), g.read()
            if not ready:
                raise subprocess.TimeoutExpired([sys.executable, *args], timeout, stdout, stderr)
            return subprocess.CompletedProcess([sys.executable, *args], status, stdout, stderr)


_ZYGOTE = _Zygote()


def rewrite_manifest(path, edit) -> None:
    """Rewrite a saved package's manifest as someone editing the file would: ``edit(doc)``
    changes the parsed JSON in place; every member's digest is recomputed by the writer
    (what a reader must still refuse is the edit itself)."""
    from aotpack.package import fmt
    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    with PackageReader(path) as r:
        doc = json.loads(r.read(fmt.MANIFEST))
        members = {n: r.read(n) for n in r.names() if n != fmt.MANIFEST}
    doc.pop("members")
    edit(doc)
    write_members(path, package_entries(doc, members))

CLI = [os.path.join(os.path.dirname(sys.executable), "aotpack")]
# the console script's own code (``aotpack`` is ``sys.exit(main())`` of aotpack.cli), run as it
_CLI_CODE = "import sys\nsys.argv[0] = 'aotpack'\nfrom aotpack.cli import main\nsys.exit(main())\n"


def run_cli(*args, check=True):
    """``aotpack ARGS...`` in a fresh process; on failure (with ``check``), show its output."""
    proc = (_ZYGOTE.run(["-c", _CLI_CODE, *args], dict(os.environ), None, 600)
            if _ZYGOTE.takes(["-c"], dict(os.environ)) else None)
    if proc is None:
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"aotpack {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_and_load(backend: str, out_dir: str, names=None) -> tuple[dict, dict]:
    """Compile every program of programs.py (or those ``names``) with ``backend``, save,
    load fresh."""
    import aotpack
    import programs

    index = {}
    built = {}
    refused = {}
    for name, p in programs.programs().items():
        if names is not None and name not in names:
            continue
        try:
            pkg = aotpack.compile(p["target"], p["args"], p.get("kwargs"), dynamic=p.get("dynamic"), backend=backend)
        except aotpack.BackendError as e:  # a backend's documented limit; the test checks which
            refused[name] = str(e)
            continue
        path = pkg.save(os.path.join(out_dir, f"{name}.aot"))
        calls = []
        for args, kwargs in [(p["args"], p.get("kwargs") or {})] + p["calls"]:
            with torch.no_grad():
                calls.append((args, kwargs, p["target"](*args, **kwargs)))
        torch.save(calls, os.path.join(out_dir, f"{name}.calls.pt"))
        index[name] = {"package": path, "calls": os.path.join(out_dir, f"{name}.calls.pt")}
        built[name] = path
    json.dump(index, open(os.path.join(out_dir, "index.json"), "w"))
    run_fresh([os.path.join(HERE, "load_check.py"), os.path.join(out_dir, "index.json"),
               os.path.join(out_dir, "results.json")])
    results = json.load(open(os.path.join(out_dir, "results.json")))
    results.update({name: {"ok": False, "refused": msg} for name, msg in refused.items()})
    return built, results


@pytest.fixture(scope="session")
def eager_packages(tmp_path_factory):
    return build_and_load("eager", str(tmp_path_factory.mktemp("eager")))


@pytest.fixture(scope="session")
def inductor_packages(tmp_path_factory):
    return build_and_load("inductor", str(tmp_path_factory.mktemp("inductor")))


@pytest.fixture(scope="session")
def aoti_packages(tmp_path_factory):
    import programs

    return build_and_load("aoti", str(tmp_path_factory.mktemp("aoti")), programs.AOTI_PROGRAMS)


from redis_server import RedisServer, free_port  # noqa: E402, F401 - shared with the docs' tests


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's server, emptied for each test."""
    redis_server.client.flushall()
    return redis_server.url

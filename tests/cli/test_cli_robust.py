"""The CLI never prints a traceback: for any input, one `error:` line and one `hint:` line.

Every subcommand is driven with missing, special (a folder, a fifo) and damaged paths,
read-only outputs and bad URLs; exit 2 for usage errors (argparse), 1 for failures.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import run_fresh


def cli(*args, cwd=None, timeout=120, fresh=False):
    """``aotpack ARGS...``: its exit code and what it printed. In this process through
    ``aotpack.cli.main`` (what the console script and ``python -m aotpack`` call), as a
    fresh process costs ~2 s of imports a call; ``fresh=True`` runs ``python -m aotpack``
    in one (the fifo cases do: a fifo opened by mistake blocks, and the timeout shows it)."""
    if fresh:
        return run_fresh(["-m", "aotpack", *args], cwd=cwd, timeout=timeout, check=False)
    import contextlib
    import io

    from aotpack.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: usage errors (2), --help (0)
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["aotpack", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    fifo = d / "pipe.aot"
    os.mkfifo(fifo)
    (d / "garbage.aot").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "empty.aot").write_bytes(b"")
    folder = d / "folder.aot"
    folder.mkdir()
    readonly = d / "readonly"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    return {"missing": str(d / "nope.aot"), "fifo": str(fifo), "garbage": str(d / "garbage.aot"),
            "empty": str(d / "empty.aot"), "folder": str(folder), "readonly": str(readonly), "dir": str(d)}


CASES = [
    ("run", "{p}"), ("inspect", "{p}"), ("verify", "{p}"), ("rebuild", "{p}"),
    ("repro", "{p}", "-o", "{dir}/repro-out"), ("minify", "{p}"), ("report", "{p}"),
    ("cache", "import", "{p}"), ("sign", "{p}", "--key", "{p}"), ("verify", "{p}", "--key", "{p}"),
    ("run", "{p}", "--key", "{p}"),
]


@pytest.mark.parametrize("kind", ["missing", "fifo", "garbage", "empty", "folder"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_paths_give_one_error_and_one_hint(paths, case, kind):
    args = [a.format(p=paths[kind], dir=paths["dir"]) for a in case]
    proc = cli(*args, fresh=kind == "fifo")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), proc.stderr


@pytest.mark.parametrize("url, says", [
    ("redis://127.0.0.1:1/0", "is unreachable"),  # nothing listens on port 1
    ("unix:///nonexistent/redis.sock", "is unreachable"),
    ("redis://localhost:99999/0", "port out of range"),
    ("redis://127.0.0.1:notaport/0", "port could not be cast"),
    ("redis://127.0.0.1:6379/abc", "the database 'abc' is not a number"),  # the client would use db 0
    ("redis://", "it names no host"),
])
@pytest.mark.parametrize("action", [["ls"], ["rm", "--all"], ["export", "-o", "{dir}/x.aotc"]])
def test_cache_commands_fail_on_a_store_they_cannot_use(paths, url, says, action):
    """An unreachable or malformed store is an error for `aotpack cache`, not an empty
    listing (a compile, by contrast, warns and goes on without the cache)."""
    proc = cli("cache", *[a.format(dir=paths["dir"]) for a in action], "--store", url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 2, proc.stderr
    assert lines[0].startswith("error: ") and says in lines[0] and lines[1].startswith("hint: "), proc.stderr
    assert not os.path.exists(os.path.join(paths["dir"], "x.aotc"))


def test_read_only_outputs(paths):
    proc = cli("cache", "export", "-o", os.path.join(paths["readonly"], "x.aotc"))
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode:
        assert proc.stderr.strip().splitlines()[-1].startswith("hint: "), proc.stderr


def test_usage_errors_exit_2():
    proc = cli("inspect")
    assert proc.returncode == 2 and "usage:" in proc.stderr


def _tiny_disk(folder) -> list[str]:
    """A command prefix that runs with a 96 KB tmpfs mounted on ``folder`` (a full disk
    to write to): as root directly, else in a user namespace (``unshare -rm``)."""
    import shutil

    script = f"mount -t tmpfs -o size=96k tmpfs {folder} && exec \"$@\""
    if os.geteuid() == 0:
        return ["unshare", "-m", "sh", "-c", script, "sh"]
    assert shutil.which("unshare"), "the full-disk test needs unshare (util-linux)"
    return ["unshare", "-rm", "sh", "-c", script, "sh"]


def test_full_disk_keeps_the_saved_package_and_says_so(tmp_path):
    """Saving over a package on a full disk: one error line naming the cause, a hint,
    exit 1; the package saved before is intact and no temp file is left behind."""
    (tmp_path / "prog.py").write_text(
        "import torch\n"
        "small = torch.nn.Linear(4, 4)\n"
        "big = torch.nn.Linear(256, 256)  # 260 KB of weights: more than the disk holds\n"
        "def ex_small():\n    return (torch.randn(2, 4),)\n"
        "def ex_big():\n    return (torch.randn(2, 256),)\n")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"cd {tmp_path} && {sys.executable} -m aotpack compile prog.py:small --example prog.py:ex_small "
        f"--backend eager -o disk/model.aot && cp disk/model.aot saved.aot && "
        f"{sys.executable} -m aotpack compile prog.py:big --example prog.py:ex_big --backend eager -o disk/model.aot; "
        f"echo rc=$?; cmp disk/model.aot saved.aot && echo same; ls -A disk")
    proc = subprocess.run([*_tiny_disk(disk), "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "rc=1" in proc.stdout and "same" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.stdout.strip().splitlines()[-1] == "model.aot", proc.stdout  # no .aotpack-*.tmp left
    assert "Traceback" not in proc.stderr
    assert "error: No space left on device" in proc.stderr and "hint: free disk space" in proc.stderr, proc.stderr


def test_cli_custom_backend_by_import_path(tmp_path):
    """`--backend module:Name` compiles with a user backend; run and verify find it the
    same way (a package never imports it on its own)."""
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "prog.py").write_text("import torch\ndef f(x):\n    return x * 3\ndef ex():\n    return (torch.ones(2),)\n")
    env = {"PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = str(tmp_path / "c.aot")

    def run(*args):
        return run_fresh(["-m", "aotpack", *args], env=env, cwd=str(tmp_path), timeout=120, check=False)

    proc = run("compile", "prog.py:f", "--example", "prog.py:ex", "--backend", "custom_backend:CountingInterpreter",
               "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert run("verify", out).returncode == 1  # the backend is not found by name alone
    proc = run("verify", out, "--backend", "custom_backend:CountingInterpreter")
    assert proc.returncode == 0 and "runs here" in proc.stdout, proc.stdout
    proc = run("run", out, "--backend", "custom_backend:CountingInterpreter")
    assert proc.returncode == 0 and "mean 3" in proc.stdout, proc.stdout + proc.stderr
    proc = run("compile", "prog.py:f", "--example", "prog.py:ex", "--backend", "nope", "-o", out)
    assert proc.returncode == 1 and "error: unknown backend 'nope'" in proc.stderr


def test_an_error_in_the_users_code_is_named_as_such():
    """The CLI builds the model and the example by calling the user's code: what that
    raises is one error naming the step, not a report of a bug in aotpack."""
    proc = cli("compile", "torch.nn:Linear", "--example", "torch:randn", "-o", "never.aot")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(lines) == 2, proc.stderr
    assert lines[0].startswith("error: building the program with torch.nn:Linear() failed: TypeError: "), proc.stderr
    assert lines[1].startswith("hint: a class is built with no arguments"), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "aotpack", "compile", "torch.nn:Linear", "--example", "torch:randn",
                           "-o", "never.aot"], capture_output=True, text=True, env={**os.environ, "AOTPACK_DEBUG": "1"})
    assert "Traceback" in proc.stderr and "missing 2 required positional arguments" in proc.stderr


@pytest.mark.parametrize("args, says", [
    (["compile", "/dev/zero:X", "--example", "/dev/zero:Y", "-o", "{dir}/x.aot"], "is not a Python file"),
    (["demo", "--models", "nope"], "no demo model 'nope'"),
    (["cache", "ls", "--store", "http://x"], "is not a cache store"),
    (["report", "{dir}/badtrace"], "is not a compile record"),
])
def test_user_mistakes_are_named_as_such_not_as_bugs(paths, args, says):
    """Each is the user's mistake: one error naming it and a hint, not "a bug in aotpack"
    (and `cache ls --store http://x` creates no folder "http:")."""
    bad = os.path.join(paths["dir"], "badtrace")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, "trace.jsonl"), "w") as f:
        f.write('[1, 2]\n{"no": "compile id"}\n')
    proc = cli(*[a.format(dir=paths["dir"]) for a in args], cwd=paths["dir"])
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert says in proc.stderr and "looks like a bug" not in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(paths["dir"], "http:"))


def test_minify_max_trials_must_be_positive(paths):
    proc = cli("minify", paths["dir"], "--max-trials", "-5")
    assert proc.returncode == 2 and "-5 is not at least 1" in proc.stderr


def test_repro_of_a_package_whose_program_was_edited_is_a_format_error(tmp_path):
    import json

    import torch

    import aotpack
    from aotpack.package import fmt
    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    def f(x):
        return x.relu() * 2

    path = aotpack.compile(f, (torch.ones(3),), backend="eager").save(tmp_path / "e.aot")
    with PackageReader(path) as r:
        doc = json.loads(r.read(fmt.MANIFEST))
        members = {n: r.read(n) for n in r.names() if n != fmt.MANIFEST}
    doc.pop("members")
    program = next(n for n in members if n.endswith("program.json"))
    members[program] = members[program].replace(b"relu", b"reluX")  # digests recomputed: an edit, not damage
    write_members(path, package_entries(doc, members))
    proc = cli("repro", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "the portable program of variant default cannot be read" in proc.stderr
    assert "looks like a bug" not in proc.stderr

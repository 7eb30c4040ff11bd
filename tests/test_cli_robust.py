"""The CLI never prints a traceback: for any input, one `error:` line and one `hint:` line.

Every subcommand is driven with missing, special (a folder, a fifo) and damaged paths,
read-only outputs and bad URLs; exit 2 for usage errors (argparse), 1 for failures.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "aotpack", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


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
    ("cache", "import", "{p}"),
]


@pytest.mark.parametrize("kind", ["missing", "fifo", "garbage", "empty", "folder"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_paths_give_one_error_and_one_hint(paths, case, kind):
    args = [a.format(p=paths[kind], dir=paths["dir"]) for a in case]
    proc = cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), proc.stderr


def test_bad_cache_urls_and_read_only_outputs(paths):
    for args in (["cache", "ls", "--store", "redis://127.0.0.1:1/0"], ["cache", "ls", "--store", "redis://localhost:99999/0"],
                 ["cache", "export", "-o", os.path.join(paths["readonly"], "x.aotc")]):
        proc = cli(*args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        if proc.returncode:
            assert proc.stderr.strip().splitlines()[-1].startswith("hint: "), (args, proc.stderr)


def test_usage_errors_exit_2():
    proc = cli("inspect")
    assert proc.returncode == 2 and "usage:" in proc.stderr

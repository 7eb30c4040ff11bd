"""`aotpack demo` (what `make demo` runs): compile, save, load fresh, compare, print a table."""

import os
import re
import subprocess
import sys

import pytest

CLI = os.path.join(os.path.dirname(sys.executable), "aotpack")


def demo(*args, env=None):
    proc = subprocess.run([CLI, "demo", *args], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_demo_eager_quick(tmp_path):
    out = demo("--backend", "eager", "--no-torch-compile", "--models", "mlp", "--out", str(tmp_path))
    assert (tmp_path / "mlp.aot").exists()
    row = [line for line in out.splitlines() if line.startswith("mlp ")][0]
    cells = [c.strip() for c in row.split("|")]
    assert re.fullmatch(r"\d+ ms", cells[2])
    assert float(cells[-1]) <= 1e-5  # max |err| vs eager, measured in the fresh process


@pytest.mark.slow
def test_demo_aoti_against_torch_compile(tmp_path):
    out = demo("--models", "mlp", "--out", str(tmp_path))
    row = [line for line in out.splitlines() if line.startswith("mlp ")][0]
    cells = [c.strip() for c in row.split("|")]
    load_ms = float(cells[2].split()[0])
    torch_compile_s = float(cells[3].split()[0])
    assert float(cells[-1]) <= 1e-4
    # the point of the demo: a package loads faster than torch.compile compiles
    assert load_ms / 1000 < torch_compile_s


def test_demo_without_out_leaves_no_folder_behind(tmp_path):
    # a temporary folder of its own: other processes' demos come and go in the machine's
    out = demo("--backend", "eager", "--no-torch-compile", "--models", "mlp",
               env={**os.environ, "TMPDIR": str(tmp_path)})
    assert "now removed: `aotpack demo --out DIR` keeps them" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("aotpack-demo-")]

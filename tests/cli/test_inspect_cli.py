"""aotpack inspect / compile / run from the command line, and aotpack.inspect()."""

import json
import zipfile

import pytest
import torch

import aotpack
import programs
from conftest import CLI, run_cli, run_fresh  # noqa: F401 - CLI: used by other tests' helpers


@pytest.fixture(scope="module")
def globals_package(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    p = programs.programs()["defaults"]
    path = aotpack.compile(programs.uses_globals, (torch.randn(2, 4),), backend="eager").save(d / "g.aot")
    path2 = aotpack.compile(p["target"], p["args"], backend="eager").save(d / "d.aot")
    return path, path2


def test_inspect_lists_frozen_values_and_guards(globals_package):
    path, defaults = globals_package
    text = str(aotpack.inspect(path))
    assert "uses_globals (function)" in text
    assert "x: float32[2, 4] cpu" in text
    assert "global   G_SCALE = 3" in text
    assert "global   G_TENSOR = float32[4]" in text
    assert "backend eager on cpu" in text
    assert "torch " + torch.__version__.split("+")[0] in text
    assert "integrity ok" in text
    text = str(aotpack.inspect(defaults))
    assert "signature (x, alpha=0.5, mode='tanh')" in text
    assert "mode == 'tanh' (frozen)" in text


def test_inspect_runs_no_package_code(globals_package, tmp_path):
    """inspect reads the manifest only: a package whose code would crash still inspects."""
    path, _ = globals_package
    bad = tmp_path / "bad.aot"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("graph.py"):
                data = b"raise SystemExit('package code ran')\n"
            dst.writestr(info, data)
    info = aotpack.inspect(bad)
    assert not info.verified
    assert "variants/default/graph.py" in info.problem
    assert "FAILED" in str(info)


def test_cli_inspect(globals_package):
    path, _ = globals_package
    out = run_cli("inspect", str(path)).stdout
    assert "frozen at compile time" in out and "G_TENSOR" in out


def test_cli_compile_and_run(tmp_path):
    src = tmp_path / "model.py"
    src.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(6, 3)\n"
        "    def forward(self, x, scale=2.0):\n"
        "        return self.lin(x) * scale\n"
        "def example():\n"
        "    torch.manual_seed(0)\n"
        "    return (torch.randn(4, 6),)\n"
    )
    out = tmp_path / "net.aot"
    run_cli("compile", f"{src}:Net", "--example", f"{src}:example", "-o", str(out), "--backend", "eager")
    assert out.exists()
    r = run_cli("run", str(out)).stdout
    assert "output 0: float32[4, 3]" in r
    assert "x: float32[4, 6] cpu" in run_cli("inspect", str(out)).stdout
    train = tmp_path / "net-train.aot"
    cache = tmp_path / "cache"
    run_cli("compile", f"{src}:Net", "--example", f"{src}:example", "-o", str(train), "--backend", "eager",
            "--train", "--cache", str(cache))
    assert "training: forward + backward" in run_cli("inspect", str(train)).stdout
    assert "aotpack/eager/train" in run_cli("cache", "ls", "--store", str(cache)).stdout


def test_cli_errors_are_one_line_with_hint(tmp_path):
    bad = tmp_path / "not-a-package.aot"
    bad.write_bytes(b"hello")
    r = run_cli("inspect", str(bad), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ")
    assert "not an aotpack package" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("run", str(tmp_path / "missing.aot"), check=False)
    assert r.returncode == 1 and "no package at" in r.stderr


def test_import_aotpack_does_not_import_compilers():
    proc = run_fresh(["-c", "import sys, aotpack; print(sorted(m for m in sys.modules "
                      "if m.startswith(('torch._inductor', 'torch._dynamo'))))"])
    assert json.loads(proc.stdout.strip().replace("'", '"')) == []


def test_cli_run_passes_keyword_only_examples_by_name(tmp_path):
    p = programs.programs()["keyword_only"]
    path = aotpack.compile(p["target"], p["args"], p["kwargs"], backend="eager").save(tmp_path / "k.aot")
    assert "output 0: float32[4]" in run_cli("run", str(path)).stdout
    args, kwargs = aotpack.load(path).example_inputs()
    assert len(args) == 1 and set(kwargs) == {"mask"}


def test_verify_says_no_where_load_would_fail_on_types(tmp_path):
    """A package returning a named tuple of a type the verifying process has not
    imported: load would refuse it (it never imports a module a package names), so
    verify says no, and yes once the module is allowed."""
    (tmp_path / "pairtypes.py").write_text(
        "import collections, torch\n"
        "Pair = collections.namedtuple('Pair', ['a', 'b'])\n"
        "def f(x):\n    return Pair(x + 1, x * 2)\n"
        "def ex():\n    return (torch.randn(3),)\n")
    out = tmp_path / "pair.aot"
    proc = run_cli("compile", f"{tmp_path / 'pairtypes.py'}:f", "--example", f"{tmp_path / 'pairtypes.py'}:ex",
                   "--backend", "eager", "-o", str(out))
    proc = run_cli("verify", str(out), check=False)
    assert proc.returncode == 1 and "types FAILED: the package returns or takes pairtypes.Pair" in proc.stdout
    code = (f"import sys, aotpack; sys.path.insert(0, {str(tmp_path)!r}); "
            f"r = aotpack.verify({str(out)!r}, allow_modules=['pairtypes']); print(r['ok'], r['types'])")
    assert run_fresh(["-c", code]).stdout.strip() == "True None"

"""The Backend protocol: a user backend compiles, is recorded, and loads in a fresh process."""

import json
import os
import pathlib

import pytest
import torch

import aotpack
from conftest import run_fresh
from custom_backend import CountingInterpreter


def f(x, y):
    return torch.relu(x) + y


def test_custom_backend_round_trip(tmp_path):
    x, y = torch.randn(4), torch.randn(4)
    pkg = aotpack.compile(f, (x, y), backend=CountingInterpreter(), options={"scale": 2.0})
    path = pkg.save(tmp_path / "f.aot")
    manifest = aotpack.inspect(path).manifest
    assert manifest.variants[0].backend == "counting-interpreter"
    assert manifest.variants[0].backend_entry == "custom_backend:CountingInterpreter"
    torch.save((x, y), tmp_path / "xy.pt")
    # a fresh process finds the backend in the 'aotpack.backends' entry-point group of an
    # installed distribution (here a .dist-info on sys.path), as a plugin package declares it
    site = tmp_path / "site"
    info = site / "counting_backend-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[aotpack.backends]\ncounting-interpreter = custom_backend:CountingInterpreter\n")
    code = (
        "import sys, json, torch, aotpack\n"
        f"x, y = torch.load({str(tmp_path / 'xy.pt')!r})\n"
        f"fn = aotpack.load({path!r})\n"
        "out = fn(x, y)\n"
        "import custom_backend\n"
        "print(json.dumps({'out': out.tolist(), 'calls': custom_backend.CountingInterpreter.calls}))\n"
    )
    tests = str(pathlib.Path(__file__).parent.parent)
    proc = run_fresh(["-c", code], env={"PYTHONPATH": f"{site}{os.pathsep}{tests}"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["calls"] == 1
    torch.testing.assert_close(torch.tensor(result["out"]), 2.0 * f(x, y))
    # without the plugin installed: refused, and the recorded module is never imported
    proc = run_fresh(["-c", code], env={"PYTHONPATH": tests}, check=False)
    assert proc.returncode != 0
    assert "'counting-interpreter' (custom_backend:CountingInterpreter) is not available" in proc.stderr


def test_package_never_imports_the_module_it_names(tmp_path):
    """A manifest naming a module in the working folder (a stray evilmod.py) runs nothing."""
    path = aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend=CountingInterpreter()).save(tmp_path / "f.aot")
    (tmp_path / "custom_backend.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('imported')\n")
    code = (f"import aotpack\ntry:\n    aotpack.load({str(path)!r})\nexcept aotpack.AotpackError as e:\n"
            "    print(type(e).__name__)\n"
            f"print(aotpack.verify({str(path)!r})['ok'])\n")
    out = run_fresh(["-c", code], cwd=str(tmp_path)).stdout.split()
    assert out == ["IncompatibleError", "False"]
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("spec_type", ["subprocess.Popen", "collections.OrderedDict"])
def test_a_package_never_calls_a_class_it_names_as_a_named_tuple(tmp_path, spec_type):
    """A manifest rewritten (digests recomputed, as anyone who can write the file can) to
    say the output is a named tuple of type subprocess.Popen, fields the two strings of a
    command: refused at verify and load, and the command never runs."""
    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    path = aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend="eager").save(tmp_path / "f.aot")
    marker = tmp_path / "ran"
    with PackageReader(path) as r:
        doc = json.loads(r.read("manifest.json"))
        members = {n: r.read(n) for n in r.names() if n != "manifest.json"}
    doc.pop("members")
    doc["program"]["out_spec"] = {"kind": "namedtuple", "type": spec_type, "fields": ["a", "b"], "children": [
        {"kind": "const", "type": "str", "value": "touch"}, {"kind": "const", "type": "str", "value": str(marker)}]}
    write_members(path, package_entries(doc, members))
    report = aotpack.verify(path)
    assert not report["ok"] and f"names {spec_type} as a named tuple, which it is not" in str(report)
    with pytest.raises(aotpack.FormatError, match=f"names {spec_type} as a named tuple, which it is not"):
        aotpack.load(path)
    fn = aotpack.load(path, plain_types=True)  # no type is rebuilt: a plain tuple
    assert fn(torch.randn(4), torch.randn(4)) == ("touch", str(marker))
    assert not marker.exists()


def test_backend_passed_at_load(tmp_path):
    class Renamed(CountingInterpreter):
        name = "renamed"

    path = aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend=Renamed()).save(tmp_path / "r.aot")
    # Renamed is local to this test: its recorded entry cannot be imported...
    with pytest.raises(aotpack.AotpackError, match="'renamed' .* is not available here"):
        aotpack.load(path)
    assert aotpack.verify(path, backends=[Renamed()])["ok"] and not aotpack.verify(path)["ok"]
    # ...but the caller can hand it over.
    fn = aotpack.load(path, backends=[Renamed()])
    x, y = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(fn(x, y), f(x, y))


def test_object_without_protocol_is_refused():
    with pytest.raises(aotpack.AotpackError, match="does not follow the Backend protocol"):
        aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend=object())


def test_the_default_backend_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AOTPACK_BACKEND", "eager")
    pkg = aotpack.compile(f, (torch.randn(4), torch.randn(4)))
    assert [v.backend for v in pkg.manifest.variants] == ["eager"]
    # the CLI's compile takes the same default
    (tmp_path / "prog.py").write_text("import torch\ndef f(x):\n    return x.sin()\nexample = (torch.randn(3),)\n")
    from conftest import run_cli

    run_cli("compile", f"{tmp_path / 'prog.py'}:f", "--example", f"{tmp_path / 'prog.py'}:example",
            "-o", str(tmp_path / "f.aot"))  # inherits $AOTPACK_BACKEND
    assert aotpack.inspect(tmp_path / "f.aot").manifest.variants[0].backend == "eager"
    # a name no backend has is one error naming the variable
    monkeypatch.setenv("AOTPACK_BACKEND", "no-such-backend")
    with pytest.raises(aotpack.AotpackError, match=r"unknown backend 'no-such-backend' \(\$AOTPACK_BACKEND"):
        aotpack.compile(f, (torch.randn(4), torch.randn(4)))


def test_a_package_never_calls_a_class_it_names_as_a_subclass_gradient(tmp_path):
    """The checked-in version 13 package with its subclass gradient's class rewritten to
    subprocess.Popen (digests recomputed): refused at load, as no tensor subclass."""
    import shutil

    import torch.testing._internal.two_tensor  # noqa: F401 - the package's output class, which load rebuilds

    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    path = tmp_path / "train.aot"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "data", "format-v13.aot"), path)
    with PackageReader(path) as r:
        doc = json.loads(r.read("manifest.json"))
        members = {n: r.read(n) for n in r.names() if n != "manifest.json"}
    doc.pop("members")
    grads = doc["variants"][0]["meta"]["train"]["subclass_grads"]
    assert grads and grads[0]["spec"]["type"] == "torch.testing._internal.two_tensor.TwoTensor"
    grads[0]["spec"]["type"] = "subprocess.Popen"
    write_members(path, package_entries(doc, members))
    with pytest.raises(aotpack.FormatError, match="names subprocess.Popen as a tensor subclass made of tensors, "
                                                  "which it is not"):
        aotpack.load(path)

"""The Backend protocol: a user backend compiles, is recorded, and loads in a fresh process."""

import json

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
    assert manifest["variants"][0]["backend"] == "counting-interpreter"
    assert manifest["variants"][0]["backend_entry"] == "custom_backend:CountingInterpreter"
    torch.save((x, y), tmp_path / "xy.pt")
    code = (
        "import sys, json, torch, aotpack\n"
        f"x, y = torch.load({str(tmp_path / 'xy.pt')!r})\n"
        f"fn = aotpack.load({path!r})\n"
        "out = fn(x, y)\n"
        "import custom_backend\n"
        "print(json.dumps({'out': out.tolist(), 'calls': custom_backend.CountingInterpreter.calls}))\n"
    )
    proc = run_fresh(["-c", code], env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parent)})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["calls"] == 1
    torch.testing.assert_close(torch.tensor(result["out"]), 2.0 * f(x, y))


def test_backend_passed_at_load(tmp_path):
    class Renamed(CountingInterpreter):
        name = "renamed"

    path = aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend=Renamed()).save(tmp_path / "r.aot")
    # Renamed is local to this test: its recorded entry cannot be imported...
    with pytest.raises(aotpack.AotpackError, match="cannot be loaded here"):
        aotpack.load(path)
    # ...but the caller can hand it over.
    fn = aotpack.load(path, backends=[Renamed()])
    x, y = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(fn(x, y), f(x, y))


def test_object_without_protocol_is_refused():
    with pytest.raises(aotpack.AotpackError, match="does not follow the Backend protocol"):
        aotpack.compile(f, (torch.randn(4), torch.randn(4)), backend=object())

"""Compatibility: a package built for another torch/machine says what differs, and can be
rebuilt from its portable program (and rewritten in place)."""

import json

import pytest
import torch

import aotpack
import programs
from aotpack.load import runtime
from aotpack.package import Package
from conftest import run_fresh


def _edit_manifest(path, edit):
    """Rewrite the package with ``edit(manifest)``'s manifest (records are frozen: a new one)."""
    pkg = Package.open(path)
    pkg.manifest = edit(pkg.manifest)
    pkg.save(path)


def test_rebuild_mechanism_eager(tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    x = torch.randn(3, 4)
    path = aotpack.compile(m, (x,), backend="eager",
                           dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}}).save(tmp_path / "m.aot")
    real = runtime.incompatibilities
    monkeypatch.setattr(runtime, "incompatibilities",
                        lambda manifest, v, *rest: real(manifest, v, *rest) + ["machine: pretend it was built elsewhere"])
    with pytest.raises(aotpack.IncompatibleError, match="pretend it was built elsewhere") as info:
        aotpack.load(path)
    assert "on_mismatch='rebuild'" in info.value.hint
    with pytest.warns(aotpack.RebuildWarning, match="rebuilding it from its portable program"):
        fn = aotpack.load(path, on_mismatch="rebuild")
    torch.testing.assert_close(fn(torch.randn(7, 4)).shape, torch.Size([7, 3]))
    y = torch.randn(5, 4)
    torch.testing.assert_close(fn(y), m(y))


def test_rebuild_of_a_region_that_only_updates_in_place(tmp_path, monkeypatch):
    """torch 2.11-2.13 read such a region back without the value its verifier demands,
    so the rebuild failed with a FormatError (``_torch_compat.deserialize_program``)."""
    path = aotpack.compile(programs.halves_under_no_grad, (torch.randn(3), torch.randn(3)), backend="eager").save(
        tmp_path / "h.aot")
    real = runtime.incompatibilities
    monkeypatch.setattr(runtime, "incompatibilities",
                        lambda manifest, v, *rest: real(manifest, v, *rest) + ["machine: pretend it was built elsewhere"])
    with pytest.warns(aotpack.RebuildWarning):
        fn = aotpack.load(path, on_mismatch="rebuild")
    a, b = torch.randn(3), torch.tensor([2.0, 4.0, 6.0])
    torch.testing.assert_close(fn(a, b), a + 1)
    assert b.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.slow
def test_foreign_torch_version_aoti_rebuild_and_rewrite(tmp_path):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    x = torch.randn(4, 4)
    path = aotpack.compile(m, (x,)).save(tmp_path / "m.aot")

    def pretend_old(manifest):
        return manifest.replace(versions=manifest.versions.replace(torch="2.12.0"),
                                variants=[v.replace(torch="2.12.0") for v in manifest.variants])

    _edit_manifest(path, pretend_old)
    torch.save((x, m(x).detach()), tmp_path / "io.pt")
    code = (
        "import json, sys, warnings, torch, aotpack\n"
        f"x, ref = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "try:\n    aotpack.load(sys.argv[1]); err = None\n"
        "except aotpack.IncompatibleError as e:\n    err = str(e)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    fn = aotpack.load(sys.argv[1], on_mismatch='rebuild', rewrite=True)\n"
        "out = (fn(x) - ref).abs().max().item()\n"
        "with warnings.catch_warnings(record=True) as w2:\n"
        "    warnings.simplefilter('always')\n"
        "    again = (aotpack.load(sys.argv[1])(x) - ref).abs().max().item()\n"
        "print(json.dumps({'err': err, 'warned': [str(a.message) for a in w if 'rebuild' in str(a.message)],"
        " 'out': out, 'again': again, 'warned_again': len([a for a in w2 if 'rebuild' in str(a.message)])}))\n")
    r = json.loads(run_fresh(["-c", code, str(path)]).stdout.strip().splitlines()[-1])
    assert "torch: package built with 2.12.0, this is " + torch.__version__.split("+")[0] in r["err"]
    assert len(r["warned"]) == 1
    assert r["out"] < 1e-5 and r["again"] < 1e-5
    assert r["warned_again"] == 0  # rewritten: no second rebuild
    assert aotpack.inspect(path).manifest.variants[0].torch == torch.__version__.split("+")[0]

    # the same from the command line: `aotpack rebuild` rewrites in place, `verify` agrees
    from conftest import run_cli

    _edit_manifest(path, pretend_old)
    assert "cannot run here" in run_cli("verify", str(path), check=False).stdout
    assert "variants default run here" in run_cli("rebuild", str(path)).stdout
    assert "variant default: runs here" in run_cli("verify", str(path)).stdout

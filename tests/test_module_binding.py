"""load(path, module=m) runs with m's live parameters: no copy, optimizer steps are seen."""

import json

import pytest
import torch

import aotpack
import programs
from conftest import run_fresh

CHILD = r"""
import json, sys, torch, aotpack
sys.path.insert(0, sys.argv[2])
from programs import MLPWithBuffer
torch.manual_seed(123)                 # other weights than the package's
m = MLPWithBuffer().eval().requires_grad_(False)   # inference: no autograd graph, as the package
x = torch.randn(5, 4)
fn = aotpack.load(sys.argv[1], module=m)
first = (fn(x) - m(x)).abs().max().item()
with torch.no_grad():
    m.fc1.weight.mul_(-1.5)            # an in-place update, as an optimizer does
    m.scale.add_(1.0)
second = (fn(x) - m(x)).abs().max().item()
stored = aotpack.load(sys.argv[1])
differs = (stored(x) - m(x)).abs().max().item()
print(json.dumps({"first": first, "second": second, "differs": differs}))
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_live_module_parameters(tmp_path, backend):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(2, 4),), dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}},
                           backend=backend).save(tmp_path / "m.aot")
    proc = run_fresh(["-c", CHILD, path, str(__import__("pathlib").Path(__file__).parent)])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["first"] < 1e-5
    assert r["second"] < 1e-5
    assert r["differs"] > 1e-3  # the stored weights really are other weights


def test_module_missing_parameter(tmp_path):
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path / "m.aot")
    with pytest.raises(aotpack.AotpackError, match="has no parameter or buffer 'fc1.weight'"):
        aotpack.load(path, module=torch.nn.Linear(4, 3))


def test_module_wrong_shape(tmp_path):
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path / "m.aot")
    other = programs.MLPWithBuffer()
    other.fc1 = torch.nn.Linear(4, 9)
    with pytest.raises(aotpack.AotpackError, match=r"'fc1.weight' is float32\[9, 4\], the package was compiled for float32\[8, 4\]"):
        aotpack.load(path, module=other)

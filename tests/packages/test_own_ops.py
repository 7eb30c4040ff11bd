"""aotpack's own ops (``aotpack.kernels``): a package that calls one loads in a fresh
process that never imported them (the load registers aotpack's namespace itself, from a
fixed module); where ``aotpack.llm.compile`` routes products through the kernel, and its
refusals. The kernel on the
GPU: tests/models/test_cuda.py."""

import json

import pytest
import torch

import aotpack
from aotpack.kernels import fits, matvec
from conftest import run_fresh


def scaled_product(x, w):
    return matvec(x, w) * 2


CHILD = r"""
import json, sys, torch, aotpack
before = "aotpack.kernels" in sys.modules
fn = aotpack.load(sys.argv[1])
x, w = torch.load(sys.argv[2])
err = (fn(x, w) - torch.nn.functional.linear(x, w) * 2).abs().max().item()
print(json.dumps({"err": err, "imported_before": before, "imported_after": "aotpack.kernels" in sys.modules}))
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_a_package_calling_aotpacks_own_op_loads_in_a_fresh_process(tmp_path, backend):
    x, w = torch.randn(1, 1024), torch.randn(256, 1024)
    path = aotpack.compile(scaled_product, (x, w), backend=backend).save(tmp_path / "p.aot")
    torch.save((torch.randn(1, 1024), torch.randn(256, 1024)), tmp_path / "xw.pt")
    r = json.loads(run_fresh(["-c", CHILD, str(path), str(tmp_path / "xw.pt")]).stdout.strip().splitlines()[-1])
    assert r["err"] < 1e-4
    assert not r["imported_before"] and r["imported_after"]


def test_matvec_equals_linear_and_takes_no_cpu_product():
    x, w = torch.randn(1, 1024), torch.randn(256, 1024)
    torch.testing.assert_close(matvec(x, w), x @ w.T, rtol=1e-4, atol=1e-4)
    assert not fits(x.bfloat16(), w.bfloat16(), None, 2.5, min_outputs=0)  # on the CPU: F.linear's own kernel


def test_matvec_kernel_and_fused_projections_are_refused_together():
    with pytest.raises(ValueError, match="matvec_kernel and fuse_projections cannot be combined"):
        aotpack.llm.compile(torch.nn.Linear(2, 2), matvec_kernel=True, fuse_projections=True)


@pytest.mark.parametrize("asked, fuse, device, routed", [
    (None, False, "cuda", True),  # the default on CUDA
    (None, True, "cuda", False),  # ... unless the projections are fused
    (False, False, "cuda", False),
    (None, False, "cpu", False),
    (True, False, "cpu", False),  # the CPU op would be F.linear: nothing to route
])
def test_the_matvec_kernel_is_routed_by_default_on_cuda_alone(asked, fuse, device, routed):
    from aotpack.llm import _routes_matvec

    assert _routes_matvec(asked, fuse, torch.device(device)) is routed


def test_a_function_replaced_while_tracing_is_replaced_for_that_thread_alone():
    """The decode step's routing (``routed_matvec``) and math attention replace functions
    of ``torch.nn.functional`` while the step is traced; another thread running its eager
    model meanwhile keeps the original (a replaced ``F.linear`` or attention would give it
    another summation order's numbers), and the original is back after."""
    import math
    import threading

    from aotpack._torch_compat import replaced_in_this_thread

    seen = {}
    with replaced_in_this_thread(math, "floor", lambda floor: lambda x: floor(x) - 10):
        seen["tracing"] = math.floor(2.5)
        other = threading.Thread(target=lambda: seen.update(other=math.floor(2.5)))
        other.start()
        other.join()
    assert seen == {"tracing": -8, "other": 2} and math.floor(2.5) == 2

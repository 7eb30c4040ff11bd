"""Programs of the kinds PyTorch's own test/dynamo/test_aot_autograd.py runs through
torch.compile (each test here is named after the test it follows, rewritten as a small
program of the same pattern): packaged, loaded in a fresh process, and equal to eager in
outputs, output aliasing and in-place effects on the caller's tensors."""

import json
import os

import pytest
import torch

import aotpack
from conftest import run_fresh

HERE = os.path.dirname(os.path.abspath(__file__))  # the child imports this module's programs


def _add_with_grad_off(param, y):
    """``param.add_(y)`` with grad mode switched off by hand and restored, as the tests write it."""
    before = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(False)
        param.add_(y)
    finally:
        torch.set_grad_enabled(before)


def mutation(param, y):
    """test_mutation: an input updated in place under grad mode off, restored after."""
    _add_with_grad_off(param, y)
    return y * 2


def mutation1(stack, scores):
    """test_mutation1: a slice of an input assigned from another input; a view returned."""
    stack[:, :-1, :, 4:] = scores[:, :, :4, :5]
    return (stack.view(1, 6, 16, 9),)


def negative_testing(x, y):
    """test_negative_testing: an in-place op on an intermediate, not an input."""
    return torch.sin(x).add_(y)


def arg_dupe(a, b):
    """test_arg_dupe_via_dynamo_recompiles: two inputs truncated in place."""
    a = a.trunc_()
    b = b.trunc_()
    return (a + b,)


class ArgDupeParam(torch.nn.Module):
    """test_arg_dupe_via_dynamo_recompiles_many_args_param: the same, plus a parameter."""

    def __init__(self):
        super().__init__()
        self.mean = torch.nn.Parameter(torch.randn(3, 3))

    def forward(self, a, b):
        a.trunc_()
        b.trunc_()
        return a + b + self.mean


class SomeBadFwd(torch.nn.Module):
    """test_call_fn_with_non_const_inputs_aot_unsafe: a method that updates an input
    under grad mode off and returns another."""

    def _some_bad_fwd(self, param, y):
        _add_with_grad_off(param, y)
        return y

    def forward(self, x, y):
        return self._some_bad_fwd(x, y)


def returns_updated(a, b):
    """An input updated in place and returned: eager returns the caller's tensor itself."""
    return a.mul_(b)


def examples():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 3  # noqa: E731
    return {
        "mutation": (mutation, (r(4), r(4))),
        "mutation1": (mutation1, (r(6, 4, 4, 9), r(6, 3, 8, 9))),
        "negative_testing": (negative_testing, (r(4), r(4))),
        "arg_dupe": (arg_dupe, (r(3, 3), r(3, 3))),
        "arg_dupe_param": (ArgDupeParam(), (r(3, 3), r(3, 3))),
        "some_bad_fwd": (SomeBadFwd(), (r(4), r(4))),
        "returns_updated": (returns_updated, (r(5), r(5))),
    }


CHILD = r"""
import json, os, sys, torch, aotpack
sys.path[:0] = sys.argv[2].split(os.pathsep)  # this folder, then tests/ (its conftest, before the root's)
from test_aot_autograd_programs import examples
results = {}
for name, (program, args) in examples().items():
    if isinstance(program, torch.nn.Module):
        program.requires_grad_(False)  # an inference package: eager would build no graph either
    fn = aotpack.load(f"{sys.argv[1]}/{name}.aot", module=program if isinstance(program, torch.nn.Module) else None)
    mine, theirs = [a.clone() for a in args], [a.clone() for a in args]
    got, want = fn(*mine), program(*theirs)
    got_flat = got if isinstance(got, (tuple, list)) else (got,)
    want_flat = want if isinstance(want, (tuple, list)) else (want,)
    results[name] = {
        "outputs": all(torch.equal(a, b) for a, b in zip(got_flat, want_flat)) and len(got_flat) == len(want_flat),
        "inputs_after": all(torch.equal(a, b) for a, b in zip(mine, theirs)),
        "aliasing": [any(o is a for a in mine) for o in got_flat] == [any(o is a for a in theirs) for o in want_flat]
        and [any(o.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() for a in mine) for o in got_flat]
        == [any(o.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() for a in theirs) for o in want_flat],
    }
print(json.dumps(results))
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_programs_of_test_aot_autograd_package_and_equal_eager(tmp_path, backend):
    for name, (program, args) in examples().items():
        aotpack.compile(program, tuple(a.clone() for a in args), backend=backend).save(tmp_path / f"{name}.aot")
    out = run_fresh(["-c", CHILD, str(tmp_path), os.pathsep.join([HERE, os.path.dirname(HERE)])])
    results = json.loads(out.stdout.strip().splitlines()[-1])
    bad = {n: r for n, r in results.items() if not all(r.values())}
    assert not bad, bad
    assert set(results) == set(examples())


def test_an_updated_input_is_pinned_and_unshared(tmp_path):
    """The compiled code writes into the caller's tensor: one in another layout is
    refused (a copy would take the write), as is the same tensor passed twice."""
    fn = aotpack.load(aotpack.compile(arg_dupe, (torch.randn(3, 3), torch.randn(3, 3)), backend="eager")
                      .save(tmp_path / "a.aot"))
    x = torch.randn(3, 3)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].stride\(\): expected contiguous \(the program changes "
                                                 r"it in place"):
        fn(x.t(), torch.randn(3, 3))
    with pytest.raises(aotpack.GuardError, match="shares memory with b"):
        fn(x, x)

"""Python int arguments given a Dim (issue 27): what torch.compile runs with a dynamic int
(``dynamic=True``, or an int it saw change), a package runs at every value the Dim
allows, equal to eager; any other value or type is a GuardError naming the argument.

A package carries such an int to its program as the size of an empty tensor
(treespec.IntLeaf), so every backend and guard takes it as it takes a tensor's Dim.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aotpack
from aotpack import Dim, tree
from conftest import run_fresh


def with_counts(x, n, k):
    """Two ints as sizes, scalars, a view's size and arange lengths, and numbers of them
    returned. (A slice ``x[:n]`` of a fixed ``x`` narrows n to the rows of ``x``, 2 and
    up: torch.export's own choice, warned about at compile.)"""
    return {"scaled": x * n + k, "zeros": x.new_zeros(n, k), "steps": torch.arange(n) * x.sum(),
            "wide": x.sum().expand(k, n), "mean": x.sum() / (n + 1), "sum": n + k, "half": n / 2,
            "floor": n // 2, "big": n > k}


COUNTS = {"n": Dim("n", min=0, max=4096), "k": Dim("k", min=1, max=16)}


def _same(got, want, exact=True):
    """Each output equal to eager's: tensors in dtype, shape and value (to rounding where
    not ``exact``: compiled kernels); numbers in type and value."""
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        if isinstance(w, torch.Tensor):
            assert g.dtype == w.dtype and g.shape == w.shape, key
            assert torch.equal(g, w) if exact else torch.allclose(g, w), key
        else:
            assert type(g) is type(w) and g == w, (key, g, w)


@pytest.fixture(scope="module")
def counts_package():
    pkg = aotpack.compile(with_counts, (torch.randn(8), 5, 3), backend="eager", dynamic=COUNTS)
    return pkg, aotpack.load(pkg.to_bytes())


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(n=st.integers(0, 4096), k=st.integers(1, 16))
def test_int_arguments_with_a_dim_are_eagers_at_every_value(counts_package, n, k):
    """``f(x, n, k)`` with Dims for n and k: every value in their ranges gives eager's
    tensors and numbers (a GuardError for any int but the example's before format 19)."""
    x = torch.randn(8)
    _same(counts_package[1](x, n, k), with_counts(x, n, k))


def test_int_arguments_are_recorded_as_carried_sizes(counts_package, tmp_path):
    """The manifest: an ``int`` leaf per int, carried by an empty uint8 input of shape
    ``(n, 0)``, format version 19; ``inspect`` and a GuardError's hint show them as ints."""
    pkg, fn = counts_package
    variant = pkg.manifest.variants[0]
    assert pkg.manifest.format_version == 19
    assert [c.kind for c in variant.in_spec.children] == ["tensor", "int", "int"]
    assert [(g.dtype, g.shape) for g in variant.inputs[1:]] == [("uint8", ["n", 0]), ("uint8", ["k", 0])]
    assert (variant.dims["n"].min, variant.dims["n"].max, variant.dims["k"].max) == (0, 4096, 16)
    shown = str(aotpack.inspect(pkg.save(tmp_path / "counts.aot")))
    assert "n: int n=0..4096" in shown and "k: int k=1..16" in shown and "uint8" not in shown


@pytest.mark.parametrize("call, says", [
    (lambda f, x: f(x, 4097, 3), "args[1]: expected an int n in 0..4096, got 4097"),
    (lambda f, x: f(x, -1, 3), "args[1]: expected an int n in 0..4096, got -1"),
    (lambda f, x: f(x, 5, 0), "args[2]: expected an int k in 1..16, got 0"),
    (lambda f, x: f(x, True, 3), "args[1]: expected an int n in 0..4096, got True (bool)"),
    (lambda f, x: f(x, 5.0, 3), "args[1]: expected an int n in 0..4096, got 5.0 (float)"),
    (lambda f, x: f(x, np.int64(5), 3), "args[1]: expected an int n in 0..4096, got np.int64(5) (int64)"),
    (lambda f, x: f(x, 5, k=torch.tensor(3)), "kwargs['k']: expected an int k in 1..16, got a tensor int64[]"),
])
def test_other_values_of_int_arguments_are_guard_errors(counts_package, call, says):
    """An int outside its Dim, a bool, a float, a numpy int, a tensor: a GuardError naming
    the argument as the caller passed it, before anything runs."""
    with pytest.raises(aotpack.GuardError) as e:
        call(counts_package[1], torch.randn(8))
    assert str(e.value).splitlines()[0] == says
    assert "n: int n=0..4096, k: int k=1..16" in str(e.value)


def test_an_int_sharing_a_dim_with_a_tensor_must_agree_with_it(tmp_path):
    """``dynamic={"x": {0: rows}, "n": rows}``: the int is the tensor's size; another is
    refused naming the int and the size it must equal."""
    def head(x, n):
        return x.new_ones(n, 3) + x[:, :3]

    rows = Dim("rows", min=2, max=32)
    fn = aotpack.load(aotpack.compile(head, (torch.randn(6, 4), 6), backend="eager",
                                      dynamic={"x": {0: rows}, "n": rows}).to_bytes())
    x = torch.randn(9, 4)
    torch.testing.assert_close(fn(x, 9), head(x, 9))
    with pytest.raises(aotpack.GuardError, match=r"^args\[1\]: expected rows = 9 \(as in an earlier input\), got 8"):
        fn(x, 8)


def test_int_arguments_in_containers_keywords_and_defaults(tmp_path):
    """Ints inside a list and a keyword argument with a default take Dims too; a call
    leaving the default out runs with the default, as eager does."""
    def grid(x, shape, *, fill=2):
        rows, cols = shape
        return x.new_full((rows, cols), 1.0) * fill + x.sum()

    fn = aotpack.load(aotpack.compile(grid, (torch.randn(2), [3, 4]), {"fill": 5}, backend="eager",
                                      dynamic={"shape": [Dim("rows"), Dim("cols")], "fill": Dim("fill")}).to_bytes())
    x = torch.randn(2)
    for shape, fill in (([3, 4], 5), ([7, 1], 9), ([0, 2], 0), ([1, 1], None)):
        kwargs = {} if fill is None else {"fill": fill}
        torch.testing.assert_close(fn(x, shape, **kwargs), grid(x, shape, **kwargs))


def test_a_torch_size_argument_takes_dims():
    """A ``torch.Size`` argument's ints take Dims (a list of them, or ``dynamic=True``); the
    program gets a torch.Size, as eager's; until 2026-12-07 a Dim for one was refused with
    a message saying ints take Dims, and ``dynamic=True`` froze them."""
    def ones_of(x, shape):
        assert type(shape) is torch.Size
        return x.new_ones(shape) * x.sum(), shape[0] * shape[1]

    for dynamic in ({"shape": [Dim("rows"), Dim("cols")]}, True):
        fn = aotpack.load(aotpack.compile(ones_of, (torch.randn(3), torch.Size([2, 3])), backend="eager",
                                          dynamic=dynamic).to_bytes())
        x = torch.randn(3)
        for shape in (torch.Size([4, 5]), torch.Size([2, 9])):
            (got, n), (want, m) = fn(x, shape), ones_of(x, shape)
            assert torch.equal(got, want) and n == m and type(n) is int


def test_dynamic_true_makes_every_int_dynamic_that_the_program_does_not_specialize(tmp_path):
    """``dynamic=True`` makes ints dynamic, as torch.compile(dynamic=True) does: an int the
    program computes with takes any value (its Dim named after the argument); one it
    specializes (a reduction's dim, a loop count) is compiled in and guarded."""
    def reduce_and_scale(x, n, axis, repeats):
        y = x.sum(axis) * n
        for _ in range(repeats):
            y = y + 1
        return y, n * 2

    path = aotpack.compile(reduce_and_scale, (torch.randn(3, 4), 5, 1, 2), backend="eager",
                           dynamic=True).save(tmp_path / "reduce.aot")
    fn = aotpack.load(path)
    for n in (5, 2, 300):
        x = torch.randn(6, 7)
        got, want = fn(x, n, 1, 2), reduce_and_scale(x, n, 1, 2)
        torch.testing.assert_close(got[0], want[0])
        assert got[1] == want[1] and type(got[1]) is int
    with pytest.raises(aotpack.GuardError, match=r"^args\[2\]: expected 1 \(an int compiled in\), got 0"):
        fn(torch.randn(6, 7), 5, 0, 2)
    with pytest.raises(aotpack.GuardError, match=r"^args\[3\]: expected 2 \(an int compiled in\), got 3"):
        fn(torch.randn(6, 7), 5, 1, 3)
    shown = str(aotpack.inspect(path))
    assert "n: int n=2..inf" in shown and "axis: int 1" in shown and "repeats: int 2" in shown


def test_a_training_package_takes_an_int_argument():
    """A training package with an int Dim: outputs and the parameters' gradients equal
    eager's at each value."""
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x, n):
            return (self.lin(x)[:n] * n).sum()

    model = Head()
    fn = aotpack.load(aotpack.compile(model, (torch.randn(8, 4), 3), backend="eager", train=True,
                                      dynamic={"n": Dim("n", min=1, max=8)}).to_bytes(), module=model)
    for n in (3, 1, 8):
        x = torch.randn(8, 4)
        model.zero_grad()
        fn(x, n).backward()
        got = model.lin.weight.grad.clone()
        model.zero_grad()
        model(x, n).backward()
        torch.testing.assert_close(got, model.lin.weight.grad)


class ScaledHead(torch.nn.Module):
    """Its backward needs the int itself (``d(x * k)/dx = k``)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, k):
        return (self.lin(x) * k).sum() + k // 3


@settings(max_examples=12, deadline=None)
@given(k=st.integers(-8, 8), example=st.sampled_from([-5, 3]))
def test_a_training_package_whose_backward_needs_an_int_below_zero_trains_as_eager(k, example):
    """A training package's forward hands the backward the numbers it needs as the
    lengths of empty tensors; an int whose Dim runs below 0 is handed over less its least
    value (until 2026-12-07 a negative ``k`` failed the call with torch's "Trying to
    create tensor with negative dimension": found by the fuzzer once its ``k`` ran below
    0). Outputs and the weight's gradient equal eager's at every ``k``."""
    model = ScaledHead()
    fn = aotpack.load(aotpack.compile(model, (torch.randn(5, 4), example), backend="eager", train=True,
                                      dynamic={"k": Dim("k", min=-8, max=8)}).to_bytes(), module=model)
    x = torch.randn(5, 4)
    model.zero_grad()
    got = fn(x, k)
    got.backward()
    grad = model.lin.weight.grad.clone()
    model.zero_grad()
    want = model(x, k)
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, model.lin.weight.grad)


def test_int_arguments_that_cannot_take_a_dim_are_capture_errors():
    """A Dim for a float, a container of Dims for an int, and a named Dim the program
    specializes (a loop count: torch.compile would recompile per value) are refused or
    warned about, naming the argument."""
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['s'\] gives .* for the float 0.5: only a tensor's "
                                                   r"dimensions and Python ints take Dims"):
        aotpack.compile(lambda x, s: x * s, (torch.randn(3), 0.5), backend="eager", dynamic={"s": Dim("s")})
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['n'\] must be one Dim for the int 4"):
        aotpack.compile(lambda x, n: x * n, (torch.randn(3), 4), backend="eager", dynamic={"n": {0: Dim("n")}})

    def repeat(x, n):
        for _ in range(n):
            x = x + 1
        return x

    with pytest.raises(aotpack.CaptureError, match=r"specializes dynamic dimensions: n \(n\) = 4"):
        aotpack.compile(repeat, (torch.randn(3), 4), backend="eager", dynamic={"n": Dim("n")}, strict_dims=True)


def with_shifts(x, n, m):
    """Ints whose Dims run below 0, as a shift, a scalar, floor division, modulo, abs, a
    comparison, a fill value, a max of two and a half."""
    return {"roll": x.roll(n), "scaled": x * m + n, "floor": n // 3, "mod": n % 5, "abs": abs(n), "neg": n < 0,
            "full": torch.full((2,), n), "most": max(n, m), "half": m / 2}


SHIFTS = {"n": Dim("n", min=-64, max=64), "m": Dim("m", min=-3)}


@pytest.fixture(scope="module")
def shifts_package():
    pkg = aotpack.compile(with_shifts, (torch.arange(6.0), 3, -1), backend="eager", dynamic=SHIFTS)
    return pkg, aotpack.load(pkg.to_bytes())


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(n=st.integers(-64, 64), m=st.integers(-3, 10**6))
def test_ints_whose_dims_run_below_zero_are_eagers_at_every_value(shifts_package, n, m):
    """An int's Dim running below 0 (``Dim("n", min=-64)``) takes every int of its range,
    negative ones too, equal to eager in tensors and numbers (until 2026-12-07 it ran from
    0 with a warning, and a negative int was a GuardError; torch.compile runs them)."""
    x = torch.randn(6)
    _same(shifts_package[1](x, n, m), with_shifts(x, n, m))


def test_an_int_below_zero_is_carried_shifted_and_guarded_in_its_own_range(shifts_package, tmp_path):
    """The carrier holds the int minus the Dim's minimum (format version 20: the leaf's
    ``offset``); inspect and the errors speak of the int's own range."""
    pkg, fn = shifts_package
    variant = pkg.manifest.variants[0]
    assert pkg.manifest.format_version == 20
    assert [leaf.offset for leaf in tree.int_leaves(variant.in_spec)] == [-64, -3]
    assert (variant.dims["n"].min, variant.dims["n"].max, variant.dims["m"].max) == (0, 128, None)
    shown = str(aotpack.inspect(pkg.save(tmp_path / "shifts.aot")))
    assert "n: int n=-64..64" in shown and "m: int m=-3..inf" in shown
    x = torch.randn(6)
    for n, m, says in ((-65, 0, "args[1]: expected an int n in -64..64, got -65"),
                       (65, 0, "args[1]: expected an int n in -64..64, got 65"),
                       (0, -4, "args[2]: expected an int m in -3..inf, got -4"),
                       (0, 2.0, "args[2]: expected an int m in -3..inf, got 2.0 (float)")):
        with pytest.raises(aotpack.GuardError, match=re.escape(says)):
            fn(x, n, m)


def test_refusals_of_ints_below_zero():
    """A Dim running below 0 cannot be a tensor's size too, and the example must be in its
    range: CaptureErrors naming both."""
    n = Dim("n", min=-5, max=5)
    with pytest.raises(aotpack.CaptureError, match=r"Dim n runs from -5, below 0: a tensor's size cannot share it"):
        aotpack.compile(lambda x, k: x * k, (torch.randn(3), 2), backend="eager", dynamic={"x": {0: n}, "k": n})
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['k'\] is a Dim running from -5, but the example int "
                                                   r"is -7"):
        aotpack.compile(lambda x, k: x * k, (torch.randn(3), -7), backend="eager", dynamic={"k": n})


def test_two_ints_sharing_a_dim_below_zero_must_agree():
    """Two ints may share a Dim running below 0 (both carried shifted alike); a call
    passing two different ints is a GuardError told in the ints' values (until later on
    2026-12-07 in the carriers' sizes: ``s = 1 (as in an earlier input), got 6``)."""
    s = Dim("s", min=-4, max=4)
    fn = aotpack.load(aotpack.compile(lambda x, a, b: x * a + b, (torch.ones(3), -2, -2), backend="eager",
                                      dynamic={"a": s, "b": s}).to_bytes())
    assert torch.equal(fn(torch.ones(3), -3, -3), torch.full((3,), -6.0))
    with pytest.raises(aotpack.GuardError, match=r"^args\[2\]: expected s = -3 \(as in an earlier input\), got 2"):
        fn(torch.ones(3), -3, 2)


def test_warnings_about_an_int_below_zero_speak_of_its_own_values():
    """Narrowed or specialized, a shifted int's Dim is told in the int's values, not its
    carrier's (``n runs 2..5 of the 0..10 asked`` until 2026-12-07)."""
    with pytest.warns(aotpack.SpecializationWarning, match=r"n runs -3\.\.0 of the -5\.\.5 asked"):
        fn = aotpack.load(aotpack.compile(lambda x, n: x[: n + 6] * 2, (torch.arange(6.0), -2), backend="eager",
                                          dynamic={"n": Dim("n", min=-5, max=5)}).to_bytes())
    with pytest.raises(aotpack.GuardError, match=r"args\[1\]: expected an int n in -3\.\.0, got 3"):
        fn(torch.arange(6.0), 3)

    def counted(x, n):
        for _ in range(n + 5):  # (a loop count: specialized)
            x = x * 2
        return x

    with pytest.warns(aotpack.SpecializationWarning, match=r"n \(n\) = -2"):
        aotpack.compile(counted, (torch.ones(2), -2), backend="eager", dynamic={"n": Dim("n", min=-5, max=5)})


def test_dynamic_true_takes_a_negative_example_int_far_below_zero():
    """Under ``dynamic=True`` an int is carried from 0 up, as a size; a negative example
    reaches 2**20 below 0 (a raw ``RuntimeError: Trying to create tensor with negative
    dimension`` until 2026-12-07)."""
    def scaled(x, n):
        return x * n, n - 1

    fn = aotpack.load(aotpack.compile(scaled, (torch.arange(6.0), -3), backend="eager", dynamic=True).to_bytes())
    for n in (-3, -1000, 0, 5, -2**20):
        got, want = fn(torch.arange(6.0), n), scaled(torch.arange(6.0), n)
        assert torch.equal(got[0], want[0]) and got[1] == want[1]
    with pytest.raises(aotpack.GuardError, match=r"args\[1\]: expected an int n in -1048576\.\.inf, got -1048577"):
        fn(torch.arange(6.0), -2**20 - 1)


def keep_last(x, n):
    """Branches on whether n is an int, as transformers' ``logits_to_keep`` does."""
    return x[:, -n:] * 2 if isinstance(n, int) else x[:, n] * 2


def keep_last_by_type(x, n):
    """Branches on the int's exact type, which no hook reaches."""
    return x[:, -n:] * 2 if type(n) is int else x[:, n] * 2


def test_a_program_reading_an_ints_type_takes_eagers_branch_at_every_value():
    """Traced, a dynamic int is a ``torch.SymInt``, which Python's ``isinstance(n, int)``
    says is no int: the program took its other branch at every value, silently (found on a
    transformers Llama with ``logits_to_keep`` under ``dynamic=True``), then was refused.
    Now the program's own code is told it is an int, as torch.compile's tracer tells it,
    and the int stays dynamic, with a Dim or under ``dynamic=True``."""
    for dynamic in ({"n": Dim("n", min=2, max=5)}, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", aotpack.SpecializationWarning)
            fn = aotpack.load(aotpack.compile(keep_last, (torch.randn(2, 6), 3), backend="eager",
                                              dynamic=dynamic).to_bytes())
        y = torch.randn(2, 6)
        for n in (2, 3, 5):
            assert torch.equal(fn(y, n), keep_last(y, n))


def test_a_program_reading_an_ints_exact_type_is_refused_or_compiled_with_the_int():
    """``type(n) is int`` sees ``torch.SymInt`` traced (no hook reaches ``type``): capture
    runs the graph at the example beside eager, so a Dim for such an int is a CaptureError
    naming it and the output, and ``dynamic=True`` compiles the int in, with a warning."""
    x = torch.randn(2, 6)
    with pytest.raises(aotpack.CaptureError, match=r"traced with dynamic n than eager does at the example: "
                                                   r"output tensor 0 is float32\[2\] where eager's is float32\[2, 3\]"):
        aotpack.compile(keep_last_by_type, (x, 3), backend="eager", dynamic={"n": Dim("n", min=1, max=6)})
    with pytest.warns(aotpack.SpecializationWarning, match=r"compiled in"):
        fn = aotpack.load(aotpack.compile(keep_last_by_type, (x, 3), backend="eager", dynamic=True).to_bytes())
    y = torch.randn(5, 6)
    torch.testing.assert_close(fn(y, 3), keep_last_by_type(y, 3))
    with pytest.raises(aotpack.GuardError, match=r"^args\[1\]: expected 3 \(frozen at compile time"):
        fn(y, 2)


def scaled_by_exact_type(x, n):
    """Eager scales by ``n``; traced (``n`` a ``torch.SymInt``), by 2: equal at n = 2 alone."""
    return x * (n if type(n) is int else 2)


def scaled_by_text(x, n):
    """Eager scales by ``n``; traced, ``str(n)`` is the symbol's name (``s0``): by 2."""
    return x * (int(str(n)) if str(n).lstrip("-").isdigit() else 2)


@settings(max_examples=20, deadline=None)
@given(program=st.sampled_from([scaled_by_exact_type, scaled_by_text]), example=st.integers(-6, 12),
       low=st.integers(-8, 0), call=st.integers(-8, 12))
def test_a_program_reading_an_ints_exact_type_or_text_is_refused_or_eagers_at_every_int(program, example, low, call):
    """Whatever the example: refused at compile, or eager's result at any int the package
    takes. The graph is run beside eager at the example and at another int of the Dim
    (one more, else one less): a program whose traced branch happens to give eager's
    result at the example (``x * 2`` at ``n = 2``) differs at the other (until 2026-12-07
    such a package returned ``x * 2`` at every ``n``, silently)."""
    x = torch.randn(3)
    dim = Dim("n", min=min(low, example), max=12)
    try:
        fn = aotpack.load(aotpack.compile(program, (x, example), backend="eager", dynamic={"n": dim}).to_bytes())
    except aotpack.CaptureError as e:
        assert re.search(r"traced with dynamic n than eager does at (the example|n = -?\d+ \(the example's -?\d+\))",
                         str(e)), e
        return
    try:
        got = fn(x, call)
    except aotpack.GuardError as e:
        assert call != example and "args[1]" in str(e), e
        return
    torch.testing.assert_close(got, program(x, call))


def test_the_other_int_is_named_in_the_ints_own_values():
    """The refusal names the int the graph was run at, in the int's values (a Dim below 0
    is carried shifted): one more than the example's, else one less (``n = 1 (the
    example's 2)`` where the Dim ends at 2); ``dynamic=True`` compiles the int in, with a
    warning, and another is a GuardError."""
    x = torch.randn(3)
    with pytest.raises(aotpack.CaptureError, match=r"than eager does at n = 1 \(the example's 2\): output tensor 0 "
                                                   r"holds other values than eager's"):
        aotpack.compile(scaled_by_exact_type, (x, 2), backend="eager", dynamic={"n": Dim("n", min=-5, max=2)})
    with pytest.raises(aotpack.CaptureError, match=r"than eager does at n = 3 \(the example's 2\)"):
        aotpack.compile(scaled_by_exact_type, (x, 2), backend="eager", dynamic={"n": Dim("n", max=9)})
    with pytest.warns(aotpack.SpecializationWarning, match=r"int arguments n are compiled in .* n = 3 \(the example.s 2\)"):
        fn = aotpack.load(aotpack.compile(scaled_by_exact_type, (x, 2), backend="eager", dynamic=True).to_bytes())
    torch.testing.assert_close(fn(x, 2), x * 2)
    with pytest.raises(aotpack.GuardError, match=r"^args\[1\]: expected 2 \(frozen at compile time"):
        fn(x, 3)


def test_the_example_check_runs_in_the_state_the_trace_saw():
    """The graph-beside-eager check at capture runs under the grad mode and autocast the
    trace saw: a program branching on grad mode, compiled with grad on inside the
    caller's autocast but without autocast, is no difference (the first version of the
    check ran with grad off and refused such programs of the fuzzer, seed 13)."""
    def by_grad_mode(x, n):
        return (x @ x.t()) * n * (2 if torch.is_grad_enabled() else 3)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        pkg = aotpack.compile(by_grad_mode, (torch.randn(3, 3), 4), backend="eager", autocast=False,
                              dynamic={"n": Dim("n", min=1, max=9)})
    fn = aotpack.load(pkg.to_bytes())
    x = torch.randn(3, 3)
    torch.testing.assert_close(fn(x, 7), by_grad_mode(x, 7))


def test_a_transformers_llama_with_logits_to_keep_under_dynamic_true_gives_eagers_logits():
    """The case above on the model it was found on: ``logits_to_keep=3`` under
    ``dynamic=True`` returned one position's logits, ``[1, 100]`` where eager returns
    ``[1, 3, 100]``; then the int was compiled in; now it stays dynamic with the sequence
    length: another count of positions gives eager's logits too."""
    import zoo

    model, kwargs = zoo.build("llama", layers=1)
    kwargs["logits_to_keep"] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SpecializationWarning)
        fn = aotpack.load(aotpack.compile(model, (), kwargs, backend="eager", dynamic=True).to_bytes())
    for length, keep in ((8, 3), (20, 3), (20, 5), (9, 2)):
        ids = torch.randint(0, 100, (1, length))
        got = fn(input_ids=ids, use_cache=False, logits_to_keep=keep).logits
        torch.testing.assert_close(got, model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits)


def with_counts_and_a_shift(x, n, k, s):
    """``with_counts`` and an int whose Dim runs below 0 (a shift and a number of it)."""
    return {**with_counts(x, n, k), "rolled": x.roll(s), "before": s - 1}


def test_int_arguments_run_in_a_fresh_process_with_aotinductor(tmp_path):
    """AOTInductor, the default backend, takes the int's carrier as any input, shifted
    where its Dim runs below 0: a fresh process gives eager's results at several values
    and refuses one out of range (inputs kept positive: a sum near 0, added in another
    order by a compiled kernel, would differ from eager's by more than a relative rounding)."""
    pkg = aotpack.compile(with_counts_and_a_shift, (torch.randn(8), 5, 3, -2), backend="aoti",
                          dynamic={**COUNTS, "s": Dim("s", min=-8, max=8)})
    path = pkg.save(tmp_path / "counts.aot")
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import os, sys, torch, aotpack\nsys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]\n"
            "from test_int_arguments import with_counts_and_a_shift, _same\nfn = aotpack.load(sys.argv[1])\n"
            "for n, k, s in ((5, 3, -2), (0, 1, -8), (1, 16, 8), (4096, 7, 0), (33, 2, 3)):\n"
            "    x = torch.rand(8) + 0.5\n    _same(fn(x, n, k, s), with_counts_and_a_shift(x, n, k, s), exact=False)\n"
            "for bad in ((5, 17, 0), (5, 3, -9)):\n    try:\n        fn(torch.randn(8), *bad)\n"
            "    except aotpack.GuardError as e:\n        print(str(e).splitlines()[0])\n")
    out = run_fresh(["-c", code, str(path), here]).stdout.strip().splitlines()
    assert out == ["args[2]: expected an int k in 1..16, got 17", "args[3]: expected an int s in -8..8, got -9"]


class WritesAtPosition(torch.nn.Module):
    """A static KV cache: each call writes its row at ``pos`` and reads the rows so far."""

    def __init__(self):
        super().__init__()
        self.register_buffer("k", torch.zeros(1, 16, 4))
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x, pos):
        self.k[:, pos] = self.proj(x)  # (x: (1, 4), the view (1, 4))
        return self.k[:, : pos + 1].sum(1)


def writes_into(out, n, v):
    out[:, n] = v[None]  # (a leading size of 1 beyond the view's rank, dropped as eager's indexing drops it)
    out[0, n + 1] = 2.5  # (a number)
    return out.sum()


@pytest.mark.parametrize(("backend", "example"), [("eager", 3), ("aoti", 3), ("eager", 0), ("eager", 1)])
def test_a_write_at_a_dynamic_int_position_runs_at_every_position(backend, example):
    """``self.k[:, pos] = kv`` with an int ``pos`` given a Dim (a static KV cache, as
    torch.compile runs it with a dynamic position): torch.export's trace compiled the
    position in (it rewrites such a read into views, not such a write), so a package
    took only the example's, with a SpecializationWarning (until 2026-12-07). Now every
    position in the Dim writes where eager writes, into the bound module's buffer, and
    returns eager's. So from an example of 0 or 1 (a decode loop's first steps, the
    natural example), which torch.export treats apart: until 2026-12-07 the package took
    that position alone, with a warning telling to compile at 2 or more; traced
    size-obliviously now."""
    torch.manual_seed(0)
    model = WritesAtPosition().eval()
    twin = WritesAtPosition().eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SpecializationWarning)
        pkg = aotpack.compile(WritesAtPosition().eval(), (torch.randn(1, 4), example), backend=backend,
                              dynamic={"pos": Dim("pos", max=15)})
        fn = aotpack.load(pkg.to_bytes(), module=model)
        for pos in (0, 1, 7, 15, 2):
            x = torch.randn(1, 4)
            torch.testing.assert_close(fn(x, pos), twin(x, pos))
            torch.testing.assert_close(model.k, twin.k)

def test_a_write_into_an_input_at_a_dynamic_int_position_runs_at_every_position():
    """The same into an input, of a tensor with a leading size of 1 and of a number (the
    capture's rewrite is every backend's: the eager backend's graph shows it; aoti
    compiles the cache's above)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SpecializationWarning)
        write = aotpack.load(aotpack.compile(writes_into, (torch.zeros(2, 9, 3), 3, torch.ones(2, 3)),
                                             backend="eager", dynamic={"n": Dim("n", max=7)}).to_bytes())
    for n in (0, 5, 7):
        out, want_out, v = torch.zeros(2, 9, 3), torch.zeros(2, 9, 3), torch.randn(2, 3)
        torch.testing.assert_close(write(out, n, v), writes_into(want_out, n, v))
        assert torch.equal(out, want_out), n


def first_step_apart(x, pos):
    return x * 0 + 1 if pos == 0 else x * pos


def one_apart(x, n):
    return x[:n] * 2 if n == 1 else x[:n] * 3


@pytest.mark.parametrize(("program", "example", "variants", "refused"), [
    (first_step_apart, 0, ["default", "default.from-2"], None),
    (one_apart, 1, ["default", "default.from-2"], None),
    (first_step_apart, 1, ["default"], 0),
])
def test_a_branch_on_an_example_int_of_zero_or_one_runs_eagers_branch_at_every_int(program, example, variants,
                                                                                    refused):
    """A decode step's ``if pos == 0`` (or ``n == 1``) with ``Dim("p", min=0)``. From the
    example's 0: traced size-obliviously, which takes ``pos`` to be 2 or more, the graph
    took the other branch at 0 itself, and capture refused the program as reading an
    int's type (until 2026-12-08); it is traced again as torch.export traces, compiling the
    0 in, and a second variant compiled from 2 runs the other ints. From an example of 1
    and a program branching on 0, the graph of every int returned 0s at 0 where eager
    returns 1s, silently (until 2026-12-08): sizes 0 and 1 are now run beside eager at
    every example, so 0 leaves the Dim, with the warning, and is a GuardError."""
    dynamic = {"pos" if program is first_step_apart else "n": aotpack.Dim("p", min=0, max=4)}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pkg = aotpack.compile(program, (torch.ones(4), example), backend="eager", dynamic=dynamic)
    warned = [str(w.message) for w in seen if issubclass(w.category, aotpack.SpecializationWarning)]
    assert pkg.variants == variants
    assert (["p runs 1..4 of the 0..4 asked"] if refused is not None else []) == \
        [re.search(r"p runs [^)]*", w).group() for w in warned]
    fn = aotpack.load(pkg.to_bytes())
    for value in range(5):
        x = torch.randn(4)
        if value == refused:
            with pytest.raises(aotpack.GuardError, match=r"expected an int p in 1\.\.4, got 0"):
                fn(x, value)
        else:
            torch.testing.assert_close(fn(x, value), program(x, value))

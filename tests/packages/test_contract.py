"""Correct or refused: one regression test per silently wrong answer found on main (issue 13).

Each call gives eager's result or an aotpack error naming the argument and the
property; programs a package cannot keep eager's semantics for are refused at compile
time with the user's file:line. The differential fuzzer (test_fuzz_contract.py) covers
the same ground at random; these pin the cases found by hand.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import re
import time
import warnings
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aotpack
from aotpack.load.runtime import incompatibilities
from aotpack.package.manifest import Meta
from conftest import TORCH_BEFORE_2_13, run_fresh
from programs import GradInputsAliasInputs, RoundThrough, StraightThrough, halves_under_no_grad


def affine(x):
    return x * 2 + 1


def transposed(rows=6, cols=4):
    return torch.arange(float(rows * cols)).reshape(rows, cols).t()


# 1. strides -------------------------------------------------------------------------

def test_transposed_input_to_contiguous_package_gives_eager_result(tmp_path):
    fn = aotpack.load(aotpack.compile(affine, (torch.randn(4, 6),), backend="eager").save(tmp_path / "f.aot"))
    x = transposed()
    torch.testing.assert_close(fn(x), affine(x))


@pytest.mark.slow
def test_aoti_package_compiled_transposed_called_both_ways(tmp_path):
    fn = aotpack.load(aotpack.compile(affine, (transposed(),), backend="aoti").save(tmp_path / "f.aot"))
    assert fn.manifest.variants[0].inputs[0].layout == {"order": [1, 0]}
    # ... and a tensor whose negative bit is set in the compiled layout: AOTInductor reads
    # the stored values, which mean their negation (returned -x*2+1 before the fix)
    for x in (transposed(), transposed().contiguous(), torch.randn(5, 8)[1:, 2:],
              torch.randn(6, 4)._neg_view().t()):
        torch.testing.assert_close(fn(x), affine(x))


def test_training_package_gradient_through_transposed_input(tmp_path):
    fn = aotpack.load(aotpack.compile(lambda x: (x * 2 + 1).square(), (torch.randn(4, 6, requires_grad=True),),
                                      backend="eager", train=True).save(tmp_path / "t.aot"))
    x = transposed().requires_grad_()
    fn(x).sum().backward()
    torch.testing.assert_close(x.grad, 4 * (x.detach() * 2 + 1))  # d/dx sum((2x + 1)^2)


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_an_output_viewing_an_input_in_another_layout_runs_the_portable_program(tmp_path, backend):
    """An output that views the input: a copy into the compiled layout would not share
    the caller's memory, so a call in another layout runs the package's portable program
    on the caller's tensor (eager ops; nothing the program computes depends on the
    layout), with a PortableRunWarning: a view of the caller's tensor, as eager returns
    (until 2026-12-06 a GuardError; so was a training package's updated input that an
    output views). An expanded input the program updates stays one: eager refuses it."""
    def program(x):
        return x[0], x.sum()

    fn = aotpack.load(aotpack.compile(program, (torch.randn(4, 6),), backend=backend).save(tmp_path / "v.aot"))
    x = torch.randn(4, 6)
    view, _ = fn(x)
    x[0, 0] = 42.0
    assert view[0] == 42.0  # a view of the caller's tensor, as eager returns
    t = transposed()
    with pytest.warns(aotpack.PortableRunWarning):
        view, total = fn(t)
    torch.testing.assert_close(total, program(t)[1])
    t[0, 1] = 7.0
    assert view._base is t._base and view[1] == 7.0 and view.stride() == program(t)[0].stride()


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("op", ["reshape", "flatten", "contiguous"])
def test_layout_refused_where_it_decides_whether_an_output_is_a_view(tmp_path, op, train):
    """x.reshape(-1) of a sliced x is a copy, of a contiguous x a view (found by the
    fuzzer, seed 777): a package compiled for the slice refuses other layouts rather
    than return a copy where eager returns a view of the caller's tensor."""
    def f(x):
        return getattr(x, op)() if op == "contiguous" else getattr(x, op)(-1) if op == "reshape" else x.flatten()

    sliced = torch.randn(5, 8)[1:, 2:].requires_grad_(train)
    fn = aotpack.load(aotpack.compile(f, (sliced,), backend="eager", train=train).to_bytes())
    assert "output shares its memory" in fn.manifest.variants[0].inputs[0].layout_pinned
    same = torch.randn(5, 8)[1:, 2:].requires_grad_(train)
    out = fn(same)  # the compiled layout: a copy, as eager makes
    torch.testing.assert_close(out, f(same))
    assert out.untyped_storage().data_ptr() != same.untyped_storage().data_ptr()
    x = torch.randn(4, 6).requires_grad_(train)
    assert f(x).untyped_storage().data_ptr() == x.untyped_storage().data_ptr()  # eager: a view
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.stride\(\): expected strides \(8, 1\) \(whether an "
                                                 r"output shares its memory depends on its layout"):
        fn(x)
    # compiled for the contiguous layout, the output is a view: other layouts refused as before
    fn = aotpack.load(aotpack.compile(f, (torch.randn(4, 6).requires_grad_(train),), backend="eager",
                                      train=train).to_bytes())
    assert not fn.manifest.variants[0].inputs[0].layout_pinned
    assert fn(x).untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


def branches_on_layout(x, y):
    z = x.flatten() if x.is_contiguous() else x.t()  # eager's branch follows the caller's layout
    return z * 2, y + 1


def branches_on_intermediate(x, y):
    h = x + y
    return (h.flatten() if h.is_contiguous() else h.t()) * 1  # h's layout follows x's and y's


class ReadsWeightStrides(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6))

    def forward(self, x):
        assert self.w.stride() == (1,)  # the stored weight's layout: nothing to pin
        return x * self.w


def reads_strides(x):
    return x * 2 if x.is_contiguous() else x + 1


def _every_other_column_as_eager(fn, rows: int, columns: int, train: bool) -> None:
    """``fn`` (a package of ``reads_strides``) called on every other column of a
    ``rows`` x ``columns`` matrix gives eager's values and gradients."""
    a = torch.randn(rows, columns)[:, ::2].requires_grad_(train)
    b = torch.empty(rows, columns)[:, ::2].copy_(a.detach()).requires_grad_(train)  # the same strides
    got, want = fn(a), reads_strides(b)
    torch.testing.assert_close(got, want)
    if train:
        got.square().sum().backward()
        want.square().sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("train", [False, True])
def test_a_strided_example_with_a_dim_compiles_for_a_contiguous_copy(train):
    """An example with gaps in its strides (``base[:, ::2]``) and a dynamic size has no
    layout that describes other sizes: the package is compiled for a contiguous copy and
    each call copied into it (until 2026-12-04 a CaptureError), with eager's values and
    gradients in every layout and size. Where the program depends on the layout (it reads
    strides), an inference package is compiled for the example's strides, which torch.export
    keeps static: calls of any size in those strides run, calls in another layout are
    refused naming it (a CaptureError until later that day; for training packages until
    later still)."""
    rows = aotpack.Dim("rows", min=2, max=16)
    x = torch.randn(4, 12)[:, ::2].requires_grad_(train)
    fn = aotpack.load(aotpack.compile(lambda x: (x.sin() * 2).cumsum(0), (x,), backend="eager", train=train,
                                      dynamic={"x": {0: rows}}).to_bytes())
    for n in (2, 9):
        for example in (torch.randn(n, 12)[:, ::2], torch.randn(6, n).t()):
            a = example.requires_grad_(train)
            b = a.detach().clone().requires_grad_(train)
            got, want = fn(a), (b.sin() * 2).cumsum(0)
            torch.testing.assert_close(got, want)
            if train:
                got.square().sum().backward()
                want.square().sum().backward()
                torch.testing.assert_close(a.grad, b.grad)
    pkg = aotpack.compile(reads_strides, (x,), backend="eager", train=train, dynamic={"x": {0: rows}})
    assert pkg.manifest.variants[0].inputs[0].layout == {"stride": [12, 2]}
    fn = aotpack.load(pkg.to_bytes())
    for n in (2, 9, 16):
        _every_other_column_as_eager(fn, n, 12, train)
    with pytest.raises(aotpack.GuardError, match=r"reads strides"):
        fn(torch.randn(5, 6).requires_grad_(train))  # contiguous: eager takes the other branch


@pytest.mark.parametrize("train, backend", [(False, "eager"), (True, "eager"),
                                            pytest.param(False, "aoti", marks=pytest.mark.slow)])
def test_strides_that_follow_a_dim_are_compiled_and_guarded(train, backend):
    """The same with the Dim on the columns: the rows' stride of ``base[:, ::2]`` is twice
    the columns, which torch.export keeps as ``2*cols``. The guard records that expression
    (format version 11; a CaptureError until 2026-12-04) and checks each call's strides
    against it at the call's sizes: every column count in that layout runs (compiled code
    addresses it as eager does), another layout is refused naming the expression."""
    cols = aotpack.Dim("cols", min=2, max=16)
    x = torch.randn(4, 12)[:, ::2].requires_grad_(train)
    pkg = aotpack.compile(reads_strides, (x,), backend=backend, train=train, dynamic={"x": {1: cols}})
    assert pkg.manifest.variants[0].inputs[0].layout == {"stride": [{"expr": "2*cols"}, 2]}
    assert pkg.manifest.format_version == 11
    fn = aotpack.load(pkg.to_bytes())
    for n in (2, 5, 16):
        _every_other_column_as_eager(fn, 4, 2 * n, train)
    for other in (torch.randn(4, 15)[:, ::3], torch.randn(4, 7)):  # gaps of another width; contiguous
        with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.stride\(\): expected strides \(2\*cols, 2\) = "
                                                     r"\(\d+, 2\) \(the program reads strides at "):
            fn(other.requires_grad_(train))


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_strides_torch_gives_symbols_of_their_own_are_held_at_the_examples(backend):
    """Found by the fuzzer (seed 56): an input with gaps that the program updates through
    ``contiguous()`` (a copy in that layout, the input itself where contiguous), compiled
    with its rows a Dim. torch.export gives its strides a symbol of their own (``(6*s, s)``);
    the guard holds it at the example's value (``(12, 2)``: the compiled code takes any
    value, the program's effect depends on it), so calls of any row count in the
    example's layout give eager's outputs and updates, and others are refused (a
    CaptureError until 2026-12-04)."""
    from fuzz_programs import CallSpec, build_inputs, make_program

    program = make_program([("inplace_view", 17, 1, 5), ("view", 0, 14, 3), ("concat", 0, 13, 13),
                            ("inplace_view", 16, 13, 6), ("index", 20, 10, 5)], (0, 7))
    rows = aotpack.Dim("rows", min=2, max=16)

    def inputs(layout, n):
        return build_inputs(CallSpec(("contiguous", layout), "none", torch.float32, (False, False), (n, 6)), n)

    pkg = aotpack.compile(program, inputs("strided", 4), backend=backend, dynamic={"x": {0: rows}, "y": {0: rows}})
    assert pkg.manifest.variants[0].inputs[1].layout == {"stride": [12, 2]}
    fn = aotpack.load(pkg.to_bytes())
    for n in (3, 9):
        got_args, want_args = inputs("strided", n), inputs("strided", n)
        got, want = fn(*got_args), program(*want_args)
        for a, b in (*zip(got, want), *zip(got_args, want_args)):  # outputs, and the inputs' updates
            torch.testing.assert_close(a, b)
        with pytest.raises(aotpack.GuardError, match=r"args\[1\]\.stride\(\): expected strides \(12, 2\) "
                                                     r"\(whether the program's in-place update reaches it"):
            fn(*inputs("contiguous", n))


def test_a_program_torch_cannot_trace_in_its_examples_strides_is_refused_naming_the_input():
    """Where the program depends on the layout of an input with gaps in its strides and a
    dynamic size, capture runs again in the example's strides; where torch then fails
    (found by the fuzzer, seed 50: an AttributeError from the guards torch.export adds, in
    a training package's functional retrace), the refusal names the input and the way out,
    not torch's error."""
    from fuzz_programs import CallSpec, build_inputs, make_program

    program = make_program([("view", 19, 3, 13), ("grad_branch", 19, 7, 10), ("index", 17, 12, 4),
                            ("concat", 12, 7, 0), ("matmul", 17, 1, 12)], ())
    x, y = build_inputs(CallSpec(("contiguous", "offset"), "none", torch.float32, (True, False), (4, 6)), 0)
    rows = aotpack.Dim("rows", min=2, max=16)
    with pytest.raises(aotpack.CaptureError, match=r"y has strides \(8, 1\) with gaps or overlaps and a dynamic size, "
                                                   r"and the program depends on its layout") as e:
        aotpack.compile(program, (x, y), backend="eager", train=True, dynamic={"x": {0: rows}, "y": {0: rows}})
    assert "y.contiguous()" in str(e.value)


@pytest.mark.parametrize("train", [False, True])
def test_layout_refused_where_the_program_reads_strides(train):
    """Export takes the branch the example's layout chose (found by the fuzzer, seed
    20261124: a package compiled for a strided x returned x.t() where eager, given a
    contiguous x, returns x.flatten()). Inputs whose strides the program reads, or all of
    them where it reads an intermediate's, are refused in another layout, naming the line."""
    x, y = torch.randn(6, 4).t().requires_grad_(train), torch.randn(3).requires_grad_(train)
    fn = aotpack.load(aotpack.compile(branches_on_layout, (x, y), backend="eager", train=train).to_bytes())
    line = branches_on_layout.__code__.co_firstlineno + 1
    assert [i.layout_pinned for i in fn.manifest.variants[0].inputs] == [
        f"the program reads strides at {__file__}:{line}", None]
    for got, want in zip(fn(x, y), branches_on_layout(x, y)):  # the compiled layout: eager's result
        torch.testing.assert_close(got, want)
    with pytest.raises(aotpack.GuardError, match=rf"args\[0\]\.stride\(\): expected dense in dimension order "
                                                 rf"\[1, 0\] \(the program reads strides at .*:{line}, "):
        fn(torch.randn(4, 6).requires_grad_(train), y)
    x, y = torch.randn(6, 4).t(), torch.randn(4, 6)
    pins = aotpack.compile(branches_on_intermediate, (x, y), backend="eager").manifest.variants[0].inputs
    assert all(i.layout_pinned for i in pins)
    pins = aotpack.compile(ReadsWeightStrides(), (torch.randn(4, 6),), backend="eager").manifest.variants[0].inputs
    assert pins[0].layout_pinned is None


class RecordsInputs:
    """A backend reading stored values, as compiled code does (any backend but eager):
    records what its code was handed."""

    name = "records-inputs"
    seen: list = []

    def compile(self, captured, options):
        from custom_backend import CountingInterpreter

        return CountingInterpreter().compile(captured, options)

    def load(self, files):
        from custom_backend import CountingInterpreter

        run = CountingInterpreter().load(files)

        def record(flat):
            RecordsInputs.seen = [(t.is_neg(), t.is_conj()) for t in flat]
            for t in flat:
                t.data_ptr()  # as compiled code reads its inputs (a vmap wrapper has no storage)
            return run(flat)
        return record


class RunsAtenOps(RecordsInputs):
    name = "runs-aten-ops"
    runs_aten_ops = True


@pytest.mark.parametrize("example, call", [
    (torch.randn(4), torch.randn(4)._neg_view()),  # z.conj().imag is such a tensor
    (torch.randn(4, dtype=torch.cfloat), torch.randn(4, dtype=torch.cfloat).conj()),
    (transposed(), torch.randn(6, 4)._neg_view().t()),  # in the compiled layout, bit set
])
def test_negative_and_conjugate_bits_are_resolved_for_compiled_code(example, call):
    """A tensor with the negative or conjugate bit set stores values that mean their
    negation or conjugate; only aten ops apply the bit. Compiled code gets a resolved
    copy (AOTInductor returned -x*2+1 for x*2+1 before); where no copy may stand in, the
    call is refused naming the bit."""
    fn = aotpack.load(aotpack.compile(affine, (example,), backend=RecordsInputs()).to_bytes(),
                      backends=[RecordsInputs()])
    torch.testing.assert_close(fn(call), affine(call))
    assert RecordsInputs.seen == [(False, False)]
    view = aotpack.load(aotpack.compile(lambda x: (x[0], x.sum()), (example,), backend=RecordsInputs()).to_bytes(),
                        backends=[RecordsInputs()])
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.is_(neg|conj)\(\): expected False \(compiled code reads "
                                                 r"the stored values"):
        view(call)
    eager = aotpack.load(aotpack.compile(affine, (example,), backend="eager").to_bytes())
    torch.testing.assert_close(eager(call), affine(call))  # aten applies the bit itself
    # a backend that says it runs aten ops (as eager does) is handed the tensor as it is
    aten = aotpack.load(aotpack.compile(affine, (example,), backend=RunsAtenOps()).to_bytes(),
                        backends=[RunsAtenOps()])
    torch.testing.assert_close(aten(call), affine(call))
    assert RecordsInputs.seen == [(call.is_neg(), call.is_conj())] != [(False, False)]


def test_torch_func_transforms_and_forward_ad_run_the_portable_program_of_compiled_code():
    """vmap/jvp and forward-mode dual tensors over a package: compiled code reads stored
    values, which a vmap wrapper has none of, and would drop a tangent silently
    (AOTInductor returned no tangent where eager returns one). Such a call runs the
    package's portable program, whose eager ops the transform batches or differentiates,
    with one PortableRunWarning: eager's values and tangents, as torch.compile runs them
    (until 2026-12-06 a GuardError naming the argument). Outside a transform the compiled
    code runs again. The eager backend runs aten ops, which apply the transforms."""
    import torch.autograd.forward_ad as forward_ad

    x, xs, ones = torch.randn(4), torch.randn(3, 4), torch.ones(4)
    compiled = aotpack.load(aotpack.compile(affine, (x,), backend=RecordsInputs()).to_bytes(),
                            backends=[RecordsInputs()])
    eager = aotpack.load(aotpack.compile(affine, (x,), backend="eager").to_bytes())
    with pytest.warns(aotpack.PortableRunWarning, match=r"expects a plain tensor .* got a torch.func transform") as w:
        torch.testing.assert_close(torch.func.vmap(compiled)(xs), affine(xs))
    assert w[0].filename == __file__  # (the user's line, not functorch's frame the call came through)
    RecordsInputs.seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.PortableRunWarning)  # (once per variant)
        torch.testing.assert_close(torch.func.jvp(compiled, (x,), (ones,)), (affine(x), 2 * ones))
        with forward_ad.dual_level():
            dual = compiled(forward_ad.make_dual(x, ones))
            torch.testing.assert_close(forward_ad.unpack_dual(dual).tangent, 2 * ones)
            torch.testing.assert_close(compiled(x), affine(x))  # no tangent: the compiled code
        assert RecordsInputs.seen == [(False, False)]  # (it ran for that call alone)
        with forward_ad.dual_level():
            dual_eager = forward_ad.unpack_dual(eager(forward_ad.make_dual(x, ones))).tangent
    torch.testing.assert_close(dual_eager, 2 * ones)
    torch.testing.assert_close(torch.func.vmap(eager)(xs), affine(xs))


def _rounds_through(x):
    return RoundThrough.apply(x) * 2


@pytest.mark.parametrize("backend", ["eager", "records-inputs"])
def test_a_custom_function_under_a_transform_is_refused_naming_it(backend):
    """A custom autograd.Function's derivative rules (its ``jvp``, its ``vmap``) are not in
    the package's graph, which holds its forward: under ``torch.func.jvp`` the package gave
    the forward's derivative, 0, where eager's ``jvp`` gives 2 (until 2026-12-06, silently,
    with the eager backend). Now a GuardError naming the Function; outside a transform it
    runs, and vmap of a Function without rules is eager's own refusal."""
    x, ones = torch.tensor([0.4, 1.6, -2.2]), torch.ones(3)
    pkg = aotpack.compile(_rounds_through, (x,), backend="eager" if backend == "eager" else RecordsInputs())
    assert pkg.manifest.variants[0].custom_functions == ["programs.RoundThrough"]
    fn = aotpack.load(pkg.to_bytes(), backends=[RecordsInputs()])
    torch.testing.assert_close(torch.func.jvp(_rounds_through, (x,), (ones,))[1], 2 * ones)  # eager's rule
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]: expected a tensor without a forward-mode tangent "
                                                 r"\(the program applies the custom autograd.Function .*RoundThrough"):
        torch.func.jvp(fn, (x,), (ones,))
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]: expected a plain tensor \(the program applies"):
        torch.func.vmap(fn)(x[None])
    torch.testing.assert_close(fn(x), _rounds_through(x))


class _BatchedRoundThrough(RoundThrough):
    """``RoundThrough`` whose vmap rule torch generates from its forward."""

    generate_vmap_rule = True


def _rounds_batched(x):
    return _BatchedRoundThrough.apply(x) * 2 + x


@pytest.mark.parametrize("backend", ["eager", "records-inputs"])
def test_vmap_alone_of_a_function_whose_vmap_rule_torch_generates_runs_the_portable_program(backend):
    """A custom autograd.Function with ``generate_vmap_rule = True``: torch's vmap of it is
    its forward over batched tensors, the ops the package's portable program holds. A call
    under vmap alone runs that program (a GuardError until 2026-12-06; torch.compile runs
    it), with one PortableRunWarning; under jvp, whose rule it does not hold, inside vmap
    too, still a GuardError naming the Function (``variants[].vmap_rule_functions``)."""
    x = torch.tensor([[0.4, 1.6, -2.2], [2.7, -0.3, 0.5]])
    pkg = aotpack.compile(_rounds_batched, (x[0],), backend="eager" if backend == "eager" else RecordsInputs())
    assert pkg.manifest.variants[0].vmap_rule_functions == [f"{__name__}._BatchedRoundThrough"]
    fn = aotpack.load(pkg.to_bytes(), backends=[RecordsInputs()])
    with pytest.warns(aotpack.PortableRunWarning):
        got = torch.func.vmap(fn)(x)
    torch.testing.assert_close(got, torch.func.vmap(_rounds_batched)(x))
    ones = torch.ones(3)
    with pytest.raises(aotpack.GuardError, match=r"forward-mode tangent \(the program applies the custom"):
        torch.func.jvp(fn, (x[0],), (ones,))
    with pytest.raises(aotpack.GuardError, match=r"\(the program applies the custom autograd.Function"):
        torch.func.vmap(lambda a: torch.func.jvp(fn, (a,), (ones,))[1])(x)
    torch.testing.assert_close(fn(x[1]), _rounds_batched(x[1]))


def bump_through_reshape(x):
    y = x.reshape(-1)  # a view of a contiguous x, a copy of a transposed one
    y.add_(1)
    return y * 2


def bump_through_transposed_reshape(x):
    y = x.t().reshape(-1)  # a copy of a contiguous x, a view of a transposed one
    y.add_(1)
    return y * 2


def bump_through_contiguous(x):
    y = x.contiguous()  # x itself where x is contiguous: no op in the graph; a copy where not
    y.add_(1)
    return (y * 2).reshape(-1)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("program", [bump_through_reshape, bump_through_transposed_reshape, bump_through_contiguous])
def test_an_update_through_a_reshape_is_guarded_to_the_layout(program, train):
    """Whether an in-place update through ``reshape`` or ``contiguous()`` reaches the
    input depends on the input's layout. Until 2026-12-03 a call in another layout was
    copied into the compiled one (and, where the update did reach it at compile time,
    written back): ``x`` changed where eager's stayed, or stayed where eager's changed,
    silently. Now such a call is a GuardError naming the reason; the compiled layout
    equals eager."""
    w = torch.randn(24, requires_grad=train)
    wrapped = (lambda x, w: (program(x) * w).sum()) if train else (lambda x, w: program(x) * w)
    fn = aotpack.load(aotpack.compile(wrapped, (torch.randn(4, 6), w), backend="eager", train=train).to_bytes())
    other = torch.randn(6, 4)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].stride\(\).*(in-place update reaches it depends on its "
                                                 r"layout|calls contiguous\(\) on it)"):
        fn(other.t(), w)
    assert torch.equal(other, other.clone())  # (nothing ran)
    x = torch.randn(4, 6)
    x_eager = x.clone()
    torch.testing.assert_close(fn(x, w), wrapped(x_eager, w))
    assert torch.equal(x, x_eager)


def bump_channels_last(x):
    y = x.to(memory_format=torch.channels_last)  # x itself where x is channels_last, else a copy
    y.add_(1)
    return y * 2


def halve_unseen_and_return(x):
    with torch.no_grad():
        x.mul_(0.5)
    return x


def test_an_input_updated_in_a_no_grad_region_and_returned_is_the_callers_tensor():
    """Returned after an update inside ``torch.no_grad()``, x comes out of the region's op,
    not as the input itself: the package returned a new view with x's geometry (fuzzer
    seed 42), which under no_grad was a leaf of its own, so a backward through it left
    the caller's ``x.grad`` empty where eager's is filled. It is x itself now."""
    fn = aotpack.load(aotpack.compile(halve_unseen_and_return, (torch.randn(4, 6),), backend="eager").to_bytes())
    x = torch.randn(4, 6, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    with torch.no_grad():
        got, want = fn(x), halve_unseen_and_return(x_eager)
    assert got is x and want is x_eager and torch.equal(x, x_eager)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(x.grad, x_eager.grad)


def test_an_update_through_a_memory_format_conversion_is_guarded_to_the_layout():
    """``x.to(memory_format=torch.channels_last).add_(1)`` updates a copy of a contiguous
    x and x itself where x is channels_last: such a call, copied into the compiled
    layout, left the caller's x unchanged where eager's changed (until 2026-12-03)."""
    fn = aotpack.load(aotpack.compile(bump_channels_last, (torch.randn(2, 3, 4, 5),), backend="eager").to_bytes())
    x = torch.randn(2, 4, 5, 3).permute(0, 3, 1, 2)  # channels_last
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].stride\(\).*in-place update reaches it"):
        fn(x)
    x = torch.randn(2, 3, 4, 5)
    x_eager = x.clone()
    assert torch.equal(fn(x), bump_channels_last(x_eager)) and torch.equal(x, x_eager)


def corner_as_strided(x):
    return x.as_strided((2, 2), (1, 2)) * 1


def centered_as_strided(x):
    h = x - x.mean(-1, keepdim=True)  # laid out as x is (elementwise ops keep the input's strides)
    return h.as_strided((2, 2), (1, 2)) * 1


@pytest.mark.parametrize("program", [corner_as_strided, centered_as_strided])
def test_as_strided_of_an_input_is_guarded_to_the_layout(program):
    """``as_strided`` addresses memory: of a transposed input, or of a value computed from
    it (laid out as it is), it picks other elements than of the contiguous copy the
    package made of the input until 2026-12-03 (a silently different result; the second
    found by the fuzzer, seed 40). Such a call is now a GuardError naming as_strided."""
    fn = aotpack.load(aotpack.compile(program, (torch.randn(4, 6),), backend="eager").to_bytes())
    a = torch.arange(24.0).reshape(6, 4)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].stride\(\).*calls as_strided on"):
        fn(a.t())
    x = torch.randn(4, 6)
    assert torch.equal(fn(x), program(x))


# 2. requires_grad both ways -------------------------------------------------------------

def mul(x, y):
    return x * y


def test_requires_grad_guarded_both_ways_and_dispatched(tmp_path):
    x, y = torch.randn(4, requires_grad=True), torch.randn(4)
    pkg = aotpack.compile(mul, (x, y), backend="eager", train=True,
                          variants=[{"name": "both", "args": (x, y.clone().requires_grad_())}])
    fn = aotpack.load(pkg.save(tmp_path / "m.aot"))
    a, b = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    fn(a, b).sum().backward()  # runs "both": y's gradient is filled, as eager fills it
    torch.testing.assert_close(b.grad, a.detach())
    only = aotpack.load(tmp_path / "m.aot", variants=["default"])
    with pytest.raises(aotpack.GuardError, match=r"args\[1\]\.requires_grad: expected False \(no gradient was compiled"):
        only(torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True))
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.requires_grad: expected True"):
        only(torch.randn(4), torch.randn(4))
    with torch.no_grad():  # no autograd graph either way: any pattern runs the forward
        torch.testing.assert_close(only(a, b), a * b)


def branches_on_requires_grad(x):
    if x.requires_grad:
        return x * 2
    return x * 3


def branches_on_an_intermediate(x, y):
    h = x + y
    return h * 2 if h.requires_grad else h * 3


@pytest.mark.parametrize("program, n", [(branches_on_requires_grad, 1), (branches_on_an_intermediate, 2)])
def test_a_branch_on_requires_grad_is_guarded_under_no_grad_too(program, n):
    """Export keeps the branch of the example (requires_grad False); under no_grad a call
    with a tensor that requires grad would take the other branch in eager: refused, with
    the line, instead of the compiled branch's result."""
    fn = aotpack.load(aotpack.compile(program, tuple(torch.ones(3) for _ in range(n)), backend="eager").to_bytes())
    assert fn.manifest.format_version == aotpack.package.fmt.GRAD_MODE_AFTER_FORMAT_VERSION  # older readers refuse
    with torch.no_grad():
        torch.testing.assert_close(fn(*[torch.ones(3)] * n), program(*[torch.ones(3)] * n))
        wants_grad = [torch.ones(3, requires_grad=True)] + [torch.ones(3)] * (n - 1)
        with pytest.raises(aotpack.GuardError, match=r"args\[0\].requires_grad: expected False \(the program reads "
                                                     r".*requires_grad at .*test_contract.py:\d+"):
            fn(*wants_grad)


def test_a_program_that_reads_no_requires_grad_takes_any_pattern_under_no_grad():
    fn = aotpack.load(aotpack.compile(lambda x: x.sin(), (torch.ones(3),), backend="eager").to_bytes())
    assert fn.manifest.variants[0].inputs[0].requires_grad_pinned is None
    with torch.no_grad():
        fn(torch.ones(3, requires_grad=True))


# 3. custom autograd.Function ------------------------------------------------------------

class StraightThroughVjp(torch.autograd.Function):  # the gradient as ``vjp``, autograd's other name
    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def vjp(ctx, grad):
        return grad * 3


class MutatesTangent(torch.autograd.Function):  # test_aot_autograd's tangent_mutation
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        grad.mul_(2)
        return grad


class WithCustomGradients(torch.nn.Module):
    """A Linear, a straight-through rounding and BatchNorm (buffers updated in place);
    ``function=None``: every Function of this section in one program (the aoti case:
    one compile for the four)."""

    def __init__(self, function):
        super().__init__()
        self.lin, self.bn, self.function = torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), function

    def forward(self, x, y):
        if self.function is None:
            h = GradInputsAliasInputs.apply(x, y) + self.lin(x) * 3
            # (MutatesTangent's output scaled: its backward then updates a gradient of its own,
            # not the one a sum hands to every addend, which eager would change for all)
            h = StraightThrough.apply(h) + StraightThroughVjp.apply(h * 2) + MutatesTangent.apply(h) * 1.5 + y
        elif self.function is GradInputsAliasInputs:
            h = self.function.apply(x, y)
        else:
            h = self.function.apply(self.lin(x) * 3) + y
        return self.bn(h).tanh()


@pytest.mark.parametrize("function,backend", [
    *[(f, "eager") for f in (StraightThrough, StraightThroughVjp, MutatesTangent, GradInputsAliasInputs)],
    (None, "eager"), pytest.param(None, "aoti", marks=pytest.mark.slow, id="all-aoti")])
def test_custom_autograd_function_in_training_runs_its_backward(function, backend):
    """torch.export keeps a Function's forward and drops its backward; a training package
    traces the program itself for the joint graph, so the Function's own backward runs:
    gradients (of inputs and parameters) and buffers equal eager's."""
    torch.manual_seed(0)
    m, ref = WithCustomGradients(function).train(), WithCustomGradients(function).train()
    ref.load_state_dict(m.state_dict())
    x, y = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(m, (x, y), backend=backend, train=True).to_bytes(), module=m)
    got_in = [t.detach().clone().requires_grad_() for t in (x, y)]
    want_in = [t.detach().clone().requires_grad_() for t in (x, y)]
    fn(*got_in).sum().backward()
    ref(*want_in).sum().backward()
    for a, b in zip(got_in, want_in):
        torch.testing.assert_close(a.grad, b.grad)
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    torch.testing.assert_close(m.bn.running_mean, ref.bn.running_mean)


def custom_function_on_a_global(x):
    return StraightThrough.apply(x * _SCALE)


_SCALE = torch.tensor([1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("where", ["global", "closure", "helpers", pytest.param("both-aoti", marks=pytest.mark.slow)])
def test_custom_autograd_function_beside_a_frozen_global_or_closure_trains_as_eager(tmp_path, where):
    """The joint graph of a program with a custom Function is traced from the program
    itself, which reads a module global by name (or a tensor held in a closure): the trace
    puts the graph input there, and the global (the closure's cell) holds its tensor again
    after; also where helpers the program calls read them (until 2026-12-04 a helper's
    closure tensor was refused). Eager backend for each; aoti for the helpers (one compile)."""
    scale = torch.tensor([1.0, 2.0, 3.0, 4.0])

    def on_a_closure(x):
        return StraightThrough.apply(x * scale) * scale

    def on_both(x):  # the global and the closure read by helpers the program calls
        return on_a_closure(custom_function_on_a_global(x))

    program = {"global": custom_function_on_a_global, "closure": on_a_closure, "helpers": on_both,
               "both-aoti": on_both}[where]
    before_global, before_cell = _SCALE, scale
    x = torch.randn(4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(program, (x,), backend="aoti" if where == "both-aoti" else "eager",
                                      train=True).save(tmp_path / "g.aot"))
    assert _SCALE is before_global and on_a_closure.__closure__[0].cell_contents is before_cell
    got, want = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    a, b = fn(got), program(want)
    (a * torch.arange(4.0)).sum().backward()
    (b * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(got.grad, want.grad)


class FunctionBesideATensorAttribute(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a plain attribute: no parameter, no buffer

    def forward(self, x):
        return StraightThrough.apply(x * self.scale)


def test_custom_autograd_function_beside_a_tensor_attribute_trains_as_eager(tmp_path):
    """The trace that runs the Function's own backward passes a plain tensor attribute
    (no parameter, no buffer) its graph input as it does parameters (functional_call)."""
    m = FunctionBesideATensorAttribute()
    x = torch.randn(4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager", train=True).save(tmp_path / "f.aot"), module=m)
    got_x, want_x = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    got, want = fn(got_x), m(want_x)
    (got * torch.arange(4.0)).sum().backward()
    (want * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_x.grad, want_x.grad)
    m.scale = torch.tensor([4.0, 3.0, 2.0, 1.0])  # read at each call, as eager reads it
    torch.testing.assert_close(fn(x), m(x))


def test_custom_autograd_function_runs_in_inference(tmp_path):
    fn = aotpack.load(aotpack.compile(lambda x: StraightThrough.apply(x), (torch.randn(4),), backend="eager")
                      .save(tmp_path / "s.aot"))
    x = torch.randn(4) * 3
    torch.testing.assert_close(fn(x), x.round())


# 4. in-place updates through aliased inputs --------------------------------------------------

def add_into_first(a, b, w):
    a.add_(1)
    return (a + b) * w


@pytest.mark.parametrize("aliasing", ["same", "overlap"])
def test_inplace_through_aliased_inputs_in_training_equal_eager(tmp_path, aliasing):
    """The same tensor twice, or overlapping views, where a training program updates one:
    refused until 2026-12-03 (the stored program is functional); now run op by op from the
    program stored with its updates in order: eager's output, update and gradient."""
    w = torch.ones(3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(add_into_first, (torch.ones(3), torch.ones(3), w), backend="eager", train=True)
                      .save(tmp_path / "a.aot"))
    base, base_eager = torch.arange(4.0), torch.arange(4.0)
    views = (lambda t: (t[:3], t[:3])) if aliasing == "same" else (lambda t: (t[:3], t[1:]))
    w_eager = w.detach().clone().requires_grad_()
    with pytest.warns(aotpack.PortableRunWarning, match=r"args\[0\]"):
        out = fn(*views(base), w)
    want = add_into_first(*views(base_eager), w_eager)
    out.sum().backward()
    want.sum().backward()
    assert torch.equal(out, want) and torch.equal(base, base_eager) and torch.equal(w.grad, w_eager.grad)
    a, b = torch.ones(3), torch.ones(3)
    out = fn(a, b, w)
    assert out.tolist() == [3.0] * 3 and a.tolist() == [2.0] * 3  # eager's result when not aliased


def test_overlapping_updated_inputs_in_another_layout_train_as_eager(tmp_path):
    """An updated input that overlaps another and comes in another layout (a transposed
    view): the portable program's eager ops take it as it is (refused until 2026-12-03:
    the portable run took compiled layouts only)."""
    w = torch.ones(3, 3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(add_into_first, (torch.ones(3, 3), torch.ones(3, 3), w), backend="eager",
                                      train=True).save(tmp_path / "t.aot"))
    base, base_eager = torch.arange(16.0).reshape(4, 4), torch.arange(16.0).reshape(4, 4)
    w_eager = w.detach().clone().requires_grad_()
    with pytest.warns(aotpack.PortableRunWarning, match="shares memory"):
        out = fn(base.t()[:3, :3], base[1:, 1:], w)
    want = add_into_first(base_eager.t()[:3, :3], base_eager[1:, 1:], w_eager)
    (out * torch.arange(9.0).reshape(3, 3)).sum().backward()
    (want * torch.arange(9.0).reshape(3, 3)).sum().backward()
    assert torch.equal(out, want) and torch.equal(base, base_eager) and torch.equal(w.grad, w_eager.grad)


def second_updated_and_viewed(a, b):
    b.add_(1)
    return a * 2, b[1:]


def test_examples_that_are_views_of_one_tensor_compile_as_separate_inputs():
    """Example inputs sliced from one tensor: the package is for separate tensors, and
    the update and the output view belong to the second input (traced on one storage,
    both were credited to the first: the view was rebuilt from ``a``'s memory)."""
    x = torch.arange(20.0)
    fn = aotpack.load(aotpack.compile(second_updated_and_viewed, (x[:5], x[7:13]), backend="eager").to_bytes())
    assert torch.equal(x, torch.arange(20.0))  # the examples are left as they were
    assert fn.manifest.variants[0].mutated_inputs == [1]
    a, b = torch.randn(5), torch.randn(6)
    ref_a, ref_b = a.clone(), b.clone()
    got, want = fn(a, b), second_updated_and_viewed(ref_a, ref_b)
    assert all(map(torch.equal, got, want)) and torch.equal(b, ref_b)
    assert got[1].data_ptr() == b.data_ptr() + 4  # a view of b, as eager's
    with pytest.warns(aotpack.PortableRunWarning, match=r"args\[1\]"):  # b overlaps a: eager ops, in place
        x = torch.arange(20.0)
        got = fn(x[:5], x[4:10])
    y = torch.arange(20.0)
    want = second_updated_and_viewed(y[:5], y[4:10])
    assert torch.equal(x, y) and all(map(torch.equal, got, want)) and got[1].data_ptr() == x.data_ptr() + 20


def bump_then_stack(x, y):
    x.add_(1)
    return torch.cat([x, y])


def bump_then_mix(x, y):
    x.add_(1)
    return torch.cat([x, y]) @ torch.ones(6, 3)  # a matmul: bfloat16 under autocast


def test_overlapping_updated_inputs_under_autocast_equal_eager():
    """A package compiled under autocast has a functional graph (the autocast region was
    inlined by a retrace): read after x's update, y gives its value from before, which an
    overlap makes differ from eager (found by the fuzzer, seed 26; refused until
    2026-12-03). The package also stores the program from before the retrace, its
    updates in order, and runs such a call op by op: eager's values, dtype and update."""
    fn = aotpack.load(aotpack.compile(bump_then_mix, (torch.randn(4, 6), torch.randn(4, 6)), backend="eager",
                                      autocast=torch.bfloat16).to_bytes())
    base = torch.randn(5, 6)
    base_eager = base.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(aotpack.PortableRunWarning, match="shares memory with y"):
            got = fn(base[:4], base[1:])
        want = bump_then_mix(base_eager[:4], base_eager[1:])
    assert got.dtype == want.dtype == torch.bfloat16 and torch.equal(got, want) and torch.equal(base, base_eager)
    fn = aotpack.load(aotpack.compile(bump_then_stack, (torch.randn(4, 6), torch.randn(4, 6)), backend="eager",
                                      autocast=torch.bfloat16).to_bytes())
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(fn(x.clone(), y), bump_then_stack(x, y))


def halve_through_transpose(x, y):
    return x + 1, y.t().mul_(0.5)


def test_a_view_of_an_input_updated_under_autocast_is_a_view_of_the_callers_tensor():
    """Compiled under autocast, a program returning ``y.t().mul_(0.5)``: the autocast
    region's functional retrace computes that output from y's new value, no view of y,
    so the package returned a copy where eager returns a view of the caller's y (found by
    the fuzzer, seed 36). The views are read from the program before the retrace: the
    output is a view of y; a call with y in another layout runs the portable program from
    before the retrace on the caller's y (a GuardError until 2026-12-06): a view of it too."""
    fn = aotpack.load(aotpack.compile(halve_through_transpose, (torch.randn(4, 6), torch.randn(4, 6)),
                                      backend="eager", autocast=torch.bfloat16).to_bytes())
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    x_eager, y_eager = x.clone(), y.clone()
    base = torch.randn(4, 12)
    strided, strided_eager = base[:, ::2], base.clone()[:, ::2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = fn(x, y), halve_through_transpose(x_eager, y_eager)
        with pytest.warns(aotpack.PortableRunWarning):
            got_strided = fn(x.clone(), strided)
        want_strided = halve_through_transpose(x.clone(), strided_eager)
    assert all(map(torch.equal, got, want)) and torch.equal(y, y_eager)
    assert got[1].data_ptr() == y.data_ptr() and got[1].stride() == want[1].stride()
    assert all(map(torch.equal, got_strided, want_strided)) and torch.equal(strided, strided_eager)
    assert got_strided[1]._base is base and got_strided[1].stride() == want_strided[1].stride()


def test_an_updated_input_copied_into_layout_is_still_checked_for_overlap():
    """x compiled strided and updated in place, called contiguous and overlapping y: x is
    copied into its compiled layout (its update written back after), and the overlap
    check looked at that copy and passed; the package read y's old rows (found by the
    fuzzer, seed 26, after the write-back came). The overlap is checked on the caller's x,
    and such a call runs the portable program on the caller's x as it is (refused until
    2026-12-03, when the portable run took compiled layouts only): eager's result."""
    strided = torch.randn(4, 12)[:, ::2]
    fn = aotpack.load(aotpack.compile(bump_then_stack, (strided, torch.randn(4, 6)), backend="eager").to_bytes())
    base = torch.randn(5, 6)
    base_eager = base.clone()
    with pytest.warns(aotpack.PortableRunWarning, match="shares memory with y"):
        got = fn(base[:4], base[1:])
    assert torch.equal(got, bump_then_stack(base_eager[:4], base_eager[1:])) and torch.equal(base, base_eager)
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    x_eager = x.clone()
    torch.testing.assert_close(fn(x, y), bump_then_stack(x_eager, y))  # no overlap: copied and written back
    assert torch.equal(x, x_eager)


def test_portable_program_with_a_region_that_only_updates_in_place():
    """Such a region is written to program.json with no outputs, and torch 2.11-2.13 read
    it back without the value its verifier demands; the portable program (and a rebuild)
    read it now (found by the fuzzer)."""
    fn = aotpack.load(aotpack.compile(halves_under_no_grad, (torch.randn(3), torch.randn(3)), backend="eager")
                      .to_bytes())
    x = torch.arange(4.0)
    with pytest.warns(aotpack.PortableRunWarning):  # b overlaps a
        torch.testing.assert_close(fn(x[:3], x[1:]), torch.tensor([1.0, 1.5, 2.0]))  # a + 1 after b's update
    assert x.tolist() == [0.0, 0.5, 1.0, 1.5]


# 5. grad mode and module.training -------------------------------------------------------

def leaks_grad_mode(x):
    torch.set_grad_enabled(False)
    return x * 2


def enables_grad(x):
    torch.set_grad_enabled(True)
    return x + 1


@torch.no_grad()
def _helper(x):
    return x * 3


def scoped_grad_modes(x):
    with torch.set_grad_enabled(False):
        y = x + 1
    with torch.enable_grad():
        y = y * 2
    return _helper(y)


def test_scoped_grad_mode_changes_are_not_replayed():
    pkg = aotpack.compile(scoped_grad_modes, (torch.randn(3),), backend="eager")
    assert pkg.manifest.variants[0].global_state.grad_mode_after is None
    fn = aotpack.load(pkg.to_bytes())
    with torch.no_grad():
        fn(torch.randn(3))
        assert not torch.is_grad_enabled()
    fn(torch.randn(3))
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("program", [leaks_grad_mode, enables_grad])
def test_a_grad_mode_change_is_replayed_after_each_call(program, tmp_path):
    """As torch.compile: a program that leaves grad mode changed (set_grad_enabled without
    ``with``) leaves the package's caller in that mode too. The compiling process's own
    grad mode is untouched."""
    before = torch.is_grad_enabled()
    pkg = aotpack.compile(program, (torch.randn(3),), backend="eager")
    assert torch.is_grad_enabled() == before
    after = program is enables_grad
    assert pkg.manifest.variants[0].global_state.grad_mode_after is after
    assert pkg.manifest.format_version == aotpack.package.fmt.GRAD_MODE_AFTER_FORMAT_VERSION  # older readers refuse
    fn = aotpack.load(pkg.save(tmp_path / "g.aot"))
    for start in (True, False):
        x = torch.randn(3)
        try:
            torch.set_grad_enabled(start)
            want = program(x)
            eager_mode = torch.is_grad_enabled()
            torch.set_grad_enabled(start)
            got = fn(x)
            assert torch.is_grad_enabled() == eager_mode == after
        finally:
            torch.set_grad_enabled(True)
        torch.testing.assert_close(got, want)


def test_module_training_guarded_and_inference_variant_dispatched(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    x = torch.randn(2, 4)
    path = aotpack.compile(m.train(), (x,), backend="eager", train=True).save(tmp_path / "d.aot")
    aotpack.add_variant(path, m.eval(), (x,), variant="eval", backend="eager")
    fn = aotpack.load(path, module=m)
    m.eval()
    with torch.no_grad():  # the inference variant: no dropout
        torch.testing.assert_close(fn(x), m(x))
    m.train()
    torch.manual_seed(1)
    out = fn(x)
    torch.manual_seed(1)
    torch.testing.assert_close(out, m(x))
    assert out.grad_fn is not None
    only_train = aotpack.load(path, module=m, variants=["default"])
    m.eval()
    with pytest.raises(aotpack.GuardError, match=r"module.training: expected True \(compiled in training mode: call .train\(\) on it.*got False"):
        only_train(x)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_global_module_hooks_are_refused(tmp_path, backend):
    """A process-wide module hook runs at every module call in eager; compiled code makes
    none (torch.compile's result differs from eager's there): refused while one is
    registered, for a module's package, bound or not."""
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
        register_module_full_backward_hook,
    )

    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).requires_grad_(False)
    x = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(m, (x,), backend=backend).save(tmp_path / "m.aot"))
    # (a full backward hook, once registered, makes the process's global backward hooks
    # "full" for good: no test here registers the other kind)
    for register, kind in ((register_module_forward_hook, "a global forward hook"),
                           (register_module_forward_pre_hook, "a global forward pre-hook"),
                           (register_module_full_backward_hook, "a global backward hook")):
        handle = register(lambda mod, *args: None)
        try:
            with pytest.raises(aotpack.GuardError, match=f"global module hooks: expected none .* got {kind}"):
                fn(x)
        finally:
            handle.remove()
    torch.testing.assert_close(fn(x), m(x))


class PlusHundred(torch.Tensor):
    """A subclass whose __torch_function__ changes what mul returns."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out + 100 if func is torch.Tensor.mul else out


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_tensor_subclasses_that_override_torch_functions_are_refused(tmp_path, backend):
    """Eager runs a subclass's __torch_function__ at each op; the package's graph, traced
    on plain tensors, does not (it returned another number, as a plain tensor or as the
    subclass, until 2026-12-03). A Parameter computes as a plain tensor: it runs."""
    fn = aotpack.load(aotpack.compile(lambda x: x * 2, (torch.randn(3),), backend=backend).save(tmp_path / "s.aot"))
    x = torch.randn(3)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]: expected a torch.Tensor \(the package's graph was "
                                                 r"traced on plain tensors .* got a PlusHundred"):
        fn(x.as_subclass(PlusHundred))
    with torch.no_grad():
        torch.testing.assert_close(fn(torch.nn.Parameter(x)), x * 2)


def test_compiling_with_a_tensor_subclass_is_one_clear_capture_error():
    """An input of a subclass with its own __torch_function__ and no inner tensors, or a
    TwoTensor output of a class no input or weight has: the package could not run
    it as eager does, and compiling one failed with torch's raw RuntimeError in the
    package writer until 2026-12-04. (A TwoTensor *input* packages: test_subclasses.py.)"""
    with pytest.raises(aotpack.CaptureError, match=r"input x is a PlusHundred, a tensor subclass that runs its own "
                                                   r"__torch_dispatch__ or __torch_function__ at each op and is not made of"):
        aotpack.compile(lambda x: x * 2, (torch.randn(3).as_subclass(PlusHundred),), backend="eager")
    # a TwoTensor the program makes and returns, of a class no input and no weight has: a
    # package rebuilds no such class (a weight's class it does: test_subclass_weights.py)
    from torch.testing._internal.two_tensor import TwoTensor

    with pytest.raises(aotpack.CaptureError, match=r"returns a torch.testing._internal.two_tensor.TwoTensor, a "
                                                   r"tensor subclass that no input of the call and no module weight"):
        aotpack.compile(lambda x: TwoTensor(x.sin(), x * 2), (torch.randn(2, 4),), backend="eager")


def noisy(x):
    return x + torch.rand_like(x) * torch.randn(x.shape[0])


@pytest.mark.parametrize("backend", ["eager", "inductor", pytest.param("aoti", marks=pytest.mark.slow)])
def test_random_ops_draw_eagers_numbers(tmp_path, backend):
    """Under the same seed a package draws eager's random numbers and leaves the global
    generator where eager leaves it (aotpack compiles with inductor's fallback_random:
    inductor's own RNG drew other numbers in aoti packages, and failed to lower in
    inductor ones, until 2026-12-03)."""
    x = torch.zeros(5)
    fn = aotpack.load(aotpack.compile(noisy, (x,), backend=backend).save(tmp_path / "r.aot"))
    torch.manual_seed(0)
    got, got_next = fn(x), torch.rand(3)
    torch.manual_seed(0)
    want, want_next = noisy(x), torch.rand(3)
    assert torch.equal(got, want) and torch.equal(got_next, want_next)


@pytest.mark.slow
def test_dropout_in_training_draws_eagers_masks(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)).train()
    x = torch.randn(4, 8)
    fn = aotpack.load(aotpack.compile(m, (x,), train=True, backend="aoti").save(tmp_path / "d.aot"), module=m)
    results = []
    for run in (fn, m):
        m.zero_grad()
        torch.manual_seed(1)
        out = run(x)
        out.sum().backward()
        results.append((out.detach(), m[0].weight.grad.clone(), torch.rand(2)))
    (out, grad, after), (want, want_grad, want_after) = results
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(grad, want_grad)
    assert torch.equal(after, want_after)


# 6. inference packages and requires_grad ----------------------------------------------------

def test_inference_package_refuses_inputs_and_parameters_that_require_grad(tmp_path):
    m = torch.nn.Linear(4, 2)
    path = aotpack.compile(m, (torch.randn(3, 4),), backend="eager").save(tmp_path / "l.aot")
    fn = aotpack.load(path)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.requires_grad: expected False: an inference package"):
        fn(torch.randn(3, 4, requires_grad=True))
    bound = aotpack.load(path, module=m)
    with pytest.raises(aotpack.GuardError, match=r"module parameter 'weight'\.requires_grad: expected False"):
        bound(torch.randn(3, 4))
    x = torch.randn(3, 4, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(bound(x), m(x))
    m.requires_grad_(False)
    torch.testing.assert_close(bound(x.detach()), m(x))


class NoGradHead(torch.nn.Module):
    """A frozen feature extractor as people write it: the parameters keep requires_grad,
    the forward runs under no_grad, so eager's output requires no grad."""

    def __init__(self):
        super().__init__()
        self.body, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

    def forward(self, x):
        with torch.no_grad():
            features = self.body(x).relu()
        return features * 2, features.argmax(-1)


class DetachesInForward(torch.autograd.Function):  # its forward detaches; its output still requires grad
    @staticmethod
    def forward(ctx, x):
        return x.detach() * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class NonDifferentiable(torch.autograd.Function):  # marks its output: it requires no grad in eager
    @staticmethod
    def forward(ctx, x):
        out = x * 2
        ctx.mark_non_differentiable(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def detached_and_argmax(x, y):
    return x.detach() * y, (x * 2).argmax()


def through_detaching_function(x):
    return DetachesInForward.apply(x) + 1


def through_non_differentiable(x):
    return NonDifferentiable.apply(x) + 1


def test_a_bound_module_that_detaches_its_parameters_runs_under_grad_mode(tmp_path):
    """An inference package of a module whose forward uses its parameters under no_grad
    takes them requiring grad: eager's output requires no grad either (a GuardError until
    2026-12-05). Known from the autograd graph the capture's trace builds, so it holds for
    a capture with grad mode on; one under no_grad knows nothing and refuses as before."""
    m = NoGradHead()
    x = torch.randn(3, 4, requires_grad=True)
    path = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "h.aot")
    bound = aotpack.load(path, module=m)
    assert bound.manifest.variants[0].detached_weights == ["body.bias", "body.weight", "unused.bias", "unused.weight"]
    (out, top), (want, want_top) = bound(x), m(x)
    assert not out.requires_grad and not want.requires_grad
    torch.testing.assert_close(out, want)
    assert torch.equal(top, want_top)
    m.body.weight = torch.nn.Parameter(torch.randn(4, 4))  # followed, and still detached
    torch.testing.assert_close(bound(x)[0], m(x)[0])
    with torch.no_grad():
        under_no_grad = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "n.aot")
    assert not aotpack.load(under_no_grad).manifest.variants[0].detached_weights
    with pytest.raises(aotpack.GuardError, match=r"module parameter 'body.weight'\.requires_grad: expected False"):
        aotpack.load(under_no_grad, module=m)(x.detach())


@pytest.mark.parametrize("program, takes_grad", [
    (detached_and_argmax, [True, False]),  # y reaches the first output
    (through_detaching_function, [False]),  # the Function's output requires grad in eager
    (through_non_differentiable, [True]),
])
def test_an_inference_package_takes_a_detached_input_requiring_grad(program, takes_grad):
    examples = [torch.randn(3, requires_grad=True) for _ in takes_grad]
    fn = aotpack.load(aotpack.compile(program, tuple(examples), backend="eager").to_bytes())
    assert [g.detached for g in fn.manifest.variants[0].inputs] == takes_grad
    for k, takes in enumerate(takes_grad):
        args = [t.detach().clone().requires_grad_(j == k) for j, t in enumerate(examples)]
        if not takes:
            with pytest.raises(aotpack.GuardError, match=rf"args\[{k}\]\.requires_grad: expected False"):
                fn(*args)
            continue
        got, want = fn(*args), program(*args)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for g, w in zip(got, want):
            assert g.requires_grad == w.requires_grad
            torch.testing.assert_close(g, w.detach())


def looks_up(ids, table):
    return table[ids] * 2


# torch 2.11's inductor CPU kernels throw their check's exception where it cannot leave
# (an OpenMP region): the process aborts, as under torch.compile (pytorch/pytorch#195402,
# open; newer torch, here, raises it for these small kernels)
_ABORTS_ON_A_CHECK = pytest.mark.skipif(TORCH_BEFORE_2_13, reason="torch 2.11's inductor aborts the process on a "
                                                                  "failed check in its C++ kernels")


@_ABORTS_ON_A_CHECK
@pytest.mark.parametrize("backend", ["inductor", pytest.param("aoti", marks=pytest.mark.slow)])
def test_an_index_out_of_range_is_an_index_error_naming_the_bound(backend):
    """Eager raises IndexError for a token id past the table; compiled code's bounds
    check raised torch's RuntimeError naming a generated file (with a C++ stack from
    AOTInductor) until 2026-12-05: now one IndexOutOfRange, an IndexError too."""
    table = torch.randn(10, 4)
    fn = aotpack.load(aotpack.compile(looks_up, (torch.tensor([1, 2]), table), backend=backend).to_bytes())
    for bad in (torch.tensor([1, 12]), torch.tensor([-11, 0])):
        with pytest.raises(IndexError):
            looks_up(bad, table)
        with pytest.raises(aotpack.IndexOutOfRange, match=r"looks_up: an index the call computes is out of range "
                                                          r"\(the compiled code's bounds check: 0 <= index < 10\)") as info:
            fn(bad, table)
        assert isinstance(info.value, IndexError) and "\n" not in info.value.message
    torch.testing.assert_close(fn(torch.tensor([9, -10]), table), looks_up(torch.tensor([9, -10]), table))


def floor_divides(a, b):
    return a // b, a % b


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=_ABORTS_ON_A_CHECK)])
def test_an_integer_division_by_zero_is_a_runtime_error_saying_so(backend):
    """Eager raises ``RuntimeError: ZeroDivisionError``; inductor's check raised torch's
    RuntimeError naming ``inductor_cpu_throw_if_integer_div_error`` in a header until
    2026-12-05. Now one IntegerDivisionByZero, a RuntimeError too."""
    fn = aotpack.load(aotpack.compile(floor_divides, (torch.tensor([4, 5]), torch.tensor([2, 3])),
                                      backend=backend).to_bytes())
    bad = (torch.tensor([4, 5]), torch.tensor([2, 0]))
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        floor_divides(*bad)
    with pytest.raises(aotpack.IntegerDivisionByZero, match=r"floor_divides: the call divides integers by zero") as info:
        fn(*bad)
    assert isinstance(info.value, RuntimeError)
    good = (torch.tensor([7, -5]), torch.tensor([2, 3]))
    for g, w in zip(fn(*good), floor_divides(*good)):
        assert torch.equal(g, w)


# 7. proxy executor -------------------------------------------------------------------------

def qr_scale(x):
    return torch.linalg.qr(x)[0] * 2


@pytest.mark.slow
def test_aoti_graph_with_proxy_executor_op_runs(tmp_path):
    x = torch.randn(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pkg = aotpack.compile(qr_scale, (x,), backend="aoti")
    assert pkg.manifest.variants[0].meta.proxy_ops == ["aten::linalg_qr"]
    path = pkg.save(tmp_path / "qr.aot")
    assert aotpack.verify(path)["ok"]
    fn = aotpack.load(path)
    y = torch.randn(4, 4)
    torch.testing.assert_close(fn(y), qr_scale(y))


def test_verify_and_load_name_a_missing_custom_op(tmp_path):
    path = aotpack.compile(lambda x: x + 1, (torch.ones(2),), backend="eager").save(tmp_path / "f.aot")
    manifest = aotpack.inspect(path).manifest
    variant = manifest.variants[0].replace(meta=Meta(proxy_ops=["nosuchlib::frobnicate"]))
    assert any("nosuchlib::frobnicate" in p for p in incompatibilities(manifest, variant))


LIBRARY = """
import torch

@torch.library.custom_op("aotpack_test_lib::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2

@twice.register_fake
def _(x):
    return torch.empty_like(x)

# an op whose registered backward calls another op (only the backward graph has it)
@torch.library.custom_op("aotpack_test_lib::scale", mutates_args=())
def scale(x: torch.Tensor) -> torch.Tensor:
    return x * 3

@torch.library.custom_op("aotpack_test_lib::scale_grad", mutates_args=())
def scale_grad(g: torch.Tensor) -> torch.Tensor:
    return g * 3

for op in (scale, scale_grad):
    op.register_fake(lambda x: torch.empty_like(x))
scale.register_autograd(lambda ctx, g: scale_grad(g))
"""

LOAD_WITHOUT_AND_WITH_THE_LIBRARY = r"""
import json, sys, torch, aotpack
out = {}
try:
    aotpack.load(sys.argv[1])
except aotpack.IncompatibleError as e:
    out["without"] = str(e)
import aotpack_test_lib
out["with"] = aotpack.load(sys.argv[1])(torch.ones(3)).tolist()
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_a_custom_op_package_names_its_library_at_load(tmp_path, monkeypatch, backend):
    """A package whose graph calls a torch.library custom op needs the op's library
    imported where it loads: load is one IncompatibleError naming the op and the way out
    (until 2026-12-04 eager and inductor packages loaded, passed verify, and failed at the
    first call with torch's AttributeError); with the library imported, it runs."""
    (tmp_path / "aotpack_test_lib.py").write_text(LIBRARY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import aotpack_test_lib  # noqa: F401

    path = aotpack.compile(lambda x: torch.ops.aotpack_test_lib.twice(x).sin(), (torch.ones(3),),
                           backend=backend).save(tmp_path / "lib.aot")
    assert aotpack.inspect(path).manifest.variants[0].meta.ops() == ["aotpack_test_lib::twice"]
    out = json.loads(run_fresh(["-c", LOAD_WITHOUT_AND_WITH_THE_LIBRARY, str(path)],
                               env={"PYTHONPATH": os.pathsep.join(  # (beside an aotpack found by the path)
                                   [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
                               ).stdout.strip().splitlines()[-1])
    assert "ops: the variant calls aotpack_test_lib::twice, not registered in this process" in out["without"]
    assert "hint: import the library that registers those ops" in out["without"]
    torch.testing.assert_close(torch.tensor(out["with"]), (torch.ones(3) * 2).sin())




def test_a_training_package_names_the_library_ops_its_backward_calls(tmp_path, monkeypatch):
    """A custom op's backward may call an op the forward does not: the training package
    lists it too, so a process without its library is refused at load, not at backward
    with torch's AttributeError (until 2026-12-04 only the forward's ops were listed)."""
    (tmp_path / "aotpack_test_lib.py").write_text(LIBRARY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import aotpack_test_lib  # noqa: F401

    x = torch.ones(3, requires_grad=True)
    pkg = aotpack.compile(lambda x: torch.ops.aotpack_test_lib.scale(x).sin(), (x,), train=True, backend="eager")
    assert pkg.manifest.variants[0].meta.ops() == ["aotpack_test_lib::scale", "aotpack_test_lib::scale_grad"]
    fn = aotpack.load(pkg.to_bytes())
    fn(x).sum().backward()
    torch.testing.assert_close(x.grad, (x.detach() * 3).cos() * 3)


# 8. side effects and frozen values ----------------------------------------------------------

LOG: list = []
SCALE = 3.0


def _scaled(x):
    return x * SCALE


def chatty(x):
    print("called")
    LOG.append(1)
    torch._dynamo.graph_break()
    return _scaled(x)


def test_side_effects_warn_with_file_line_and_helper_globals_are_frozen():
    with pytest.warns(aotpack.SideEffectWarning) as record:
        pkg = aotpack.compile(chatty, (torch.randn(3),), backend="eager")
    messages = [str(w.message) for w in record]
    for what in ("print()", "list.append on the global `LOG`", "torch._dynamo.graph_break()"):
        assert any(re.search(rf"test_contract.py:\d+: {re.escape(what)}", m) for m in messages), (what, messages)
    frozen = {(f.name, f.value) for f in pkg.manifest.program.frozen}
    assert ("SCALE", "3.0") in frozen  # read by a helper, not by chatty itself


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.log: list = []

    def forward(self, x):
        self.calls += 1
        self.log.append(x.shape[0])
        return x * random.random() + time.perf_counter() * 0


def test_module_attribute_updates_and_values_read_from_the_world_warn():
    """What eager redoes at every call and a package cannot: an attribute of the module
    set, a list attribute appended to, a random number or a clock read."""
    with pytest.warns(aotpack.SideEffectWarning) as record:
        aotpack.compile(Counting(), (torch.randn(3),), backend="eager")
    messages = [str(w.message) for w in record]
    for what in ("setting the attribute `self.calls` of Counting ran once", "list.append on the attribute `self.log`",
                 "random.random() ran once at capture: the package holds the value",
                 "time.perf_counter() ran once at capture"):
        assert any(re.search(rf"test_contract.py:\d+: {re.escape(what)}", m) for m in messages), (what, messages)


CALLS = 0


class _Stats:
    def __init__(self):
        self.hits = 0


STATS = _Stats()


def counts_globally(x):
    global CALLS
    CALLS += 1
    STATS.hits += 1
    return x * 2


def reassigns_globally(x):
    global CALLS
    CALLS = CALLS  # (the value it held: nothing changes)
    return x * 2


def _counting_closure():
    seen = 0

    def counts(x):
        nonlocal seen
        seen += 1
        return x * 2
    return counts


def test_assigning_a_global_a_closure_variable_or_a_plain_objects_attribute_warns():
    """``global CALLS; CALLS += 1``, ``nonlocal seen; seen += 1`` and ``STATS.hits += 1``
    are stores no call hook sees: each is a side effect the package does not replay,
    warned with its line (until 2026-12-07 none was, and the counts stayed where capture
    left them, silently); one that assigns what was there (a cache set to itself) is none."""
    for program, what in ((counts_globally, "assigning the global `CALLS`"),
                          (counts_globally, "changing the attributes of the global `STATS` in place"),
                          (_counting_closure(), "assigning the closure variable `seen`")):
        with pytest.warns(aotpack.SideEffectWarning) as record:
            aotpack.compile(program, (torch.randn(3),), backend="eager")
        messages = [str(w.message) for w in record]
        assert any(re.search(rf"test_contract.py:\d+: {re.escape(what)}", m) for m in messages), (what, messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SideEffectWarning)
        aotpack.compile(reassigns_globally, (torch.randn(3),), backend="eager")


STEPS = itertools.count()
SCHEDULE = iter([1.0, 0.5, 0.25, 0.125])


def _doubling():
    k = 1.0
    while True:
        yield k
        k *= 2


DOUBLING = _doubling()
LOOKED_AT = iter([3.0])
RATES = map(float, [1, 2, 3])  # (its position is that of the list's iterator it draws from)
PAIRS = zip(iter([1.0, 2.0]), iter([3.0, 4.0]))


def takes_the_next_step(x):
    return x * next(STEPS) + next(SCHEDULE)


def takes_the_next_doubling(x):
    return x * next(DOUBLING)


def takes_the_next_rate_and_pair(x):
    a, b = next(PAIRS)
    return x * next(RATES) + a * b


def looks_at_an_iterator(x):
    return x * 2 if LOOKED_AT is not None else x


@pytest.mark.parametrize("program,name", [(takes_the_next_step, "STEPS"), (takes_the_next_step, "SCHEDULE"),
                                          (takes_the_next_doubling, "DOUBLING"),
                                          (takes_the_next_rate_and_pair, "RATES"),
                                          (takes_the_next_rate_and_pair, "PAIRS")])
def test_advancing_a_global_iterator_warns(program, name):
    """``next(STEPS)`` on an ``itertools.count``, a list's iterator or a generator held
    as a global: eager takes the next item at each call, the package holds the item of
    capture. No hook sees a builtin's arguments, so the iterators the program's code
    names are compared where they stand before and after the run: one advanced is a
    side effect, warned with the function (until 2026-12-07 it was frozen silently; a
    ``map`` or ``zip``, by the iterators it draws from, until later that day); one only
    read is none."""
    with pytest.warns(aotpack.SideEffectWarning) as record:
        aotpack.compile(program, (torch.randn(3),), backend="eager")
    messages = [str(w.message) for w in record]
    assert any(re.search(rf"test_contract.py:\d+: advancing the iterator the global `{name}` \(`next\(\)` in "
                         rf"`{program.__name__}`", m) for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SideEffectWarning)
        aotpack.compile(looks_at_an_iterator, (torch.randn(3),), backend="eager")


def reseeds(x):
    torch.manual_seed(0)
    return x + torch.rand(3)


def sets_deterministic(x):
    torch.use_deterministic_algorithms(True)
    return x * 2


def sets_matmul_precision(x):
    torch.set_float32_matmul_precision("medium")
    return x * 2


def sets_threads(x):
    torch.set_num_threads(1)
    return x * 2


def sets_cudnn_benchmark(x):
    torch.backends.cudnn.benchmark = True
    return x * 2


def sets_conv_precision(x):
    torch.backends.mkldnn.conv.fp32_precision = "tf32"
    return x * 2


@pytest.mark.parametrize(("program", "called"), [(reseeds, "torch.manual_seed()"),
                                                 (sets_deterministic, "torch.use_deterministic_algorithms()"),
                                                 (sets_matmul_precision, "torch.set_float32_matmul_precision()"),
                                                 (sets_threads, "torch.set_num_threads()"),
                                                 (sets_cudnn_benchmark, "setting torch.backends.cudnn.benchmark"),
                                                 (sets_conv_precision,
                                                  "setting torch.backends.mkldnn.conv.fp32_precision")])
def test_setting_torchs_process_wide_state_warns(program, called):
    """A program that reseeds torch's generator or sets a process-wide setting: eager
    does it at every call (a reseed gives the same numbers each call), the package ran it
    once, at capture. A SideEffectWarning names the call and the line (until 2026-12-07
    none: the package drew other random numbers than eager, silently; ``torch.manual_seed``
    is wrapped by torch.export's trace, seen through its wrapper). So for a flag of
    ``torch.backends`` (``torch.backends.cudnn.benchmark = True``)."""
    state = (torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision(),
             torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.backends.mkldnn.conv.fp32_precision)
    try:
        with pytest.warns(aotpack.SideEffectWarning) as record:
            fn = aotpack.load(aotpack.compile(program, (torch.zeros(3),), backend="eager").to_bytes())
    finally:
        torch.use_deterministic_algorithms(state[0])
        torch.set_float32_matmul_precision(state[1])
        torch.set_num_threads(state[2])
        torch.backends.cudnn.benchmark = state[3]
        torch.backends.mkldnn.conv.fp32_precision = state[4]
    messages = [str(w.message) for w in record]
    assert any(re.search(rf"test_contract.py:\d+: {re.escape(called)} ran once at capture", m) for m in messages), messages
    if program is reseeds:  # (what the warning is for: eager reseeds, the package draws on)
        torch.manual_seed(1)
        assert not torch.equal(fn(torch.zeros(3)), reseeds(torch.zeros(3)))


def forces_of(pos):
    pos.requires_grad_(True)  # (on the caller's tensor: eager leaves it requiring grad)
    return -torch.autograd.grad((pos ** 2).sum(), pos)[0]


def forces_of_a_copy(pos):
    pos = pos.detach().requires_grad_(True)
    return -torch.autograd.grad((pos ** 2).sum(), pos)[0]


def test_setting_requires_grad_on_an_input_warns():
    """``pos.requires_grad_()`` on an input (a forces program): eager leaves the caller's
    tensor requiring grad after the call, the package leaves it as it was: a
    SideEffectWarning naming the input (unwarned until 2026-12-07); on a copy it makes,
    nothing is warned, and both give eager's forces."""
    with pytest.warns(aotpack.SideEffectWarning, match=r"the program set requires_grad on its input pos"):
        fn = aotpack.load(aotpack.compile(forces_of, (torch.randn(4, 3),), backend="eager").to_bytes())
    pos = torch.randn(4, 3)
    torch.testing.assert_close(fn(pos), forces_of(pos.clone()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SideEffectWarning)
        fn = aotpack.load(aotpack.compile(forces_of_a_copy, (torch.randn(4, 3),), backend="eager").to_bytes())
    torch.testing.assert_close(fn(pos), forces_of_a_copy(pos))


MEAN = np.array([1.0, 2.0, 3.0], dtype=np.float32)  # (a normalization constant as a numpy global)


class SubtractsMean(torch.nn.Module):
    def forward(self, x):
        return x - torch.from_numpy(MEAN)


def test_a_numpy_array_global_is_warned_of_as_compiled_in():
    """``torch.from_numpy(MEAN)`` of a numpy array global: the trace makes a constant of
    its values, so the package, bound or not, keeps them where eager reads the array at
    each call (a change in place). Capture warns naming the global (until 2026-12-07
    the bound package ran the old values, silently)."""
    model = SubtractsMean()
    with pytest.warns(aotpack.SideEffectWarning, match=r"the numpy array global MEAN read by `forward` in "
                                                       r".*test_contract.py is compiled in"):
        fn = aotpack.load(aotpack.compile(model, (torch.zeros(3),), backend="eager").to_bytes(), module=model)
    MEAN[0] = 10.0
    try:
        assert not torch.equal(fn(torch.zeros(3)), model(torch.zeros(3)))  # (what the warning is for)
    finally:
        MEAN[0] = 1.0


class EncodesPadded(torch.nn.Module):
    def __init__(self, nested: bool):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)

    def forward(self, x, padding):
        return self.encoder(x, src_key_padding_mask=padding)


def test_a_transformer_encoders_nested_fast_path_is_warned_of():
    """``torch.nn.TransformerEncoder`` given a ``src_key_padding_mask``, in eval mode under
    ``no_grad``: eager runs its nested-tensor fast path, which returns 0 at the padded
    positions, a path torch's code leaves out under tracing (torch.compile computes them
    too). Capture warns with the user's line; the other positions are eager's; built
    with ``enable_nested_tensor=False``, eager's every number is the package's, and
    nothing is warned (until 2026-12-07 the padded positions differed, silently)."""
    torch.manual_seed(0)
    x, padding = torch.randn(2, 5, 8), torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    for nested in (True, False):
        model = EncodesPadded(nested).eval()
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn = aotpack.load(aotpack.compile(model, (x, padding), backend="eager").to_bytes())
            got, want = fn(x, padding), model(x, padding)
        told = [str(w.message) for w in caught if w.category is aotpack.SideEffectWarning]
        kept = ~padding
        torch.testing.assert_close(got[kept], want[kept])
        if nested:
            assert any(re.search(r"test_contract.py:\d+: torch.nn.TransformerEncoder with a src_key_padding_mask "
                                 r"runs, in eager, its nested-tensor fast path", m) for m in told), told
            assert torch.equal(want[padding], torch.zeros_like(want[padding]))  # (eager's fast path)
            assert not torch.equal(got[padding], want[padding])
        else:
            assert not told
            torch.testing.assert_close(got, want)


def test_side_effects_inside_torch_containers_warn():
    """The user's modules that torch's own modules call (nn.Sequential's forward) are
    the program too: their side effects warn (they were missed until 2026-12-03)."""
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), Counting()).requires_grad_(False)
    with pytest.warns(aotpack.SideEffectWarning) as record:
        aotpack.compile(m, (torch.randn(2, 3),), backend="eager")
    messages = [str(w.message) for w in record]
    assert any(re.search(r"test_contract.py:\d+: setting the attribute `self.calls` of Counting", m)
               for m in messages), messages


def test_local_lists_are_not_side_effects():
    def collects(x):
        parts = []
        for i in range(3):
            parts.append(x * i)
        return torch.stack(parts)

    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SideEffectWarning)
        aotpack.compile(collects, (torch.randn(3),), backend="eager")


def prints_its_rows(x):
    print(f"rows: {x.shape[0]}")
    return x * 2


def test_a_dynamic_capture_prints_as_its_trace_alone(capsys):
    """A program that prints is traced once (a SideEffectWarning says the package will
    not print); the graph-beside-eager check's runs of the program, at the example and at
    another size, print nothing (each printed until 2026-12-07: three prints)."""
    with pytest.warns(aotpack.SideEffectWarning, match=r"print\(\)"):
        fn = aotpack.load(aotpack.compile(prints_its_rows, (torch.ones(4, 3),), backend="eager",
                                          dynamic={"x": {0: torch.export.Dim("rows")}}).to_bytes())
    assert capsys.readouterr().out.count("rows:") == 1
    assert torch.equal(fn(torch.ones(6, 3)), torch.full((6, 3), 2.0))


def warns_and_reads_its_rows_type(x):
    warnings.warn("rows are read", stacklevel=1)
    rows = x.shape[0]
    return x * (rows if type(rows) is int else 2)


def test_a_warning_the_program_raises_is_a_side_effect_and_the_eager_check_still_runs():
    """``warnings.warn`` in the program warns once, at capture; eager warns at each call,
    the package never: a SideEffectWarning says so with the line (until 2026-12-07 none
    did). The graph-beside-eager check still runs such a program (its runs warn nothing)
    and finds what it would find in one that does not warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(aotpack.CaptureError, match=r"at x.shape\[0\] = 3 \(the example's 2\)"):
            aotpack.compile(warns_and_reads_its_rows_type, (torch.ones(2, 3),), backend="eager",
                            dynamic={"x": {0: aotpack.Dim("rows", max=64)}})
    effects = [str(w.message) for w in caught if w.category is aotpack.SideEffectWarning]
    assert any("warnings.warn() ran once at capture" in e and "test_contract.py:" in e for e in effects), effects
    assert [str(w.message) for w in caught if w.category is UserWarning] == ["rows are read"]


COLLECTIONS = []


class Finalized:
    def __del__(self):
        COLLECTIONS.append(time.perf_counter())


def on_finalize():
    COLLECTIONS.append(time.perf_counter())


def collects_garbage(x):
    Finalized()  # (its __del__ runs here, amid the program)
    weakref.finalize(Finalized(), on_finalize)  # (and the finalizer, as the object goes)
    gc.collect()  # (and the collector's callbacks)
    return x * 2


def test_what_python_runs_amid_the_program_is_not_its_side_effect():
    """A garbage collector's callback (hypothesis times collections with one reading
    ``time.perf_counter()``), a ``__del__`` and a weakref finalizer run amid the program, not
    for it: no SideEffectWarning names them (until 2026-12-07 one did, and capture skipped
    its check of the graph beside eager for such a 'side effect')."""
    def callback(phase, info):
        COLLECTIONS.append(time.perf_counter())

    gc.callbacks.append(callback)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", aotpack.SideEffectWarning)
            aotpack.compile(collects_garbage, (torch.randn(3),), backend="eager")
    finally:
        gc.callbacks.remove(callback)
    assert len(COLLECTIONS) >= 3  # (they ran)


# 9. in-place updates eager accepts -------------------------------------------------------------

def truncates(x):
    x.trunc_()
    return x * 2


def test_inplace_updates_refused_truthfully_with_file_line(tmp_path):
    """What eager refuses is refused, with the line; the rest runs (an updated parameter
    and a non-leaf input that requires grad: tests/packages/test_training.py)."""
    with pytest.raises(aotpack.CaptureError, match=r"test_contract.py:\d+: `x.trunc_\(\)`: a leaf Variable that "
                                                   r"requires grad .*\(eager PyTorch refuses it too\)"):
        aotpack.compile(truncates, (torch.randn(3, requires_grad=True),), backend="eager", train=True)
    # an inference package updates the caller's tensor in place, as eager (test_aot_autograd_programs.py)
    fn = aotpack.load(aotpack.compile(truncates, (torch.randn(3),), backend="eager").save(tmp_path / "t.aot"))
    mine, theirs = torch.randn(3) * 4, None
    theirs = mine.clone()
    torch.testing.assert_close(fn(mine), truncates(theirs))
    torch.testing.assert_close(mine, theirs)


# 10. sparse ----------------------------------------------------------------------------------------

def test_sparse_input_to_dense_package_refused(tmp_path):
    fn = aotpack.load(aotpack.compile(affine, (torch.randn(2, 2),), backend="eager").save(tmp_path / "s.aot"))
    sparse = torch.eye(2).to_sparse()
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.layout: expected torch.strided"):
        fn(sparse)
    with pytest.raises(aotpack.CaptureError, match="sparse_coo tensor"):
        aotpack.compile(affine, (sparse,), backend="eager")


def test_variant_compiled_for_the_callers_layout_runs_without_a_copy(tmp_path):
    pkg = aotpack.compile(affine, (torch.randn(4, 6),), backend="eager",
                          variants=[{"name": "t", "args": (transposed(),)}])
    fn = aotpack.load(pkg.save(tmp_path / "two.aot"))
    calls = []
    for v in fn._variants:
        inner = v.fn
        v.fn = lambda flat, inner=inner, name=v.name: calls.append((name, flat[0].stride())) or inner(flat)
    x = transposed()
    torch.testing.assert_close(fn(x), affine(x))
    torch.testing.assert_close(fn(x.contiguous()), affine(x))
    assert calls == [("t", (1, 4)), ("default", (6, 1))]  # each ran its own layout, no copy


class _Accumulator(torch.nn.Module):
    """A buffer the program updates in place (the mechanism of a static KV cache)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(4))

    def forward(self, x):
        self.seen.add_(x.sum(0))
        return x * 2 + self.seen


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_buffer_updated_in_place_is_state_like_eager(tmp_path, backend):
    """Eager updates the module's buffer at every call; the package does the same to
    its own copy (Loaded.state), or to the bound module's buffer with module=."""
    xs = [torch.randn(3, 4) for _ in range(3)]
    path = aotpack.compile(_Accumulator(), (xs[0],), backend=backend).save(tmp_path / "acc.aot")
    ref = _Accumulator()
    expected = [ref(x) for x in xs]
    fn = aotpack.load(path)
    for x, want in zip(xs, expected):
        torch.testing.assert_close(fn(x), want)
    torch.testing.assert_close(fn.state["seen"], ref.seen)
    other = aotpack.load(path)  # another load starts from the stored value
    torch.testing.assert_close(other(xs[0]), expected[0])
    fn.reset_state()
    torch.testing.assert_close(fn.state["seen"], torch.zeros(4))
    bound = _Accumulator()
    with torch.no_grad():
        fn_bound = aotpack.load(path, module=bound)
        for x, want in zip(xs, expected):
            torch.testing.assert_close(fn_bound(x), want)
    torch.testing.assert_close(bound.seen, ref.seen)  # the module's own buffer, as eager


# views whose size follows the call's Dims ------------------------------------------------

def split_rest(x):
    head, rest = torch.split(x, [2, x.shape[0] - 2])  # split_with_sizes of a dynamic size
    return head * 2, rest, x.t()[1:]


CALLS_SPLIT = r"""
import os, sys, torch, aotpack
sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]  # this folder, then tests/ (programs.py)
from test_contract import split_rest
fn = aotpack.load(sys.argv[1])
for rows, cols in ((4, 5), (7, 5), (40, 5)):
    x = torch.randn(rows, cols)
    got, want = fn(x), split_rest(x)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.stride() == w.stride() and torch.equal(g, w), (rows, g.shape, w.shape)
    assert got[1].data_ptr() == want[1].data_ptr() and got[2].data_ptr() == want[2].data_ptr()
    got[1].fill_(7.0)  # the caller's x changes through the view, as eager's
    assert (x[2:] == 7.0).all()
print("ok")
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_views_whose_size_follows_a_dim_are_views_of_the_callers_tensor(tmp_path, backend):
    dynamic = {"x": {0: aotpack.Dim("rows", min=4, max=64)}}  # (3: aoti's export guards rows - 2 != 1)
    path = aotpack.compile(split_rest, (torch.randn(6, 5),), backend=backend, dynamic=dynamic).save(tmp_path / "s.aot")
    assert aotpack.inspect(path).manifest.format_version == 5  # a version 4 reader could not rebuild them
    import os

    assert run_fresh(["-c", CALLS_SPLIT, str(path), os.path.dirname(os.path.abspath(__file__))]).stdout.strip() == "ok"


def bump_y_read_x(x, y):
    y.add_(1.0)
    return x[[0, 2]]


def test_an_input_written_in_place_beside_its_twin_in_another_layout_runs_as_eager(tmp_path):
    """Found by the fuzzer (seed 31337): x compiled transposed, y written in place; called
    with one contiguous tensor as both, x was copied into the compiled layout first, and
    the check that y shares memory with no other input compared it with that copy: the
    package returned x without y's update, eager with it. Such a call runs the portable
    program on the caller's tensors as they are (refused until 2026-12-03): eager's result."""
    example = (torch.randn(6, 4).t(), torch.randn(4, 6))
    fn = aotpack.load(aotpack.compile(bump_y_read_x, example, backend="eager").save(tmp_path / "b.aot"))
    t = torch.randn(4, 6)
    t_eager = t.clone()
    with pytest.warns(aotpack.PortableRunWarning, match="shares memory with"):
        got = fn(t, t)
    assert torch.equal(got, bump_y_read_x(t_eager, t_eager)) and torch.equal(t, t_eager)
    a, b = torch.randn(4, 6), torch.randn(4, 6)  # separate tensors: x copied, y updated in place, as eager
    want_b = b + 1
    torch.testing.assert_close(fn(a, b), a[[0, 2]])
    torch.testing.assert_close(b, want_b)


def branch_on_rows(x, y):
    m = y @ x[1:].t()  # (rows, rows - 1)
    return y @ m.t() if y.shape[1] == m.shape[1] else y.sin()  # the first branch at 7 rows alone


def test_a_branch_on_a_dynamic_size_excludes_the_sizes_of_the_other_branch(tmp_path):
    """A program that branches on a size (``rows - 1 == 6``): torch.export, left to decide
    the Dim, drops that guard, and the package ran the other branch's graph at 7 rows, a
    result of another shape than eager's (the differential fuzzer, seed 45). The Dim now
    excludes 7, with a warning, and keeps the sizes beyond it (format version 10; it was
    narrowed to 3..6 before)."""
    rows = torch.export.Dim("rows", min=2, max=16)
    with pytest.warns(aotpack.SpecializationWarning, match=r"rows runs 3\.\.16 except 7 of the 2\.\.16 asked"):
        pkg = aotpack.compile(branch_on_rows, (torch.randn(4, 6), torch.randn(4, 6)), backend="eager",
                              dynamic={"x": {0: rows}, "y": {0: rows}})
    assert pkg.manifest.format_version == 10 and pkg.manifest.variants[0].dims["rows"].exclude == [7]
    fn = aotpack.load(pkg.save(tmp_path / "b.aot"))
    for n in (3, 6, 8, 16):
        x, y = torch.randn(n, 6), torch.randn(n, 6)
        torch.testing.assert_close(fn(x, y), branch_on_rows(x, y))
    for n in (7, 2, 17):  # 7: the other branch; 2: x[1:] of one row, a size torch.export treats apart
        with pytest.raises(aotpack.GuardError, match=rf"args\[0\]\.shape\[0\]: expected rows in 3\.\.16 except 7, got {n}"):
            fn(torch.randn(n, 6), torch.randn(n, 6))


def test_a_dims_exclusions_need_format_version_10_and_sizes_inside_its_range(tmp_path):
    """An excluded size is format version 10: a reader of version 9 would run it, so the
    package says it needs 10 (older readers refuse newer versions), and a manifest that
    excludes sizes at a lower version, or sizes outside the Dim's range, is refused at load."""
    from aotpack.package.manifest import Dim as DimRecord

    rows = torch.export.Dim("rows", min=2, max=16)
    with pytest.warns(aotpack.SpecializationWarning):
        pkg = aotpack.compile(branch_on_rows, (torch.randn(4, 6), torch.randn(4, 6)), backend="eager",
                              dynamic={"x": {0: rows}, "y": {0: rows}})
    assert pkg.manifest.format_version == 10
    variant = pkg.manifest.variants[0]
    for dim, version in ((variant.dims["rows"], 9), (DimRecord(min=3, max=16, exclude=[16]), 10),
                         (DimRecord(min=3, max=16, exclude=[9, 8]), 10)):
        bad = pkg.manifest.replace(format_version=version,
                                   variants=[variant.replace(dims={"rows": dim})])
        with pytest.raises(aotpack.FormatError, match=r"dims\['rows'\]\.exclude"):
            bad.checked()


def first_rows(x, y):
    return (x[:3] * 2 if x.shape[0] > 2 else x.sin()), y + 1


def test_a_dims_range_is_what_every_input_of_it_allows(tmp_path):
    """Left to decide the Dims, torch.export gives each input's size its own range: x's
    from 3 (the branch), y's from 2. The Dim took the range of the last input, and the
    package ran x's branch at 2 rows, where eager takes the other (fuzz seed 45)."""
    rows = torch.export.Dim("rows", min=2, max=16)
    with pytest.warns(aotpack.SpecializationWarning, match=r"rows runs 3\.\.16 of the 2\.\.16 asked"):
        pkg = aotpack.compile(first_rows, (torch.randn(4, 6), torch.randn(4, 6)), backend="eager",
                              dynamic={"x": {0: rows}, "y": {0: rows}})
    fn = aotpack.load(pkg.save(tmp_path / "r.aot"))
    x, y = torch.randn(5, 6), torch.randn(5, 6)
    torch.testing.assert_close(fn(x, y), first_rows(x, y))
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.shape\[0\]: expected rows in 3\.\.16, got 2"):
        fn(torch.randn(2, 6), torch.randn(2, 6))


def window_of_rows(x):
    rows = x.shape[0]
    return x[max(rows - 4, 0):].sum(0) + x[:min(rows, 6)].mean(0)


def window_before(x, n):
    return x[max(n - 4, 0):n].sum(0) + x[:min(n, 6)].mean(0)


@pytest.mark.parametrize("case", ["rows 1..64", "rows 1..", "int n 1..16"])
def test_a_window_cut_with_max_and_min_of_a_dim_keeps_its_range(case):
    """``x[max(n - 4, 0):n]`` (a sliding window; and ``x[:min(n, 6)]``): torch.export's
    guards on such a Dim hold ``max(0, n - 4)``, which its solver cannot prove over the
    range, and until 2026-12-07 the package kept the example's size alone (``rows runs
    9..9 of the 1..64 asked``: every other size a GuardError, where torch.compile runs
    them). Each such guard is now tried at every size of the range (without a bound, up
    to past its last bend), and the Dim keeps the sizes where all hold: 2 and on (1 is a
    size torch.export treats apart, as before, with a warning)."""
    if case.startswith("int"):
        program, x = window_before, torch.randn(16, 3)
        example, dynamic = (x, 9), {"n": aotpack.Dim("n", min=1, max=16)}
        call = lambda size: (x, size)  # noqa: E731
        sizes, name = range(2, 17), "n"
    else:
        program, example = window_of_rows, (torch.randn(9, 3),)
        bounded = case == "rows 1..64"
        dynamic = {"x": {0: aotpack.Dim("rows", min=1, max=64 if bounded else None)}}
        call = lambda size: (torch.randn(size, 3),)  # noqa: E731
        sizes, name = [2, 3, 4, 5, 6, 7, 9, 30, 64], "rows"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", aotpack.SpecializationWarning)  # (the 1 torch treats apart)
        fn = aotpack.load(aotpack.compile(program, example, backend="eager", dynamic=dynamic).to_bytes())
    dim = fn.manifest.variants[0].dims[name]
    assert (dim.min, dim.max, dim.exclude) == (2, None if case == "rows 1.." else 64 if name == "rows" else 16, [])
    for size in sizes:
        args = call(size)
        torch.testing.assert_close(fn(*args), program(*args))


def causal_when_longer(q):
    # (as transformers' attention: a bool of the size, where torch takes no symbolic one)
    return torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=q.shape[2] > 1)


def doubled_if_one(x):
    return x * 2 if x.shape[0] == 1 else x * 3


@pytest.mark.parametrize("case", ["module", "branch on 1", "a bool of the size"])
def test_an_example_of_size_one_compiles_every_size_of_its_dim(case):
    """A batch of one as the example (``Dim("batch", min=1, max=64)``): torch.export
    treats sizes 0 and 1 apart, and until 2026-12-07 the package took the example's size
    alone, with a warning (torch.compile compiles once more at the first other size).
    Traced size-obliviously now, one graph runs every size, equal to eager, with no
    warning. A program that depends on the size being 1 (a branch on it; a bool of it
    where torch takes no symbolic one, as transformers' attention passes ``q_len > 1`` to
    SDPA) keeps its 1 compiled in, and the package adds a second variant compiled from
    the example repeated to 2, as torch.compile adds a second graph: every size runs, with
    no warning (until 2026-12-08 the 1 alone, with the warning, a GuardError at 2).
    (AOTInductor compiles a graph of every size as for an example of 2:
    ``test_module_binding.py::test_live_module_parameters[aoti]``.)"""
    torch.manual_seed(0)
    if case == "module":
        program = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(),
                                      torch.nn.Linear(16, 4)).eval()
        make, name, dim = (lambda n: torch.randn(n, 8)), "input", 0
    elif case == "branch on 1":
        program, make, name, dim = doubled_if_one, (lambda n: torch.randn(n, 3)), "x", 0
    else:
        program, make, name, dim = causal_when_longer, (lambda n: torch.randn(1, 2, n, 4)), "q", 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pkg = aotpack.compile(program, (make(1),), backend="eager",
                              dynamic={name: {dim: aotpack.Dim("batch", min=1, max=64)}})
    assert not [str(w.message) for w in seen if issubclass(w.category, aotpack.SpecializationWarning)]
    assert pkg.variants == (["default"] if case == "module" else ["default", "default.from-2"])
    fn = aotpack.load(pkg.to_bytes())
    with torch.no_grad():
        for n in (1, 2, 7, 64):
            x = make(n)
            torch.testing.assert_close(fn(x), program(x))


def flattened_to_four(x):
    return x.reshape(4) * 2


def test_a_dim_compiled_in_at_one_where_two_cannot_run_keeps_one_alone_with_a_warning():
    """The second variant of an example of 1 (above) is compiled from the example
    repeated to 2; a program that cannot run there (``x.reshape(4)`` of a 1x4 example)
    keeps the first alone: the warning names the Dim and the failure, a call at 2 is a
    GuardError, and ``strict_dims`` makes it an error."""
    dynamic = {"x": {0: aotpack.Dim("rows", min=1, max=8)}}
    with pytest.warns(aotpack.SpecializationWarning, match=r"at the example's sizes.*rows = 1.*from an example of 2 "
                                                           r"failed.*reshape"):
        pkg = aotpack.compile(flattened_to_four, (torch.ones(1, 4),), backend="eager", dynamic=dynamic)
    assert pkg.variants == ["default"]
    fn = aotpack.load(pkg.to_bytes())
    x = torch.randn(1, 4)
    torch.testing.assert_close(fn(x), flattened_to_four(x))
    with pytest.raises(aotpack.GuardError, match=r"expected 1, got 2"):
        fn(torch.randn(2, 4))
    with pytest.raises(aotpack.CaptureError, match=r"specializes dynamic dimensions at the example's sizes: rows = 1"):
        aotpack.compile(flattened_to_four, (torch.ones(1, 4),), backend="eager", dynamic=dynamic, strict_dims=True)


def doubled_when_longer(x, n):
    return (x * 2 if x.shape[0] > 1 else x * 3), (x * 4 if n == 1 else x * 5)


def test_a_branch_on_a_size_of_one_leaves_it_out_of_a_dim_compiled_at_more():
    """Compiled at 4 rows and n = 3, with Dims from 0: torch.export's trace takes a size
    to be 2 or more, so ``x.shape[0] > 1`` and ``n == 1`` are no guards there, and until
    2026-12-07 the package ran the branch of 2 or more at 1 row and at n = 1, silently
    (2s where eager gives 3s). The graph now runs beside eager at sizes 0 and 1 too
    (``eager_check.sizes_zero_and_one_differ``): where it computes otherwise, the size
    leaves the Dim, with a warning, and a call there is a GuardError; where it computes
    the same (0 rows here, both branches empty; n = 0), it stays."""
    with pytest.warns(aotpack.SpecializationWarning, match=r"rows runs 0\.\.16 except 1 of the 0\.\.16 asked, n runs "
                                                           r"0\.\.16 except 1 of the 0\.\.16 asked"):
        fn = aotpack.load(aotpack.compile(doubled_when_longer, (torch.randn(4, 3), 3), backend="eager",
                                          dynamic={"x": {0: aotpack.Dim("rows", min=0, max=16)},
                                                   "n": aotpack.Dim("n", min=0, max=16)}).to_bytes())
    for rows, n in ((4, 3), (2, 0), (16, 16), (0, 2)):
        x = torch.randn(rows, 3)
        for got, want in zip(fn(x, n), doubled_when_longer(x, n)):
            torch.testing.assert_close(got, want)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.shape\[0\]: expected rows in 0\.\.16 except 1, got 1"):
        fn(torch.randn(1, 3), 3)
    with pytest.raises(aotpack.GuardError, match=r"args\[1\]: expected an int n in 0\.\.16 except 1, got 1"):
        fn(torch.randn(4, 3), 1)


def causal_when_longer_at_four(q):
    return torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=q.shape[2] > 1)


def test_a_bool_of_a_size_passed_to_attention_is_decided_as_eager_decides_it():
    """``is_causal=q.shape[2] > 1`` (transformers' attention) with a Dim from 1: traced, a
    ``SymBool``, which ``F.scaled_dot_product_attention``'s parser refuses (a CaptureError
    of torch's raw TypeError until 2026-12-07). Capture decides it as eager does, and the
    package runs every length, 1 included (where the two branches agree)."""
    fn = aotpack.load(aotpack.compile(causal_when_longer_at_four, (torch.randn(1, 2, 4, 8),), backend="eager",
                                      dynamic={"q": {2: aotpack.Dim("s", min=1, max=64)}}).to_bytes())
    for length in (4, 1, 2, 9):
        q = torch.randn(1, 2, length, 8)
        torch.testing.assert_close(fn(q), causal_when_longer_at_four(q))


def test_a_dim_narrowed_to_one_size_compiles_for_that_size():
    """``x.reshape(y.shape[0], -1)`` of a 6x6 x holds at 3 rows only (torch.export keeps no
    divisibility guard): the Dim is narrowed to 3..3 with a warning, and the compiling
    backends' export of it raised torch's raw ``AssertionError: Cannot create Dim with
    inconsistent min=3, max=3`` until 2026-12-07 (seen with AOTInductor): the size is
    static there now. (The export is what aoti compiles; compiling it too costs tens of
    seconds and tests AOTInductor, not this.)"""
    from aotpack.build.capture import capture

    with pytest.warns(aotpack.SpecializationWarning, match=r"rows runs 3\.\.3 of the 0\.\.64 asked"):
        captured = capture(lambda x, y: x.reshape(y.shape[0], -1), (torch.randn(6, 6), torch.randn(3)),
                           dynamic={"y": {0: torch.export.Dim("rows", min=0, max=64)}})
    ep = captured.export_weights_as_inputs()
    assert [tuple(n.meta["val"].shape) for n in ep.graph.nodes if n.op == "placeholder"] == [(6, 6), (3,)]


def by_size_types(x):
    """Branches on the types of numbers of its size, as library code does (``if
    isinstance(size, int): size = (size, size)``)."""
    n = x.shape[0]
    head = x.sum(0) * n if isinstance(n, int) else x[0]
    half = head * 3 if isinstance(n / 2, float) else head * 5
    return half + 1 if isinstance(n > 2, bool) and not isinstance(n, float) else half - 1


@pytest.fixture(scope="module")
def by_size_types_package():
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SpecializationWarning)
        pkg = aotpack.compile(by_size_types, (torch.randn(6, 3),), backend="eager",
                              dynamic={"x": {0: torch.export.Dim("rows", min=2, max=64)}})
    return aotpack.load(pkg.to_bytes())


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 64))
def test_a_program_reading_a_sizes_type_takes_eagers_branch(by_size_types_package, rows):
    """Traced, ``x.shape[0]`` is a ``torch.SymInt``, which Python called no int: the
    package took the other branch at every size, silently, until 2026-12-07. Now the
    program's own code is told it is an int (and ``n / 2`` a float, ``n > 2`` a bool), as
    torch.compile's tracer tells it: eager's result at every size of the Dim."""
    x = torch.randn(rows, 3)
    got = by_size_types_package(x)
    assert got.shape == by_size_types(x).shape
    assert torch.equal(got, by_size_types(x))


def by_exact_size_type(x):
    return x * 2 if type(x.shape[0]) is int else x * 3


def test_a_program_reading_a_sizes_exact_type_is_refused_or_compiled_with_the_size():
    """``type(n) is int`` sees ``torch.SymInt`` traced: the graph run beside eager at the
    example finds the other branch, so the Dim is refused naming the size, and under
    ``dynamic=True`` the size is compiled in, with a warning (eager's result at it)."""
    x = torch.randn(4, 3)
    with pytest.raises(aotpack.CaptureError, match=r"traced with dynamic x\.shape\[0\] than eager does at the "
                                                   r"example: output tensor 0 holds other values than eager's"):
        aotpack.compile(by_exact_size_type, (x,), backend="eager", dynamic={"x": {0: torch.export.Dim("rows")}})
    with pytest.warns(aotpack.SpecializationWarning, match=r"the sizes x\.shape\[0\], x\.shape\[1\] are compiled in"):
        fn = aotpack.load(aotpack.compile(by_exact_size_type, (x,), backend="eager", dynamic=True).to_bytes())
    assert torch.equal(fn(x), by_exact_size_type(x))
    with pytest.raises(aotpack.GuardError, match=r"shape\[0\]: expected 4, got 5"):
        fn(torch.randn(5, 3))


def by_size_unless_typed(x):
    """Eager scales by the row count; traced, by 4: equal at 4 rows alone."""
    rows = x.shape[0]
    return x * (rows if type(rows) is int else 4)


def test_a_sizes_exact_type_hidden_at_the_example_is_found_at_another_size():
    """The example check alone passes (4 rows: ``x * 4`` both ways); the graph run beside
    eager at another size the Dim allows (5 rows, tiled from the example's) differs, so
    the Dim is refused naming that size (until 2026-12-07 the package returned ``x * 4``
    at every size, silently); ``dynamic=True`` compiles the size in."""
    x = torch.randn(4, 3)
    with pytest.raises(aotpack.CaptureError, match=r"traced with dynamic x\.shape\[0\] than eager does at "
                                                   r"x\.shape\[0\] = 5 \(the example's 4\)"):
        aotpack.compile(by_size_unless_typed, (x,), backend="eager", dynamic={"x": {0: torch.export.Dim("rows")}})
    with pytest.warns(aotpack.SpecializationWarning, match=r"are compiled in"):
        fn = aotpack.load(aotpack.compile(by_size_unless_typed, (x,), backend="eager", dynamic=True).to_bytes())
    assert torch.equal(fn(x), x * 4)
    with pytest.raises(aotpack.GuardError, match=r"shape\[0\]: expected 4, got 5"):
        fn(torch.randn(5, 3))


def not_five_rows(x, y):
    return torch.cat([x, y]) * (3 if x.shape[0] == 5 else 2)


def test_the_other_size_is_one_the_package_takes():
    """A Dim excluding a size the program branches away from (5 rows here) is run beside
    eager at another size it takes (3, with ``y`` following as ``rows + 1``), not at the
    excluded one, where eager takes the other branch: no false refusal."""
    rows = torch.export.Dim("rows", min=2, max=16)
    x, y = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.warns(aotpack.SpecializationWarning, match=r"except 5"):
        fn = aotpack.load(aotpack.compile(not_five_rows, (x, y), backend="eager",
                                          dynamic={"x": {0: rows}, "y": {0: rows + 1}}).to_bytes())
    for n in (3, 6, 9):
        a, b = torch.randn(n, 3), torch.randn(n + 1, 3)
        assert torch.equal(fn(a, b), not_five_rows(a, b))
    with pytest.raises(aotpack.GuardError):
        fn(torch.randn(5, 3), torch.randn(6, 3))


class CountsInItsWeight(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def forward(self, x):
        with torch.no_grad():
            self.w.add_(1)
        return x * self.w


def test_the_example_check_leaves_a_parameter_the_program_updates_as_it_was():
    """The graph-beside-eager check at a dynamic capture runs the program twice: a
    parameter it updates in place (under ``no_grad``, as eager allows) is put back after
    each run, so the two runs compare alike and compiling leaves it as it was (the first
    version of the check put back buffers only: this program was refused as computing
    otherwise than eager)."""
    m = CountsInItsWeight()
    with torch.no_grad():
        fn = aotpack.load(aotpack.compile(m, (torch.ones(4, 3),), backend="eager",
                                          dynamic={"x": {0: torch.export.Dim("rows")}}).to_bytes(), module=m)
    assert torch.equal(m.w.detach(), torch.zeros(3))
    with torch.no_grad():
        assert torch.equal(fn(torch.ones(5, 3)), torch.ones(5, 3))
    assert torch.equal(m.w.detach(), torch.ones(3))


def update_through_reshape(x, y):
    y.reshape(-1).mul_(0.5)
    return x * 2


def flattened(x, y):
    return y, y.flatten()


def test_a_view_of_an_empty_input_is_a_view_after_torch_traced_one_before(tmp_path):
    """FakeTensor's dispatch cache (torch 2.11-2.13, pytorch/pytorch#159151) rebuilt the
    view of a zero-element tensor on a new storage when an earlier trace had made the same
    view: the package returned a fresh empty tensor where eager returns a view of ``y``
    (and, with other inputs, refused its own manifest: a view at offset -6; fuzz seed 51).
    Capture traces programs with an empty example input without that cache."""
    def inputs():
        base = torch.randn(1, 6)
        return base[:0], base[1:]  # two empty rows at offsets 0 and 6 of one storage

    aotpack.compile(update_through_reshape, inputs(), backend="eager")  # the same view traced first
    pkg = aotpack.compile(flattened, inputs(), backend="eager")
    assert [a.output for a in pkg.manifest.variants[0].aliased] == [0, 1]
    fn = aotpack.load(pkg.save(tmp_path / "f.aot"))
    x, y = inputs()
    got, want = fn(x, y), flattened(x, y)
    assert got[1].untyped_storage().data_ptr() == want[1].untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
    assert got[1].storage_offset() == want[1].storage_offset() == 6 and got[1].shape == want[1].shape


def rows_and_more(x, y):
    n = x.shape[0]
    return x * 2 + y.sum(), n, {"total": n * x.shape[1], "odd": 2 * n + 1, "cols": x.shape[1], "shape": x.shape}


SIZES_IN_A_FRESH_PROCESS = r"""
import os, sys, warnings, torch, aotpack
sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]  # this folder, then tests/ (conftest.py)
from test_contract import rows_and_more
fn = aotpack.load(sys.argv[1])
for n in (1, 3, 8):
    x, y = torch.randn(n, 4), torch.randn(2)
    got, want = fn(x, y), rows_and_more(x, y)
    assert got[1:] == want[1:] and type(got[1]) is int and type(got[2]["odd"]) is int, (got[1:], want[1:])
    assert type(got[2]["shape"]) is torch.Size  # (torch's pytree rebuilds a tuple: a package's is eager's type)
    torch.testing.assert_close(got[0], want[0])
with warnings.catch_warnings():  # under vmap: the portable program, its ints of the per-sample sizes
    warnings.simplefilter("ignore", aotpack.PortableRunWarning)
    xs, y = torch.randn(3, 5, 4), torch.randn(2)
    got = torch.func.vmap(lambda x: fn(x, y)[0] * fn(x, y)[2]["odd"])(xs)
torch.testing.assert_close(got, torch.func.vmap(lambda x: rows_and_more(x, y)[0] * 11)(xs))
print("ok")
"""


def test_ints_of_dynamic_sizes_are_returned_as_eager_returns_them(tmp_path):
    """``return y, x.shape[0]`` under ``dynamic=``: torch.compile returns the int of each
    call's size; a package returns the same, evaluated from the call's sizes (a
    CaptureError before format version 17), in a fresh process and under vmap too.
    Training packages too; a number read from tensor data is still refused, naming it.
    (The ints are evaluated around any backend's code, runtime._with_sizes: no
    AOTInductor compile here.)"""
    backend = "eager"
    dynamic = {"x": {0: aotpack.Dim("rows", min=1, max=64)}}
    pkg = aotpack.compile(rows_and_more, (torch.randn(5, 4), torch.randn(2)), backend=backend, dynamic=dynamic)
    assert pkg.manifest.format_version == 17  # a version 16 reader refuses the size leaves' kind
    assert pkg.manifest.variants[0].output_sizes == ["rows", {"expr": "4*rows"}, {"expr": "2*rows + 1"}, "rows"]
    path = pkg.save(tmp_path / "sizes.aot")
    import os

    assert run_fresh(["-c", SIZES_IN_A_FRESH_PROCESS, str(path), os.path.dirname(os.path.abspath(__file__))]
                     ).stdout.strip() == "ok"
    lin = torch.nn.Linear(4, 3)
    step = aotpack.load(aotpack.compile(lambda x: (lin(x), x.shape[0]), (torch.randn(5, 4, requires_grad=True),),
                                        backend=backend,
                                        train=True, dynamic={"x": {0: aotpack.Dim("rows", min=2, max=64)}}
                                        ).save(tmp_path / "step.aot"))
    x = torch.randn(7, 4, requires_grad=True)
    out, n = step(x)
    assert n == 7 and type(n) is int
    out.sum().backward()
    torch.testing.assert_close(x.grad, lin.weight.sum(0).expand(7, 4))
    with pytest.raises(aotpack.CaptureError, match=r"output\[1\] is a Python number computed from tensor data"):
        aotpack.compile(lambda x: (x * 2, (x > 0).long().sum().item()), (torch.randn(5, 4),), backend=backend,
                        dynamic=dynamic)


def numbers_of_sizes(x):
    """Floats and bools of a Dim's size, as a program may return them (and one float of
    a fixed size: a constant)."""
    n, cols = x.shape
    return x * 2, {"half": n / 2, "ratio": n / cols, "root": n ** 0.5, "third": cols * (1 / 3), "ten": n / 10 > 0.5,
                   "big": n > 4, "between": (n > 2) & (n < 9), "not_big": torch.sym_not(n > 4), "three": n == 3,
                   "rows": n}


@pytest.fixture(scope="module")
def numbers_package():
    pkg = aotpack.compile(numbers_of_sizes, (torch.randn(5, 3),), backend="eager",
                          dynamic={"x": {0: aotpack.Dim("rows", min=1, max=4096)}})
    return pkg, aotpack.load(pkg.to_bytes())


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 4096))
def test_floats_and_bools_of_dynamic_sizes_are_eagers_at_every_size(numbers_package, rows):
    """``return y, n / 2, n > 4`` (n a Dim's size): torch.compile returns the float and the
    bool of each call's size; a package returns eager's, of the same type and to the last
    bit, at every size the Dim allows (a CaptureError before format version 18)."""
    x = torch.randn(rows, 3)
    (got, numbers), (want, eager) = numbers_package[1](x), numbers_of_sizes(x)
    assert numbers == eager and all(type(numbers[k]) is type(eager[k]) for k in eager), (numbers, eager)
    torch.testing.assert_close(got, want)


def test_floats_and_bools_of_dynamic_sizes_are_recorded_and_refused_where_a_package_could_differ(tmp_path):
    """The manifest holds each number's expression with its type (format version 18: a
    version 17 reader refuses the typed entries); a fresh process returns eager's; a
    variant compiled for one size returns its constants beside the Dim's variant; a float
    whose expression may round otherwise than eager (``n * 0.1 * 3``, which torch keeps
    as ``0.30000000000000004*n``: eager rounds ``n * 0.1`` first; ``n / 2 + n / 3``: two
    roundings) is a CaptureError naming it."""
    pkg = aotpack.compile(numbers_of_sizes, (torch.randn(5, 3),), backend="eager", variant="five")
    assert pkg.manifest.format_version < 17  # (one size: constants only)
    pkg = aotpack.compile(numbers_of_sizes, (torch.randn(5, 3),), backend="eager", variant="five",
                          variants=[{"name": "rows", "args": (torch.randn(6, 3),),
                                     "dynamic": {"x": {0: aotpack.Dim("rows", min=1, max=4096)}}}])
    assert pkg.manifest.format_version == 18
    five, rows = (v.output_sizes for v in pkg.manifest.variants)
    assert {"expr": "IntTrueDiv(rows, 2)", "type": "float"} in rows and {"expr": "rows > 4", "type": "bool"} in rows
    assert {"expr": "2.5", "type": "float"} in five and {"expr": "True", "type": "bool"} in five
    path = pkg.save(tmp_path / "numbers.aot")
    code = ("import os, sys, torch, aotpack\nsys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]\n"
            "from test_contract import numbers_of_sizes\n"
            "fn = aotpack.load(sys.argv[1])\nfor n in (1, 3, 5, 7, 100):\n    x = torch.randn(n, 3)\n"
            "    got, want = fn(x)[1], numbers_of_sizes(x)[1]\n"
            "    assert got == want and [type(v) for v in got.values()] == [type(v) for v in want.values()], (got, want)\n"
            "print('ok')\n")
    assert run_fresh(["-c", code, str(path), os.path.dirname(os.path.abspath(__file__))]).stdout.strip() == "ok"
    for program, shown in ((lambda x: (x * 2, x.shape[0] * 0.1 * 3), r"0\.30000000000000004\*ToFloat\(rows\)"),
                           (lambda x: (x * 2, x.shape[0] / 2 + x.shape[0] / 3), r"\(IntTrueDiv\(rows, 2\)\) \+ ")):
        with pytest.raises(aotpack.CaptureError, match=r"output\[1\] is a float computed from the call's sizes with "
                                                       rf"float constants or in several rounding steps \({shown}"):
            aotpack.compile(program, (torch.randn(5, 3),), backend="eager", dynamic={"x": {0: aotpack.Dim("rows")}})

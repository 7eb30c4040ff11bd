"""Random small programs and input sets for the differential fuzzer (test_fuzz_contract.py).

A program is a *recipe*: a list of steps over a list of values that starts with the
inputs ``x, y``. Each step picks an op from a grammar (elementwise, matmul, reductions,
views and reshapes, indexing, in-place ops on intermediates, on inputs and through views of
inputs, concat, a branch on grad mode or on a size being 1, a value computed under ``torch.no_grad()``, an
input updated under it, a custom ``torch.autograd.Function``, ``torch.func.grad``) and
operands by index; a step whose operands do not fit (shapes) falls back to a unary op,
so every recipe is a valid program. The program returns its last value and up to two
others (which may be inputs or views of them: output aliasing is part of the test).

Inputs are built from a *call spec* (layout per input, aliasing between them, dtype,
requires_grad), deterministically from a seed, so eager and the package get equal but
separate tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

UNARY = [torch.sin, torch.tanh, torch.relu, torch.abs, torch.sigmoid, torch.neg, lambda v: v * 1.5 + 0.5]
BINARY = [torch.add, torch.mul, torch.sub, torch.maximum]
VIEWS = ["t", "flatten", "slice0", "stride1", "unsqueeze_expand", "reshape", "as_strided"]
OPS = ["unary", "binary", "matmul", "reduce", "softmax", "view", "index", "inplace_mid", "inplace_input", "concat",
       "sum0", "grad_branch", "inplace_view", "no_grad", "inplace_no_grad", "function", "transform", "size_branch"]
WRITABLE_VIEWS = ["t", "slice0", "stride1", "flatten", "reshape", "contiguous"]  # views an in-place op may write through
# (reshape, contiguous: a view or a copy by the layout, so whether the update reaches the input is too)
LAYOUTS = ["contiguous", "transposed", "offset", "strided", "expanded"]
ALIASING = ["none", "same", "overlap"]


def interpret(recipe: list[tuple], outputs: tuple, x: torch.Tensor, y: torch.Tensor):
    """Run ``recipe`` on ``x, y``; returns the chosen values as a tuple."""
    values = [x, y]
    bases = [0, 1]  # the input each value is a view of, or None
    for op, i, j, k in recipe:
        a, b = values[i % len(values)], values[j % len(values)]
        base = bases[i % len(values)]
        out, out_base = None, None
        if op == "binary" and a.shape == b.shape:
            out = BINARY[k % len(BINARY)](a, b)
        elif op == "matmul" and a.dim() == 2 and b.dim() == 2 and a.shape[1] == b.shape[1]:
            out = a @ b.t()
        elif op == "reduce" and a.dim() >= 1:
            out = a - a.mean(-1, keepdim=True) if a.shape[-1] else a * 2
        elif op == "softmax" and a.dim() >= 1:
            out = a.softmax(-1)
        elif op == "sum0" and a.dim() >= 1:
            out = a.sum(0)
        elif op == "view" and a.dim() == 2:
            kind = VIEWS[k % len(VIEWS)]
            out = _view(a, kind)
            out_base = base
        elif op == "index" and a.dim() >= 1 and a.shape[0] > 2:
            out = a[torch.tensor([0, 2])]
        elif op == "inplace_mid" and base is None and a.dim() >= 1:
            out = a.mul_(2.0)
        elif op == "inplace_input" and i % len(values) < 2:
            out = a.add_(1.0)
            out_base = base
        elif op == "inplace_view" and i % len(values) < 2 and a.dim() == 2:
            out = _view(a, WRITABLE_VIEWS[k % len(WRITABLE_VIEWS)]).mul_(0.5)  # the input changes through it
            out_base = base
        elif op == "no_grad":  # computed with grad mode off: no gradient flows back through it
            with torch.no_grad():
                out = UNARY[k % len(UNARY)](a)
        elif op == "inplace_no_grad" and i % len(values) < 2:  # an input updated where autograd does not see it
            with torch.no_grad():
                out = a.mul_(0.5)
            out_base = base
        elif op == "function":  # a custom autograd.Function: its own backward, not its forward's derivative
            out = Scaled.apply(a)
        elif op == "transform":  # torch.func.grad inside the program: capture goes through make_fx
            out = torch.func.grad(_energy)(a)
        elif op == "grad_branch":  # the program reads global state: export keeps one branch
            out = a * 2 if torch.is_grad_enabled() else a - 1
        elif op == "size_branch" and a.dim() >= 1:  # the program depends on its rows being 1 (transformers'
            # ``batch == 1``): from an example of one row, a second variant runs the others
            out = a * 2 if a.shape[0] == 1 else a - 1
        elif op == "concat" and a.dim() == 2 and b.dim() == 2 and a.shape[1] == b.shape[1]:
            out = torch.cat([a, b], 0)
        if out is None:
            out = UNARY[k % len(UNARY)](a)
        values.append(out)
        bases.append(out_base)
    return tuple(values[o % len(values)] for o in outputs) + (values[-1],)


def _energy(t: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient needs the input's values: ``sin(t) + t * cos(t)``."""
    return (t.sin() * t).sum()


class Scaled(torch.autograd.Function):
    """Doubles; its backward triples the gradient (a straight-through estimator's kind
    of backward: a package that differentiated the forward would give 2s)."""

    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


def _view(a: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "t":
        return a.t()
    if kind == "flatten":
        return a.flatten() if a.is_contiguous() else a.t()
    if kind == "slice0":
        return a[1:]
    if kind == "stride1":
        return a[:, ::2]
    if kind == "unsqueeze_expand":
        return a.unsqueeze(0).expand(2, *a.shape)
    if kind == "contiguous":  # a itself where a is contiguous, else a copy
        return a.contiguous()
    if kind == "as_strided" and a.numel() >= 4:  # addresses a's memory: other elements in another layout
        return a.as_strided((2, 2), (1, 2))
    return a.reshape(-1)


def make_program(recipe: list[tuple], outputs: tuple, sizes: bool = False):
    """``sizes``: the program also returns numbers of its last value's size (its rows, its
    number of elements, half its rows, and whether it has more than 5 elements: ints, a
    float and a bool), which follow the inputs' Dims in a dynamic program; and it takes a
    Python int ``k`` (a Dim of its own in a dynamic program, running below 0), which
    scales the last value, sizes a new tensor (``k + 10`` rows), and is returned doubled and
    halved. It branches on those numbers'
    types (``isinstance(k, int)``), which a traced symbol must answer as eager's."""
    def program(x, y):
        return interpret(recipe, outputs, x, y)

    def program_of_sizes(x, y, k):
        values = interpret(recipe, outputs, x, y)
        last = values[-1]
        # (branches on the numbers' types, as library code does: traced, each is a symbol,
        # which the program must see as eager's int, float or bool)
        rows = (last.shape[0], last.shape[0] / 2) if last.dim() and isinstance(last.shape[0], int) else ()
        scale = k if isinstance(k, int) and isinstance(k / 4, float) else -1
        return values + (last * scale, x.new_full((k + 10, 2), k / 4), *rows, last.numel(),
                         last.numel() > 5 if isinstance(last.numel() > 5, bool) else None, 2 * k, k / 2)

    chosen = program_of_sizes if sizes else program
    chosen.recipe = (recipe, outputs)  # named in the fuzzer's stats of refusals
    return chosen


def uses_input_inplace(recipe) -> bool:
    return any(op in ("inplace_input", "inplace_view", "inplace_no_grad") for op, *_ in recipe)


@dataclass(frozen=True)
class CallSpec:
    layouts: tuple  # per input
    aliasing: str
    dtype: torch.dtype
    requires_grad: tuple  # per input
    shape: tuple
    count: int | None = None  # the int argument ``k`` of a program of sizes (make_program)


# AOTPACK_FUZZ_DEVICE=cuda runs the fuzzer's programs on the GPU (the same contract)
DEVICE = os.environ.get("AOTPACK_FUZZ_DEVICE", "cpu")


def _randn(*s, g, dtype):
    # drawn on the CPU (one generator, the same values on every device), then moved before
    # any view is taken, so the layouts are the GPU tensor's own
    return torch.randn(*s, generator=g, dtype=dtype).to(DEVICE)


def _one(layout: str, shape: tuple, dtype, g: torch.Generator) -> torch.Tensor:
    r, c = shape

    def randn(*s):
        return _randn(*s, g=g, dtype=dtype)

    if layout == "transposed":
        return randn(c, r).t()
    if layout == "offset":
        return randn(r + 1, c + 2)[1:, 2:]
    if layout == "strided":
        return randn(r, 2 * c)[:, ::2]
    if layout == "expanded":
        return randn(1, c).expand(r, c)
    return randn(r, c)


def build_inputs(spec: CallSpec, seed: int) -> list[torch.Tensor]:
    """Fresh input tensors for ``spec``; the same seed gives equal, separate tensors."""
    g = torch.Generator().manual_seed(seed)
    r, c = spec.shape
    if spec.aliasing == "same":
        x = _one(spec.layouts[0], spec.shape, spec.dtype, g)
        xs = [x, x]
    elif spec.aliasing == "overlap":
        base = _randn(r + 1, c, g=g, dtype=spec.dtype)
        xs = [base[:r], base[1:]]
    else:
        xs = [_one(lay, spec.shape, spec.dtype, g) for lay in spec.layouts]
    out = []
    for t, rg in zip(xs, spec.requires_grad):
        if rg and spec.aliasing == "none":
            t = t.detach().requires_grad_()  # a leaf, in the same layout
        out.append(t)
    return out

"""Outputs that are views of inputs, returned as views of the caller's tensors.

Eager ``f(x) = x.view(-1)`` returns a tensor sharing memory with ``x``; compiled code
returns a fresh one. Capture records such outputs (``capture.output_aliases``) and the
loaded package replaces them with the same view of the caller's tensor, so writing to
one is seen through the other, as in eager. The argument's layout is guarded exactly for
these (a copy into the compiled layout would break the sharing).

Example:
    >>> import torch
    >>> x = torch.arange(6.)
    >>> from aotpack.package.manifest import Alias
    >>> y = rebuild_views([torch.zeros(3)], [x], [Alias(output=0, primal=0, size=[3], stride=[2], offset=1)])[0]
    >>> y.tolist(), y.data_ptr() == x[1:].data_ptr()
    ([1.0, 3.0, 5.0], True)
"""

from __future__ import annotations

from ..package.sizes import size_evaluator

__all__ = ["call_sizes", "dim_places", "output_view_rebuilder", "rebuild_views", "rebuild_output_views", "view_rebuilder"]


def rebuild_views(outputs: list, args: list, aliased: list, skip: int = 0) -> list:
    """``outputs`` with each aliased one (``manifest.Alias``) replaced by its view of
    ``args[primal]``; ``skip``: outputs before the program's (in-place updates' values)."""
    for a in aliased:
        base = args[a.primal]
        if a.same:
            outputs[skip + a.output] = base
        else:
            outputs[skip + a.output] = base.as_strided(a.size, a.stride, base.storage_offset() + a.offset)
    return outputs


def output_view_rebuilder(views: list, where: dict):
    """``(outputs, args) -> outputs``: ``rebuild_output_views`` of ``views``, where a view's
    numbers may name Dims (``OutputView.follows_dims``), each Dim read from the call's
    arguments (``where``: ``dim_places``); the expressions are parsed here, once per load."""
    if not any(v.follows_dims() for v in views):
        return lambda outputs, args: rebuild_output_views(outputs, views)
    plans = [[[size_evaluator(n) for n in group] for group in (v.size, v.stride, [v.offset], v.base_stride)]
             for v in views]
    return lambda outputs, args: rebuild_output_views(outputs, views, plans, call_sizes(where, args))


def rebuild_output_views(outputs: list, views: list, plans: list | None = None, sizes: dict | None = None) -> list:
    """``outputs`` with each one that is a view of another output (``manifest.OutputView``,
    training variants: ``h`` and ``h.t()`` returned together) made that view of it again.
    Done outside the compiled autograd.Function, so autograd sees the view and its
    gradient flows into the base output's. ``plans``, ``sizes``: per view, the evaluators of
    its numbers, and each Dim's value in this call (``output_view_rebuilder``)."""
    for k, v in enumerate(views):
        base = outputs[v.base]
        numbers = [v.size, v.stride, [v.offset], v.base_stride]
        if plans is not None:
            numbers = [[f(sizes) for f in group] for group in plans[k]]
        size, stride, (offset,), base_stride = numbers
        if list(base.stride()) != list(base_stride):  # pragma: no cover - compiled code's layout changed
            from ..errors import AotpackError

            raise AotpackError(f"output {v.base} of the compiled code has strides {tuple(base.stride())}, "
                               f"not {tuple(base_stride)}: output {v.output}, a view of it, cannot be rebuilt",
                               hint="rebuild the package with this torch (a compiler change)")
        outputs[v.output] = base.as_strided(size, stride, base.storage_offset() + offset)
    return outputs


def call_sizes(where: dict, args: list) -> dict:
    """Each Dim's value in a call: Dim name -> size, read from the arguments (``where``:
    ``dim_places``)."""
    return {name: args[i].shape[d] for name, (i, d) in where.items()}


def view_rebuilder(aliased: list, where: dict, skip: int = 0):
    """``(outputs, args) -> outputs``: ``rebuild_views`` of ``aliased``, where a view's
    numbers may name Dims (``Alias.follows_dims``), each Dim read from the call's
    arguments (``where``: Dim name -> (argument, dimension), ``dim_places``); the
    expressions are parsed here, once per load."""
    if not any(a.follows_dims() for a in aliased):
        return lambda outputs, args: rebuild_views(outputs, args, aliased, skip)
    plans = [(a, [size_evaluator(n) for n in (*a.size, *a.stride, a.offset)]) for a in aliased if not a.same]
    same = [a for a in aliased if a.same]

    def rebuild(outputs: list, args: list) -> list:
        sizes = call_sizes(where, args)
        for a, numbers in plans:
            base, n = args[a.primal], len(a.size)
            values = [f(sizes) for f in numbers]
            outputs[skip + a.output] = base.as_strided(values[:n], values[n:2 * n], base.storage_offset() + values[-1])
        return rebuild_views(outputs, args, same, skip)

    return rebuild


def dim_places(inputs: list, n_weights: int) -> dict:
    """Dim name -> (flat argument, dimension) of a size that is that Dim, from a
    variant's input guards (``manifest.Input``; the arguments are weights, then inputs)."""
    where: dict = {}
    for i, g in enumerate(inputs):
        for d, s in enumerate(g.shape):
            if isinstance(s, str):
                where.setdefault(s, (n_weights + i, d))
    return where

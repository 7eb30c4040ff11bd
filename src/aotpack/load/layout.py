"""Memory layouts of input tensors: what a variant was compiled for, and adapting to it.

Compiled code (AOTInductor, inductor) reads its inputs through the strides it saw at
compile time: a transposed tensor handed to code compiled for a contiguous one is read
in the wrong order and gives wrong numbers without an error. So every input guard
records a layout, and a call whose tensor has another one is either *adapted* (the
tensor is copied into the compiled layout; the copy is differentiable, so gradients
still reach the caller's tensor; the program's in-place update of the copy is written
back into the caller's tensor after the run, ``guards.Flat``) or, where a copy
would change what the caller sees (an output that is a view of it, a program that reads
its layout), *refused* with a GuardError naming the argument's strides.

A layout is JSON, one of:

- ``"contiguous"``: row-major (``t.is_contiguous()``), the common case;
- ``{"order": [0, 2, 3, 1]}``: dense, dimensions from outermost to innermost
  (channels_last is ``[0, 2, 3, 1]``); any sizes;
- ``{"stride": [8, 1]}``: exact strides, for static shapes with gaps or overlaps (a
  slice ``x[:, ::2]``, an ``expand``ed tensor); for an input whose layout the program
  depends on, strides may follow the call's Dims (``[{"expr": "2*cols"}, 2]``: format
  version 11), evaluated at each call's sizes (``guards.MemoryLayout``).

Strides of dimensions of size 0 or 1 never matter (no element is addressed through
them), so they are not compared; an empty tensor matches every layout.

A copy costs one read and one write of the tensor (``bench/guard_overhead.py``
measures it); it is made only when the layout differs.

Example:
    >>> import torch
    >>> layout_of(torch.zeros(4, 6).t(), dynamic=False)
    {'order': [1, 0]}
    >>> matches(torch.zeros(4, 6), {"order": [1, 0]})
    False
"""

from __future__ import annotations

import torch

__all__ = ["layout_of", "matches", "adapt", "can_adapt", "describe", "strides_for", "write_update"]


def strides_for(shape, order) -> list[int]:
    """Dense strides of ``shape`` with dimensions laid out in ``order`` (outermost first)."""
    strides = [0] * len(shape)
    step = 1
    for d in reversed(order):
        strides[d] = step
        step *= max(int(shape[d]), 1)
    return strides


def _same_strides(shape, got, want) -> bool:
    return all(s <= 1 or g == w for s, g, w in zip(shape, got, want))


def _dense_order(shape, stride) -> list[int] | None:
    order = sorted(range(len(shape)), key=lambda d: (-stride[d], d))
    return order if _same_strides(shape, stride, strides_for(shape, order)) else None


def layout_of(t: torch.Tensor, dynamic: bool) -> str | dict | None:
    """The layout of example input ``t``; None if it has gaps or overlaps and a dynamic
    size (exact strides would then not describe other sizes)."""
    if t.is_contiguous() or t.numel() == 0:
        return "contiguous"
    order = _dense_order(t.shape, t.stride())
    if order is not None:
        return {"order": order}
    return None if dynamic else {"stride": list(t.stride())}


def matches(t: torch.Tensor, layout) -> bool:
    """Whether ``t`` is laid out as ``layout`` says (sizes are checked elsewhere)."""
    if layout == "contiguous":
        return t.is_contiguous()
    if t.numel() == 0:
        return True
    shape = t.shape
    want = layout["stride"] if "stride" in layout else strides_for(shape, layout["order"])
    return _same_strides(shape, t.stride(), want)


def can_adapt(layout) -> bool:
    """Whether a tensor can be copied into ``layout``: not when it overlaps itself (an
    expanded tensor holds one value for many positions; another tensor does not)."""
    if not isinstance(layout, dict) or "stride" not in layout:
        return True
    return all(s != 0 for s in layout["stride"])


def adapt(t: torch.Tensor, layout) -> torch.Tensor:
    """A copy of ``t`` in ``layout`` (differentiable: gradients flow back to ``t``)."""
    if layout == "contiguous":
        return t.contiguous()
    if "order" in layout:
        out = torch.empty_permuted(t.shape, layout["order"], dtype=t.dtype, device=t.device)
    else:
        out = torch.empty_strided(t.shape, layout["stride"], dtype=t.dtype, device=t.device)
    return out.copy_(t)


def write_update(target: torch.Tensor, value: torch.Tensor) -> None:
    """Write ``value``, the program's update of the caller's tensor ``target``, into it as
    eager's in-place update leaves it: recorded by autograd where ``value`` has a history
    and ``target`` may take one (it is no leaf, or it does not require grad: ``x.add_(w)``
    gives such an ``x`` the history of ``w``), else with no history."""
    if value.requires_grad and torch.is_grad_enabled() and not (target.requires_grad and target.is_leaf):
        target.copy_(value)
    else:
        with torch.no_grad():
            target.copy_(value)


def describe(layout) -> str:
    """A layout for a person: ``contiguous``, ``dense in order [0, 2, 3, 1]``, ``strides (8, 1)``."""
    if layout == "contiguous":
        return "contiguous"
    if "order" in layout:
        return "channels_last" if layout["order"] == [0, 2, 3, 1] else f"dense in dimension order {layout['order']}"
    strides = [st["expr"] if isinstance(st, dict) else st for st in layout["stride"]]  # (2*cols: of the call's sizes)
    return f"strides ({', '.join(map(str, strides))}{',' if len(strides) == 1 else ''})"

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

__all__ = ["rebuild_views"]


def rebuild_views(outputs: list, args: list, aliased: list) -> list:
    """``outputs`` with each aliased one (``manifest.Alias``) replaced by its view of
    ``args[primal]``."""
    for a in aliased:
        base = args[a.primal]
        if a.same:
            outputs[a.output] = base
        else:
            outputs[a.output] = base.as_strided(a.size, a.stride, base.storage_offset() + a.offset)
    return outputs

"""Module weights that are tensor subclasses (torchao's quantized weights, ``Int8Tensor``;
any *traceable wrapper subclass*: one with ``__tensor_flatten__``), packaged as the plain
tensors inside them.

torch.compile traces such a weight through its ``__torch_dispatch__``: the graph computes
on the inner tensors (an int8 ``qdata``, a ``scale``) and never sees the subclass. A
package does the same: while the program is captured, each subclass weight is replaced by
a parametrization (``torch.nn.utils.parametrize``, public API) whose originals are its
inner tensors and whose forward rebuilds the subclass from them, so torch.export traces
the subclass's own code down to plain ops on ``<path>.parametrizations.<name>.original<k>``
(the names torch.export's own decompositions give them). torchao's subclasses do that in
their ``__torch_function__``; one whose ops are its ``__torch_dispatch__``'s (TwoTensor)
torch.export keeps whole, and capture traces such a program again below the dispatch
(make_fx: build/desugar.py), the weight still taken apart. The module is put back as it
was afterwards: the same Parameter objects, the same class.

A bound load (``aotpack.load(path, module=m)``) reads each inner tensor from the live
subclass weight of ``m`` by those names (load/binding.py), after checking that the
weight is still of the subclass, with the flatten context it was compiled with
(``variants[].subclass_weights``, ``tree.describe_subclass``: the quantization's
block size, dtype): the traced code
depends on both.

    >>> from aotpack.tree import outer_of  # (the names, shared with the load side)
    >>> outer_of("0.parametrizations.weight.original1")
    ('0.weight', 1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn.utils import parametrize

from ..errors import CaptureError
from ..tree import describe_subclass, is_wrapper_subclass, type_name

__all__ = ["classes", "kept_subclass", "refuse_kept_subclasses", "unwrapped"]


class _Rebuild(torch.nn.Module):
    """The parametrization: the subclass again from its inner tensors."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.names, self.ctx = weight.__tensor_flatten__()
        self.kind, self.size, self.stride = type(weight), weight.size(), weight.stride()

    def forward(self, *inner: torch.Tensor) -> torch.Tensor:
        return self.kind.__tensor_unflatten__(dict(zip(self.names, inner)), self.ctx, self.size, self.stride)

    def right_inverse(self, weight: torch.Tensor) -> list[torch.Tensor]:
        return [getattr(weight, n) for n in self.names]


def _subclass_weights(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str, torch.Tensor]]:
    """(name, owner, attribute, weight) of each subclass weight, at each path of a
    submodule held at two (torch.export may name its weights by either)."""
    found = []
    for path, sub in module.named_modules(remove_duplicate=False):
        for name, t in [*sub._parameters.items(), *sub._buffers.items()]:
            if is_wrapper_subclass(t):
                found.append((f"{path + '.' if path else ''}{name}", sub, name, t))
    return found


@contextlib.contextmanager
def unwrapped(target) -> Iterator[dict[str, str]]:
    """While the context lasts, ``target``'s subclass weights are parametrizations over
    their inner tensors; yields {weight name: ``describe(weight)``} ({} where there is
    none, and for a function's program). Raises CaptureError for a subclass weight a
    package cannot hold: one that requires grad (its gradient would be a subclass too),
    or whose inner tensors are subclasses again."""
    if not isinstance(target, torch.nn.Module):
        yield {}
        return
    found = _subclass_weights(target)
    for fqn, _, _, t in found:
        inner = [getattr(t, n) for n in t.__tensor_flatten__()[0]]
        if t.requires_grad:
            raise CaptureError(f"module weight {fqn!r} is a {type(t).__qualname__} that requires grad: packages hold "
                               "tensor subclass weights frozen (their inner tensors), not their gradients",
                               hint=f"call module.get_submodule(...).{fqn.rpartition('.')[2]}.requires_grad_(False) "
                                    "for a frozen quantized weight, or pass a plain tensor")
        if any(type(i) is not torch.Tensor for i in inner):
            raise CaptureError(f"module weight {fqn!r} is a {type(t).__qualname__} whose inner tensors are tensor "
                               "subclasses again: packages unwrap one level", hint="pass plain inner tensors")
    held = []  # (owner, name, the weight, its dict's order): put back as they were
    try:
        for _fqn, owner, name, t in found:
            if parametrize.is_parametrized(owner, name):  # (the same submodule at another path)
                continue
            slots = owner._parameters if name in owner._parameters else owner._buffers
            held.append((owner, name, t, slots, list(slots)))
            # (unsafe: the parametrization's forward gives a subclass of the weight's class,
            # which parametrize's own consistency check cannot compare with the originals)
            parametrize.register_parametrization(owner, name, _Rebuild(t), unsafe=True)
        yield {fqn: describe_subclass(t) for fqn, _, _, t in found}
    finally:
        for owner, name, t, slots, order in reversed(held):
            if parametrize.is_parametrized(owner, name):
                _remove(owner, name)
            slots[name] = t
            kept = {k: slots[k] for k in order if k in slots}  # (in the order named_parameters gave)
            slots.clear()
            slots.update(kept)


def classes(target) -> set[str]:
    """The classes (import paths) of ``target``'s subclass weights; {} for a function."""
    if not isinstance(target, torch.nn.Module):
        return set()
    return {type_name(type(t)) for *_, t in _subclass_weights(target)}


def kept_subclass(gm: torch.fx.GraphModule) -> type | None:
    """The class of the first tensor subclass the traced graph still computes on (one
    whose ops torch.export keeps as the subclass: its ``__torch_dispatch__`` runs below the
    graph, torch's TwoTensor), or None where it computes on plain tensors only."""
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if is_wrapper_subclass(val):  # (the graph's fake tensors are not)
            return type(val)
    return None


def refuse_kept_subclasses(gm: torch.fx.GraphModule, kinds: dict[str, str]) -> None:
    """CaptureError where the graph capture made of a program on subclass weights
    (``kinds``) still computes on a subclass: a package computes on plain tensors.
    (Capture traces such programs below the dispatch, so this is a last check.)"""
    kept = kept_subclass(gm)
    if kept is not None:
        weights = ", ".join(repr(k) for k in kinds)
        raise CaptureError(f"the program computes on a {kept.__qualname__} made from module weight(s) {weights}, "
                           "whose ops stay the subclass's in the traced graph: packages need plain tensors",
                           hint="pass plain weights, or unwrap the subclass inside the program")


def _remove(owner: torch.nn.Module, name: str) -> None:
    """Take the parametrization off ``owner.name`` without computing its value (the
    caller puts the weight object back), restoring the module's class."""
    delattr(owner.__class__, name)  # the property parametrize put on the class it made for owner
    del owner.parametrizations[name]
    if not parametrize.is_parametrized(owner):
        delattr(owner, "parametrizations")
        owner.__class__ = owner.__class__.__bases__[0]

"""Tree specs: the structure of a program's arguments and results, as a small typed union.

A spec describes a nested Python value made of tuples, lists, dicts (string keys), named
tuples, types registered as pytree nodes, and leaves; ``tree.flatten`` builds one,
``tree.unflatten`` rebuilds the value from it. Each kind is one frozen class:

=================  ===========================================  ==========================
class              what it holds                                JSON (``kind``)
=================  ===========================================  ==========================
``TensorLeaf``     ``index``: position in the flat tensor list  ``"tensor"``
``ConstLeaf``      ``type``, ``value``: a value frozen at        ``"const"``
                   capture (None, bool, int, float, str, dtype,
                   device), as ``tree.encode_const`` writes it
``TupleSpec``      ``children``                                 ``"tuple"``
``ListSpec``       ``children``                                 ``"list"``
``DictSpec``       ``keys`` (str), ``children``                 ``"dict"``
``NamedTupleSpec`` ``type`` (import path), ``fields``,          ``"namedtuple"``
                   ``children``
``NodeSpec``       ``type``, ``context`` (JSON), ``children``:  ``"node"``
                   a registered pytree node
``SizeLeaf``       ``index``: an output that is a Python int     ``"size"``
                   (float, bool: format version 18) following
                   the call's Dims (``x.shape[0]`` under
                   ``dynamic=``), the ``index``-th of the
                   variant's ``output_sizes`` (format version
                   17; outputs only)
``IntLeaf``        ``index``: an argument that is a Python int     ``"int"``
                   following a Dim (``dynamic={"n": Dim("n")}``),
                   carried to the program as the size of flat
                   input ``index``, an empty tensor of shape
                   ``(n, 0)`` (``tree.size_carrier``): a
                   ``TensorLeaf`` everywhere a flat input is
                   counted (format version 19; inputs only);
                   ``offset``: a negative shift, the carrier
                   holding ``n - offset`` (format version 20)
``SubclassSpec``   ``type``, ``attrs``, ``meta`` (JSON),         ``"subclass"``
                   ``children``: a tensor subclass that
                   flattens into tensors (``__tensor_flatten__``:
                   its inner tensors' attribute names and
                   context); its size and strides are its first
                   inner tensor's (format version 12)
=================  ===========================================  ==========================

``from_json`` is the one reader of the JSON form and checks it as it reads (a FormatError
naming the field, never a KeyError later): specs come from package files. ``to_json``
writes it back. Nesting is bounded (``MAX_DEPTH``): a manifest cannot exhaust the stack.

    >>> spec = from_json({"kind": "tuple", "children": [{"kind": "tensor", "index": 0}]}, "in_spec")
    >>> spec
    TupleSpec(children=(TensorLeaf(index=0),))
    >>> spec.tensor_indices()
    [0]
"""

from __future__ import annotations

from typing import Any

import torch

from .package.format import DEVICE_TYPES, _need

__all__ = ["TreeSpec", "TensorLeaf", "IntLeaf", "ConstLeaf", "SizeLeaf", "TupleSpec", "ListSpec", "DictSpec", "NamedTupleSpec",
           "NodeSpec", "SubclassSpec", "from_json", "to_json", "MAX_DEPTH", "CONST_TYPES"]

MAX_DEPTH = 100  # nesting a package may hold (every walk of a spec recurses)
CONST_TYPES = frozenset({"bool", "int", "float", "str", "NoneType", "dtype", "device"})


class TreeSpec:
    """Base of the spec kinds: frozen, compared by value, ``children`` a tuple."""

    __slots__ = ()
    kind: str = ""
    _fields: tuple = ()
    children: tuple = ()

    def __init__(self, *values, **named):
        values = dict(zip(self._fields, values)) | named
        for name in self._fields:
            value = values[name]
            if name in ("children", "keys", "fields", "attrs"):  # (a context or a value is JSON, kept as it is)
                value = tuple(value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen (tree specs are part of a package's manifest)")

    def __reduce__(self):  # copy, deepcopy and pickle rebuild it through the constructor
        return type(self), tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self):
        return hash((type(self), *(repr(getattr(self, f)) for f in self._fields)))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def to_json(self) -> dict:
        """The JSON form (what the manifest stores)."""
        out: dict = {"kind": self.kind}
        for f in self._fields:
            v = getattr(self, f)
            out[f] = [c.to_json() for c in v] if f == "children" else list(v) if f in ("keys", "fields", "attrs") else v
        return out

    def labels(self) -> list:
        """How each child is named in a path: dict keys, field names, a node's context
        keys, or positions."""
        return list(range(len(self.children)))

    def tensor_indices(self) -> list[int]:
        """The flat tensor indices, depth first."""
        return [i for c in self.children for i in c.tensor_indices()]

    def size_indices(self) -> list[int]:
        """The size leaves' indices, depth first (an output spec's)."""
        return [i for c in self.children for i in c.size_indices()]

    def int_indices(self) -> list[int]:
        """The flat indices of the int leaves' carriers, depth first (an argument spec's)."""
        return [i for c in self.children for i in c.int_indices()]


class TensorLeaf(TreeSpec):
    __slots__ = ("index",)
    kind, _fields = "tensor", ("index",)

    def tensor_indices(self) -> list[int]:
        return [self.index]


class IntLeaf(TensorLeaf):
    """A Python int argument following a Dim. Why a flat input and not a number: every
    backend and every guard already takes a Dim from an input's size, and torch.export
    traces a size as the symbolic int the program then computes with, as torch.compile
    passes a dynamic int; AOTInductor failed on a graph taking a SymInt input itself
    (``x * n`` traced as ``aten.mul.Tensor(x, n)``, torch 2.13). The carrier is empty:
    it costs no memory at any size. ``offset`` (0, or negative for a Dim running below
    0): the carrier's size is the int minus it, the program reads its size plus it
    (format version 20; written only where nonzero)."""

    __slots__ = ("offset",)
    kind, _fields = "int", ("index", "offset")

    def __init__(self, index: int, offset: int = 0):
        super().__init__(index, offset)

    def to_json(self) -> dict:
        return {"kind": "int", "index": self.index, **({"offset": self.offset} if self.offset else {})}

    def int_indices(self) -> list[int]:
        return [self.index]


class ConstLeaf(TreeSpec):
    __slots__ = ("type", "value")
    kind, _fields = "const", ("type", "value")


class SizeLeaf(TreeSpec):
    __slots__ = ("index",)
    kind, _fields = "size", ("index",)

    def size_indices(self) -> list[int]:
        return [self.index]


class TupleSpec(TreeSpec):
    __slots__ = ("children",)
    kind, _fields = "tuple", ("children",)


class ListSpec(TreeSpec):
    __slots__ = ("children",)
    kind, _fields = "list", ("children",)


class DictSpec(TreeSpec):
    __slots__ = ("keys", "children")
    kind, _fields = "dict", ("keys", "children")

    def labels(self) -> list:
        return list(self.keys)


class NamedTupleSpec(TreeSpec):
    __slots__ = ("type", "fields", "children")
    kind, _fields = "namedtuple", ("type", "fields", "children")

    def labels(self) -> list:
        return list(self.fields)


class NodeSpec(TreeSpec):
    __slots__ = ("type", "context", "children")
    kind, _fields = "node", ("type", "context", "children")

    def labels(self) -> list:
        """The context where it is a list of as many strings as children, else positions."""
        context, n = self.context, len(self.children)
        if isinstance(context, list) and len(context) == n and all(isinstance(k, str) for k in context):
            return context
        return list(range(n))


class SubclassSpec(TreeSpec):
    __slots__ = ("type", "attrs", "meta", "children")
    kind, _fields = "subclass", ("type", "attrs", "meta", "children")

    def labels(self) -> list:
        return list(self.attrs)


KINDS = {c.kind: c for c in (TensorLeaf, IntLeaf, ConstLeaf, SizeLeaf, TupleSpec, ListSpec, DictSpec, NamedTupleSpec, NodeSpec,
                             SubclassSpec)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _device_text(value) -> bool:
    try:
        return isinstance(value, str) and torch.device(value).type in DEVICE_TYPES
    except (RuntimeError, ValueError):
        return False


_CONST_CHECKS = {
    "bool": lambda v: isinstance(v, bool), "int": _is_int,
    "float": lambda v: isinstance(v, (int, float, str)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str), "NoneType": lambda v: v is None,
    "dtype": lambda v: isinstance(getattr(torch, str(v), None), torch.dtype), "device": _device_text,
}


def from_json(obj: Any, where: str, n_tensors: int | None = None, depth: int = 0, sizes: bool = False,
              ints: bool = False) -> TreeSpec:
    """The spec in ``obj`` (parsed JSON), checked: FormatError naming ``where`` unless it
    is a tree spec whose tensor indices are below ``n_tensors`` (``sizes``: it may hold
    size leaves, as an output spec may; ``ints``: int leaves, as an argument spec may)."""
    _need(depth < MAX_DEPTH and isinstance(obj, dict) and isinstance(obj.get("kind"), str),
          f"{where} is not a tree spec")
    kind = obj["kind"]
    _need(kind in KINDS and (sizes or kind != "size") and (ints or kind != "int"), f"{where} has unknown kind {kind!r}")
    if kind == "size":
        i = obj.get("index")
        _need(_is_int(i) and i >= 0, f"{where} has a bad size index")
        return SizeLeaf(i)
    if kind in ("tensor", "int"):
        i = obj.get("index")
        _need(_is_int(i) and i >= 0 and (n_tensors is None or i < n_tensors), f"{where} has a bad tensor index")
        if kind == "int" and "offset" in obj:
            _need(_is_int(obj["offset"]) and -2**62 < obj["offset"] < 0, f"{where} has a bad int offset")
            return IntLeaf(i, obj["offset"])
        return KINDS[kind](i)
    if kind == "const":
        typ = obj.get("type")
        _need(isinstance(typ, str) and typ in CONST_TYPES and "value" in obj, f"{where} has a constant of unknown type")
        _need(_CONST_CHECKS[typ](obj["value"]), f"{where} holds no {typ}")
        return ConstLeaf(typ, obj["value"])
    raw = obj.get("children")
    _need(isinstance(raw, list), f"{where} has no children list")
    children = tuple(from_json(c, f"{where}[{j}]", n_tensors, depth + 1, sizes, ints) for j, c in enumerate(raw))
    if kind in ("tuple", "list"):
        return KINDS[kind](children)
    if kind == "dict":
        keys = obj.get("keys")
        _need(isinstance(keys, list) and len(keys) == len(children) and all(isinstance(k, str) for k in keys)
              and len(set(keys)) == len(keys), f"{where} has bad dict keys")
        return DictSpec(keys, children)
    typ = obj.get("type")
    _need(isinstance(typ, str) and "." in typ, f"{where} names no type")
    if kind == "namedtuple":
        fields = obj.get("fields")
        _need(isinstance(fields, list) and len(fields) == len(children) and all(isinstance(f, str) for f in fields),
              f"{where} has bad fields")
        return NamedTupleSpec(typ, fields, children)
    if kind == "subclass":
        attrs = obj.get("attrs")
        _need(isinstance(attrs, list) and len(attrs) == len(children) and children
              and all(isinstance(a, str) and a.isidentifier() for a in attrs) and len(set(attrs)) == len(attrs),
              f"{where} has bad inner tensor names")
        _need("meta" in obj, f"{where} has no flatten context")
        return SubclassSpec(typ, attrs, obj["meta"], children)
    _need("context" in obj, f"{where} has no context")
    return NodeSpec(typ, obj["context"], children)


def to_json(spec: TreeSpec) -> dict:
    """``spec.to_json()``, as a function (the manifest's codec)."""
    return spec.to_json()

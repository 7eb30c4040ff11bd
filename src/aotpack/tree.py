"""Argument and result structures: flatten, unflatten, and name a leaf's path.

``flatten`` splits a nested Python value into a *spec* (treespec.py: a small typed union,
stored in the manifest as JSON) and the flat list of its tensors; ``unflatten`` rebuilds
the value. Containers: tuples, lists, dicts (string keys), named tuples (also torch's
structseqs, ``torch.return_types.max``: ``NamedTupleSpec``), any type registered as a
pytree node where the package is compiled (transformers' ModelOutput, dataclasses
registered with ``torch.export.register_dataclass``: ``NodeSpec``, flattened and rebuilt
by its registered functions, its context stored as JSON), and tensor subclasses made of
other tensors (``TwoTensor``, a float8 tensor: ``SubclassSpec``, flattened by their
``__tensor_flatten__`` and rebuilt by ``__tensor_unflatten__``, as torch.compile
flattens them at a compiled graph's boundary). Leaves: tensors (``TensorLeaf``,
the position in the flat list) and constants frozen at compile time (``ConstLeaf``: None,
bool, int, float, str, torch.dtype, torch.device).

Rebuilding such a value needs its type. ``resolve_type`` finds it among the pytree
nodes registered in this process and the modules already imported; it imports a
module only when the caller allows it (``load(..., allow_modules=[...])``). No pickle,
and a package never makes aotpack import a module it names.

Why our own and not ``torch.utils._pytree``'s serializer: the spec goes into the
package manifest, must be readable without torch's private serializer, and must carry
constants so that guards can name ``args[1]['mode']`` when a baked-in value differs.

Example:
    >>> import torch
    >>> spec, flat = flatten({"a": (torch.ones(1), 2)})
    >>> spec
    DictSpec(keys=('a',), children=(TupleSpec(children=(TensorLeaf(index=0), ConstLeaf(type='int', value=2))),))
    >>> unflatten(spec, flat)["a"][1]
    2
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
import weakref
from typing import Any

import torch

from .errors import AotpackError, CaptureError, FormatError
from .treespec import (
    ConstLeaf,
    DictSpec,
    IntLeaf,
    ListSpec,
    NamedTupleSpec,
    NodeSpec,
    SizeLeaf,
    SubclassSpec,
    TensorLeaf,
    TreeSpec,
    TupleSpec,
)

__all__ = ["flatten", "unflatten", "encode_const", "decode_const", "const_repr", "leaf_keys", "leaf_paths",
           "named_leaves", "tensor_paths", "call_arguments", "type_name", "resolve_type", "types_in", "check_types"]

_SCALARS = (bool, int, float, str, type(None))


# How a signature's parameter kinds are named in manifests (the one table: capture writes
# these names, guards bind calls by them, the format's schema checks them).
PARAM_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}


def _compat():
    """``_torch_compat`` (torch's pytree registry is private), imported on first use: plain
    packages load without it."""
    from . import _torch_compat

    return _torch_compat


def tensor_property(t: torch.Tensor, name: str) -> bool:
    """What a tensor answers to one of ``manifest.TENSOR_PROPERTIES``: a method's
    result (``t.is_conj()``), ``is_leaf`` read as the attribute it is.

    >>> tensor_property(torch.ones(2), "is_leaf"), tensor_property(torch.ones(2).conj(), "is_conj")
    (True, False)
    """
    value = getattr(t, name)
    return bool(value if name == "is_leaf" else value())


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype's name in manifests and messages: ``float32``, ``bfloat16`` (the one place
    that spells it; ``getattr(torch, name)`` reads it back)."""
    return str(dtype).removeprefix("torch.")


def encode_const(value: Any, path: str) -> ConstLeaf:
    """The constant leaf of ``value``; CaptureError for values we cannot freeze."""
    if isinstance(value, float) and not math.isfinite(value):
        return ConstLeaf("float", repr(value))
    if type(value) in _SCALARS:
        return ConstLeaf(type(value).__name__, value)
    if isinstance(value, torch.dtype):
        return ConstLeaf("dtype", dtype_name(value))
    if isinstance(value, torch.device):
        return ConstLeaf("device", str(value))
    hint = "pass tensors, nested tuples/lists/dicts of them, or None/bool/int/float/str"
    if type(value).__name__.endswith("Cache") and type(value).__module__.startswith("transformers"):
        hint = ("transformers returns its KV cache when use_cache=True: call the model with use_cache=False "
                "(or return only tensors from the program)")
    else:
        hint += ("; or register the type as a pytree node (torch.export.register_dataclass, "
                 "torch.utils.pytree.register_pytree_node) before compiling")
    raise CaptureError(f"{path} is a {type(value).__qualname__}, which aotpack cannot freeze into a package",
                       hint=hint)


# A subclass whose torch function and dispatch handlers are torch's disabled ones
# (nn.Parameter, nn.Buffer) computes as a plain tensor does.
_PLAIN_FUNCTION = torch.nn.Parameter.__torch_function__
_PLAIN_DISPATCH = torch.Tensor.__torch_dispatch__


def computes_as_plain(kind: type) -> bool:
    """Whether tensors of class ``kind`` compute as plain tensors: ``torch.Tensor``, or a
    subclass that overrides neither ``__torch_function__`` nor ``__torch_dispatch__``
    (``nn.Parameter``). Packages hold graphs traced on plain tensors; a subclass that runs
    code of its own at each op (torchao's quantized weights, TwoTensor) is refused at
    compile (build/capture.py) and at a call (load/guards.py)."""
    return kind is torch.Tensor or (getattr(kind, "__torch_function__", None) is _PLAIN_FUNCTION
                                    and getattr(kind, "__torch_dispatch__", None) is _PLAIN_DISPATCH)


# Tensor subclass weights (build/subclass_weights.py): packaged as their inner tensors,
# named as torch.export's decompositions name them; the load side binds them by name.


def is_wrapper_subclass(t) -> bool:
    """A tensor of a traceable wrapper subclass: its numbers are other tensors inside it."""
    return isinstance(t, torch.Tensor) and type(t) is not torch.Tensor and hasattr(type(t), "__tensor_flatten__")


def outer_of(fqn: str) -> tuple[str, int] | None:
    """(the weight, the inner tensor's index) of an inner tensor's name; None for a weight
    of its own."""
    parts = fqn.split(".")
    if len(parts) >= 3 and parts[-3] == "parametrizations" and parts[-1].startswith("original"):
        index = parts[-1][len("original"):]
        if index.isdigit():
            return ".".join([*parts[:-3], parts[-2]]), int(index)
    return None


def describe_subclass(t: torch.Tensor) -> str:
    """The subclass and flatten context a package's code was traced for:
    ``"torchao.quantization.Int8Tensor qdata,scale,zero_point {'block_size': [1, 64], ...}"``.
    Two weights with the same description compute with the same code."""
    names, ctx = t.__tensor_flatten__()
    return f"{type_name(type(t))} {','.join(names)} {ctx!r}"


def type_name(cls: type) -> str:
    """The import path a spec records for ``cls``: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


_RESOLVED: dict[str, type] = {}


def resolve_type(name: str, allow_modules=()) -> type | None:
    """The class named ``name`` (``module.QualName``) in this process, or None.

    Looked up among the types registered as pytree nodes, then in modules already
    imported; a module is imported only if it is in ``allow_modules`` (or inside one of
    them). Never imports anything else."""
    cls = _RESOLVED.get(name)
    if cls is not None:
        return cls
    for t in _compat().pytree_types():
        if type_name(t) == name:
            _RESOLVED[name] = t
            return t
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        module = sys.modules.get(module_name)
        if module is None and any(module_name == m or module_name.startswith(m + ".") for m in allow_modules):
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                module = None
        if module is None:
            continue
        obj = module
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        if isinstance(obj, type):
            _RESOLVED[name] = obj
            return obj
    return None


def subclass_types(spec: TreeSpec) -> set[str]:
    """The tensor subclasses (import paths) a spec takes apart (``SubclassSpec``)."""
    return {s.type for s in _typed_specs(spec) if isinstance(s, SubclassSpec)}


def subclass_inner_indices(spec: TreeSpec) -> set[int]:
    """The flat indices of the inner tensors of the subclasses a spec takes apart."""
    return {c.index for s in _typed_specs(spec) if isinstance(s, SubclassSpec)
            for c in s.children if isinstance(c, TensorLeaf)}


def types_in(spec: TreeSpec) -> list[str]:
    """The container types a spec names (namedtuples and pytree nodes), in order."""
    return list(dict.fromkeys(name for _, name in _typed_nodes(spec)))


def described_types(spec: TreeSpec) -> list[str]:
    """Each type a spec names, with the context of a node as load would hand it to the
    node's deserializer (a defaultdict's default factory among them): what ``aotpack
    inspect`` shows."""
    out = []
    for s in _typed_specs(spec):
        context = s.context if isinstance(s, NodeSpec) else None
        out.append(s.type if context in (None, [], {}) else
                   f"{s.type} (context {json.dumps(context, sort_keys=True)[:160]})")
    return list(dict.fromkeys(out))


def _typed_specs(spec: TreeSpec):
    if isinstance(spec, (NamedTupleSpec, NodeSpec, SubclassSpec)):
        yield spec
    for c in spec.children:
        yield from _typed_specs(c)


def _typed_nodes(spec: TreeSpec):
    """``(kind, type name)`` of every namedtuple and pytree node in ``spec``, depth first."""
    return ((s.kind, s.type) for s in _typed_specs(spec))


def _rebuilds(kind: str, cls: type) -> bool:
    """Whether ``cls`` is what a spec of ``kind`` may rebuild: a named tuple (or a
    structseq) for "namedtuple", a registered pytree node for "node". Any other class a
    package names is never called: ``subprocess.Popen`` is imported in most processes,
    and calling it with a package's constants would run a command."""
    if kind == "namedtuple":
        return issubclass(cls, tuple) and (hasattr(cls, "_fields") or hasattr(cls, "n_fields"))
    if kind == "subclass":
        return issubclass(cls, torch.Tensor) and hasattr(cls, "__tensor_unflatten__") and not computes_as_plain(cls)
    return _compat().pytree_node(cls) is not None


# torch's own deserializer of a defaultdict's context imports the module its default
# factory names and takes the attribute (a package naming ``evilmod.run`` would import
# evilmod.py from the working folder). aotpack reads that context itself and passes
# only these factories; no other context of a torch-registered stdlib container names code.
_DEFAULT_FACTORIES = {("builtins", n) for n in ("list", "dict", "set", "int", "float", "str", "tuple", "bool")} | {
    ("collections", "OrderedDict"), ("collections", "Counter"), ("collections", "deque")}


def _check_contexts(spec: TreeSpec, deep: bool = True) -> None:
    """FormatError for a node context that would make a deserializer import or call
    code by name (a defaultdict's default factory outside ``_DEFAULT_FACTORIES``)."""
    if isinstance(spec, NodeSpec) and spec.type == "collections.defaultdict":
        context = spec.context
        factory = (context.get("default_factory_module"), context.get("default_factory_name")) if isinstance(
            context, dict) else None
        if factory not in _DEFAULT_FACTORIES:
            shown = ".".join(map(str, factory)) if factory else repr(context)[:80]
            raise FormatError(f"the package's structure holds a collections.defaultdict whose default factory is "
                              f"{shown}: aotpack never imports or calls code a package names (allowed factories: "
                              f"{', '.join(sorted(n for _, n in _DEFAULT_FACTORIES))})",
                              hint="aotpack never writes this: the package was edited; rebuild it from the model")
    for c in spec.children if deep else ():
        _check_contexts(c)


def check_types(spec: TreeSpec, allow_modules=()) -> None:
    """AotpackError unless every type ``spec`` names can be rebuilt in this process;
    FormatError if one names a class that is not of its kind (see ``_rebuilds``) or a
    context that names code (``_check_contexts``)."""
    _check_contexts(spec)
    missing = []
    for kind, name in dict.fromkeys(_typed_nodes(spec)):
        cls = resolve_type(name, allow_modules)
        if cls is None:
            missing.append(name)
        elif not _rebuilds(kind, cls):
            if kind in ("namedtuple", "subclass"):
                what = "a named tuple" if kind == "namedtuple" else "a tensor subclass made of tensors"
                raise FormatError(f"the package's structure names {name} as {what}, which it is not; "
                                  "aotpack does not call it", hint="aotpack never writes this: the package was "
                                                                   "edited; rebuild it from the model")
            raise AotpackError(f"the package returns {name}, which is not registered as a pytree node in this "
                               "process", hint="import the module that registers it before aotpack.load")
    if missing:
        modules = sorted({n.rsplit(".", 1)[0] for n in missing})
        raise AotpackError(f"the package returns or takes {', '.join(missing)}, which this process cannot rebuild: "
                           "the type is not registered here and its module is not imported",
                           hint=f"import {', '.join(modules)} before aotpack.load, or pass "
                                f"aotpack.load(path, allow_modules={modules!r})")


def _is_namedtuple(value) -> bool:
    cls = type(value)
    return isinstance(value, tuple) and (hasattr(cls, "_fields") or hasattr(cls, "n_fields"))


def _fields(cls: type) -> list[str]:
    """Field names in order: a namedtuple's ``_fields``, a structseq's ``__match_args__``."""
    return list(getattr(cls, "_fields", None) or getattr(cls, "__match_args__", ()))


def decode_const(leaf: ConstLeaf) -> Any:
    """The Python value of a constant leaf (inverse of encode_const)."""
    t, v = leaf.type, leaf.value
    if t == "float":
        return float(v)
    if t == "dtype":
        return getattr(torch, v)
    if t == "device":
        return torch.device(v)
    return v


def const_repr(leaf: ConstLeaf) -> str:
    """How a constant leaf reads to a person: ``3``, ``'mean'``, ``torch.float32``."""
    value = decode_const(leaf)
    if isinstance(value, torch.dtype):
        return str(value)
    return repr(value)


def flatten(value: Any, path: str = "", tensors: list | None = None, subclasses: bool = True,
            sizes: list | None = None) -> tuple[TreeSpec, list]:
    """Split ``value`` into a spec and the flat list of its tensors (depth first).

    Args:
      value: a tensor, a constant, or tuples/lists/dicts of them.
      path: how the value is named in messages, e.g. ``"args[0]"``.
      subclasses: take tensor subclasses made of tensors apart (False: they are leaves).
      sizes: where a traced program's output may be a symbolic number (``x.shape[0]``,
        ``x.shape[0] / 2``, ``x.shape[0] > 4`` under ``dynamic=``): each is appended here
        as (path, SymInt/SymFloat/SymBool) and becomes a ``SizeLeaf`` numbered in this
        list (None: a CaptureError, as for every other symbolic number).
    Returns:
      (spec, tensors)
    """
    tensors = [] if tensors is None else tensors
    if sizes is not None and isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        sizes.append((path, value))
        return SizeLeaf(len(sizes) - 1), tensors
    if subclasses and isinstance(value, torch.Tensor) and flattens_into_tensors(value):
        return _flatten_subclass(value, path, tensors), tensors
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return TensorLeaf(len(tensors) - 1), tensors
    if type(value) is IntArgument:
        tensors.append(size_carrier(value.value - value.offset))
        return IntLeaf(len(tensors) - 1, value.offset), tensors
    if type(value) is SizeArgument:  # (a torch.Size of them: the node a torch.Size is, its ints carried)
        children = [flatten(v, f"{path}.{i}", tensors, subclasses, sizes)[0] for i, v in enumerate(value)]
        return NodeSpec(type_name(torch.Size), None, children), tensors
    if isinstance(value, (tuple, list)) and (type(value) in (tuple, list)):
        children = [flatten(v, f"{path}[{i}]", tensors, subclasses, sizes)[0] for i, v in enumerate(value)]
        return (TupleSpec if type(value) is tuple else ListSpec)(children), tensors
    if type(value) is dict:
        keys = list(value)
        for k in keys:
            if not isinstance(k, str):
                raise CaptureError(
                    f"{path} is a dict with a non-string key {k!r}",
                    hint="use string keys in dicts passed to or returned from the program",
                )
        children = [flatten(value[k], f"{path}[{k!r}]", tensors, subclasses, sizes)[0] for k in keys]
        return DictSpec(keys, children), tensors
    if _is_namedtuple(value):
        children = [flatten(v, f"{path}.{f}", tensors, subclasses, sizes)[0] for f, v in zip(_fields(type(value)), value)]
        return NamedTupleSpec(type_name(type(value)), _fields(type(value))[:len(children)], children), tensors
    node = _compat().pytree_node(type(value)) if type(value) not in (tuple, list, dict) else None
    if node is not None:
        try:
            values, context = one_level(value)
        except (TypeError, ValueError) as e:
            raise CaptureError(f"{path} is a {type_name(type(value))}, whose pytree context cannot be stored "
                               f"as JSON ({e})",
                               hint="register it with a JSON context (to_dumpable_context), or return a dict") from None
        keys = context if isinstance(context, list) and len(context) == len(values) and all(
            isinstance(k, str) for k in context) else [str(i) for i in range(len(values))]
        children = [flatten(v, f"{path}.{k}", tensors, subclasses, sizes)[0] for k, v in zip(keys, values)]
        return NodeSpec(type_name(type(value)), context, children), tensors
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise CaptureError(
            f"{path} is a Python number computed from tensor data or a dynamic size "
            f"({type(value).__name__}), which cannot be frozen",
            hint="return a tensor instead (e.g. skip .item()/.tolist(), or wrap with torch.tensor)",
        )
    return encode_const(value, path), tensors


class IntArgument:
    """An example int argument given a Dim (``dynamic={"n": Dim("n")}``): ``flatten``
    makes it an ``IntLeaf`` and its carrier, which ``unflatten`` reads the int back from;
    ``offset``: the Dim's minimum where it is below 0 (treespec.IntLeaf)."""

    __slots__ = ("value", "offset")

    def __init__(self, value: int, offset: int = 0):
        self.value, self.offset = value, offset


def int_leaves(spec: TreeSpec) -> list[IntLeaf]:
    """The int argument leaves of ``spec``, depth first."""
    return [spec] if type(spec) is IntLeaf else [leaf for c in spec.children for leaf in int_leaves(c)]


def int_offsets(spec: TreeSpec) -> dict[int, int]:
    """Flat index -> offset of each int argument's carrier (its size is the int less it)."""
    return {leaf.index: leaf.offset for leaf in int_leaves(spec)}


class SizeArgument(tuple):
    """An example ``torch.Size`` argument given Dims: its ints, each an ``IntArgument`` or
    an int (``flatten`` gives the spec of a torch.Size, whose ``unflatten`` makes one of
    the program's symbolic ints)."""

    __slots__ = ()


def size_carrier(n: int, device="cpu") -> torch.Tensor:
    """The flat input that carries int argument ``n`` to a program: an empty tensor whose
    first size is ``n`` (treespec.IntLeaf says why a size)."""
    return torch.empty((n, 0), dtype=torch.uint8, device=device)


def flattens_into_tensors(t: torch.Tensor) -> bool:
    """Whether ``t`` is a tensor subclass made of other tensors that ``flatten`` takes
    apart: one that runs its own ``__torch_dispatch__`` and says how to flatten and
    rebuild it (``__tensor_flatten__``, ``__tensor_unflatten__``), and is no tensor of
    torch's own tracing (fake, functional)."""
    kind = type(t)
    return (kind is not torch.Tensor and hasattr(kind, "__tensor_unflatten__") and is_wrapper_subclass(t)
            and not computes_as_plain(kind) and not kind.__module__.startswith("torch._"))


def _flatten_subclass(value: torch.Tensor, path: str, tensors: list) -> SubclassSpec:
    """A tensor subclass's spec: its inner tensors as children, its flatten context as
    JSON. CaptureError where the package could not rebuild it as eager has it: a
    context that is not JSON, or a size or strides other than its first inner tensor's
    (the one size the package keeps)."""
    attrs, meta = value.__tensor_flatten__()
    name = type_name(type(value))
    stored = _json_shaped(meta)
    if stored is _NOT_JSON:
        raise CaptureError(f"{path} is a {name} whose flatten context ({type(meta).__name__}) cannot be stored as "
                           "JSON", hint="pass its inner tensors instead, or a subclass whose context is plain data")
    inner = take_apart(value, list(attrs))
    if not sized_as_first_inner(value, inner):
        raise CaptureError(f"{path} is a {name} whose size or strides differ from its first inner tensor's "
                           f"({attrs[0] if attrs else 'none'}): a package rebuilds such tensors at their inner "
                           "tensors' size", hint="pass its inner tensors instead")
    children = [flatten(t, f"{path}.{a}", tensors)[0] for a, t in zip(attrs, inner)]
    return SubclassSpec(name, list(attrs), stored, children)


_NOT_JSON = object()  # (a flatten context JSON cannot hold)


def _json_shaped(value):
    """``value`` with tuples as lists, as JSON gives it back (a context ``(1, 2)`` reads
    back as ``[1, 2]``), or ``_NOT_JSON`` where it holds something JSON cannot (a dtype,
    a key that is no string): the one form a package stores and a call's guard compares."""
    if isinstance(value, (list, tuple)):
        items = [_json_shaped(v) for v in value]
        return _NOT_JSON if any(i is _NOT_JSON for i in items) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return _NOT_JSON
        items = {k: _json_shaped(v) for k, v in value.items()}
        return _NOT_JSON if any(i is _NOT_JSON for i in items.values()) else items
    return value if isinstance(value, _SCALARS) else _NOT_JSON


def sized_as_first_inner(value: torch.Tensor, inner: list) -> bool:
    """Whether a subclass tensor has its first inner tensor's size, strides and offset:
    the one layout a package rebuilds it in (``unflatten``), checked at capture and at
    each call."""
    first = inner[0] if inner else None
    return isinstance(first, torch.Tensor) and (value.shape, value.stride(), value.storage_offset()) == (
        first.shape, first.stride(), first.storage_offset())


def subclass_parts(value: torch.Tensor, carry_grad: bool = True) -> tuple[list[str], Any, list]:
    """A subclass tensor's (inner tensor names, flatten context as JSON gives it back,
    inner tensors): what a call's guard compares with the package's ``SubclassSpec``.
    The inner tensors carry the subclass's gradient where it requires grad
    (``take_apart``), unless ``carry_grad`` is False (a caller that refuses such a tensor)."""
    attrs, meta = value.__tensor_flatten__()
    attrs = list(attrs)
    return attrs, _json_shaped(meta), take_apart(value, attrs) if carry_grad else [getattr(value, a) for a in attrs]


# Gradients across a subclass boundary. A package computes on a subclass's inner tensors;
# eager's autograd tracks the subclass tensor itself, and its gradient is one of the same
# class (TwoTensor's is a TwoTensor). As AOT autograd does for torch.compile, the
# gradient is carried across the boundary as its inner tensors: taking a subclass tensor
# that requires grad apart gives inner tensors whose gradients, rebuilt into the
# subclass, are its gradient; rebuilding one from inner tensors that require grad gives
# a tensor whose gradient, taken apart, is theirs. The same two steps serve the capture
# (the joint graph of the inner tensors) and a call (the caller's subclass tensors).


class _TakeApart(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, attrs):
        # (no inner gradient is None, not zeros: autograd runs this backward even where the
        # program used none of them, and eager's gradient of an unused input is None)
        ctx.set_materialize_grads(False)
        ctx.rebuild = (type(value), attrs, value.__tensor_flatten__()[1])
        # (detached aliases: the caller's inner tensors keep no history of this call)
        return tuple(getattr(value, a).detach() for a in attrs)

    @staticmethod
    def backward(ctx, *grads):
        if all(g is None for g in grads):
            return None, None
        cls, attrs, meta = ctx.rebuild
        first = next(g for g in grads if g is not None)
        grads = [g if g is not None else torch.zeros_like(first) for g in grads]
        return cls.__tensor_unflatten__(dict(zip(attrs, grads)), meta, grads[0].size(), grads[0].stride()), None


class _Rebuild(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cls, attrs, meta, *inner):
        ctx.kind = (cls, attrs, meta)
        parts = dict(zip(attrs, (t.detach() for t in inner)))
        return cls.__tensor_unflatten__(parts, meta, inner[0].size(), inner[0].stride())

    @staticmethod
    def backward(ctx, grad):
        cls, attrs, meta = ctx.kind
        if grad is None:
            return (None, None, None, *[None] * len(attrs))
        gradient_parts(cls, attrs, meta, grad)
        # (taken apart with its history where it has one, backward(create_graph=True): a
        # TwoTensor's inner tensors carry none of their own, and the gradients computed
        # from them would require no grad where eager's do)
        return (None, None, None, *take_apart(grad, list(attrs)))


def gradient_parts(cls, attrs, meta, grad) -> list:
    """The inner tensors ``attrs`` of ``grad``, a gradient that must be a ``cls`` of
    flatten context ``meta``; AotpackError naming both kinds where it is not."""
    got_attrs, got_meta = grad.__tensor_flatten__() if type(grad) is cls else (None, None)
    # (contexts compared as a package stores them: a tuple and a list are one context)
    if type(grad) is not cls or list(got_attrs) != list(attrs) or _json_shaped(got_meta) != _json_shaped(meta):
        raise AotpackError(
            f"the gradient reaching a {type_name(cls)} (context {meta!r}) is a {type_name(type(grad))}"
            + (f" of context {got_meta!r}" if type(grad) is cls else "")
            + ": an aotpack package carries a subclass tensor's gradient as the inner tensors of one of its "
            "class and context, as AOT autograd does",
            hint="differentiate with respect to tensors of that class (a TwoTensor output's gradient is a "
                 "TwoTensor), or compile with train=False")
    return [getattr(grad, a) for a in attrs]


class SubclassGradient(torch.autograd.Function):
    """A plain tensor whose gradient is a tensor subclass (a Linear's weight meeting a
    TwoTensor input: eager's gradient of the weight is a TwoTensor), as a package's
    capture traces it: ``SubclassGradient.apply((cls, attrs, meta), t, *companions)``
    stands for ``t`` in the program's run, and its backward hands the gradient's inner
    tensors out, the first as ``t``'s gradient, the others as the gradients of
    ``companions`` (tensors of those inner tensors' shapes that the program never
    reads). The joint graph so returns each inner tensor of the gradient as a plain
    tensor, and a call rebuilds the subclass from them (``meta.train.subclass_grads``),
    as AOT autograd's subclass wrappers return such a gradient for torch.compile."""

    @staticmethod
    def forward(ctx, kind, t, *companions):
        ctx.kind = kind
        return t.detach()  # (an alias: the program reads t's values)

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return None, None, *[None] * (len(ctx.kind[1]) - 1)
        return None, *gradient_parts(*ctx.kind, grad)


# A call's subclass inputs by their first inner tensor (the guard takes them apart,
# ``passed_apart``), so an output made of exactly an input's inner tensors (the program
# returned the input) is the caller's own tensor, as eager returns it: the same object,
# its requires_grad included. Weak both ways: the registry keeps nothing alive.
_PASSED: Any = None


def passed_apart(value: torch.Tensor, inner: list) -> None:
    """Record that a call took subclass tensor ``value`` apart into ``inner``."""
    global _PASSED
    if _PASSED is None:
        from torch.utils.weak import WeakIdKeyDictionary

        _PASSED = WeakIdKeyDictionary()
    if inner:
        _PASSED[inner[0]] = weakref.ref(value)


def _passed_whole(cls, attrs: list[str], meta, inner: list):
    """The caller's subclass tensor whose inner tensors are exactly ``inner`` (the same
    objects), of class ``cls`` and context ``meta``; else None."""
    ref = _PASSED.get(inner[0]) if _PASSED is not None and inner else None
    value = ref() if ref is not None else None
    if value is None or type(value) is not cls:
        return None
    names, context = value.__tensor_flatten__()
    if list(names) != list(attrs) or _json_shaped(context) != meta:
        return None
    return value if all(getattr(value, a) is t for a, t in zip(attrs, inner)) else None


def take_apart(value: torch.Tensor, attrs: list[str]) -> list:
    """A subclass tensor's inner tensors ``attrs``; where it requires grad under grad
    mode, aliases of them whose gradients rebuild into its gradient."""
    if value.requires_grad and torch.is_grad_enabled():
        return list(_TakeApart.apply(value, tuple(attrs)))
    return [getattr(value, a) for a in attrs]


def _rebuild_subclass(cls, attrs: list[str], meta, inner: list) -> torch.Tensor:
    """``cls`` from its inner tensors; where one requires grad under grad mode, a tensor
    whose gradient, taken apart, is theirs (``_Rebuild``)."""
    if torch.is_grad_enabled():
        for t in inner:  # (a loop, not any(): this runs at every call that returns such a tensor)
            if isinstance(t, torch.Tensor) and t.requires_grad:
                return _Rebuild.apply(cls, tuple(attrs), meta, *inner)
    if _PASSED is not None:
        whole = _passed_whole(cls, attrs, meta, inner)
        if whole is not None:
            return whole
    first = inner[0]
    return cls.__tensor_unflatten__(dict(zip(attrs, inner)), meta, first.size(), first.stride())


def unflatten(spec: TreeSpec, tensors: list, plain: bool = False, sizes: list = ()) -> Any:
    """Rebuild the value that ``flatten`` described, taking tensors from ``tensors`` and
    the ints of size leaves from ``sizes``.

    ``plain=True``: registered pytree nodes come back as dicts (by their keys) and named
    tuples as tuples, with no type to resolve (``load(..., plain_types=True)``)."""
    kind = spec.kind
    if kind == "tensor":
        return tensors[spec.index]
    if kind == "const":
        return decode_const(spec)
    if kind == "size":
        return sizes[spec.index]
    if kind == "int":  # (a symbolic int where the carrier's size is: in the traced program)
        return tensors[spec.index].shape[0] + spec.offset if spec.offset else tensors[spec.index].shape[0]
    children = [unflatten(c, tensors, plain, sizes) for c in spec.children]
    if plain and kind == "namedtuple":
        return tuple(children)
    if plain and kind in ("node", "subclass"):
        return dict(zip(spec.labels(), children))
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(spec.keys, children))
    cls = resolve_type(spec.type)
    if cls is None or (kind == "namedtuple" and not _rebuilds(kind, cls)):  # load checked first (check_types):
        check_types(spec)  # this is a package used without load
    if kind == "namedtuple":
        return cls(*children) if hasattr(cls, "_fields") else cls(children)
    if kind == "subclass":
        if not _rebuilds(kind, cls):
            check_types(spec)
        return _rebuild_subclass(cls, list(spec.attrs), spec.meta, children)
    if cls is torch.Size:  # (torch's pytree registration rebuilds a plain tuple: eager returns a torch.Size)
        return torch.Size(children)
    node = _compat().pytree_node(cls)
    if node is None:
        raise AotpackError(f"{spec.type} is not registered as a pytree node in this process",
                           hint="import the module that registers it before calling the package")
    _check_contexts(spec, deep=False)  # (also where no load checked it first: example_inputs, repro)
    return node[1](children, node[3](spec.context))


def one_level(value) -> tuple[list, Any]:
    """A namedtuple's or registered pytree node's children and JSON context (None for
    a namedtuple), one level down: what ``flatten`` records for it."""
    if _is_namedtuple(value):
        return list(value), None
    flatten_fn, _, to_json, _ = _compat().pytree_node(type(value))
    values, context = flatten_fn(value)
    return list(values), json.loads(json.dumps(to_json(context)))


def leaf_keys(spec: TreeSpec, keys: tuple = (), depth: int | None = None) -> list[tuple[tuple, TreeSpec]]:
    """Every leaf of ``spec`` with its key path (list indices, dict keys, field names),
    depth first (tensors in flat order); ``depth=1``: the direct children instead."""
    if isinstance(spec, (TensorLeaf, ConstLeaf, SizeLeaf)) or depth == 0:
        return [(keys, spec)]
    out = []
    for k, c in zip(spec.labels(), spec.children):
        out += leaf_keys(c, keys + (k,), None if depth is None else depth - 1)
    return out


def leaf_paths(spec: TreeSpec, path: str = "") -> list[tuple[str, TreeSpec]]:
    """Every leaf of ``spec`` with its path as text (``x['pair'][0]``), depth first."""
    return [(path + "".join(f"[{k!r}]" for k in keys), leaf) for keys, leaf in leaf_keys(spec)]


def named_leaves(in_spec: TreeSpec, names: list[str]) -> list[tuple[str, TreeSpec]]:
    """The leaves of an argument spec (one child per parameter), paths by parameter name."""
    return [pair for name, child in zip(names, in_spec.children) for pair in leaf_paths(child, name)]


def tensor_paths(in_spec: TreeSpec, names: list[str]) -> list[str]:
    """The path of each flat input tensor of an argument spec (``x['pair'][0]``), in order."""
    return [path for path, leaf in named_leaves(in_spec, names) if isinstance(leaf, TensorLeaf)]


def sizes_in_common(a: TreeSpec, b: TreeSpec) -> TreeSpec | None:
    """The output spec two variants of one program share: ``a`` and ``b`` where they are
    the same, a size leaf where they return other ints (a variant compiled for one size
    returns ``x.shape[0]`` as a constant, one with a Dim as a size, one compiled for
    another size as another constant: each variant returns its own); None where they
    differ otherwise. Size leaves numbered depth first.

    >>> sizes_in_common(TupleSpec([TensorLeaf(0), ConstLeaf("int", 1)]), TupleSpec([TensorLeaf(0), SizeLeaf(0)]))
    TupleSpec(children=(TensorLeaf(index=0), SizeLeaf(index=0)))
    """
    count = iter(range(1 << 30))

    def walk(x, y):
        numbers = [isinstance(z, SizeLeaf) or (isinstance(z, ConstLeaf) and (z.type in ("int", "bool") or (
            z.type == "float" and isinstance(z.value, float)))) for z in (x, y)]  # (inf and nan are text: kept)
        if all(numbers) and (x != y or isinstance(x, SizeLeaf)):
            return SizeLeaf(next(count))
        if type(x) is not type(y) or len(x.children) != len(y.children) or any(
                getattr(x, f) != getattr(y, f) for f in x._fields if f != "children"):
            return None
        children = [walk(c, d) for c, d in zip(x.children, y.children)]
        if None in children:
            return None
        return x if not children else type(x)(**{f: children if f == "children" else getattr(x, f) for f in x._fields})

    return walk(a, b)


def sizes_along(common: TreeSpec, spec: TreeSpec, sizes: list) -> list:
    """A variant's ``output_sizes`` numbered as ``common`` (``sizes_in_common`` of its
    ``spec``) numbers its size leaves: its own sizes, and the constants where ``common``
    has a size leaf (the variant's number there, fixed: an int as it is, a float or bool
    as a typed expression).

    >>> sizes_along(TupleSpec([SizeLeaf(0), SizeLeaf(1)]), TupleSpec([ConstLeaf("float", 2.5), ConstLeaf("int", 3)]), [])
    [{'expr': '2.5', 'type': 'float'}, 3]
    """
    out: list = [None] * len(common.size_indices())
    for (_, shared), (_, leaf) in zip(leaf_keys(common), leaf_keys(spec)):
        if isinstance(shared, SizeLeaf):
            out[shared.index] = sizes[leaf.index] if isinstance(leaf, SizeLeaf) else leaf.value \
                if leaf.type == "int" else {"expr": repr(leaf.value), "type": leaf.type}
    return out


def describe(spec: TreeSpec) -> str:
    """A one-line picture of a spec's structure: ``(T, {'a': T, 'n': 2})``."""
    kind = spec.kind
    if kind == "tensor":
        return "T"
    if kind == "int":
        return "int"
    if kind == "const":
        return const_repr(spec)
    if kind == "size":
        return "number"
    inner = ", ".join(describe(c) for c in spec.children)
    if kind == "dict":
        inner = ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(spec.keys, spec.children))
        return "{" + inner + "}"
    if kind == "tuple":
        return "(" + inner + ("," if len(spec.children) == 1 else "") + ")"
    if kind in ("namedtuple", "node", "subclass"):
        inner = ", ".join(f"{k}={describe(c)}" for k, c in zip(spec.labels(), spec.children))
        return f"{spec.type.rsplit('.', 1)[-1]}({inner})"
    return "[" + inner + "]"


def call_arguments(params: list[tuple[str, str]], values: list) -> tuple[list, dict]:
    """Per-parameter values (``params``: (name, kind) as ``PARAM_KINDS`` names kinds) ->
    the (args, kwargs) of a call: positional parameters and ``*args`` positionally,
    keyword-only parameters and ``**kwargs`` by name."""
    args: list = []
    kwargs: dict = {}
    for (name, kind), v in zip(params, values):
        if kind in ("positional_only", "positional_or_keyword"):
            args.append(v)
        elif kind == "var_positional":
            args.extend(v)
        elif kind == "keyword_only":
            kwargs[name] = v
        else:
            kwargs.update(v)
    return args, kwargs

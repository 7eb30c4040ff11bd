
"""The manifest as typed records: one schema, read and written by the same code.

Each record is a class (``Record``) whose annotated fields are the JSON keys of that part of the manifest,
with their types. ``Manifest.from_json(obj)`` walks those types: any value of the wrong
type, a missing key, or a broken link between fields (a weight name no one stores, an
input index past the end) is a ``FormatError`` naming the field, before any reader sees
the manifest; ``to_json()`` writes it back. There is no second description to keep in
step: the field declarations below are the schema (torch.export's serializer and
jax.export's flatbuffer schema work the same way).

Keys a record does not know (written by a later, compatible aotpack) are kept in its
``extra`` and written back as they were, so rewriting a package (``add_variant``,
``load(..., rewrite=True)``) loses nothing.

Example:
    >>> import aotpack, torch
    >>> batch = aotpack.Dim("batch", min=1, max=4096)
    >>> pkg = aotpack.compile(torch.nn.Linear(512, 10), (torch.randn(8, 512),), dynamic={"input": {0: batch}})
    >>> m = aotpack.inspect(pkg.save("mlp.aot")).manifest
    >>> m.variants[0].inputs[0].shape, m.variants[0].dims
    (['batch', 512], {'batch': Dim(min=1, max=4096, exclude=[])})
    >>> Manifest.from_json(m.to_json()) == m
    True

This module deliberately has no ``from __future__ import annotations``: the converters
read each field's type as an object, once per class, not by evaluating strings at load.
"""

import functools
import inspect
import json
import keyword
import math
import types
import typing
from typing import Any, Union

import torch

from .. import treespec
from ..tree import PARAM_KINDS, int_leaves
from . import format as fmt
from .format import _need
from .sizes import NUMBER_TYPES, number_evaluator, size_evaluator

__all__ = ["Manifest", "Versions", "Platform", "Program", "Param", "WeightInfo", "Frozen", "Variant", "Input",
           "Dim", "Alias", "Meta", "SubMeta", "Train", "Mutation", "SubclassGrad", "subclass_grad_places", "Job", "Group",
           "Member"]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- Checks a type cannot say (used as Checked(type, check)) --------------------------

def _dtype(v, where: str) -> None:
    _need(isinstance(getattr(torch, v, None), torch.dtype), f"{where} names no dtype")


def _device(v, where: str) -> None:
    # a device type a package runs on (inputs and variants name types, never an index)
    _need(v in fmt.DEVICE_TYPES, f"{where} names no device a package runs on ({str(v)[:40]!r})")


def _shape(v, where: str) -> None:
    _need(len(v) <= 64, f"{where} is not a shape")
    for d in v:
        _need((_is_int(d) and 0 <= d < 2**62) or isinstance(d, str) or (isinstance(d, dict) and isinstance(
            d.get("expr"), str) and len(d["expr"]) <= 256), f"{where} has a bad size {str(d)[:80]}")


def _numbers(v, where: str) -> None:
    """A variant's returned numbers (``output_sizes``): as shapes hold sizes, ints of either
    sign, and ``{"expr", "type"}`` (format version 18)."""
    _need(len(v) <= 64, f"{where} is not a list of numbers")
    for d in v:
        _need((_is_int(d) and abs(d) < 2**62) or isinstance(d, str) or (
            isinstance(d, dict) and isinstance(d.get("expr"), str) and len(d["expr"]) <= 256
            and set(d) <= {"expr", "type"} and d.get("type", "int") in NUMBER_TYPES),
              f"{where} has a bad number {str(d)[:80]}")


def _size_value(v, where: str) -> None:
    _shape([v], where)


def _nat(v, where: str) -> None:
    _need(0 <= v < 2**62, f"{where} is not a size")


def _layout(v, where: str) -> None:
    if v == "contiguous":
        return
    dims = v.get("order", v.get("stride")) if isinstance(v, dict) and len(v) == 1 else None
    _need(isinstance(dims, list) and len(dims) <= 64, f"{where} is not a layout")
    if "order" in v:
        _need(all(_is_int(x) for x in dims) and sorted(dims) == list(range(len(dims))),
              f"{where} is not a dimension order")
    else:  # strides: ints, or (format version 11) sizes of the call's Dims, as shapes hold them
        _shape(dims, where)


def strides_follow_dims(layout) -> bool:
    """Whether ``layout`` is exact strides some of which follow the call's Dims (a Dim's
    name or ``{"expr": "2*cols"}``: format version 11)."""
    return isinstance(layout, dict) and any(not _is_int(x) for x in layout.get("stride", ()))


def typed_numbers(numbers: list) -> bool:
    """Whether returned numbers (``Variant.output_sizes``) hold one of a type (a float, a
    bool, an int past the size grammar: format version 18)."""
    return any(isinstance(x, dict) and "type" in x for x in numbers)


def is_size_carrier(g) -> bool:
    """Whether input guard ``g`` is the carrier of an int argument (``treespec.IntLeaf``):
    an empty uint8 tensor of shape ``(n, 0)`` that needs no grad."""
    return g.dtype == "uint8" and len(g.shape) == 2 and g.shape[1] == 0 and not g.requires_grad


def _identifier(v, where: str) -> None:
    _need(v.isidentifier() and not keyword.iskeyword(v), f"{where} is not a Python identifier")


def _param_kind(v, where: str) -> None:
    _need(v in PARAM_KINDS, f"{where} is an unknown parameter kind")


PLAIN_KEYS = (bool, int, str, type(None))  # the keys a plain dict may have (format 16)
MAX_EXCLUDED = 64  # sizes a Dim may exclude (variants[].dims[].exclude); no real program has more
NOT_PLAIN = object()  # plain_value's answer for a value JSON cannot hold as it is


def plain_value(v, depth: int = 0):
    """``v`` as the JSON a manifest holds for a module's Python attribute (bool, int,
    finite float, str, None; tuples and lists of them, as lists; a ``torch.dtype`` as
    ``{"dtype": name}`` and a ``torch.device`` as ``{"device": str}``, format version 8;
    a dict of them with keys of those scalars as ``{"dict": [[key, value], ...]}``, format
    version 16, so no dict's JSON reads as a dtype's), or NOT_PLAIN.

    >>> plain_value((1, 2.5, "x")), plain_value(float("nan")) is NOT_PLAIN
    ([1, 2.5, 'x'], True)
    >>> plain_value([torch.float16, torch.device("cpu")])
    [{'dtype': 'float16'}, {'device': 'cpu'}]
    >>> plain_value({"scale": 2.0, 1: None})
    {'dict': [['scale', 2.0], [1, None]]}
    """
    if isinstance(v, _FunctionName):
        return {"function": str(v)}
    if v is None or isinstance(v, (bool, str)):
        return v if not isinstance(v, str) or len(v) <= 256 else NOT_PLAIN
    if isinstance(v, int):
        return v if -2**63 <= v < 2**63 else NOT_PLAIN
    if isinstance(v, float):
        return v if math.isfinite(v) else NOT_PLAIN
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.device):
        return {"device": str(v)}
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType)):
        return {"function": function_name(v)}
    if isinstance(v, functools.partial):  # (``partial(F.leaky_relu, negative_slope=0.1)``: its function and values)
        return {"function": name} if (name := _partial_name(v, depth)) is not None else NOT_PLAIN
    if isinstance(v, (tuple, list)) and depth < 4 and len(v) <= 64:
        items = [plain_value(x, depth + 1) for x in v]
        return NOT_PLAIN if any(x is NOT_PLAIN for x in items) else items
    if isinstance(v, dict) and depth < 4 and len(v) <= 64:
        if not all(isinstance(k, PLAIN_KEYS) for k in v):
            return NOT_PLAIN
        items = [[plain_value(k, depth + 1), plain_value(x, depth + 1)] for k, x in v.items()]
        return NOT_PLAIN if any(x is NOT_PLAIN for pair in items for x in pair) else {"dict": items}
    return NOT_PLAIN


def functions_inside(path: str, value, depth: int = 0):
    """(path, function) for each Python or builtin function a list, tuple or dict holds,
    at any depth ``plain_value`` writes (``ACTS['gelu']``, ``ACTS['pair'][0]``): their
    code is recorded (``function_code``) and compared at load as a global function's.

    >>> [p for p, _ in functions_inside("global:ACTS", {"gelu": torch.tanh, "k": [2, abs]})]
    ["global:ACTS['gelu']", "global:ACTS['k'][1]"]
    """
    if isinstance(value, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return
    for where, v in items:
        if isinstance(v, (types.FunctionType, types.BuiltinFunctionType)):
            yield where, v
        elif depth < 4:
            yield from functions_inside(where, v, depth + 1)


def same_plain(a, b) -> bool:
    """Whether two plain values' JSON (``plain_value``) are the same value of the same
    type: ``2``, ``2.0`` and ``True`` compare equal in Python, but a program computing
    with each gives other dtypes (``x * 2`` of an integer tensor stays integer).

    >>> same_plain(2, 2), same_plain(2, 2.0), same_plain([1, True], [1, 1])
    (True, False, False)
    """
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_plain, a, b))
    if isinstance(a, dict) and isinstance(b, dict):  # (a dtype's, a device's, a function's: strings inside)
        return same_plain(a["dict"], b["dict"]) if "dict" in a and "dict" in b else a == b
    return type(a) is type(b) and a == b


def class_name(cls: type) -> str:
    """``torch.nn.modules.linear:Linear``: how a manifest names a module's class (its
    module, then its qualified name, which ``same_class`` compares: a class defined in a
    script is ``__main__:Model`` there and ``train:Model`` where that script is imported)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def same_class(a: str, b: str) -> bool:
    """Whether two ``class_name``s name the same class as far as a bound module can tell."""
    return a.rpartition(":")[2] == b.rpartition(":")[2]


def _partial_name(p: functools.partial, depth: int = 0) -> str | None:
    """``functools.partial(torch._C._nn.leaky_relu, negative_slope=0.1)``: a partial of a
    function with plain arguments, named by its function and their values (another value
    is another name: compared as a function global is); a tensor argument as ``<tensor>``
    (a bound module's is read where the partial holds it, at each call: homes.py); None
    for any other."""
    if not isinstance(p.func, (types.FunctionType, types.BuiltinFunctionType, functools.partial)):
        return None

    def text(a):
        if isinstance(a, torch.Tensor):
            return "<tensor>"
        value = plain_value(a, depth + 1)
        return None if value is NOT_PLAIN else json.dumps(value, sort_keys=True)

    args = [text(a) for a in p.args]
    keywords = {k: text(a) for k, a in sorted(p.keywords.items())}
    inner = _partial_name(p.func, depth + 1) if isinstance(p.func, functools.partial) else function_name(p.func)
    if inner is None or depth > 4 or None in args or None in keywords.values():
        return None
    values = args + [f"{k}={a}" for k, a in keywords.items()]
    name = f"functools.partial({', '.join([inner, *values])})"
    if len(name) <= 256:
        return name
    import hashlib  # (a long one: its start and a digest of all of it, so another value is another name)

    return f"{name[:200]}#{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def function_name(fn) -> str:
    """What names a function a module's code calls through an attribute (``self.act =
    F.gelu``): ``torch.nn.functional.gelu``; for one no import reaches (a lambda, a
    function defined inside another), that name and a digest of its code, so another
    lambda is another value (within one Python version; across versions a bound call
    is refused, never run with the wrong function).

    >>> function_name(torch.nn.functional.gelu)
    'torch._C._nn.gelu'
    """
    if isinstance(fn, functools.partial):
        return _partial_name(fn) or f"functools.partial({function_name(fn.func) if callable(fn.func) else '?'}, ...)"
    module = getattr(fn, "__module__", None) or getattr(getattr(fn, "__objclass__", None), "__module__", None)
    name = f"{module or '?'}.{getattr(fn, '__qualname__', None) or getattr(fn, '__name__', '?')}"
    code = getattr(fn, "__code__", None)
    if "<" not in name or code is None:
        return name[:256]
    return f"{name[:180]}#{code_digest(code)[:16]}"


def code_digest(code: types.CodeType) -> str:
    """A digest of what a code object does: its bytecode, constants and names, nested code
    (a comprehension, an inner function) by its own digest; not its file, lines or local
    names, so code moved within its file keeps its digest. Bytecode differs between
    Python versions: compare digests of one version only. A set literal's constant is
    taken in sorted order: its repr follows the process's string hashes
    (``test_code_with_a_set_literal_binds_in_a_process_of_another_hash_seed``)."""
    import hashlib

    consts = tuple(map(_stable_const, code.co_consts))
    return hashlib.sha256(code.co_code + repr(consts).encode() + repr(code.co_names).encode()).hexdigest()


def _stable_const(c):
    """A code constant as ``code_digest`` reads it, the same in every process: nested code
    by its digest, a frozenset in sorted order; anything else as it is (so the digests
    of code without them are those of earlier releases)."""
    if isinstance(c, types.CodeType):
        return f"<code {code_digest(c)}>"
    if isinstance(c, frozenset):
        return f"frozenset({sorted(repr(_stable_const(v)) for v in c)})"
    if isinstance(c, tuple) and any(isinstance(v, (frozenset, tuple, types.CodeType)) for v in c):
        return tuple(map(_stable_const, c))
    return c


def children_held(module: torch.nn.Module) -> tuple[str, dict]:
    """Where a container module holds its children (``module_children``): its
    ``_parameters`` for a ParameterList or ParameterDict, else its ``_modules``; the
    attribute's name and the dict.

    >>> children_held(torch.nn.ParameterList([torch.nn.Parameter(torch.ones(1))]))[0]
    '_parameters'
    """
    name = "_parameters" if isinstance(module, (torch.nn.ParameterList, torch.nn.ParameterDict)) else "_modules"
    return name, module.__dict__[name]


def weight_names(module: torch.nn.Module) -> list[str]:
    """The names of the parameters and buffers ``module.parameters()`` and ``.buffers()``
    iterate, in that order (``iterated_weights``: compared at capture and at load).

    >>> weight_names(torch.nn.BatchNorm1d(2))
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    """
    return [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]


def method_function(cls: type, name: str):
    """The function ``cls`` resolves method ``name`` to, without its decorators'
    wrappers (``@torch.no_grad()``, transformers' ``@can_return_tuple``): the code that
    runs; None where there is none."""
    fn = inspect.getattr_static(cls, name, None)
    fn = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
    try:
        return inspect.unwrap(fn) if callable(fn) else None
    except ValueError:  # a cycle of __wrapped__
        return None


def class_code(cls: type, methods) -> str | None:
    """``"py3.11:forward,helper:<digest>"``: the code of a module class's ``methods`` (the
    names of those that ran for a program) as ``cls`` resolves them, where it is not
    torch's (pinned by the torch version a package checks): a bound module whose class
    was edited since the compile has another one. None where no such method is left.
    ``class_code(cls, stored.split(":")[1].split(","))`` recomputes a stored one."""
    import hashlib

    parts = []
    for name in sorted(set(methods)):
        fn = method_function(cls, name)
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType) and (getattr(fn, "__module__", None) or "").split(".")[0] != "torch":
            parts.append((name, code_digest(code)))
    if not parts:
        return None
    digest = hashlib.sha256(" ".join(f"{n}:{d}" for n, d in parts).encode()).hexdigest()[:32]
    return f"{_prefixes()[0]}:{','.join(n for n, _ in parts)}:{digest}"


# C functions and C methods of a class (a method descriptor: ``torch.Tensor.relu``)
_BUILTIN_TYPES = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
                  types.ClassMethodDescriptorType)


def function_code(fn) -> str | None:
    """``"py3.11:<digest>"``: what a Python function a module's call runs (a global helper
    its code calls, ``self.act = my_gelu``, the ``forward`` it resolves) does: its code
    (``code_digest``), and what its defaults and closure cells hold (plain data by value,
    functions by their code: a ``functools.wraps`` wrapper holds the function it wraps;
    ``make_act(0.1)`` and ``make_act(0.2)`` share their code; a ``functools.partial`` of
    one with plain values is that function's code and those values). For a function of torch's
    the torch version is part of the prefix (``py3.11+torch2.13.0``); a builtin function
    is ``"<prefix>:builtin"`` (a Python wrapper of the same name is another code). None
    for another callable. A function patched or edited since
    the compile has another one; compare those of one prefix only.

    >>> def scaled(k):
    ...     return lambda x: x * k
    >>> function_code(scaled(2)) == function_code(scaled(2)), function_code(scaled(2)) == function_code(scaled(3))
    (True, False)
    >>> function_code(torch.nn.functional.gelu).endswith(":builtin")
    True
    """
    import hashlib

    if isinstance(fn, _BUILTIN_TYPES):  # (a C function; a C method of a class, ``torch.Tensor.relu``)
        return f"{code_prefix(fn)}:builtin"
    if isinstance(fn, functools.partial):  # (its function's code and its values, under its function's prefix)
        inner, name = function_code(fn.func), _partial_name(fn)
        if inner is None or name is None:
            return None
        prefix = inner.rsplit(":", 1)[0]
        return f"{prefix}:{hashlib.sha256(f'{inner} {name}'.encode()).hexdigest()[:32]}"
    if not isinstance(fn, types.FunctionType):
        return None

    def held(value) -> str:  # (a default's or a cell's: plain data by value, a function by its code)
        inner = getattr(value, "__code__", None)
        if isinstance(inner, types.CodeType):
            return _stable_const(inner)
        return repr(data) if (data := plain_value(value)) is not NOT_PLAIN else type(value).__qualname__

    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(held(cell.cell_contents))
        except ValueError:  # (an empty cell)
            cells.append("<empty>")
    defaults = [held(v) for v in fn.__defaults__ or ()]
    kwdefaults = sorted((k, held(v)) for k, v in (fn.__kwdefaults__ or {}).items())
    text = f"{code_digest(fn.__code__)} {defaults!r} {kwdefaults!r} {cells!r}"
    return f"{code_prefix(fn)}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def resolved_forward(module: torch.nn.Module):
    """The ``forward`` a module's call runs, as set: the instance's own (accelerate's hooks
    set one), else its class's function as the class holds it (a patch's wrapper, not the
    function it wraps)."""
    own = module.__dict__.get("forward")
    return own if own is not None else inspect.getattr_static(type(module), "forward", None)


# a module's hook dicts, in the order torch runs them, and what each holds
HOOK_KINDS = {"_forward_pre_hooks": "forward pre-hook", "_forward_hooks": "forward hook",
              "_backward_pre_hooks": "backward pre-hook", "_backward_hooks": "backward hook"}


# what a name a module's code calls may hold and compare as a function (its code traced in)
FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, functools.partial)


def module_hooks(module) -> list[str]:
    """The hooks registered on ``module`` itself (not its submodules), in order, each as
    ``"<kind>: <code>"``: its function's ``function_code`` (a bound method's function's;
    another callable, ``WeightNorm``'s, by its class). A module's package runs the hooks
    registered at compile (torch.export traces them in) and no other, so a bound module
    is compared on them (``Variant.module_hooks``).

    >>> lin = torch.nn.Linear(2, 2)
    >>> _ = lin.register_forward_hook(lambda m, args, out: out * 2)
    >>> [h.split(": ")[0] for h in module_hooks(lin)]
    ['forward hook']
    """
    found = []
    for name, kind in HOOK_KINDS.items():
        for hook in (module.__dict__.get(name) or {}).values():
            code = function_code(hook) or function_code(getattr(hook, "__func__", None)) or class_name(type(hook))
            found.append(f"{kind}: {code}")
    return found


def code_prefix(fn) -> str:
    """What a ``function_code`` digest is comparable within: the Python version (bytecode
    differs between them), and for code in torch's files torch's version."""
    python, torch_prefix, torch_dir = _prefixes()
    code = getattr(fn, "__code__", None)
    module = getattr(fn, "__module__", None) or getattr(getattr(fn, "__objclass__", None), "__module__", None)
    in_torch = code.co_filename.startswith(torch_dir) if code is not None else (module or "").split(".")[0] == "torch"
    return torch_prefix if in_torch else python


def code_comparable(stored: str) -> bool:
    """Whether a stored ``function_code`` can be compared in this process: made under
    this Python version, and for torch's code this torch version."""
    python, torch_prefix, _ = _prefixes()
    prefix = stored.partition(":")[0]
    return prefix == python or prefix == torch_prefix


@functools.cache
def _prefixes() -> tuple[str, str, str]:
    """(``py3.11``, ``py3.11+torch2.13.0``, torch's folder) of this process."""
    import os
    import sys

    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return python, f"{python}+torch{torch.__version__}", os.path.dirname(torch.__file__) + os.sep


def holds_torch_values(v) -> bool:
    """Whether a plain value's JSON holds a dtype, device or function (format version 8)."""
    return isinstance(v, dict) or (isinstance(v, list) and any(map(holds_torch_values, v)))


def holds_dict(v) -> bool:
    """Whether a plain value's JSON holds a dict (format version 16)."""
    return (isinstance(v, dict) and "dict" in v) or (isinstance(v, list) and any(map(holds_dict, v)))


def python_value(v, depth: int = 0):
    """The Python value a plain value's JSON stands for; NOT_PLAIN where it is none."""
    if isinstance(v, dict) and set(v) == {"dict"} and isinstance(v["dict"], list) and depth < 4:
        pairs = [[python_value(x, depth + 1) for x in pair] for pair in v["dict"]
                 if isinstance(pair, list) and len(pair) == 2]
        if len(pairs) != len(v["dict"]) or any(x is NOT_PLAIN for pair in pairs for x in pair):
            return NOT_PLAIN
        try:
            return dict(map(tuple, pairs))
        except TypeError:  # (a key no dict can hold: a list)
            return NOT_PLAIN
    if isinstance(v, dict):
        if len(v) != 1 or not isinstance(name := next(iter(v.values())), str):
            return NOT_PLAIN
        if "function" in v:  # compared by name: the function itself may not import here
            return _FunctionName(name) if len(name) <= 256 else NOT_PLAIN
        if "dtype" in v:
            return dtype if isinstance(dtype := getattr(torch, name, None), torch.dtype) else NOT_PLAIN
        try:
            return torch.device(name) if "device" in v and len(name) <= 64 else NOT_PLAIN
        except (RuntimeError, ValueError):
            return NOT_PLAIN
    if isinstance(v, list) and depth < 4:
        items = [python_value(x, depth + 1) for x in v]
        return NOT_PLAIN if any(x is NOT_PLAIN for x in items) else items
    return v


class _FunctionName(str):
    """A function as a manifest names it (``python_value``'s answer for one): its repr is
    the name, and ``plain_value`` gives the JSON back."""

    def __repr__(self):
        return f"the function {str(self)}"


def _plain(v, where: str) -> None:
    value = python_value(v)
    _need(value is not NOT_PLAIN and plain_value(value) == v, f"{where} is not a plain value")


class Checked:
    """A field type: a value of type ``base`` that also passes ``check(value, where)``.

    What ``typing.Annotated[base, check]`` says, built for a fraction of its cost: creating
    Annotated types (and unions of them with None) took 0.3 ms of every load's import.
    ``Checked(...) | None`` is an optional field."""

    __slots__ = ("base", "check")

    def __init__(self, base, check):
        self.base, self.check = base, check

    def __or__(self, other):
        if other is not None:
            return NotImplemented
        return _Optional(self)


class Coded(Checked):
    """A field type whose JSON ``parse(value, where)`` reads (and checks) into another
    object, and ``dump(obj)`` writes back: a tree spec (treespec.py)."""

    __slots__ = ("dump",)

    def __init__(self, parse, dump):
        super().__init__(object, parse)
        self.dump = dump


class _Optional:
    """``Checked(...) | None``."""

    __slots__ = ("inner",)

    def __init__(self, inner):
        self.inner = inner


Dtype = Checked(str, _dtype)
Device = Checked(str, _device)
Shape = Checked(list, _shape)
Numbers = Checked(list, _numbers)
Size = Checked(int, _nat)
Layout = Checked(Any, _layout)  # "contiguous" | {"order": [...]} | {"stride": [...]}
Spec = Coded(treespec.from_json, treespec.to_json)  # a tree spec (treespec.py)
# an output spec: size leaves too (``x.shape[0]`` returned under ``dynamic=``, format version 17)
OutSpec = Coded(functools.partial(treespec.from_json, sizes=True), treespec.to_json)
# an argument spec: int leaves too (a Python int following a Dim, format version 19)
InSpec = Coded(functools.partial(treespec.from_json, ints=True), treespec.to_json)
Plain = Checked(Any, _plain)  # a module attribute's Python value (plain_value)


class _Null:
    """Default of an optional field written as ``null`` when None (older readers expect
    the key)."""

    def __repr__(self):
        return "NULL"


NULL = _Null()


# --- The codec: how one field type is read from JSON and written back ------------------

def _codec(tp):
    """``(convert, dump)`` for a field of type ``tp``: ``convert(value, where)`` checks a
    JSON value and returns the field's value; ``dump(value)`` returns its JSON, or
    ``dump`` is None where the value is JSON already (str, int, backend keys): those are
    handed on as they are, never walked, so no depth of nesting a manifest may hold can
    exhaust the stack (tree specs are walked, to a bounded depth: treespec.MAX_DEPTH).
    One pair per distinct type."""
    codec = _CODECS.get(tp)
    if codec is None:
        codec = _CODECS[tp] = _make_codec(tp)
    return codec


_CODECS: dict = {}


def _make_codec(tp):
    if isinstance(tp, Coded):
        return tp.check, tp.dump
    if isinstance(tp, Checked):
        inner, dump = _codec(tp.base)
        check = tp.check

        def checked(v, where):
            v = inner(v, where)
            check(v, where)
            return v
        return checked, dump
    origin = typing.get_origin(tp)
    if isinstance(tp, _Optional) or origin in (Union, types.UnionType):
        inner, dump = _codec(tp.inner if isinstance(tp, _Optional) else
                             next(a for a in typing.get_args(tp) if a is not type(None)))
        return ((lambda v, where: None if v is None else inner(v, where)),
                None if dump is None else (lambda v: None if v is None else dump(v)))
    if origin is list:
        inner, dump = _codec(typing.get_args(tp)[0])

        def as_list(v, where):
            _need(isinstance(v, list), f"{where} is not a list")
            return [inner(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return as_list, None if dump is None else (lambda v: [dump(x) for x in v])
    if origin is dict:
        inner, dump = _codec(typing.get_args(tp)[1])

        def as_dict(v, where):
            _need(isinstance(v, dict), f"{where} is not an object")
            return {k: inner(x, f"{where}[{k!r}]") for k, x in v.items()}
        return as_dict, None if dump is None else (lambda v: {k: dump(x) for k, x in v.items()})
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json, tp.to_json
    if tp is Any:
        return (lambda v, where: v), None
    if tp is int:
        def as_int(v, where):
            _need(_is_int(v), f"{where} is not int")
            return v
        return as_int, None
    if tp is float:
        def as_float(v, where):
            _need(isinstance(v, (int, float)) and not isinstance(v, bool), f"{where} is not float")
            return v
        return as_float, None

    def as_type(v, where):
        _need(isinstance(v, tp), f"{where} is not {tp.__name__}")
        return v
    return as_type, None


class _Schema:
    """``Record._fields`` (and ``_dumpers``, ``_names``) until a record class first needs
    them: builds all three on that class, whose own attributes then shadow this one."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, cls):
        if cls is Record:
            raise AttributeError(self.name)
        cls._build_schema()
        return cls.__dict__[self.name]


class Record:
    """Base of the manifest's records: fields from the class annotations, ``from_json`` /
    ``to_json`` from their types.

    A field without a value in the class body is a required key; one with a value is
    optional (missing: that value, an empty list or dict copied per record; ``NULL``:
    None, written as null). Keys the record does not know go to ``extra``.

    (Not dataclasses: generating their methods costs about 0.35 ms a class when the
    module is imported, 7 ms for these records, and this module is on every load's path.)
    """

    # Built from the annotations on a class's first use (_Schema), not when this module is
    # imported: a load reads a handful of these records, and building them all cost 0.5 ms
    # of every load's import.
    _fields = _Schema()  # (name, converter, required, default, written as null) per field
    _dumpers = _Schema()  # per field: its dump, or None where the value is JSON already
    _names = _Schema()

    @classmethod
    def _build_schema(cls) -> None:
        fields, dumpers = [], []
        # the class's own annotations, evaluated where a module defers them (``from
        # __future__ import annotations``: an application's section record)
        for name, tp in inspect.get_annotations(cls, eval_str=True).items():
            default = cls.__dict__.get(name, _REQUIRED)
            null = default is NULL
            convert, dump = _codec(tp)
            fields.append((name, convert, default is _REQUIRED, None if null else default, null))
            dumpers.append(dump)
        cls._fields = tuple(fields)  # set on the record's own class: later lookups find these
        cls._dumpers = tuple(dumpers)
        cls._names = frozenset(f[0] for f in fields)

    _frozen = False

    def __init__(self, **kw):
        for name, _, required, default, _ in self._fields:
            if name in kw:
                value = kw.pop(name)
            elif required:
                raise TypeError(f"{type(self).__name__}() needs {name}=")
            else:
                value = default
            object.__setattr__(self, name, _read_only(value))
        object.__setattr__(self, "extra", FrozenDict(kw.pop("extra", None) or {}))
        if kw:
            raise TypeError(f"{type(self).__name__}() got unknown fields {sorted(kw)}")
        self._post_init()
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        # Frozen, as jax's Exported: a record read from a package (or about to be written)
        # is the manifest's statement; a change builds a new record (``replace``), so no
        # reader holds a record that silently changed under it.
        if self._frozen:
            raise AttributeError(f"{type(self).__name__}.{name}: manifest records are frozen; "
                                 f"build a new one with .replace({name}=...)")
        object.__setattr__(self, name, value)

    def _post_init(self) -> None:
        pass

    def __eq__(self, other):
        return type(other) is type(self) and self._values() == other._values()

    def _values(self) -> tuple:
        return tuple(getattr(self, f[0]) for f in self._fields) + (self.extra,)

    def __repr__(self):
        parts = ", ".join(f"{f[0]}={getattr(self, f[0])!r}" for f in self._fields)
        return f"{type(self).__name__}({parts})"

    def replace(self, **changes):
        """A copy with ``changes`` (as dataclasses.replace)."""
        kw = {f[0]: getattr(self, f[0]) for f in self._fields}
        kw.update(changes)
        kw.setdefault("extra", dict(self.extra))
        return type(self)(**kw)

    def checked(self, where: str = ""):
        """This record as a reader reads it back from the file, checked: FormatError
        naming the first field a reader would refuse. (Records built in code, as capture
        builds them, are not checked field by field as they are built; the writer checks
        each before it is stored, so what load refuses is refused when compiling.)"""
        return type(self).from_json(self.to_json(), where)

    @classmethod
    def from_json(cls, obj, where: str = ""):
        """The record in ``obj`` (parsed JSON); FormatError naming the first wrong field."""
        where = where or cls.__name__.lower()
        _need(isinstance(obj, dict), f"{where} is not an object")
        kwargs = {}
        for name, convert, required, _, _ in cls._fields:
            if name in obj:
                kwargs[name] = convert(obj[name], f"{where}.{name}")
            else:
                _need(not required, f"{where}.{name} is missing")
        if len(kwargs) < len(obj):
            kwargs["extra"] = {k: v for k, v in obj.items() if k not in cls._names}
        return cls(**kwargs)

    def to_json(self) -> dict:
        """The record as JSON (values that are JSON already are shared, not copied)."""
        out = {}
        for (name, _, required, _, null), dump in zip(self._fields, self._dumpers):
            v = getattr(self, name)
            if v is None and not required and not null:
                continue  # an optional key: older readers take it missing, not null
            out[name] = _thawed(v) if dump is None else dump(v)
        out.update(self.extra)
        return out


_REQUIRED = object()


def _refuse(self, *args, **kwargs):
    raise TypeError(f"{type(self).__name__}: a manifest record's lists and dicts are read-only; build a new one "
                    "and the record with .replace(field=...)")


class FrozenList(list):
    """A record's list: reads, compares and serializes as a list; refuses changes (as
    the record refuses a new attribute), so no reader holds a list that changed under it."""

    __slots__ = ()
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self):  # copy, deepcopy and pickle rebuild it from a plain list
        return FrozenList, (list(self),)


class FrozenDict(dict):
    """A record's dict, read-only as ``FrozenList``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = pop = popitem = clear = update = setdefault = _refuse

    def __reduce__(self):
        return FrozenDict, (dict(self),)


_READ_ONLY = {list: FrozenList, dict: FrozenDict}
_PLAIN = {FrozenList: list, FrozenDict: dict}


def _read_only(value):
    """``value`` with its own list or dict read-only (a copy); other values as they are.
    (Shallow: the JSON values inside, such as a derived size's ``{"expr": ...}``, are
    the manifest's JSON, shared as read.)"""
    make = _READ_ONLY.get(type(value))
    return value if make is None else make(value)


def _thawed(value):
    """A record's list or dict as a plain one, for JSON a caller may edit."""
    make = _PLAIN.get(type(value))
    return value if make is None else make(value)


# --- The records -----------------------------------------------------------------------

class Versions(Record):
    aotpack: str
    torch: str
    python: str


class Platform(Record):
    system: str
    machine: str
    cpu_capability: str | None = None


class Param(Record):
    """One parameter of the program's signature; ``default``: its encoded value
    (``tree.encode_const``), baked in at capture."""
    name: Checked(str, _identifier)
    kind: Checked(str, _param_kind)
    default: Spec | None = None


class WeightInfo(Record):
    """A stored weight. ``layout`` (format version 8) is the memory layout compiled code
    reads it in, which the file holds it in a form of (package/weights.py: permuted into
    memory order, or the span its strides address); ``shape`` is its shape as the
    program sees it; None where it is contiguous (the key is left out)."""

    kind: str  # "parameter" | "buffer" | "constant"
    dtype: Dtype
    shape: Shape
    layout: Layout | None = None


class Frozen(Record):
    """A Python value read at capture and baked in (a global, a closure, a default)."""
    kind: str
    name: str
    where: str  # ``file:line in qualname`` of the code that read it
    value: str
    type: str | None = None
    weight: str | None = None
    # a global's Python module (``__name__`` of the globals holding it), where a tensor or a
    # module: a process loading the package with ``module=m`` follows it there
    module: str | None = None

    @property
    def followed(self) -> bool:
        """A global a bound package reads where the loading process holds it (a tensor the
        program reads, a module its code calls: load/binding.py's ``global_namespaces``)."""
        return self.kind == "global" and (self.weight is not None or self.type == "module")


class Program(Record):
    name: str
    kind: str  # "module" | "function"
    source: str  # file:line
    signature: list[Param]
    out_spec: OutSpec
    frozen: list[Frozen]
    weights: dict[str, WeightInfo]  # stored name -> what the file must hold
    aliases: dict[str, str]  # tied weights: name -> the stored name it shares

    def weight(self, name: str) -> WeightInfo:
        """The stored weight ``name`` is, through an alias."""
        return self.weights[self.aliases.get(name, name)]


class Input(Record):
    """What one flat input tensor must be: the guard of a variant."""
    dtype: Dtype
    device: Device
    shape: Shape  # ints, Dim names, {"expr": "2*batch"} for derived sizes
    layout: Layout = "contiguous"
    requires_grad: bool = False
    # why the program's result depends on this input's layout (an output's sharing its
    # memory, the program reading its strides): a call in another layout is refused, not
    # copied into the compiled one (capture._layout_pins)
    layout_pinned: str | None = None
    # why the program's result depends on this input's requires_grad (it reads
    # ``x.requires_grad``: export kept one branch): checked under no_grad too
    requires_grad_pinned: str | None = None
    # no output's autograd graph reaches it (the program detaches it: ``torch.no_grad()``
    # around its use, ``.detach()``): an inference variant takes it requiring grad under
    # grad mode too, as eager's outputs then require no grad (2026-12-05; older readers
    # refuse such a call, as before)
    detached: bool = False
    # what the program asked of this tensor beyond dtype, shape and device, and the answer
    # at capture (``{"is_inference": False}``, ``is_conj``, ``is_neg``, ``is_leaf``: export kept one branch):
    # a call's tensor must answer the same (format version 22)
    properties: dict[str, bool] = {}


class Dim(Record):
    """A named dynamic size: every size in ``min..max`` (None: unbounded) but those in
    ``exclude`` (format version 10: sizes the program branches away from, which a call
    is refused at)."""
    min: int
    max: int | None  # None: unbounded
    exclude: list[int] = []

    def allows(self, size: int) -> bool:
        return self.min <= size and (self.max is None or size <= self.max) and size not in self.exclude

    def shifted(self, offset: int) -> "Dim":
        """The range of an int argument carried by a size of this Dim (the int minus
        ``offset``: treespec.IntLeaf): ``Dim(0, 10).shifted(-5)`` runs -5..5."""
        return Dim(min=self.min + offset, max=None if self.max is None else self.max + offset,
                   exclude=[e + offset for e in self.exclude])

    def text(self) -> str:
        """``2..16`` or ``2..16 except 7``."""
        span = f"{self.min}..{'inf' if self.max is None else self.max}"
        return span + (f" except {', '.join(map(str, self.exclude))}" if self.exclude else "")


class Alias(Record):
    """Output ``output`` is a view of the flat graph argument ``primal``: the argument
    itself (``same``), or ``as_strided(size, stride, offset)`` of it (views.py). A number
    that depends on the call's sizes is a Dim name or ``{"expr": ...}``, as in a shape.
    ``through_function`` (training variants, format version 7): a custom
    ``torch.autograd.Function`` returned the argument (or the view) as its output, so its
    gradient is the Function's backward, not the view's: the compiled autograd.Function
    returns the view itself (autograd_runtime.py), as eager's Function does."""
    output: int
    primal: int
    same: bool = False
    size: Shape | None = None
    stride: Shape | None = None
    offset: Checked(Any, _size_value) = 0
    through_function: bool = False

    def follows_dims(self) -> bool:
        """Whether the view's size, stride or offset names Dims (format version 5)."""
        return not all(isinstance(n, int) for n in (*(self.size or ()), *(self.stride or ()), self.offset))


class OutputView(Record):
    """A training variant's output ``output`` is a view of its output ``base`` (``h`` and
    ``h.t()`` returned together: they share memory in eager): the package returns
    ``outputs[base].as_strided(size, stride, base's offset + offset)``, a view again, made
    outside the compiled autograd.Function so its gradient flows into ``base``'s.
    ``base_stride``: ``base``'s strides the view's numbers are relative to (checked at
    run time). A number that depends on the call's sizes is a Dim name or ``{"expr": ...}``
    (format version 9), as in ``Alias``."""
    output: int
    base: int
    size: Shape
    stride: Shape
    offset: Checked(Any, _size_value)
    base_stride: Shape

    def follows_dims(self) -> bool:
        """Whether the view's numbers name Dims (format version 9)."""
        return not all(isinstance(n, int) for n in (*self.size, *self.stride, self.offset, *self.base_stride))


class SubclassGrad(Record):
    """A training variant's argument ``primal`` (weights, then inputs) whose gradient is
    a tensor subclass (a Linear's weight meeting a TwoTensor input: eager's gradient of
    the weight is a TwoTensor): ``spec`` is the gradient's ``SubclassSpec`` (class, inner
    tensor names, context), its inner tensors numbered in order. The backward returns
    the first inner tensor as the argument's gradient and the others after every
    argument's gradient (format version 13); the runtime rebuilds the subclass from them.
    ``name``: the argument's, for messages. ``tangents``: the output grads (indices among
    the outputs that require grad) whose share of the gradient is of the subclass in
    eager; a backward that none of them reaches would be a plain tensor in eager, which
    the package does not compute (an AotpackError at the backward)."""
    primal: int
    spec: Spec
    name: str
    tangents: list[int]


def subclass_grad_places(grad_mask: list[bool], records) -> list[list[int]]:
    """Per ``SubclassGrad`` of ``records``, the backward's outputs that are its inner
    tensors, in order: the argument's own gradient's place (among those ``grad_mask``
    keeps), then its further inner tensors', after every argument's gradient. The one
    layout the compile side writes (autograd.py) and the runtime reads."""
    extra, out = sum(grad_mask), []
    for g in records or ():
        n = len(g.spec.attrs) - 1
        out.append([sum(grad_mask[:g.primal]), *range(extra, extra + n)])
        extra += n
    return out


class Mutation(Record):
    """What a training program changes in place: a buffer, or flat input ``index``."""
    kind: str
    index: int | None = None
    weight: str | None = None


class Train(Record):
    """A training variant's autograd contract (autograd.py writes it, autograd_runtime reads)."""
    num_outputs: int
    grad_mask: list[bool]
    out_requires_grad: list[bool]
    mutation_targets: list[int]
    saved_mutated: list[int]
    aliased: list[Alias]
    saved: list[Any]
    mutated: list[Mutation]
    weights_requires_grad: list[bool] | None = None
    # per gradient the backward returns: the output grads (indices among the outputs that
    # require grad) it depends on; where none of them reached the backward (an output
    # left out of the loss), the gradient is None, as eager's, not zeros
    grad_tangents: list[list[int]] | None = None
    # per gradient: the arguments (weights, then inputs) it depends on through the saved
    # tensors; under create_graph=True it requires grad when one of them (or one of its
    # tangents) does, as eager's. None in older packages: every argument counts
    grad_inputs: list[list[int]] | None = None
    # outputs that are views of another output (format version 6 where present), and how
    # many of the last outputs are intermediates such views are of, not the program's
    output_views: list[OutputView] | None = None
    hidden_outputs: int | None = None
    # arguments whose gradient is a tensor subclass (format version 13 where present)
    subclass_grads: list[SubclassGrad] | None = None
    # whether differentiating the variant's exported program (program.json, run op by op)
    # gives the backward's gradients: not where a custom autograd.Function's backward, a
    # torch.func transform inside, or a straight-through update gives them their own code,
    # which the joint graph traces from the program itself (None before 2026-12-06: taken
    # as no). The runtime runs that program for a call under a torch.func transform
    program_gradients: bool | None = None


class SubMeta(Record):
    """A training variant's forward or backward backend meta (backend keys in extra)."""
    proxy_ops: list[str] | None = None


class Meta(Record):
    """A variant's meta: the backend's own keys (in ``extra``, handed to the backend as
    ``files.meta``) and those aotpack reads."""
    device: str | None = None
    train: Train | None = None
    fw: SubMeta | None = None
    bw: SubMeta | None = None
    proxy_ops: list[str] | None = None  # ops a library registers (aoti: run by torch's proxy executor)
    machine: str | None = None
    cpu_isa: str | None = None
    compute_capability: str | None = None

    def ops(self) -> list[str]:
        """Every op the variant's code calls that a library registers (aoti: through torch's
        proxy executor): load checks each is registered."""
        subs = [s.proxy_ops or [] for s in (self.fw, self.bw) if s is not None]
        return list(dict.fromkeys([*(self.proxy_ops or []), *[op for s in subs for op in s]]))


class Group(Record):
    rank: int
    size: int


class Job(Record):
    """The job a rank's variant was compiled for (aotpack/distributed.py)."""
    rank: int
    world_size: int
    pg_backend: str
    groups: dict[str, Group]


# the settings a program may read itself, which its package is then guarded on (GlobalState.reads)
SETTINGS_READ = frozenset({"deterministic", "matmul_precision", "inference_mode", "anomaly", "cuda_available"})
# the tensor methods a program may ask of an input, which its guard then pins (Input.properties)
TENSOR_PROPERTIES = frozenset({"is_inference", "is_conj", "is_neg", "is_leaf"})


class GlobalState(Record):
    """The global state a variant was compiled under, as far as its code depends on it
    (dynamo's GlobalStateGuard for torch.compile); a call under other state is refused,
    or runs another variant compiled for it (guards.py).

    ``autocast``: the autocast dtype on the variant's device type (the program ran inside
    ``torch.autocast``: its casts are in the code), None where autocast was off.
    ``grad_mode``: grad mode at capture, recorded where the program reads it
    (``torch.is_grad_enabled()``); None: the program does not read it.
    ``matmul_precision`` and ``deterministic``: ``torch.get_float32_matmul_precision()``
    and ``torch.are_deterministic_algorithms_enabled()`` (guarded on CUDA, where they
    choose TF32 and the kernels).
    ``grad_mode_after``: the grad mode the program leaves its caller in
    (``torch.set_grad_enabled(False)`` without ``with``), set after each call as
    torch.compile replays it; None: the program leaves grad mode as it found it.
    ``environ``: the environment variables the program read (``os.environ.get("X")``)
    and their values at capture (None: unset), which a call's process must have (format
    version 21; torch.compile does not guard them: its code keeps the branch of the
    first compile, silently).
    ``reads``: the settings the program itself read (``"deterministic"``,
    ``"matmul_precision"``, ``"inference_mode"``, ``"anomaly"``: it may have taken a branch on them),
    guarded on every device, not only where kernels depend on them (format version 22);
    ``inference_mode``, ``anomaly``: whether ``torch.inference_mode`` and anomaly
    detection (``torch.autograd.set_detect_anomaly``) were on at capture.
    ``cuda_available``: ``torch.cuda.is_available()`` at capture, guarded where the
    program read it (``"cuda_available"`` in ``reads``, format version 23: a CPU
    package's program that asked may take another branch on a machine with a GPU).
    ``default_device``: ``torch.get_default_device()`` at capture (``"cpu"``); None in
    packages older than the field, whose calls take no ``torch.set_default_device`` (a
    torch function mode) at all. ``default_device_read``: the program read it (made a
    tensor with no ``device=``, or asked ``torch.get_default_device()``), so a call must
    have that default device (format version 23 where it is not the CPU, which a version
    22 reader, refusing every mode, holds anyway).
    ``backends``: the settings of ``torch.backends`` the program read, by public name
    (``"torch.backends.cudnn.enabled": true``, ``"torch.backends.mps.is_available()":
    false``), and their values at capture, guarded on every device (format version 24);
    a name this torch does not have is refused at load."""
    autocast: Dtype | None = None
    default_dtype: Dtype = "float32"
    grad_mode: bool | None = None
    grad_mode_after: bool | None = None
    matmul_precision: str = "highest"
    deterministic: bool = False
    environ: dict[str, str | None] = {}
    reads: list[str] = []
    inference_mode: bool = False
    anomaly: bool = False
    default_device: str | None = NULL
    default_device_read: bool = False
    cuda_available: bool = False
    backends: dict[str, Plain] = {}


class Variant(Record):
    name: str
    backend: str
    backend_entry: str | None = NULL  # where a user backend was defined (informational)
    device: Device
    torch: str | None = None  # the torch that compiled it (default: versions.torch)
    weights: list[str]  # stored names, in graph order
    weight_fqns: list[str] | None = None  # the program's names for them (default: weights)
    weight_targets: list[str] | None = None  # torch.export's names, to rebuild
    in_spec: InSpec
    inputs: list[Input]
    dims: dict[str, Dim] = {}
    aliased: list[Alias] = []
    state: list[str] = []
    module_training: bool | None = NULL
    files: list[str]
    meta: Meta = None
    distributed: Job | None = None
    global_state: GlobalState = None  # (missing in older packages: the defaults, autocast off)
    mutated_inputs: list[int] = []  # flat inputs an inference variant updates in place (the caller's tensors)
    # weights (program names) whose requires_grad the program reads -> the value compiled in:
    # a bound module's parameter that no longer has it is refused, under no_grad too
    requires_grad_weights: dict[str, bool] = {}
    # parameters (program names) that no output's autograd graph reaches, as ``Input.detached``:
    # a bound module's may require grad under grad mode (2026-12-05; older readers refuse)
    detached_weights: list[str] = []
    # flat outputs eager returns as inference tensors (a forward under ``torch.inference_mode()``):
    # made so, as eager makes them (2026-12-05; older readers return normal tensors)
    inference_outputs: list[int] = []
    # the custom torch.autograd.Function classes the program applies (``module.Qualname``):
    # the graph holds their forwards, not their derivative rules (``jvp``, ``vmap``), so a
    # call under a torch.func transform or with forward-mode tangents is refused naming
    # them (2026-12-06; older readers ran such calls of the eager backend with the
    # forward's derivatives: a straight-through Function's ``jvp`` silently lost)
    custom_functions: list[str] = []
    # those of them whose vmap rule torch generates from their forward (``generate_vmap_rule =
    # True``): vmap over the forward's ops is their rule, so a call under vmap alone runs the
    # portable program (2026-12-06, compatible: older readers refuse such calls, as before)
    vmap_rule_functions: list[str] = []
    # a module's Python attributes the program names (``"ln.eps": 1e-05``) -> the value
    # compiled in: a bound module whose attribute has another value is refused; under
    # ``global:`` the Python data its code reads as module globals (``"global:SCALE": 2.0``,
    # format 15; ``global_values``) and the attributes of the modules it calls as globals
    # (``"global:NORM.eps"``, format 14)
    module_attributes: dict[str, Plain] = {}
    # the values a module's code reads through ``self`` from its class (``"block.scale": 2.0``
    # for ``scale = 2.0`` in the class body; ``act = staticmethod(gelu)``), where the
    # instance does not hold them: a bound module whose class or instance gives another
    # value is refused (2026-12-07, compatible: older readers ignore it and compare none)
    class_attributes: dict[str, Plain] = {}
    # the children of each container module the program ran ("layers" -> ["0", "1"]: a
    # ModuleList, ModuleDict or Sequential one of whose children ran, every ParameterList
    # or ParameterDict, and a module whose own code iterates ``self.children()``): a bound
    # module whose container holds others (``m.layers.append(b)``,
    # ``del m.seq[1]``) is refused (2026-12-07, compatible: older readers ignore it)
    module_children: dict[str, list[str]] = {}
    # the parameters and buffers of each module whose own code iterates them ("" ->
    # ["lin.weight", "lin.bias"]: ``self.parameters()`` in its forward): a bound module
    # holding others there (``m.extra = nn.Parameter(...)``) is refused (2026-12-06,
    # compatible: older readers ignore it)
    iterated_weights: dict[str, list[str]] = {}
    # the class of each module whose methods ran ("" the module itself, "block.act") ->
    # "module:QualName": their code is compiled in, so a bound module whose submodule was
    # replaced by one of another class is refused (checked where the module changed)
    module_types: dict[str, str] = {}
    # the code of those classes' methods that ran, where it is not torch's ("module:QualName"
    # -> ``class_code``, 2026-12-04): a module bound at load whose class's code differs
    # (edited since the compile) is refused, under the same Python version (bytecode
    # differs across them)
    module_code: dict[str, str] = {}
    # module path -> the hooks registered on it at compile (``module_hooks``), of the modules
    # whose code ran (``module_types``' paths): compiled in, so a module bound at load with
    # others (one registered between compile and load, one removed after) is refused
    # (2026-12-06, compatible: older readers ignore it and run the hooks compiled in; None in
    # older packages, which are not compared)
    module_hooks: dict[str, list[str]] | None = None
    # the functions a module's call ran -> ``function_code`` (2026-12-06, compatible: older
    # readers ignore it): those among ``module_attributes`` (a global helper, ``self.act =
    # my_gelu``), each module's ``forward`` as set (``lin.forward``), and the functions of
    # torch's modules the code names (``global:F.gelu``: only here, ``torch_functions``); a
    # module bound at load where one's code differs (patched or edited before the load) is
    # refused, under the same prefix (Python version; torch's for its code)
    function_code: dict[str, str] = {}
    # module weights of a tensor subclass (torchao's quantized weights), packaged as their
    # inner tensors ("<path>.parametrizations.<name>.original<k>") -> "module.Class inner,names
    # ctx": a bound module's weight must still be of that subclass with that flatten context
    # (build/subclass_weights.py, 2026-12-04)
    subclass_weights: dict[str, str] = {}
    # the Python numbers the program returns that follow the call's Dims (``x.shape[0]``, ``2*n``
    # under ``dynamic=``), a Dim's name or ``{"expr": ...}`` each, in the order of
    # program.out_spec's size leaves: evaluated from each call's sizes (format version 17);
    # ``{"expr": ..., "type": "float" | "bool" | "int"}`` for ``n / 2``, ``n > 4``
    # (package/sizes.number_evaluator's grammar: format version 18)
    output_sizes: Numbers = []
    # the places of a module's program holding one tensor together -> the first weight of them
    # (tied "head.weight" -> "emb.weight"; "constant:again" -> "constant:scale" for ``self.again =
    # self.scale``): the graph may read one input for several, so a bound module holding another
    # tensor at one of them is refused (2026-12-06, compatible: older readers ignore it)
    tensor_aliases: dict[str, str] = {}

    def _post_init(self):
        if self.weight_fqns is None:
            self.weight_fqns = FrozenList(self.weights)
        if self.meta is None:
            self.meta = Meta()
        if self.global_state is None:
            self.global_state = GlobalState()

    @property
    def train(self) -> Train | None:
        return self.meta.train

    def trained_weights(self) -> list[bool]:
        """Per weight, whether the variant's backward computes its gradient (a training
        variant's parameters, and the tensors a function reads from outside and trains):
        a package loaded alone holds those as leaves that require grad."""
        if self.meta.train is None:
            return [False] * len(self.weights)
        return list(self.meta.train.weights_requires_grad or self.meta.train.grad_mask[:len(self.weights)])

    def views(self) -> list[Alias]:
        """Outputs that are views of a graph argument (training: the forward's)."""
        return self.meta.train.aliased if self.meta.train else self.aliased

    def torch_functions(self) -> list[str]:
        """The functions of torch's modules the code names as globals, which only
        ``function_code`` records (``F.gelu``, ``torch.cat``), by their names."""
        forwards = {f"{p}.forward" for p in self.module_types}
        return [p.removeprefix("global:") for p in self.function_code
                if p.startswith("global:") and p not in self.module_attributes and p not in forwards
                and p not in self.class_attributes]

    def global_values(self) -> dict[str, Plain]:
        """The plain module globals compiled in (``module_attributes`` under ``global:``
        that no module global's path starts: ``"global:SCALE": 2.0``), by their names."""
        modules = [p + "." for p in self.module_types if p.startswith("global:")]
        return {p.removeprefix("global:"): v for p, v in self.module_attributes.items()
                if p.startswith("global:") and not any(p.startswith(m) for m in modules)}


class Member(Record):
    size: Size
    blake3: str | None = None
    sha256: str | None = None  # format 1 packages written before BLAKE3

    def digest(self) -> tuple[str, str]:
        return ("blake3", self.blake3) if self.blake3 is not None else ("sha256", self.sha256)


class Manifest(Record):
    format: str
    format_version: int
    created: str
    versions: Versions
    platform: Platform
    program: Program
    variants: list[Variant]
    members: dict[str, Member] = {}
    # Top-level keys the core does not know are kept in ``extra``: an application built on
    # aotpack (aotpack.llm's "llm") keeps its own section there, read and written through
    # ``section`` / ``with_section`` with a record of its own; the core never reads them.

    def section(self, name: str, record: type[Record]) -> Record | None:
        """The application section ``name`` (a top-level key, e.g. aotpack.llm's ``"llm"``)
        read as ``record``; None where the package has none. A malformed section is a
        FormatError naming it, as any field of the manifest.

        Example:
            >>> m.section("llm", aotpack.llm.LlmSection)             # doctest: +SKIP
            LlmSection(max_batch=2, max_len=256)
        """
        value = self.extra.get(name)
        return None if value is None else record.from_json(value, f"manifest.{name}")

    def with_section(self, name: str, value: Record) -> "Manifest":
        """A copy of the manifest with application section ``name`` set to ``value``."""
        _need(name not in self._names, f"{name!r} is a core field of the manifest, not an application section")
        return self.replace(extra={**self.extra, name: value.to_json()})

    @classmethod
    def from_json(cls, obj, where: str = "manifest") -> "Manifest":
        """The manifest in ``obj`` (parsed JSON), checked: FormatError naming the first
        field that is wrong, before any of it is used."""
        m = super().from_json(obj, where)
        m._check_links()
        return m

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def _check_dims_and_inputs(self, v) -> None:
        """Variant ``v``'s Dims (ranges, excluded sizes) and the Dims its inputs' shapes
        and strides name."""
        name = v.name
        for d_name, r in v.dims.items():
            _need(0 <= r.min and (r.max is None or r.min <= r.max), f"variant {name}.dims[{d_name!r}]")
            _need(len(r.exclude) <= MAX_EXCLUDED and r.exclude == sorted(set(r.exclude))
                  and all(r.min < x and (r.max is None or x < r.max) for x in r.exclude)
                  and (not r.exclude or self.format_version >= fmt.DIM_EXCLUDE_FORMAT_VERSION),
                  f"variant {name}.dims[{d_name!r}].exclude")
        for i, g in enumerate(v.inputs):
            _need(all(not isinstance(s, str) or s in v.dims for s in g.shape),
                  f"variant {name}.inputs[{i}].shape names no dim")
            _need(g.layout == "contiguous" or len(next(iter(g.layout.values()))) == len(g.shape),
                  f"variant {name}.inputs[{i}].layout")
            # strides that follow Dims: each a Dim's or arithmetic a reader evaluates (a guard
            # that could evaluate none would refuse every call)
            _need(not strides_follow_dims(g.layout) or (
                self.format_version >= fmt.DIM_STRIDES_FORMAT_VERSION
                and all(x in v.dims if isinstance(x, str) else size_evaluator(x) is not None
                        for x in g.layout["stride"])),
                  f"variant {name}.inputs[{i}].layout")

    def _check_output_sizes(self) -> None:
        """The numbers a program returns of the call's sizes (format version 17; floats and
        bools, 18): its spec's size leaves numbered 0..n-1, and each variant's value of each
        one that the call's Dims give (a reader evaluates it at every call)."""
        sizes = sorted(self.program.out_spec.size_indices())
        _need(sizes == list(range(len(sizes))) and (not sizes or self.format_version >= fmt.SIZE_OUTPUTS_FORMAT_VERSION),
              "program.out_spec's sizes are not numbered 0..n-1")
        for v in self.variants:
            _need(len(v.output_sizes) == len(sizes) and all(
                x in v.dims if isinstance(x, str) else number_evaluator(x) is not None for x in v.output_sizes)
                  and (self.format_version >= fmt.NUMBER_OUTPUTS_FORMAT_VERSION or not typed_numbers(v.output_sizes)),
                  f"variant {v.name}.output_sizes")

    def _check_in_spec(self, v) -> None:
        """Variant ``v``'s argument spec against its inputs and the signature."""
        name = v.name
        # each input guard is one tensor of the call, once (an extra guard would check an
        # argument the call does not have)
        _need(sorted(v.in_spec.tensor_indices()) == list(range(len(v.inputs))),
              f"variant {name}.in_spec does not match its inputs")
        _need(isinstance(v.in_spec, treespec.TupleSpec) and len(v.in_spec.children) == len(self.program.signature),
              f"variant {name}.in_spec does not match the signature")
        carriers = v.in_spec.int_indices()
        _need(not carriers or self.format_version >= fmt.INT_ARGUMENTS_FORMAT_VERSION,
              f"variant {name}.in_spec holds an int argument, which needs format version "
              f"{fmt.INT_ARGUMENTS_FORMAT_VERSION}")
        _need(not any(leaf.offset for leaf in int_leaves(v.in_spec))
              or self.format_version >= fmt.INT_OFFSET_FORMAT_VERSION,
              f"variant {name}.in_spec holds an int argument with an offset, which needs format version "
              f"{fmt.INT_OFFSET_FORMAT_VERSION}")
        _need(all(is_size_carrier(v.inputs[i]) for i in carriers),
              f"variant {name}.inputs: an int argument's carrier is not an empty uint8 tensor of shape (n, 0)")
        _need(not v.global_state.environ or self.format_version >= fmt.ENVIRON_FORMAT_VERSION,
              f"variant {name}.global_state.environ guards environment variables, which needs format version "
              f"{fmt.ENVIRON_FORMAT_VERSION}")
        asked = {prop for i in v.inputs for prop in i.properties}
        _need(asked <= TENSOR_PROPERTIES, f"variant {name}.inputs[].properties names methods aotpack does not know: "
                                          f"{sorted(asked - TENSOR_PROPERTIES)}")
        _need(not asked or self.format_version >= fmt.SETTINGS_READ_FORMAT_VERSION,
              f"variant {name}.inputs[].properties guards what the program asked of a tensor, which needs format "
              f"version {fmt.SETTINGS_READ_FORMAT_VERSION}")
        _need(set(v.global_state.reads) <= SETTINGS_READ,
              f"variant {name}.global_state.reads names settings aotpack does not know: "
              f"{sorted(set(v.global_state.reads) - SETTINGS_READ)}")
        _need(not v.global_state.reads or self.format_version >= fmt.SETTINGS_READ_FORMAT_VERSION,
              f"variant {name}.global_state.reads guards settings the program read, which needs format version "
              f"{fmt.SETTINGS_READ_FORMAT_VERSION}")
        state = v.global_state
        _need("cuda_available" not in state.reads or self.format_version >= fmt.DEFAULT_DEVICE_FORMAT_VERSION,
              f"variant {name}.global_state.reads guards torch.cuda.is_available(), which needs format version "
              f"{fmt.DEFAULT_DEVICE_FORMAT_VERSION}")
        _need(not state.backends or self.format_version >= fmt.BACKEND_SETTINGS_FORMAT_VERSION,
              f"variant {name}.global_state.backends guards settings of torch.backends, which needs format "
              f"version {fmt.BACKEND_SETTINGS_FORMAT_VERSION}")
        _need(not state.default_device_read or state.default_device is not None,
              f"variant {name}.global_state.default_device_read needs global_state.default_device")
        _need(not state.default_device_read or state.default_device == "cpu"
              or self.format_version >= fmt.DEFAULT_DEVICE_FORMAT_VERSION,
              f"variant {name}.global_state.default_device_read guards a default device other than the CPU, "
              f"which needs format version {fmt.DEFAULT_DEVICE_FORMAT_VERSION}")

    def _check_links(self) -> None:
        """What the field types cannot say: names and indices that point elsewhere."""
        p = self.program
        _need(len({x.name for x in p.signature}) == len(p.signature), "program.signature names a parameter twice")
        outs = sorted(p.out_spec.tensor_indices())
        _need(outs == list(range(len(outs))), "program.out_spec's outputs are not numbered 0..n-1")
        self._check_output_sizes()
        _need(all(t in p.weights for t in p.aliases.values()), "program.aliases")
        _need(all(w.layout in (None, "contiguous") or len(next(iter(w.layout.values()))) == len(w.shape)
                  for w in p.weights.values()), "program.weights[].layout")
        known = set(p.weights) | set(p.aliases)
        _need(len(self.variants) > 0, "variants is empty")
        _need(all(r.blake3 is not None or r.sha256 is not None for r in self.members.values()),
              "members lists a member without a digest")
        names = set()
        for v in self.variants:
            name = v.name
            try:
                fmt.check_variant_name(name)
            except ValueError:
                _need(False, f"variant name {name!r}")
            _need(name not in names, f"variant {name!r} appears twice")
            names.add(name)
            d = v.distributed
            if d is not None:
                _need(self.format_version >= fmt.DISTRIBUTED_FORMAT_VERSION and 0 <= d.rank < d.world_size
                      and all(0 <= g.rank < g.size for g in d.groups.values()), f"variant {name}.distributed")
            ws = v.weights
            _need(all(w in known for w in ws), f"variant {name}.weights names a weight the package does not hold")
            _need(all(w in ws for w in v.state), f"variant {name}.state names a weight it does not use")
            for key in ("weight_fqns", "weight_targets"):
                _need(getattr(v, key) is None or len(getattr(v, key)) == len(ws), f"variant {name}.{key}")
            self._check_dims_and_inputs(v)
            self._check_in_spec(v)
            n_flat = len(ws) + len(v.inputs)
            # indices the runtime takes elements of (an output made an inference tensor, an
            # input written in place): within the program's outputs and the call's inputs
            _need(len(set(v.inference_outputs)) == len(v.inference_outputs) and not (v.train and v.inference_outputs)
                  and all(0 <= k < len(outs) for k in v.inference_outputs), f"variant {name}.inference_outputs")
            _need(all(0 <= i < len(v.inputs) for i in v.mutated_inputs), f"variant {name}.mutated_inputs")
            _need(all(0 <= a.primal < n_flat and a.output >= 0 for a in v.views())
                  and not any(a.through_function for a in v.aliased), f"variant {name}.aliased")  # (training only)
            t = v.train
            if t:
                fqns = list(v.weight_fqns or ws)
                _need(all(0 <= x < n_flat for x in t.mutation_targets)
                      and all(x.kind in ("input", "buffer") for x in t.mutated)
                      and all(0 <= x.index < len(v.inputs) for x in t.mutated if x.kind == "input"
                              and x.index is not None)
                      and all(x.index is not None for x in t.mutated if x.kind == "input")
                      and all(x.weight in known for x in t.mutated if x.kind == "buffer")
                      and len(t.grad_mask) == n_flat and len(t.out_requires_grad) == t.num_outputs
                      and len(t.mutation_targets) <= t.num_outputs
                      # each update lands on the argument its record names (an edited target
                      # would copy one tensor's new value into another)
                      and len(t.mutation_targets) == len(t.mutated)
                      and all(x == (fqns.index(m.weight) if m.kind == "buffer" and m.weight in fqns
                                    else len(ws) + m.index if m.kind == "input" else -1)
                              for x, m in zip(t.mutation_targets, t.mutated))
                      and all(0 <= i < len(t.saved) for i in t.saved_mutated)
                      and v.meta.fw is not None and v.meta.bw is not None,
                      f"variant {name}.meta.train")
                # output views: within the forward's outputs after the updates, each of one that is no view itself
                n_views = t.num_outputs - len(t.mutation_targets)
                hidden = t.hidden_outputs or 0
                _need(0 <= hidden <= n_views and all(
                    0 <= x.output < n_views - hidden and 0 <= x.base < n_views and x.base != x.output
                    and len(x.size) == len(x.stride) and x.offset >= 0
                    and x.base not in {y.output for y in t.output_views} for x in t.output_views or ()),
                      f"variant {name}.meta.train.output_views")
                # subclass gradients: of distinct arguments that get a gradient, each a subclass
                # of plain inner tensors numbered in order
                primals = [g.primal for g in t.subclass_grads or ()]
                _need(len(set(primals)) == len(primals) and all(0 <= k < n_flat and t.grad_mask[k] for k in primals)
                      and all(isinstance(g.spec, treespec.SubclassSpec) and g.spec.attrs
                              and len(g.spec.attrs) == len(g.spec.children)
                              and [c.index if isinstance(c, treespec.TensorLeaf) else None for c in g.spec.children]
                              == list(range(len(g.spec.children)))
                              and all(0 <= j < sum(t.out_requires_grad) for j in g.tangents)
                              for g in t.subclass_grads or ()),
                      f"variant {name}.meta.train.subclass_grads")
                # an output a custom Function returned: one of the forward's outputs, of an argument
                _need(all(0 <= a.output < n_views and 0 <= a.primal < n_flat for a in t.aliased if a.through_function),
                      f"variant {name}.meta.train.aliased")
            for f in v.files:
                fmt.check_member_name(fmt.variant_dir(name) + f)


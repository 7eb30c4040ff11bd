"""The program's signature, and how the example call binds to it.

A program is captured as called: its parameters (names, kinds, frozen defaults: the
manifest's ``Param`` records), the example values bound to them (defaults filled in for
the guards), and how each was passed, so the traced call passes them the same way.
``dynamic`` (keyed by parameter name) is translated here to one spec per flat tensor.

    >>> [p.name for p in parameters(signature_of(torch.nn.Linear(2, 2)))]   # doctest: +SKIP
    ['input']
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch

from .. import tree
from ..errors import CaptureError
from ..package.manifest import Param

__all__ = ["signature_of", "parameters", "defined_at", "bind", "call_as_passed", "flat_dynamic", "int_arguments",
           "program_name"]

Dim = torch.export.Dim


_KINDS = {kind: name for name, kind in tree.PARAM_KINDS.items()}


# The signature of a builtin that has none Python can read (``torch.sin``, ``torch.add``,
# ``torch.ops.aten.mul.Tensor``):
# its arguments as passed, positionally (keyword arguments then follow ``**kwargs``).
_AS_PASSED = inspect.Signature([inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def signature_of(target: Callable) -> inspect.Signature:
    """``target``'s signature (a module's ``forward``'s); ``(*args, **kwargs)`` for a
    builtin without one (``torch.sin``: a package of it is called as it was compiled)."""
    fn = target.forward if isinstance(target, torch.nn.Module) else target
    try:
        return inspect.signature(fn)  # follows functools.wraps' __wrapped__
    except (TypeError, ValueError) as e:
        if callable(fn) and not (inspect.isfunction(fn) or inspect.ismethod(fn)):  # a builtin, an aten op
            return _AS_PASSED
        raise CaptureError(f"cannot read the signature of {target!r}: {e}") from None


def parameters(sig: inspect.Signature) -> list[Param]:
    """The program's parameters as the manifest records them; a default value is frozen
    (encoded) here, and a tensor default refused."""
    out = []
    for p in sig.parameters.values():
        default = None
        if p.default is not p.empty:
            if isinstance(p.default, torch.Tensor):
                raise CaptureError(
                    f"parameter {p.name!r} has a tensor default value",
                    hint="pass the tensor explicitly, or register it as a buffer of the module",
                )
            default = tree.encode_const(p.default, f"default of {p.name}")
        out.append(Param(name=p.name, kind=_KINDS[p.kind], default=default))
    return out


def defined_at(obj) -> str:
    fn = obj.forward if isinstance(obj, torch.nn.Module) else obj
    fn = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return "<unknown>"
    return f"{code.co_filename}:{code.co_firstlineno}"


def bind(sig: inspect.Signature, args: tuple, kwargs: dict) -> tuple[list, list[str]]:
    """Values per parameter (defaults filled in, for guards) and how each was passed:
    ``"pos"``, ``"kw"`` or ``"default"`` (not passed: the program is called without it,
    as torch.export calls it, so decorators that add keyword arguments still work)."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise CaptureError(f"the example inputs do not fit the program's signature {sig}: {e}") from None
    passed = dict(bound.arguments)
    bound.apply_defaults()
    how, n_pos = [], 0
    for name, p in sig.parameters.items():
        if name not in passed:
            how.append("default")
        elif p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) or (
                p.kind == p.POSITIONAL_OR_KEYWORD and name not in kwargs and n_pos < len(args)):
            how.append("pos")
            n_pos += 1
        else:
            how.append("kw")
    return [bound.arguments[name] for name in sig.parameters], how


def call_as_passed(signature: list[Param], values: list, how: list[str]) -> tuple[list, dict]:
    """(args, kwargs) as the example call passed them: defaults left out."""
    args: list = []
    kwargs: dict = {}
    for p, v, h in zip(signature, values, how):
        if h == "default":
            continue
        if p.kind == "var_positional":
            args.extend(v)
        elif p.kind == "var_keyword":
            kwargs.update(v)
        elif h == "pos":
            args.append(v)
        else:
            kwargs[p.name] = v
    return args, kwargs


def int_arguments(dynamic, sig: inspect.Signature, values: list, how: list[str]) -> list:
    """``values`` with each Python int that ``dynamic`` gives a Dim replaced by a
    ``tree.IntArgument`` (flattened as the carrier of a dynamic int, as torch.compile
    passes an int it made dynamic); ``how`` is updated where such an int was a default,
    which the traced call must now pass."""
    if dynamic is True:  # (every int, as torch.compile(dynamic=True) makes each dynamic; torch.export keeps
        # static the ones the program specializes: compiled in and guarded as before)
        return [v if h == "default" else _every_int(v) for v, h in zip(values, how)]
    if not isinstance(dynamic, dict):
        return values

    def mark(value, spec, path):
        if spec is None:
            return value
        if type(value) is int:  # (not a bool, not an int subclass: those stay compiled in)
            if isinstance(spec, (dict, list, tuple)):
                raise CaptureError(f"dynamic{path} must be one Dim for the int {value}, got {spec!r}",
                                   hint=f"e.g. dynamic={{{path[1:-1]}: Dim('n', min=1, max=4096)}}")
            offset = min(getattr(spec, "min", 0), 0)  # (a Dim running below 0: its carrier is shifted)
            if value < offset:
                raise CaptureError(f"dynamic{path} is a Dim running from {offset}, but the example int is {value}",
                                   hint="pass an example in the Dim's range")
            return tree.IntArgument(value, offset)
        if type(value) in (list, tuple, torch.Size) and isinstance(spec, (list, tuple)) and len(spec) == len(value):
            kind = tree.SizeArgument if type(value) is torch.Size else type(value)
            return kind(mark(v, c, f"{path}[{j}]") for j, (v, c) in enumerate(zip(value, spec)))
        if type(value) is dict and isinstance(spec, dict):
            return {k: mark(v, spec.get(k), f"{path}[{k!r}]") for k, v in value.items()}
        return value  # (a tensor's spec, or one flat_dynamic refuses)

    out = []
    for k, (name, p) in enumerate(sig.parameters.items()):
        out.append(mark(values[k], dynamic.get(name), f"[{name!r}]"))
        if how[k] == "default" and out[k] is not values[k]:
            if p.kind == p.POSITIONAL_ONLY:
                raise CaptureError(f"dynamic[{name!r}] gives a Dim to a positional-only default the example "
                                   "call does not pass", hint=f"pass {name} in the example call")
            how[k] = "kw"
    return out


NEGATIVE_REACH = 2**20  # how far below 0 a negative example int reaches under dynamic=True


def _every_int(value):
    """``value`` with each int in it (in lists, tuples, dicts and torch.Size) made a
    ``tree.IntArgument``; a negative one runs from ``-NEGATIVE_REACH`` (its carrier is
    shifted by that: treespec.IntLeaf), a positive one from 0 (torch.compile's runs over
    every int; a carrier is a size)."""
    if type(value) is int:
        return tree.IntArgument(value, min(value, -NEGATIVE_REACH) - 2 if value < 0 else 0)  # (torch runs it from 2)
    if type(value) in (list, tuple):
        return type(value)(map(_every_int, value))
    if type(value) is torch.Size:
        return tree.SizeArgument(map(_every_int, value))
    if type(value) is dict:
        return {k: _every_int(v) for k, v in value.items()}
    return value


def flat_dynamic(dynamic, sig: inspect.Signature, values: list, n_flat: int) -> list:
    """Per flat tensor: {dim: Dim} for torch.export, from the user's ``dynamic``."""
    flat: list = [None] * n_flat
    if dynamic is None or dynamic is False:
        return flat
    if dynamic is True:
        return [dict.fromkeys(range(t.dim()), Dim.AUTO) for t in _tensors_of(values)]
    if not isinstance(dynamic, dict):
        raise CaptureError("dynamic must be None, True, or a dict {parameter name: {dim: Dim}}")
    names = list(sig.parameters)
    counter = [0]
    shifted: dict[str, int] = {}  # Dims carried shifted (running below 0) -> their shift
    carriers: set[int] = set()

    def walk(value, spec, path):
        if type(value) is tree.IntArgument:  # (its carrier's first size: int_arguments)
            flat[counter[0]] = {0: _carrier_dim(spec, value.offset, shifted)}
            carriers.add(counter[0])
            counter[0] += 1
            return
        if isinstance(value, torch.Tensor) and tree.flattens_into_tensors(value):
            for t in tree.subclass_parts(value)[2]:  # (a subclass's Dims are its inner tensors')
                walk(t, spec, path)
            return
        if isinstance(value, torch.Tensor):
            i = counter[0]
            counter[0] += 1
            if spec is None:
                return
            if isinstance(spec, (list, tuple)):
                spec = {d: s for d, s in enumerate(spec) if s is not None}
            if not isinstance(spec, dict):
                raise CaptureError(f"dynamic{path} must be a dict {{dim: Dim}} for a tensor, got {spec!r}")
            for d in spec:
                if not isinstance(d, int) or not -value.dim() <= d < value.dim():
                    raise CaptureError(f"dynamic{path} names dimension {d!r}, but the tensor has rank {value.dim()}")
            flat[i] = {d % value.dim(): s for d, s in spec.items()}
            return
        if isinstance(value, (list, tuple)):
            if spec is not None and (not isinstance(spec, (list, tuple)) or len(spec) != len(value)):
                raise CaptureError(f"dynamic{path} must be a list of {len(value)} specs, one per item, got {spec!r}")
            for j, v in enumerate(value):
                walk(v, None if spec is None else spec[j], f"{path}[{j}]")
        elif isinstance(value, dict):
            if spec is not None and not isinstance(spec, dict):
                raise CaptureError(f"dynamic{path} must be a dict of specs by key, got {spec!r}")
            for k, v in value.items():
                walk(v, None if spec is None else spec.get(k), f"{path}[{k!r}]")
        elif spec is not None:  # (until 2026-12-06 ignored: the value was compiled in all the same)
            raise CaptureError(f"dynamic{path} gives {spec!r} for the {type(value).__name__} {value!r}: only "
                               "a tensor's dimensions and Python ints take Dims; any other Python value is "
                               "compiled in, and a call with another is a GuardError",
                               hint="pass it as a tensor, or compile a variant per value")

    unknown = set(dynamic) - set(names)
    if unknown:
        raise CaptureError(f"dynamic names {sorted(unknown)}, which are not parameters; the parameters are {names}")
    for name, value in zip(names, values):
        walk(value, dynamic.get(name), f"[{name!r}]")
    from .guard_specs import user_dim

    for name in sorted(shifted.keys() & {user_dim(s) for i, dyn in enumerate(flat) if i not in carriers
                                         for s in (dyn or {}).values()}):
        raise CaptureError(f"Dim {name} runs from {shifted[name]}, below 0: a tensor's size cannot share it with "
                           "an int", hint=f"give the tensor a Dim of its own, or {name} a minimum of 0")
    return flat


def _carrier_dim(spec, offset: int, shifted: dict):
    """The Dim of an int argument's carrier: the int's own, or where it runs below 0
    (``offset``, its minimum) a Dim of that name running from 0 (``n - offset``)."""
    if not offset:
        return spec
    shifted[spec.__name__] = offset
    top = spec.max if isinstance(spec.max, int) and not isinstance(spec.max, bool) and spec.max < 2**62 else None
    return torch.export.Dim(spec.__name__, min=0, max=top - offset) if top is not None else \
        torch.export.Dim(spec.__name__, min=0)


def _tensors_of(values) -> list[torch.Tensor]:
    return tree.flatten(list(values))[1]


def program_name(target) -> str:
    if isinstance(target, torch.nn.Module):
        return type(target).__qualname__
    if isinstance(target, functools.partial):
        return f"partial({getattr(target.func, '__qualname__', '?')})"
    return getattr(target, "__qualname__", None) or type(target).__qualname__

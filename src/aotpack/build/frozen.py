"""Frozen values: the Python values a program reads (globals, closure cells) and that
capture bakes into the graph, listed in the manifest (``Frozen`` records) and by
``aotpack inspect``. torch.compile freezes them too, silently.

    >>> frozen_values(fn)                                    # doctest: +SKIP
    [{'kind': 'global', 'name': 'SCALE', 'type': 'float', 'value': '2.0', ...}]
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

from .. import tree

__all__ = ["frozen_values", "user_functions"]


def user_functions(target: Callable) -> list[types.FunctionType]:
    """The Python functions whose globals and closures the program reads."""
    funcs: list[types.FunctionType] = []

    def add(f):
        f = getattr(f, "__func__", f)
        while isinstance(f, types.FunctionType) and f not in funcs:
            funcs.append(f)
            f = getattr(f, "__wrapped__", None)  # functools.wraps chains

    if isinstance(target, torch.nn.Module) or isinstance(getattr(target, "__self__", None), torch.nn.Module):
        module = target if isinstance(target, torch.nn.Module) else target.__self__
        if not isinstance(target, torch.nn.Module):
            add(target)
        for sub in module.modules():
            for cls in type(sub).__mro__:
                if cls.__module__.startswith("torch.") or cls is object:
                    continue
                for v in vars(cls).values():
                    add(v)
    else:
        add(target)
    return funcs


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


def frozen_values(target: Callable, ran: dict | None = None) -> list[dict]:
    """Globals and closure cells the program's functions read, with their values now.

    The functions are the target's own (its methods, those of its submodules' classes)
    and every user function that ran during capture (``ran``: code -> (globals,
    closure values), from EffectRecorder), so helpers called at any depth count."""
    sources: dict = {}
    for f in user_functions(target):
        cells = {}
        for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
            try:
                cells[name] = cell.cell_contents
            except ValueError:  # empty cell
                continue
        sources[f.__code__] = (f.__globals__, cells)
    for code, pair in (ran or {}).items():
        sources.setdefault(code, pair)
    frozen, seen = [], set()
    for code, (globals_, cells) in sources.items():
        where = f"{code.co_filename}:{code.co_firstlineno} in {getattr(code, 'co_qualname', code.co_name)}"
        found = []
        for name in sorted(_code_names(code)):
            if name in globals_:
                found.append(("global", name, globals_[name]))
        for name, value in cells.items():
            if name != "__class__":
                found.append(("closure", name, value))
        for kind, name, value in found:
            entry = _describe_frozen(value)
            if entry is None or (kind, name, id(value)) in seen:
                continue
            seen.add((kind, name, id(value)))
            frozen.append({"kind": kind, "name": name, "where": where, **entry, "_value": value})
    return frozen


def _describe_frozen(value) -> dict | None:
    if isinstance(value, torch.Tensor):
        dtype = tree.dtype_name(value.dtype)
        return {"type": "tensor", "value": f"{dtype}{list(value.shape)}"}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return {"type": type(value).__name__, "value": repr(value)}
    if isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return {"type": "tuple", "value": repr(value)}
    return None  # modules, functions, classes: code, not data

"""Frozen values: the Python values a program reads (globals, closure cells) and that
capture bakes into the graph, listed in the manifest (``Frozen`` records) and by
``aotpack inspect``. torch.compile freezes them too, silently.

    >>> frozen_values(fn)                                    # doctest: +SKIP
    [{'kind': 'global', 'name': 'SCALE', 'type': 'float', 'value': '2.0', ...}]
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import NamedTuple

import torch

from .. import tree

__all__ = ["Reached", "closure_values", "describe_frozen", "frozen_values", "modules_by_name", "user_functions"]


class Reached(NamedTuple):
    """How a program reaches a module by a name (``modules_by_name``)."""
    name: str  # the name: ``load(path, module={name: m})`` binds it by it
    how: str  # for messages: ``a closure variable of make.<locals>.<lambda>``
    where: str  # ``file:line in qualname`` of the code reading it (``Frozen.where``); "" for a partial's
    module: str | None = None  # for a module global: the ``__name__`` of the globals its path starts in
    # for a module global, the dotted name the code reads it by from its globals: ``HELPER``,
    # or ``helpers.SEQ`` (an attribute of a Python module the code names); None otherwise
    path: str | None = None


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


def modules_by_name(call: Callable, ran: dict | None = None) -> dict[torch.nn.Module, Reached]:
    """The modules a program reaches by a name: module -> ``Reached`` (the name, the one
    ``load(path, module={name: m})`` binds it by; how it is reached, for messages; where:
    ``file:line in qualname`` of the code that reads it as a global or closure variable,
    as ``Frozen.where`` names it, "" for a partial's or a callable object's; and for a
    global, the Python module whose global it is).

    Read from the code of ``call``'s own functions (``user_functions``) before the trace,
    and, given ``ran`` (``EffectRecorder.functions``: code -> (globals, closure values)),
    from every user function that ran after it, so a helper at any depth counts
    (``def loss(x): return model(x)`` in another file). A name is a closure variable or a
    global of such code, or an attribute of a Python module it names (``helpers.model``:
    both names are the code's); for ``call`` itself also the function or an argument of a
    ``functools.partial`` (``func``; a positional argument by the parameter it fills,
    ``args[0]`` where the function has no signature, which no dict can name) and an
    attribute of a callable object. The first name found for a module is its name.

    Torch.export compiles such a module's tensors and Python state in, as it does a
    module target's: capture.py holds them as the program's submodules
    (``_held_by_name``), homes.py and guard_specs.py name what they hold by these names.

    Example:
        >>> def make():
        ...     lin = torch.nn.Linear(2, 2)
        ...     return lin, lambda x: lin(x)
        >>> lin, fn = make()
        >>> modules_by_name(fn)[lin][:2]
        ('lin', 'a closure variable of make.<locals>.<lambda>')
        >>> modules_by_name(fn)[lin].where.endswith("in make.<locals>.<lambda>")
        True
    """
    reached = _read_by_name({f.__code__: (f.__globals__, closure_values(f)) for f in user_functions(call)})
    for m, how in _held_by_call(call).items():
        reached.setdefault(m, how)
    for m, how in _read_by_name(ran or {}).items():
        reached.setdefault(m, how)
    return reached


def closure_values(f: types.FunctionType) -> dict[str, object]:
    """A function's closure variables that hold a value: name -> value."""
    values = {}
    for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return values


def _read_by_name(sources: dict) -> dict[torch.nn.Module, Reached]:
    """The modules code reads by name (``sources``: code -> (globals, closure values))."""
    found: dict = {}
    for code, (globals_, cells) in sources.items():
        qualname, where = _qualname(code), where_read(code)
        names = _code_names(code)
        for name in sorted(names):
            value = globals_.get(name)
            if isinstance(value, torch.nn.Module):
                found.setdefault(value, Reached(name, f"{GLOBAL_OF}{qualname}", where, globals_.get("__name__"), name))
        for path, attr, held in _module_attributes(globals_, names, torch.nn.Module):
            found.setdefault(held, Reached(attr, f"{path}, read by {qualname}", where, globals_.get("__name__"), path))
        for name, value in cells.items():
            if isinstance(value, torch.nn.Module):
                found.setdefault(value, Reached(name, f"a closure variable of {qualname}", where))
    return found


def _module_attributes(globals_: dict, names, kind: type):
    """(``helpers.model``, ``model``, the value) for each value of type ``kind`` that code
    can read as an attribute of a Python module it names as a global (both names are the
    code's, so one only sharing its name is listed too); torch's own modules are not
    looked into."""
    for name in sorted(names):
        value = globals_.get(name)
        if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] != "torch":
            held = getattr(value, "__dict__", {})
            for attr in sorted(names):
                if attr in held and isinstance(held[attr], kind):
                    yield f"{name}.{attr}", attr, held[attr]


def _qualname(code: types.CodeType) -> str:
    return getattr(code, "co_qualname", code.co_name)


def where_read(code: types.CodeType) -> str:
    """Where code reads a name, as ``Frozen.where`` says it: ``file:line in qualname``
    (the qualname is what a loading process finds a bound module's method by)."""
    return f"{code.co_filename}:{code.co_firstlineno} in {_qualname(code)}"


GLOBAL_OF = "a module global of "  # (how ``modules_by_name`` says a module is read as its code's global)


def _held_by_call(call) -> dict[torch.nn.Module, Reached]:
    """The modules a ``functools.partial`` or a callable object holds."""
    if isinstance(call, functools.partial):
        # (a positional argument by the name of the parameter it fills: ``partial(step, model)``
        # of ``def step(model, x)`` binds as ``module={"model": model}``)
        names = _positional_names(call.func)
        held = {"func": call.func, **{names[i] if i < len(names) else f"args[{i}]": a for i, a in enumerate(call.args)},
                **call.keywords}
        return {v: Reached(k, "the function a functools.partial calls" if k == "func" else "an argument of a "
                           "functools.partial", "") for k, v in held.items() if isinstance(v, torch.nn.Module)}
    if isinstance(call, torch.nn.Module) or not hasattr(call, "__dict__") or callable(getattr(call, "__code__", None)):
        return {}
    # a wrapper object whose ``__call__`` runs ``self.model``
    return {v: Reached(k, f"an attribute of the {type(call).__name__} called", "") for k, v in vars(call).items()
            if isinstance(v, torch.nn.Module)}


def _positional_names(func) -> list[str]:
    """The names of ``func``'s parameters that a positional argument may fill, in order;
    [] where it has no signature Python can read."""
    import inspect

    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


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
        sources[f.__code__] = (f.__globals__, closure_values(f))
    for code, pair in (ran or {}).items():
        sources.setdefault(code, pair)
    frozen, seen = [], set()
    for code, (globals_, cells) in sources.items():
        where = where_read(code)
        found = [("global", name, value) for name, value in globals_read(_code_names(code), globals_)]
        found += [("held", path, t) for _, name, value in list(found) for path, t in _held_in(name, value)]
        for name, value in cells.items():
            if name != "__class__":
                found.append(("closure", name, value))
        for kind, name, value in found:
            entry = describe_frozen(value)
            if entry is None or (kind, name, id(value)) in seen:
                continue
            seen.add((kind, name, id(value)))
            # (a global: the Python module holding it, where a loading process that imported it
            # from another path finds it, load/binding.py's ``global_namespaces``)
            home = {"module": globals_.get("__name__")} if kind in ("global", "held") else {}
            held = {"_held": True} if kind == "held" else {}  # (listed only where the graph reads it)
            frozen.append({"kind": "global" if held else kind, "name": name, "where": where, **entry, **home,
                           "_value": value, **held})
    return frozen


def _held_in(name: str, value) -> list[tuple[str, torch.Tensor]]:
    """(path, tensor) of the tensors a global list, tuple, dict, functools.partial or
    plain object holds (``WS[0]``, ``SHIFT.keywords['other']``): a package bound to a
    module reads each there at every call, as eager does (load/binding.py's
    ``global_homes``); those the graph reads no tensor of are left out of the records."""
    if isinstance(value, (torch.Tensor, torch.nn.Module, types.ModuleType, type)) or callable(value) and not \
            isinstance(value, functools.partial):
        return []
    return [(path, t) for path, t, _, _ in held_tensors(name, value, 16, set())]


def held_tensors(path: str, value, depth: int, seen: set[int]):
    """(path, tensor, holder, key) for the tensors ``value`` (a container or a plain
    object) holds, ``depth`` levels down, leaving out the containers in ``seen``."""
    if depth <= 0 or id(value) in seen:
        return
    if isinstance(value, functools.partial):  # (``partial(F.linear, weight=w)``: its arguments)
        seen.add(id(value))
        yield from held_tensors(f"{path}.args", value.args, depth - 1, seen)
        yield from held_tensors(f"{path}.keywords", value.keywords, depth - 1, seen)
        return
    if isinstance(value, (list, tuple, dict)):
        items = [(f"{path}[{key!r}]", key, t) for key, t in (value.items() if isinstance(value, dict)
                                                             else enumerate(value)) if type(key) in (int, str)]
    elif plain_object(value):
        items = [(f"{path}.{key}", key, t) for key, t in vars(value).items() if key.isidentifier()]
    else:
        return
    seen.add(id(value))
    for item_path, key, t in items:
        if isinstance(t, torch.Tensor):
            yield item_path, t, value, key
        elif not isinstance(t, (torch.nn.Module, str, bytes)):
            yield from held_tensors(item_path, t, depth - 1, seen)


# the Python values a global may hold that the program computes with as data (numbers,
# strings, flags, dtypes, devices and tuples of them): ``guard_specs.global_values``
_DATA = (bool, int, float, str, type(None), torch.dtype, torch.device)


def is_data(value, depth: int = 0) -> bool:
    """Whether ``value`` is plain data a program computes with (``SCALE = 2.0``,
    ``SIZES = (1, 2)``, ``DTYPE = torch.float16``, ``CFG = {"eps": 1e-5}``), not code, a
    module or a tensor; a container may hold functions (``ACTS = {"gelu": F.gelu}``)."""
    if isinstance(value, (tuple, list)):
        return depth < 4 and all(is_data(v, depth + 1) for v in value)
    if isinstance(value, dict):
        from ..package.manifest import PLAIN_KEYS

        return depth < 4 and all(isinstance(k, PLAIN_KEYS) and is_data(v, depth + 1) for k, v in value.items())
    return isinstance(value, _DATA) or depth > 0 and isinstance(value, (types.FunctionType,
                                                                         types.BuiltinFunctionType))


NO_DEFAULT = object()


def class_default(obj, name: str):
    """The plain data ``obj``'s class holds as ``name`` where ``obj`` does not shadow it
    (``class Settings: gain = 2.0``, read as ``SETTINGS.gain``; ``self.config.eps`` of a
    module's config); else ``NO_DEFAULT``: a method, a property, what is no data."""
    import inspect

    if name.startswith("__") or name in vars(obj):
        return NO_DEFAULT
    value = inspect.getattr_static(type(obj), name, NO_DEFAULT)
    return value if value is not NO_DEFAULT and is_data(value) else NO_DEFAULT


def plain_object(value) -> bool:
    """An object whose own attributes code reads as data (a model's config, a script's
    ``args``): not a module, tensor, class, function or container, and with a ``__dict__``;
    not a logger (its level changes at run time, and is no data a program computes with)."""
    import logging

    return (hasattr(value, "__dict__") and not callable(value)
            and not isinstance(value, (torch.nn.Module, torch.Tensor, type, types.ModuleType, logging.Logger,
                                       logging.LoggerAdapter)))


def globals_read(names, globals_: dict):
    """(name, value) for each global that code naming ``names`` can read from its
    ``globals_``: its own globals (``SCALE``), the tensors, modules and plain data it can
    read as a Python module's attributes (``layers.TABLE``, ``config.FLAG``: a global too,
    read there by a bound package), and the plain data of a plain object global it names
    (``args.scale`` of a script's ``args = parser.parse_args()``, or a default of its class,
    ``class Settings: gain = 2.0``: ``class_default`` tells them apart)."""
    names = sorted(names)
    for name in names:
        if name in globals_:
            yield name, globals_[name]
            if plain_object(globals_[name]):
                held = vars(globals_[name])
                yield from ((f"{name}.{attr}", held[attr]) for attr in names if attr in held and is_data(held[attr]))
                yield from ((f"{name}.{attr}", value) for attr in names
                            if (value := class_default(globals_[name], attr)) is not NO_DEFAULT)
    for path, _, value in _module_attributes(globals_, names, (torch.Tensor, torch.nn.Module, *_DATA, tuple, list,
                                                               dict)):
        if not isinstance(value, (tuple, list, dict)) or is_data(value):
            yield path, value
    yield from torch_functions(names, globals_)


def torch_functions(names, globals_: dict):
    """(``F.scaled_dot_product_attention``, the function) for each function of a torch
    module the code names through a module global (``torch.cat``, ``F.gelu``, and chains
    of torch's modules written out, ``torch.nn.functional.gelu``: every step a name the
    code uses): eager calls whatever the module holds at each call, so one patched
    (``F.scaled_dot_product_attention = my_kernel``) runs the patch, where torch.export
    traced the function of compile time."""
    names = sorted(set(names))

    def walk(path: str, module: types.ModuleType, depth: int):
        held = vars(module)
        for attr in names:
            value = held.get(attr)
            if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
                yield f"{path}.{attr}", value
            elif isinstance(value, types.ModuleType) and depth < 3 and value.__name__.startswith("torch."):
                yield from walk(f"{path}.{attr}", value, depth + 1)

    for name in names:
        value = globals_.get(name)
        if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] == "torch":
            yield from walk(name, value, 1)


def describe_frozen(value) -> dict | None:
    """How a frozen value is listed (``Frozen.type`` and ``value``); None for code other
    than a function (a module's, a class)."""
    if isinstance(value, torch.Tensor):
        dtype = tree.dtype_name(value.dtype)
        return {"type": "tensor", "value": f"{dtype}{list(value.shape)}"}
    from ..package.manifest import FUNCTION_TYPES

    if isinstance(value, FUNCTION_TYPES):  # (listed where guarded: capture.py)
        from ..package.manifest import function_name

        return {"type": "function", "value": function_name(value)}
    if isinstance(value, (torch.dtype, torch.device)):
        return {"type": type(value).__name__, "value": str(value)}
    if is_data(value):
        return {"type": type(value).__name__, "value": repr(value)[:200]}
    return None  # modules, functions, classes: code, not data

"""A package bound to a live module (``load(path, module=m)``) follows ``m`` as eager does.

Eager reads the module's attributes at every call: a parameter reassigned
(``m.fc.weight = nn.Parameter(...)``, ``load_state_dict(sd, assign=True)``), a
submodule replaced, ``p.data = t``, a hook registered. A package bound to ``m`` must
see the same, or refuse the call; reading every attribute at every call (what dynamo's
NN-module guards do for torch.compile) would cost microseconds per weight. Instead:

- the live Parameter objects themselves are passed to the compiled code (not detached
  copies made at load), so ``p.data = t`` and in-place updates are seen;
- torch's global module registration hooks (public API) bump a generation counter
  whenever any module registers a parameter, buffer or submodule, which is what
  ``setattr`` of one does; the hook dicts of the bound module tree are swapped for a
  dict that bumps the counter when a hook is added. A call reads the counter (one
  comparison) and, where it moved, binds the weights again by name and looks for hooks
  added since load: those are refused (compiled code cannot run them), naming the
  module and the kind of hook;
- a plain tensor attribute of the module (``self.scale = torch.tensor(2.0)``, no
  parameter or buffer: torch.export lifts it as a constant) is bound like a parameter;
  assigning one registers nothing, so each call checks that the attribute is still the
  bound tensor (one dict lookup per such attribute) and binds again where it is not;
- a Python attribute the program's methods name (``self.eps``, ``self.use_bias``, also
  one of a plain object the module holds: ``self.config.output_hidden_states``) is a
  value compiled into the package (``variants[].module_attributes``); each call compares
  the module's value with it (one lookup and comparison per such attribute) and refuses
  another, naming the attribute (torch.compile guards these too, and recompiles); so is
  one read through ``self`` from the module's class (``scale = 2.0`` in its body,
  ``variants[].class_attributes``), compared where the module resolves it now: the
  class's (``getattr`` of the class, one pass) while the instance does not shadow it,
  the instance's once one is set there;
- a module global tensor the module's code reads (``TABLE`` in its forward, or in a helper
  it calls: torch.export lifts it as a constant) is bound like a plain tensor attribute,
  from where this process holds it (``global_homes``): each call checks that the global
  is still the bound tensor, so one assigned anew is read anew; so are the tensors of a
  module the code calls as a global (``HELPER(x)``: ``global:HELPER.weight``), and each
  call checks that the global still names the module bound; such a module's class, code,
  hooks and Python values are guarded as a submodule's, below (under ``global:HELPER``);
  a tensor a global list, dict, functools.partial or plain object holds (``WS[0]``,
  ``SHIFT.keywords['w']``, ``CACHE.cos``) is bound there, each container on the way
  compared at every call as a module's own containers are (``held_slot``);
  a function's package binds its globals by name (``module={"MODEL": MODEL, "W": W}``):
  where the global still holds what the dict gave at load, the same pass compares it with
  the object bound, and one assigned anew is bound in its place and checked as a
  replaced submodule or tensor is (``given_globals``);
- plain data the code that ran reads as a module global (``SCALE = 2.0``, a dtype, a
  flag; ``config.FLAG`` of a Python module ``config``: ``Variant.global_values``) is
  compiled in like a Python attribute, compared in the same pass with the global where
  this process holds it (format 15), in each Python module whose code reads it (``EPS``
  in two files); an equal value of another type (``2.0`` where ``2``
  was compiled in) is refused too, so the pass compares identity and the slow path types;
  a list or dict (``CFG = {"scale": 2.0}``, format 16) is also compared by value with a
  copy of it (``_exact_copy``), as it changes in place;
  a function the code calls as a global (``rotate_half``), or holds as an attribute
  (``self.act = F.gelu``), must stay the object there at load (its code was traced in; a
  wrapper of the same name is refused too); so must a function of torch's modules the
  code names (``F.scaled_dot_product_attention``, ``torch.cat``: only its code is
  recorded, ``Variant.torch_functions``);
- those functions and each module's ``forward`` as set must run the code compiled in
  when the package is bound (``variants[].function_code``, digests under the same
  Python version): a patch applied between the compile and the load, even a wrapper
  of the same name, is refused at the load;
- a submodule's ``training`` flag, where its code reads it (dropout, batch norm), is one
  of those values (the module's own is checked with its parameters' requires_grad,
  runtime.py); the error says which mode the package was compiled in;
- the class of each module whose code ran at capture is compiled in too
  (``variants[].module_types``): a submodule replaced by one of another class is
  refused; replacing one registers it, so this is checked where the counter moved, and a
  class swapped in place (``m.fc.__class__ = C``, which registers nothing) by a pass
  comparing each such module's class at each call;
- so are the children of each container the program ran (``variants[].module_children``:
  a ModuleList's layers, a Sequential's, a ModuleDict's keys): eager runs what it holds,
  so one holding others (``m.layers.append(block)``, ``del m.layers[0]``) is refused; an
  addition registers it, a deletion registers nothing, so each call also compares the
  containers' lengths (one C-level pass) and their children dicts' identity (``del``
  renumbers a ModuleList into a new dict);
- the code that ran is the modules' ``forward`` as bound: one patched after load, on the
  instance (``m.attn.forward = f``: accelerate's hooks do this) or on its class
  (``LlamaAttention.forward = f``), registers nothing, so each call compares every such
  module's instance attribute and each class's ``forward`` with those at load (C-level
  passes) and refuses a patched one, naming it (compiled code cannot run the new code);
- each call checks every bound weight's dtype, shape and device (``p.data = t`` of
  another shape would otherwise hand compiled code memory of the wrong size), and for
  compiled code its strides: compiled code reads a weight through the strides it was
  compiled for, so a weight put in another layout (``m.to(memory_format=...)``,
  ``p.data = t.t()``) makes the call run the variant's portable program (eager ops on the
  module's own tensors, with a PortableRunWarning), or a GuardError where it has none.

A function's package binds the modules and tensors its program reads by name
(``load(path, module={"model": model})``, ``holder``): the same checks follow each of
them under that name (``module.model.norm.training``); those the dict does not give
stay as compiled (``_followed``).

Per-call cost: ``bench/guard_overhead.py`` ("bound module" row).

Example:
    >>> import aotpack, torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval().requires_grad_(False)
    >>> path = aotpack.compile(model, (torch.randn(3, 4),), backend="eager").save("lin.aot")
    >>> fn = aotpack.load("lin.aot", module=model)
    >>> model[0].weight = torch.nn.Parameter(torch.zeros(2, 4), requires_grad=False)  # the next call uses it
    >>> torch.equal(fn(torch.randn(3, 4)), model[0].bias.expand(3, 2))
    True
"""

from __future__ import annotations

import ast
import functools
import re
from collections import OrderedDict
from itertools import repeat
from operator import is_not, ne
from typing import NamedTuple

import torch

from .. import tree
from ..errors import AotpackError
from ..package.manifest import (
    HOOK_KINDS,
    Program,
    Variant,
    children_held,
    class_code,
    class_name,
    code_comparable,
    function_code,
    function_name,
    functions_inside,
    method_function,
    module_hooks,
    plain_value,
    python_value,
    resolved_forward,
    same_class,
    same_plain,
    weight_names,
)
from .guards import Mismatch, mode_expected

__all__ = ["Binding", "global_homes", "global_namespaces", "holder", "module_weight", "where_of"]

_GENERATION = [0]  # moved by any registration of a parameter, buffer, submodule or (watched) hook
_installed = False


def _bump(*_args):
    _GENERATION[0] += 1


def _install() -> None:
    """Register the global registration hooks once per process (they return None: the
    registration goes ahead unchanged)."""
    global _installed
    if _installed:
        return
    from torch.nn.modules import module as nn_module

    nn_module.register_module_parameter_registration_hook(_bump)
    nn_module.register_module_buffer_registration_hook(_bump)
    nn_module.register_module_module_registration_hook(_bump)
    _installed = True


class _WatchedHooks(OrderedDict):
    """A module's hook dict that moves the generation when a hook is added. Pickles
    and deep-copies as the plain OrderedDict it replaces."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _GENERATION[0] += 1

    def __delitem__(self, key):  # (a handle's remove(): the hooks compiled in are compared again)
        super().__delitem__(key)
        _GENERATION[0] += 1

    def clear(self):
        super().clear()
        _GENERATION[0] += 1

    def __reduce__(self):
        return OrderedDict, (list(self.items()),)


def _watch(roots: list[tuple[str, torch.nn.Module]]) -> None:
    """The empty hook dicts of the modules under ``roots`` swapped for watched ones. One
    holding hooks stays: the handles of its hooks delete from that very dict (a copy put in
    its place kept a removed hook running, in eager too, until 2026-12-06); the per-call
    pass compares its length instead (``Binding._slots``)."""
    for m in (m for _, root in roots for m in root.modules()):
        for name in HOOK_KINDS:
            hooks = m.__dict__.get(name)
            if hooks is not None and type(hooks) is OrderedDict and not hooks:
                m.__dict__[name] = _WatchedHooks(hooks)


def _hook_list(hooks: list[str]) -> str:
    """``"a forward hook, a forward pre-hook"``, or ``"none"``."""
    return ", ".join(f"a {h.split(': ')[0]}" for h in hooks) or "none"


def _hooks(roots: list[tuple[str, torch.nn.Module]]) -> dict:
    """(module path, hook dict name) -> the hook ids registered now, of the modules under
    each root (``Binding._roots``: the module bound, ``""``, and the global modules its
    code calls, ``global:HELPER``)."""
    return {(".".join(filter(None, (prefix, path))), name): set(getattr(m, name, {}) or ())
            for prefix, root in roots for path, m in root.named_modules() for name in HOOK_KINDS}


def holder(objects) -> torch.nn.Module:
    """A module holding ``objects`` (the variable name a function package's program reads
    -> the module or tensor it names: ``{"lin": lin, "W": W}``) under those names, as
    ``load(path, module=objects)`` binds them: a training package of ``lambda x: lin(x) * W``
    names the weights it trains ``lin.weight`` and ``W`` (``constant:W`` for a plain
    tensor), as a module holding them would (build/autograd.py, ``_train_outside``).

    Example:
        >>> m = holder({"lin": torch.nn.Linear(2, 1), "W": torch.ones(2, requires_grad=True)})
        >>> [n for n, _ in m.named_parameters()], type(m.W).__name__
        (['lin.weight', 'lin.bias'], 'Tensor')
    """
    if not hasattr(objects, "items"):
        raise TypeError(f"module must be an nn.Module or a dict of names to modules and tensors, "
                        f"not {type(objects).__name__}")
    held = torch.nn.Module()
    for name, value in objects.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"module={{...}}: {name!r} is no variable name")
        if hasattr(held, name):  # (``training``, ``forward``: the holder's own attributes)
            raise TypeError(f"module={{{name!r}: ...}}: {name!r} is an nn.Module attribute, which cannot name "
                            "what the program reads; compile a function that reads it under another name")
        if not isinstance(value, (torch.nn.Module, torch.Tensor)):
            raise TypeError(f"module={{{name!r}: ...}} is a {type(value).__name__}; give the module or tensor the "
                            f"program reads as {name}")
        setattr(held, name, value)  # (a Parameter registers as one; a plain tensor stays an attribute)
    return held


def module_weight(name: str, kind: str = "weight") -> str:
    """How an error names a bound module's weight: ``module weight 'fc.weight'`` (or
    ``module parameter ...`` for ``kind="parameter"``), ``module tensor attribute 'scale'``
    for a plain tensor attribute (the package's ``constant:scale``)."""
    if name.startswith("constant:"):
        return f"module tensor attribute {name.removeprefix('constant:')!r}"
    if name.startswith("global:"):
        return f"global {name.removeprefix('global:')!r} the module's code reads"
    return f"module {kind} {name!r}"


_MISSING = object()  # an attribute the module does not have
_NEVER = object()  # equals no value: where the module's value is not the one compiled in


class _Edited(NamedTuple):
    """Held at load in a function's place where its code is not the one compiled in (a
    kernel library's patch applied before the load): no object is it, so each call refuses."""
    function: object


def _held(d: dict, name: str, want):
    """The module's own object for attribute ``name`` where it is the value ``want`` (the
    manifest's JSON) stands for, so the per-call comparison is with it; else _NEVER."""
    got = d.get(name, _MISSING)
    return got if got is not _MISSING and same_plain(plain_value(got), want) else _NEVER


class _Exact:
    """A number in ``_exact_copy``: equal only to a number of its own type (``==`` finds
    ``2 == 2.0 == True``, where a program computing with each gives other dtypes)."""

    __slots__ = ("value",)
    __hash__ = None

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is type(self.value) and other == self.value

    def __ne__(self, other):
        return not self.__eq__(other)


def _exact_copy(value):
    """A copy of a plain value (lists, tuples and dicts of them) that a later state of it
    equals (``==``, C-level for strings and containers) only where it holds the same
    values of the same types: its numbers are _Exact. Functions stay themselves (equal by
    identity)."""
    if isinstance(value, list):
        return [_exact_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_exact_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _exact_copy(v) for k, v in value.items()}
    return _Exact(value) if isinstance(value, (bool, int, float)) else value


def _holds_list(value) -> bool:
    """Whether a plain value holds a list or a dict (which can change in place), at any depth."""
    return isinstance(value, (list, dict)) or (isinstance(value, tuple) and any(map(_holds_list, value)))


def _alias_hops(variant, module: torch.nn.Module, weights: list, stored: set = frozenset()) -> list[tuple]:
    """The places whose tensor the graph reads through another weight
    (``Variant.tensor_aliases``: a tied ``emb.weight`` read as ``head.weight``, a plain
    attribute ``b`` holding ``a``'s tensor) checked to hold that weight's memory still:
    AotpackError naming the two where one holds another tensor (untied since: eager would
    read the two, the compiled code reads one). Returns the hops (holder, key, value) to
    the plain attributes, compared at every call (assigning one registers nothing); a
    weight's own slot is compared already. ``stored``: the weights that are the package's
    own copies (a function's package bound by a dict that leaves a name out: warned at
    the load), not compared."""
    index, hops = {fqn: i for i, fqn in enumerate(variant.weight_fqns)}, []
    for alias, fqn in variant.tensor_aliases.items():
        if index.get(fqn, -1) in (-1, *stored) or index.get(alias) in stored:
            continue
        w, via = weights[index[fqn]], []
        if alias in index:
            there = weights[index[alias]]
        else:
            held, name, via = tensor_attribute_slot(module, alias)
            there = _item(held, name) if held is not None else None
            via = [*via, (held, name, there)]
        if not isinstance(there, torch.Tensor) or (there is not w and (there.data_ptr(), there.shape, there.stride())
                                                    != (w.data_ptr(), w.shape, w.stride())):
            raise AotpackError(f"{module_weight(alias)} is another tensor than {fqn.removeprefix('constant:')}: they "
                               "were one when the package was compiled, which its code may read for both",
                               hint="set them to one tensor again, or compile the package from the module as it is now")
        hops += via
    return hops


def _same_partial(got, held) -> bool:
    """Whether ``got`` is a ``functools.partial`` made anew of the function ``held`` (a
    partial) calls, with the same values (``manifest.function_name``): the same program,
    its tensor arguments read where it holds them (``constant:act.keywords['w']``,
    ``global:SHIFT.keywords['w']``)."""
    return (isinstance(got, functools.partial) and isinstance(held, functools.partial) and got.func is held.func
            and function_name(got) == function_name(held))


def _replaced_function(held: str, got, where: str) -> Mismatch:
    """Another object where the function ``held`` (its name) was at load: by identity,
    so a wrapper of the same name is named as one."""
    now = function_name(got) if callable(got) else repr(got)[:80]
    return Mismatch([], f"the function {held} it held at load (its code is compiled into the package: undo the "
                    "patch, or compile the package with it)",
                    "another function of the same name (a wrapper, or its module reloaded)" if now == held else now,
                    where=where)


def _edited_function(fn, where: str) -> Mismatch:
    """A function whose code is not the one compiled in (patched or edited)."""
    return Mismatch([], "the function compiled into the package (undo the patch, or compile the package with it)",
                    f"{function_name(fn)}, another code (patched or edited since the compile)", where=where)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _owner_dict(module: torch.nn.Module, path: str, holders: dict) -> dict:
    """The ``__dict__`` holding attribute ``path`` (``ln.eps``, or ``config.use_cache``
    where ``config`` is a plain object the module holds); {} where there is none. Such a
    plain object is added to ``holders`` ((its holder's __dict__, name) -> the object),
    whose identity each call checks: a module's ``config`` can be replaced by a plain
    assignment, which registers nothing."""
    return getattr(_owner(module, path, holders), "__dict__", {})


def _owner(module: torch.nn.Module, path: str, holders: dict):
    """The object attribute ``path`` is read from (``_owner_dict``), or None."""
    owner = module
    for part in path.split(".")[:-1]:
        if not isinstance(owner, torch.nn.Module):
            return None
        child = owner._modules.get(part)
        if child is None and part in owner.__dict__:  # a plain object: the config
            child = owner.__dict__[part]
            holders[(id(owner.__dict__), part)] = (owner.__dict__, part, child)
        owner = child
    return owner


def tensor_attribute_slot(module: torch.nn.Module, fqn: str) -> tuple[object, object, list]:
    """Where ``fqn`` (``constant:block.scale``, the package's name for a lifted constant)
    lies in ``module`` as a plain tensor: (what holds it, its key there, the hops on the
    way). A tensor attribute: (its owner's ``__dict__``, its name, []). A tensor a list,
    tuple or dict attribute holds, or a plain object (``constant:ws[0]``,
    ``constant:block.table['a']``, ``constant:cache.cos``, levels down
    ``constant:ws[0][1]``: homes.py's ``container_tensors``): (that container or the
    object's ``__dict__``, the key, the hops (holder, key, value) from the module's
    ``__dict__`` down to it), so each call compares every hop. Else (None, "", [])."""
    if not fqn.startswith("constant:"):
        return None, "", []
    path = fqn.removeprefix("constant:")
    head, _, _ = path.partition("[")
    parts = head.split(".")
    owner, i = module, 0
    while i < len(parts) - 1 and isinstance(owner._modules.get(parts[i]), torch.nn.Module):
        owner, i = owner._modules[parts[i]], i + 1  # (the submodules on the way: ``block``)
    rest = path[len(".".join(parts[:i])) + (1 if i else 0):]
    attr = _NAME.match(rest)
    if attr is None:
        return None, "", []
    return held_slot(owner.__dict__, attr.group(0), rest[attr.end():])


def held_slot(holder, key, rest: str) -> tuple[object, object, list]:
    """Where the tensor ``rest`` (``[0]``, ``['a'][1]``, ``.cos``, ``.keywords['w']``)
    names below ``holder[key]`` lies: (its container or object's ``__dict__``, its key
    there, the hops (holder, key, value) on the way, each compared at every call), or
    (None, "", []) where no tensor lies there."""
    hops, at = [], 0
    while at < len(rest):
        step = _STEP.match(rest, at)
        if step is None:  # (a name no walk gives: stays the package's)
            return None, "", []
        at = step.end()
        value = _item(holder, key)
        if step.group(1) in ("args", "keywords") and isinstance(value, functools.partial):
            # (``act.keywords['w']``: a functools.partial's arguments, attributes it cannot rebind)
            hops.append((holder, key, value))
            holder, key = {"args": value.args, "keywords": value.keywords}, step.group(1)
        elif step.group(1) is not None:  # ``.cos``: a plain object's attribute
            if isinstance(value, (torch.nn.Module, torch.Tensor, type)) or not isinstance(
                    getattr(value, "__dict__", None), dict):
                return None, "", []
            hops.append((holder, key, value))
            holder, key = value.__dict__, step.group(1)
        else:  # ``[0]``, ``['a']``: a list's, tuple's or dict's item
            if not isinstance(value, (list, tuple, dict)):
                return None, "", []
            try:
                item_key = ast.literal_eval(step.group(2))
            except (ValueError, SyntaxError):  # (a name no container gives: stays the package's)
                return None, "", []
            hops.append((holder, key, value))
            holder, key = value, item_key
    if not isinstance(_item(holder, key), torch.Tensor):
        return None, "", []
    return holder, key, hops


_NAME = re.compile(r"[A-Za-z_]\w*")
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[([^\]]+)\]")  # ``.cos``, ``[0]``, ``['a']``


def _item(container, key):
    """``container[key]``, or _MISSING where it holds no such item (a list grown shorter)."""
    try:
        return container[key]
    except (IndexError, KeyError, TypeError):
        return _MISSING


def _slot_value(module: torch.nn.Module, fqn: str) -> torch.Tensor | None:
    """The parameter or buffer ``fqn`` of ``module``, or None."""
    *path, name = fqn.split(".")
    owner = _submodule(module, path)
    if owner is None:
        return None
    return owner._parameters.get(name, owner._buffers.get(name))


def _submodule(module: torch.nn.Module, parts: list[str]) -> torch.nn.Module | None:
    """The submodule at ``parts`` (``["block", "0"]``), or None where there is none."""
    for part in parts:
        module = module._modules.get(part) if isinstance(module, torch.nn.Module) else None
    return module if isinstance(module, torch.nn.Module) else None


def _missing(module: torch.nn.Module, program: Program, fqn: str) -> AotpackError:
    """The error where the bound module lacks weight ``fqn``; for a function's package
    (whose weights are the modules and tensors it reads by name: ``lin.weight``,
    ``constant:W``), the hint names the dict to bind."""
    if program.kind == "function":
        name = fqn.removeprefix("constant:").split(".")[0]
        return AotpackError(f"the package reads {fqn!r} (the program's variable {name}), which the bound "
                            f"{type(module).__qualname__} does not hold",
                            hint=f"bind what the program reads by its name: module={{{name!r}: ...}}")
    return AotpackError(f"module {type(module).__qualname__} has no parameter or buffer {fqn!r}, which the package "
                        "needs", hint="pass the same model class the package was compiled from")


def _given(module: torch.nn.Module) -> set[str]:
    """The names the module bound holds (for a function's package, the keys of
    ``module={...}``): its submodules, parameters, buffers and plain attributes."""
    return set(module._modules) | set(module._parameters) | set(module._buffers) | set(module.__dict__)


def global_namespaces(program: Program, module: torch.nn.Module, given: set | None = None,
                      values=(), others: dict | None = None) -> dict[str, dict]:
    """Where this process holds the module globals the program reads as tensors, calls
    as modules or computes with as plain data (the package's ``Frozen`` records of kind
    ``global``: ``TABLE``, ``HELPER.weight``, ``HELPER`` of type ``module``, and those
    ``values`` names, ``Variant.global_values``: ``SCALE``): global name -> the globals
    dict holding it. They are those of the bound module's method that read it (its class's
    ``__globals__``, by the qualname of ``Frozen.where``), or of the module this process
    imported from the file the read was in (a helper's, a script's own ``__main__``), or
    under the Python module's name (``Frozen.module``) where it was imported from another
    path (another checkout) and defines the function that read it. Only modules already
    imported are looked at: a package never makes this process import anything. A global
    found in none stays the package's copy, as loaded alone. ``others``, given, gets the
    other dicts holding plain data of a ``values`` name that another Python module's code
    reads (``EPS`` in two files, with one value at compile): each is compared too. A name
    read with other values in two Python modules is one ``values`` name per module
    (``EPS@layers``), found in the module of that name this process imported.
    ``given``: the names a function's package is bound by (``module={...}``), which the
    dict's own objects stand for. (Tested in tests/packages/test_module_binding.py: a
    doctest's globals are a copy no package can name.)
    """
    import sys

    records = [f for f in program.frozen if (f.followed or f.kind == "global" and f.name in values)
               and _bound_as(f) not in (given or ())]
    found = {}
    for name in values:  # (a name Python modules read with other values: ``EPS@layers``, in each module)
        base, at, module_name = name.partition("@")
        held = getattr(sys.modules.get(module_name), "__dict__", None) if at else None
        if held is not None and base.split(".")[0] not in (given or ()):
            holder, dotted, path = _walk(held, base)  # (``config.FLAG@layers``: config's, as layers holds it)
            if not path and dotted.rpartition(".")[2] in holder:
                found[name] = holder
    if not records:
        return found
    methods = {}  # qualname -> the globals of the bound modules' methods (torch's read no tensor of the program)
    for cls in dict.fromkeys(c for m in module.modules() for c in type(m).__mro__):
        if cls.__module__.split(".")[0] in ("torch", "builtins"):
            continue
        for fn in vars(cls).values():
            fn = getattr(fn, "__func__", fn)  # (a staticmethod's, a classmethod's)
            if (code := getattr(fn, "__code__", None)) is not None:
                methods.setdefault(getattr(code, "co_qualname", code.co_name), fn.__globals__)
    by_file = None  # (the imported modules by their file, built where a record needs it)
    for f in records:
        where, _, qualname = f.where.rpartition(" in ")
        if _split_global(f.name, found)[0] in found and (others is None or f.name not in values):
            continue
        file = where.rpartition(":")[0]
        candidates = [methods[qualname]] if qualname in methods else _helper_globals(f.module, file, qualname)
        if candidates is None:  # (no module name recorded, or a script's: every imported module of that file)
            if by_file is None:
                by_file = {}
                for m in list(sys.modules.values()):
                    if (held := getattr(m, "__dict__", None)) is not None:
                        by_file.setdefault(getattr(m, "__file__", None), []).append(held)
            candidates = by_file.get(file, [])
        for namespace in candidates:
            head, bracket, tail = f.name.partition("[")  # (``WS[0]``: a tensor a global list holds)
            holder, name, path = _walk(namespace, head)
            held = holder.get(name.rpartition(".")[2], _MISSING)
            # (plain data: any value, which the per-call comparison refuses where it changed; or
            # that of a plain object global, ``args.scale``: ``args`` found, read at each call;
            # a global container's tensor: the container, its tensor read there at each call)
            if f.weight and _container_rest(held, path, bracket + tail) is not None:
                kind = object
            elif bracket:  # (a name no global of this module holds a tensor at)
                continue
            else:
                kind = object if f.name in values else torch.nn.Module if path or f.type == "module" else torch.Tensor
            if held is not _MISSING and isinstance(held, kind):
                if name not in found:
                    found[name] = holder
                elif others is not None and not path and all(holder is not d for d in [found[name],
                                                                                     *others.get(name, ())]):
                    others.setdefault(name, []).append(holder)  # (another module's code reads one of that name)
                break
    return found


def _container_rest(held, path: str, bracket: str) -> str | None:
    """The walk (``[0]``, ``.keywords['w']``, ``.cos``) from a global ``held`` to a tensor
    it holds, where ``held`` is a list, tuple, dict, functools.partial or plain object
    (no module, tensor or Python module) and the walk reaches a tensor; else None."""
    import types

    rest = (f".{path}" if path else "") + bracket
    if not rest or held is _MISSING or isinstance(held, (torch.nn.Module, torch.Tensor, types.ModuleType, type)):
        return None
    return rest if held_slot({"": held}, "", rest)[0] is not None else None


def _bound_as(f) -> str:
    """The name ``module={...}`` gives a global record of a function's package by: a
    module read as ``helpers.model`` is bound as ``model``, a tensor ``W`` as ``W``."""
    return f.name.rpartition(".")[2] if f.type == "module" else f.name.split(".")[0]


def given_globals(program: Program, module: torch.nn.Module) -> list[tuple[str, dict, str]]:
    """For a function's package bound with ``module={...}``: the names given whose module
    global (the program's ``Frozen`` record: ``MODEL``, ``W``, ``helpers.model``) this
    process holds, holding the very object given: (the name given, the globals dict, the
    key there). Eager reads such a global at each call, so the binding follows it: one
    assigned anew (``MODEL = other``) is bound in place of the one given at load. A name
    bound to another object than its global holds (``module={"MODEL": copy}``) stays bound
    to what the dict gave, by the caller's choice. Found once, at load, in the Python
    module the record names (``_helper_globals``): dictionary lookups."""
    if program.kind != "function":
        return []
    given, found = _given(module), {}
    for f in program.frozen:
        if not (f.followed and (name := _bound_as(f)) in given):
            continue
        where, _, qualname = f.where.rpartition(" in ")
        for namespace in _helper_globals(f.module, where.rpartition(":")[0], qualname) or ():
            holder, dotted, path = _walk(namespace, f.name)
            key = dotted.rpartition(".")[2]
            if not path and holder.get(key) is getattr(module, name, None):
                found[(name, id(holder), key)] = (name, holder, key)
    return list(found.values())


def _helper_globals(module: str | None, file: str, qualname: str) -> list[dict] | None:
    """The globals of the Python module a helper that read a global lives in, by the name
    the package recorded (``Frozen.module``): that module where this process imported it
    from the file the read was in, or from another path (another checkout) where it
    defines the helper; None where only a scan by file can tell (a package before the
    name was recorded; a script's ``__main__``, another program in the loading process,
    or one it imported under its own name). A dictionary lookup: never an import."""
    import sys

    if not module:
        return None
    held = getattr(sys.modules.get(module), "__dict__", None)
    if held is not None and (held.get("__file__") == file or (module != "__main__" and qualname.split(".")[0] in held)):
        return [held]
    return None if module == "__main__" else []


def _walk(namespace: dict, name: str) -> tuple[dict, str, str]:
    """(the dict holding the global, its dotted name, the path inside it) for a name the
    code reads from ``namespace`` (its globals): ``HELPER.weight`` -> (namespace,
    ``HELPER``, ``weight``); ``helpers.SEQ.0.weight``, where ``helpers`` is a Python module
    there -> (its ``__dict__``, ``helpers.SEQ``, ``0.weight``). Dictionary lookups only."""
    import types

    parts = name.split(".")
    holder = namespace
    for i, part in enumerate(parts[:-1]):
        value = holder.get(part)
        if not isinstance(value, types.ModuleType):
            return holder, ".".join(parts[:i + 1]), ".".join(parts[i + 1:])
        holder = getattr(value, "__dict__", {})
    return holder, name, ""


def _split_global(name: str, found) -> tuple[str, str]:
    """(the global, the path inside it) of ``name`` (``helpers.SEQ.0.weight``), the global
    the longest prefix ``found`` holds; else its first part."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in found:
            return ".".join(parts[:i]), ".".join(parts[i:])
    return parts[0], ".".join(parts[1:])


def global_homes(program: Program, namespaces: dict[str, dict]) -> dict[str, tuple]:
    """Where the module globals the program reads as tensors lie now (the package's
    ``global:TABLE``; a function's package names them ``constant:TABLE``), and the
    tensors of the modules a module's code calls as globals (``global:HELPER.weight``):
    weight name -> (the dict holding it, its key there, and for a module's tensor (the
    globals, the module's name, the module) else None), read at each call as eager reads
    them, so an update in place or an assignment of the global is followed.
    ``namespaces``: ``global_namespaces``."""
    homes = {}
    for f in program.frozen:
        head, bracket, tail = f.name.partition("[")
        name, path = _split_global(head, namespaces)
        namespace = namespaces.get(name) if f.kind == "global" and f.weight else None
        key = name.rpartition(".")[2]  # (``helpers.SEQ``: SEQ in the Python module helpers)
        held = namespace.get(key, _MISSING) if namespace is not None else _MISSING
        if (rest := _container_rest(held, path, bracket + tail)) is not None:  # (``WS[0]``: hops compared per call)
            holder, item, hops = held_slot(namespace, key, rest)
            homes[f.weight] = (holder, item, None, hops)
        elif bracket:
            continue
        elif not path and isinstance(held, torch.Tensor):
            homes[f.weight] = (namespace, key, None, [])
        elif path and isinstance(held, torch.nn.Module) and (slot := _tensor_slot(held, path)) is not None:
            homes[f.weight] = (*slot, (namespace, key, held), [])
    return homes


def where_of(path: str) -> str:
    """How an error names a module the package follows (``module_types``' path):
    ``module``, ``module.block.act``, ``global NORM`` for ``global:NORM``."""
    if path.startswith("global:"):
        path, bracket, key = path.removeprefix("global:").partition("[")  # (``ACTS['gelu']``)
        name, at, module = path.partition("@")
        return f"global {name}{bracket}{key}" + (f" of {module}" if at else "")
    return f"module.{path}" if path else "module"


def _tensor_slot(module: torch.nn.Module, path: str) -> tuple[dict, str] | None:
    """(the dict holding it, its key) where ``path`` (``0.weight``) names a parameter,
    buffer or plain tensor attribute of ``module``; None where it names no tensor."""
    *parts, leaf = path.split(".")
    owner = _submodule(module, parts)
    for held in () if owner is None else (owner._parameters, owner._buffers, owner.__dict__):
        if isinstance(held.get(leaf), torch.Tensor):
            return held, leaf
    return None


def _followed(variant: Variant, program: Program, module: torch.nn.Module, found: dict) -> tuple[dict, ...]:
    """The variant's module classes, attributes, containers' children and iterated
    weights (``module_types``, ``module_attributes``, ``class_attributes``,
    ``module_children``, ``iterated_weights``: path -> value) the binding follows: a module's package's,
    those of the global modules its code calls where this process holds them (``found``:
    ``global_namespaces``); for a function's, those of the modules bound by the name the
    program reads them by (``bn.training`` where ``module={"bn": bn}``); the rest stay as
    compiled, as unbound frozen tensors do."""
    bound = _given(module) if program.kind == "function" else None

    def kept(path: str) -> bool:
        if path.startswith("global:"):
            return _split_global(path.removeprefix("global:"), found)[0] in found
        return bound is None or path.split(".")[0] in bound

    return ({p: t for p, t in variant.module_types.items() if kept(p)},
            {p: v for p, v in variant.module_attributes.items() if kept(p)},
            {p: v for p, v in variant.class_attributes.items() if kept(p)},
            {p: v for p, v in variant.module_children.items() if kept(p)},
            {p: v for p, v in variant.iterated_weights.items() if kept(p)})


def _warn_not_given(variant: Variant, program: Program, module: torch.nn.Module, followed) -> None:
    """A function's package bound with a dict that leaves out a module or tensor its
    program reads by name (``module={"W": W}`` where it reads ``model`` too): that one
    runs as the package's copy of compile time, where eager would read the caller's. Said
    once at load, naming them (not refused: a lookup table meant to stay as compiled is
    common; loaded alone, every one is the package's). ``followed``: the weights read where
    this process holds them (``global_homes``), which are not named."""
    if program.kind != "function":
        return
    weights = set(variant.weights)
    read = {path.split(".")[0] for path in variant.module_types}
    read |= {f.name for f in program.frozen if f.weight in weights and f.weight not in followed
             and f.kind in ("global", "closure")}
    missing = sorted(read - _given(module))
    missing = [n for n in missing if n.isidentifier()]
    if missing:
        from ..errors import warn_caller

        entries = ", ".join(f"{n!r}: {n}" for n in missing)
        # (a module given bare, not in a dict: its own attribute names are not the program's variables)
        fix = (f"pass a dict, module={{{entries}}}, not the {type(module).__qualname__} itself"
               if type(module) is not torch.nn.Module else f"add {entries} to follow the caller's")
        warn_caller(f"aotpack: the program reads {', '.join(missing)} by name, which module= does not give: "
                    f"the package runs its own copy of compile time there ({fix})", UserWarning)


class Binding:
    """The live weights of one variant, bound to ``module`` by name.

    ``weights`` is the list the variant runs with (updated in place where the module
    changed); calling the binding before each call gives None or the Mismatch to raise.
    """

    def __init__(self, variant: Variant, program: Program, stored: dict, module: torch.nn.Module, state_check,
                 raw_memory: bool = False):
        _install()
        self.variant, self.program, self.stored, self.module = variant, program, stored, module
        # compiled code reads each weight through the strides it was compiled for: the
        # layouts to hold the module's weights to (None: any, the eager backend)
        self._layouts = [program.weight(k).layout or "contiguous" for k in variant.weights] if raw_memory else None
        self._misplaced: int | None = None  # a weight not in its compiled layout: runs the portable program
        self.state_check = state_check  # module.training and parameters' requires_grad (runtime)
        # tensors bound where assigning one registers nothing: plain tensor attributes and the
        # module globals its code reads (weight index, the __dict__ or globals holding it, name)
        self.attributes: list[tuple[int, dict, str]] = []
        self._global_modules: list[tuple[dict, str, torch.nn.Module]] = []  # (globals, name, module bound)
        self._global_classes: dict[tuple[int, str], type] = {}  # (id(globals), name) -> its class at load
        # module attributes compiled in: their owners' __dict__s, names and values (as the
        # module holds them: a tuple, not the manifest's list), compared in one C-level pass
        self._dicts: list[dict] = []
        self._names: list[str] = []
        self._value_paths: list[str] = []  # each one's path (a global two modules read: twice)
        self._own_values = 0  # how many of them are not another module's global of that name
        self._values: tuple = ()
        # the values read from a module's class (``class_attributes``) where the instance does not
        # shadow them: the instance's __dict__ (which must not hold the name), the class, the name,
        # the path and the object the class resolves it to, compared by identity in one pass
        self._class_dicts: list[dict] = []
        self._class_types: list[type] = []
        self._class_names: list[str] = []
        self._class_paths: list[str] = []
        self._class_values: list = []
        self._mutable: list = []  # the lists and dicts among the values held, and copies of them
        self._mutable_copies: list = []
        self._holder_dicts: list[dict] = []  # plain objects on the way (a module's config): where held,
        self._holder_names: list[str] = []   # under which name, and the object bound
        self._held_objects: list = []
        self._attribute_names: set[str] = set()  # bound as plain attributes once: must stay tensors
        # (a module's dict or globals, name) -> the function there at load: code traced in, so one
        # replaced since (``module.rotate_half = patched``, of the same name too) is refused
        self._functions_at_load: dict[tuple[int, str], object] = {}
        # (class, stored code, the functions its methods resolve to) -> the class's code: a
        # rebind (the module changed) digests only classes or methods it has not seen
        self._class_codes: dict = {}
        self._function_codes: dict = {}  # id(function) -> (it, its code: manifest.function_code), digested once
        # a container's functions (``ACTS['gelu']``) -> the one it held at load: a wrapper of the same
        # name, which its plain value does not tell apart, is refused
        self._inner_functions: dict[str, object] = {}
        # where this process holds the globals the program reads (found once: the dicts stay)
        self._plain_globals = variant.global_values()  # (``SCALE``: read from its globals dict)
        torch_functions = dict.fromkeys(variant.torch_functions())  # (``F.gelu``: only their code is recorded)
        # the other globals dicts holding a plain global another Python module's code reads too
        self._other_homes: dict[str, list[dict]] = {}
        # (and a plain object global whose class's default the code reads: ``SETTINGS.gain``)
        class_globals = dict.fromkeys(p.removeprefix("global:") for p in variant.class_attributes if p.startswith("global:"))
        # a function's package: the names given whose module global holds what was given, followed
        self._given_globals = given_globals(program, module)
        self._global_roots = global_namespaces(program, module, _given(module) if program.kind == "function" else None,
                                               {**self._plain_globals, **torch_functions, **class_globals},
                                               self._other_homes)
        self._types, self._attributes, self._class_attributes, self._children, self._iterated = _followed(
            variant, program, module, self._global_roots)
        self._child_dicts: list[dict] = []  # each container's _modules (_parameters) and its length
        self._child_counts: tuple = ()
        for name in torch_functions:  # (compared as a global function is: by identity from the load on)
            # (``F.gelu@torch.nn.modules.activation``: as that module's code reads it)
            held = self._global_roots.get(name, {}).get(name.partition("@")[0].rpartition(".")[2])
            if callable(held):
                self._plain_globals[name] = self._attributes[f"global:{name}"] = {"function": function_name(held)}
        # torch.Tensor's methods the code calls (``tensor:relu``; build/guard_specs.tensor_methods):
        # by their code at the load, by identity from then on, as a global function is
        self._tensor_methods = tuple(p.removeprefix("tensor:") for p in variant.function_code
                                     if p.startswith("tensor:"))
        self._tensor_method_values = tuple(getattr(torch.Tensor, name, None) for name in self._tensor_methods)
        problem = self._changed_code()
        if problem is not None:
            raise AotpackError(f"{problem.where}: expected {problem.expected}, got {problem.actual}",
                               hint="bind a module of the class the package was compiled from, or compile the "
                                    "package again from this code")
        self.weights = self._resolve()
        problem = self._patched_function() or self._patched_tensor_method(at_load=True)
        if problem is not None:
            raise AotpackError(f"{problem.where}: expected {problem.expected}, got {problem.actual}",
                               hint="bind the module as it was compiled, or compile the package again from it")
        _warn_not_given(variant, program, module, self._followed_globals)
        self._forwards_at_load: dict = {}  # module path or class -> the forward it had at load
        self._slots()
        roots = self._roots()
        _watch(roots)
        self._hooks_at_load = _hooks(roots)
        problem = self._other_hooks()
        if problem is not None:
            raise AotpackError(f"{problem.where}: expected {problem.expected}, got {problem.actual}",
                               hint="register on the module the hooks it had when the package was compiled, "
                                    "or compile the package again from the module as it is now")
        self.generation = _GENERATION[0]
        self._expected = self._expect(self.weights)

    def _resolve(self) -> list[torch.Tensor]:
        """The variant's weights: the module's live parameters, buffers and plain tensor
        attributes by name, the module globals the program reads where this process has
        them (``global_homes``), the package's frozen constants (tensors made inside
        forward, closure variables, globals it cannot find). Raises AotpackError naming one that does not
        fit; sets ``self.attributes`` to where the plain attributes live."""
        live = dict(self.module.named_parameters(remove_duplicate=False))
        live.update(self.module.named_buffers(remove_duplicate=False))
        v, out, attributes, global_modules, containers = self.variant, [], [], [], []  # (containers: hops)
        # a function's package: the names ``module={...}`` gives (``lin`` of ``lin.weight``); a
        # tensor under another name (one the program makes, ``constant:lifted_tensor_0``, or
        # one the dict leaves out) stays as compiled. A module's package reads every weight.
        given = _given(self.module) if self.program.kind == "function" else None
        homes = global_homes(self.program, self._global_roots)
        self._followed_globals = set(homes)
        for key, fqn, gets_grad in zip(v.weights, v.weight_fqns, v.trained_weights()):
            info = self.program.weight(key)
            home = homes.get(key)  # (a global this process holds; a function's: one the dict does not give)
            held = None
            if home is not None:
                held, name, anchor, via = home
                global_modules += [anchor] if anchor is not None else []  # (a global module's: checked too)
                containers += via  # (a global container's: each hop compared too)
            elif given is not None and not gets_grad and fqn.removeprefix("constant:").split(".")[0] not in given:
                if fqn in self._attribute_names:  # (followed where this process held it: gone since)
                    raise AotpackError(f"{module_weight(fqn)} is no tensor any more; the package reads it")
                out.append(self.stored[key])
                continue
            # (a constant may be a parameter of the module: one a function package reads
            # from outside and trains, build/autograd.py's _train_outside)
            # (``constant:ws[0]``: a plain attribute's, one of a buffer's memory too, stored as its alias)
            elif (info.kind not in ("parameter", "buffer") or fqn.startswith("constant:")) and fqn not in live:
                held, name, via = tensor_attribute_slot(self.module, fqn)
                if held is None and fqn in self._attribute_names:
                    raise AotpackError(f"{module_weight(fqn)} is no tensor any more; the package reads it")
                if held is None and gets_grad:  # (a tensor the program reads by name, which it trains)
                    raise _missing(self.module, self.program, fqn)
                if held is None:
                    out.append(self.stored[key])  # frozen constants stay the package's
                    continue
                containers += via
            if held is not None:
                attributes.append((len(out), held, name))
                live[fqn] = held[name]
            t = live.get(fqn)
            if t is None and (outer := tree.outer_of(fqn)) is not None:
                t = self._inner_tensor(live, *outer)
            if t is None:
                raise _missing(self.module, self.program, fqn)
            want, got = f"{info.dtype}{info.shape}", f"{tree.dtype_name(t.dtype)}{list(t.shape)}"
            if want != got:
                raise AotpackError(f"{module_weight(fqn)} is {got}, the package was compiled for {want}")
            if t.device.type != v.device:
                raise AotpackError(f"{module_weight(fqn)} is on {t.device}, variant {v.name} runs on {v.device}",
                                   hint=f"move the module with .to({v.device!r}) first")
            out.append(t)
        if v.tensor_aliases:  # (the package's own copies among the weights: not compared)
            stored = {i for i, (key, w) in enumerate(zip(v.weights, out)) if w is self.stored.get(key)}
            containers += _alias_hops(v, self.module, out, stored)
        self.attributes = attributes
        self._containers = containers  # (the hops to a held tensor: a list attribute, compared too)
        # the globals naming a module the binding follows (``HELPER``: its tensors, class, code,
        # hooks and values): one assigned anew registers nothing, so each call checks that it
        # still names the module bound; one of another class than at load runs other code than
        # the package holds: refused (a package before format 14 records no class to compare)
        named = [(p.removeprefix("global:"), m) for p, m in self._roots()[1:]]
        followed = [(self._global_roots[name], name.rpartition(".")[2], m) for name, m in named]
        self._global_modules = list({(id(a[0]), a[1]): a for a in [*global_modules, *followed]}.values())
        for namespace, name, held in self._global_modules:
            first = self._global_classes.setdefault((id(namespace), name), type(held))
            if type(held) is not first:
                raise AotpackError(f"global {name!r} the module's code calls is a {type(held).__qualname__}, where "
                                   f"it was a {first.__qualname__} at load (its code is compiled into the package)")
        self._attribute_names |= {v.weight_fqns[i] for i, _, _ in attributes}
        self._bind_values()
        return out

    def _inner_tensor(self, live: dict, fqn: str, k: int) -> torch.Tensor | None:
        """Inner tensor ``k`` of the module's weight ``fqn``, a tensor subclass the package
        holds as its inner tensors (build/subclass_weights.py); None where there is no
        such weight. Raises AotpackError where the weight is no longer of the subclass and
        flatten context compiled in (a plain tensor, or quantized with another block size:
        the traced code would compute other numbers)."""
        want = self.variant.subclass_weights.get(fqn)
        w = live.get(fqn)
        if want is None or w is None:
            return None
        got = (tree.describe_subclass(w) if tree.is_wrapper_subclass(w)
               else f"a plain {type(w).__qualname__}")
        if got != want:
            raise AotpackError(f"{module_weight(fqn)} is {got}, the package was compiled for a {want}",
                               hint="bind the module converted (quantized) as it was at compile time, or compile "
                                    "the package again from it")
        names = w.__tensor_flatten__()[0]
        if k >= len(names):  # (a package naming an inner tensor the subclass does not have)
            raise AotpackError(f"{module_weight(fqn)} holds {len(names)} inner tensors, the package reads number {k}",
                               hint="the package does not match this module: compile it again from it")
        return getattr(w, names[k])

    def _bind_values(self) -> None:
        """Where the module attributes compiled in live now, and the objects holding them:
        a class attribute (``class_attributes``) set on the instance since is compared
        there, as eager reads it there."""
        holders: dict = {}
        wants = self._attributes
        own = [(path, self._global_value_dict(path[7:], holders) if path[7:] in self._plain_globals
                else _owner_dict(*self._anchor(path), holders)) for path in wants]
        self._class_dicts, self._class_types, self._class_names, self._class_paths = [], [], [], []
        for path in self._class_attributes:  # (a module's, a plain object's it holds, ``config.eps``, or a global's)
            root, rest = self._anchor(path)  # (None: no module, a plain object global's, ``SETTINGS.gain``)
            owner = (_owner(root, rest, holders) if root is not None else
                     self._global_owner(path[7:], holders) if path.startswith("global:") else None)
            name = path.rpartition(".")[2]
            if name.startswith("__") or owner is None:  # (never recorded: a name from the package, read with getattr)
                continue
            d = getattr(owner, "__dict__", {})
            if name in d:  # (shadowed by the instance, which eager reads)
                own.append((path, d))
            else:
                self._class_dicts.append(d)
                self._class_types.append(type(owner))
                self._class_names.append(name)
                self._class_paths.append(path)
        # (a global another Python module's code reads by the same name, with the value compiled
        # in: each module's is compared, ``EPS`` in two files)
        others = [(path, d) for path in wants if path.startswith("global:") for d in self._other_homes.get(path[7:], ())]
        self._own_values = len(own)
        self._dicts = [d for _, d in own] + [d for _, d in others]
        self._value_paths = [path for path, _ in own] + [path for path, _ in others]
        self._names = [path.removeprefix("global:").partition("@")[0].rpartition(".")[2]  # (SCALE, of SCALE@layers;
                       for path in self._value_paths]  # gelu, of F.gelu@torch.nn.modules.activation)
        self._hold_values()
        self._holder_dicts = [d for d, _, _ in holders.values()]
        self._holder_names = [n for _, n, _ in holders.values()]
        self._held_objects = [o for _, _, o in holders.values()]

    def __call__(self) -> Mismatch | None:
        if (_GENERATION[0] != self.generation
                or any(map(is_not, map(dict.get, self._slot_dicts, self._slot_names), self._slot_tensors))
                or (self._child_dicts and tuple(map(len, self._child_dicts)) != self._child_counts)
                or (self._item_containers and any(map(is_not, map(_item, self._item_containers, self._item_keys),
                                                      self._item_tensors)))):
            problem = self._rebind()
            if problem is not None:
                return problem
        if tuple(map(getattr, self._classes, self._forward_names)) != self._class_forwards:
            return self._patched_forward()  # never None: the pass above saw a difference
        if tuple(map(type, self._typed_modules)) != self._module_classes:  # (``m.__class__ = C`` registers nothing)
            problem = self._changed_code()
            if problem is not None:
                return problem
            self._slots()  # (a class of the same name and code: its forward is the one to hold)
        if self._holder_names and any(map(is_not, map(dict.get, self._holder_dicts, self._holder_names),
                                          self._held_objects)):
            self._bind_values()  # a replaced config: its attributes are read from the new one
        native = self._native
        unchanged = native is not None and (native[0](*self.weights) or native[1](*self.weights)
                                            or native[2](*self.weights))
        if not unchanged:
            problem = self._changed_weight()
            if problem is not None:
                return problem
        # the parameters' requires_grad, checked one by one under grad mode, once for each
        # set of them the native check holds: it compares requires_grad too
        problem = self.state_check(unchanged and self._requires_grad_checked)
        if problem is None and unchanged and torch.is_grad_enabled():
            self._requires_grad_checked = True
        # (after the module's own training flag, which state_check reads: where the caller
        # called m.eval(), the error names m, not the first submodule whose code reads it)
        # (by identity: ``2.0`` where ``2`` was compiled in compares equal, and gives another dtype)
        if problem is None and self._names and any(map(is_not, map(dict.get, self._dicts, self._names), self._values)):
            problem = self._changed_attribute()
        if problem is None and self._class_names and (
                any(map(dict.__contains__, self._class_dicts, self._class_names))
                or any(map(is_not, map(getattr, self._class_types, self._class_names, repeat(_MISSING)),
                           self._class_values))):
            problem = self._changed_where_now()
        # (a list or dict held there, by value too: it changes in place; its copy's numbers are
        # _Exact, so ``2`` where ``2.0`` was compiled in differs)
        if problem is None and self._mutable and any(map(ne, self._mutable, self._mutable_copies)):
            problem = self._changed_where_now()
        if problem is None and self._tensor_methods and any(map(
                is_not, map(getattr, repeat(torch.Tensor), self._tensor_methods, repeat(None)),
                self._tensor_method_values)):
            problem = self._patched_tensor_method()
        if problem is None and self._misplaced is not None:
            return self._layout_mismatch(self._misplaced)
        return problem

    def _changed_weight(self) -> Mismatch | None:
        """The weights checked one by one, where the native check of them all failed: a
        Mismatch for one of another dtype, shape or device (``p.data = t``); else None.
        Where a weight's strides (``p.data = t.t()``, ``.to(memory_format=)``) or
        requires_grad changed, the expectations are taken again, so that the next calls
        take the native check again; where neither did, the thread's state is what the
        native check does not fit (vmap, a dispatch mode), and they stay checked here."""
        changed = False
        for i, (w, dtype, shape, device, stride, grad) in enumerate(self._expected):
            if w.dtype is not dtype or w.shape != shape or w.device != device:
                return Mismatch([], f"{tree.dtype_name(dtype)}{list(shape)} on {device} (as compiled)",
                                f"{tree.dtype_name(w.dtype)}{list(w.shape)} on {w.device}",
                                where=module_weight(self.variant.weight_fqns[i]))
            changed = changed or w.requires_grad != grad or w.stride() != stride
        if changed:
            self._expected = self._expect(self.weights)
        return None

    def _expect(self, weights: list) -> list[tuple]:
        """Per weight: (it, its dtype, shape, device, strides, requires_grad), to
        compare where the native check of them all (``self._native``, made here: each
        weight's type, dtype, device, sizes, strides and requires_grad as now) fails;
        notes the first weight not in its compiled layout. The native check costs about
        0.05 µs a weight, the Python comparison about 0.3 (bench/guard_overhead.py)."""
        from .. import _torch_compat as compat

        self._requires_grad_checked = False
        amp = self.variant.global_state.autocast
        self._native = compat.tensor_properties_check(
            weights, [list(w.shape) for w in weights], [list(w.stride()) for w in weights],
            autocast=(self.variant.device, getattr(torch, amp)) if amp else None) if weights else None
        if self._layouts is not None:
            from .layout import matches

            self._misplaced = next((i for i, (w, layout) in enumerate(zip(weights, self._layouts))
                                    if not matches(w, layout)), None)
        return [(w, w.dtype, w.shape, w.device, w.stride(), w.requires_grad) for w in weights]

    def _layout_mismatch(self, i: int) -> Mismatch:
        """Weight ``i`` is in another memory layout than compiled code reads it in (the
        module was converted to channels_last, ``p.data = t.t()``): the variant's portable
        program runs such calls, eager ops on the module's own tensors (``portable``)."""
        from .layout import describe, layout_of

        w = self.weights[i]
        return Mismatch([], f"{describe(self._layouts[i])} (as compiled; compile the package from the module in "
                            "its new layout)",
                        describe(layout_of(w, dynamic=False)), where=module_weight(self.variant.weight_fqns[i]),
                        portable=True)

    def _changed_attribute(self) -> Mismatch | None:
        """The first module attribute whose value is not the one compiled in; None where
        each is (again: its new objects are held for the next calls)."""
        if any(path in self._class_attributes for path in self._value_paths):  # (deleted from the instance?)
            return self._changed_where_now()
        return self._changed_value()

    def _changed_value(self) -> Mismatch | None:
        """``_changed_attribute``'s comparison, where each value lives as bound."""
        wants = self._wants
        for i, (d, name, path) in enumerate(zip(self._dicts, self._names, self._value_paths)):
            want = wants[path]
            where = where_of(path) if i < self._own_values else f"global {d.get('__name__', '?')}.{name}"
            got = d.get(name, _MISSING)
            at_load = self._functions_at_load.get((id(d), name), got)
            if isinstance(at_load, _Edited) and got is at_load.function:
                return self._patched_function()
            if got is not at_load and got is not _MISSING:  # (a function replaced: by identity, not its name)
                if not _same_partial(got, at_load):
                    return _replaced_function(python_value(want), got, where)
                self._functions_at_load[(id(d), name)] = got  # (a partial made anew: its tensors read there)
            if _held(d, name, want) is _NEVER:
                if name == "training" and isinstance(want, bool):  # a submodule's mode, as the module's own
                    expected = mode_expected(want)
                else:
                    expected = f"{python_value(want)!r} (a Python value compiled into the package: compile again to " \
                               "change it)"
                if got is _MISSING:
                    got = "no such global" if path[7:] in self._plain_globals else "no such attribute"
                elif got == python_value(want):  # (equal, of another type: ``2.0`` where ``2`` was compiled in)
                    got = f"{got!r}, {_a(type(got).__name__)} where {_a(type(python_value(want)).__name__)} was compiled in"
                else:
                    got = repr(got)[:80]
                return Mismatch([], expected, got, where=where)
            for inner, fn in functions_inside(path, got):
                if fn is not (held := self._inner_functions.get(inner, fn)):
                    return _replaced_function(function_name(held), fn, where_of(inner))
        self._hold_values()
        return None

    def _global_value_dict(self, name: str, holders: dict) -> dict:
        """The dict holding plain data global ``name`` now: the globals holding ``SCALE``, the
        Python module ``config``'s for ``config.FLAG``, or for an attribute of a plain object
        global (``args.scale``) that object's ``__dict__``, the object added to ``holders``
        (each call checks the global still names it: ``args = parse_args()`` again rebinds)."""
        root, rest = _split_global(name, self._global_roots)
        if not rest:
            return self._global_roots[root]
        return getattr(self._global_owner(name, holders), "__dict__", {})

    def _global_owner(self, name: str, holders: dict):
        """The plain object global an attribute ``name`` (``args.scale``) is read from now,
        added to ``holders``; None where this process holds no such global."""
        root, rest = _split_global(name, self._global_roots)
        namespace = self._global_roots.get(root)
        if namespace is None or not rest:
            return None
        key = root.rpartition(".")[2]
        held = namespace.get(key)
        holders[(id(namespace), key)] = (namespace, key, held)
        return held

    def _hold_values(self) -> None:
        """The objects each call compares the compiled-in values' homes with (``_held``),
        by identity; for a function, the one there at load, whatever is there now
        (``_changed_attribute`` refuses another, of the same name too); for a list or a
        dict, which can change in place (``DIMS.append(1)``), an ``_exact_copy`` of it too,
        compared by value at each call."""
        wants = self._wants = {**self._attributes, **self._class_attributes}
        values = [_held(d, name, wants[path]) for d, name, path in zip(self._dicts, self._names, self._value_paths)]
        values = [self._function_at_load(d, name, path, value)
                  for d, name, value, path in zip(self._dicts, self._names, values, self._value_paths)]
        for i, path in enumerate(self._value_paths):  # (a container's functions: by identity from the load on)
            for inner, fn in functions_inside(path, values[i]):
                if self._inner_functions.setdefault(inner, fn) is not fn:
                    values[i] = _NEVER  # (never held: each call compares, and refuses, until set back)
        self._values = tuple(values)
        self._class_values = []
        for cls, name, path in zip(self._class_types, self._class_names, self._class_paths):
            got = getattr(cls, name, _MISSING)
            value = got if got is not _MISSING and same_plain(plain_value(got), wants[path]) else _NEVER
            self._class_values.append(self._function_at_load(cls, name, path, value))
        self._mutable = [v for v in [*values, *self._class_values] if _holds_list(v)]
        self._mutable_copies = [_exact_copy(v) for v in self._mutable]

    def _function_at_load(self, home, name: str, path: str, value):
        """For a function held at ``home`` (a dict, or a class), the one there when the
        binding first held it (an _Edited where its code was not the one compiled in);
        any other value as it is."""
        if not callable(value) or isinstance(value, type):
            return value
        key = (id(home), name)
        if key not in self._functions_at_load:
            self._functions_at_load[key] = value if self._same_code(path, value) else _Edited(value)
        return self._functions_at_load[key]

    def _changed_where_now(self) -> Mismatch | None:
        """The first value compiled in that is not, where it lives now: a value read from
        a module's class (``class_attributes``) set on the class, a base class or the
        instance since, or a list or dict changed in place; None where each is (one set on
        the instance to the value compiled in is compared there from now on)."""
        self._bind_values()  # (where each lives now: the instance, or the class)
        problem = self._changed_value() if self._names else None
        if problem is not None:
            return problem
        for cls, name, path, value in zip(self._class_types, self._class_names, self._class_paths,
                                          self._class_values):
            got = getattr(cls, name, _MISSING)
            if got is value:
                continue
            at_load = self._functions_at_load.get((id(cls), name))
            if isinstance(at_load, _Edited) and got is at_load.function:
                return _edited_function(got, f"{where_of(path)} (of class {cls.__qualname__})")
            want = python_value(self._wants[path])
            now = ("nothing" if got is _MISSING else
                   f"{function_name(got)}" if callable(got) and not isinstance(got, type) else repr(got)[:80])
            how = ("the function it held at load (its code is compiled into the package: undo the patch, or "
                   "compile the package with it)" if at_load is not None else
                   f"{want!r} (a Python value compiled into the package: compile again to change it)")
            return Mismatch([], how, now, where=f"{where_of(path)} (of class {cls.__qualname__})")
        return None

    def _patched_function(self) -> Mismatch | None:
        """The first function the module's code calls whose code was not the one compiled
        in when the binding first held it (patched before the load, or in a config bound
        since); None where there is none."""
        homes = [*((d, name, path, d.get(name)) for d, name, path in zip(self._dicts, self._names, self._value_paths)),
                 *((cls, name, path, getattr(cls, name, None))
                   for cls, name, path in zip(self._class_types, self._class_names, self._class_paths))]
        for home, name, path, now in homes:
            held = self._functions_at_load.get((id(home), name))
            if isinstance(held, _Edited) and now is held.function:
                return _edited_function(held.function, where_of(path))
            for inner, fn in functions_inside(path, now):  # (``ACTS["gelu"]``: a container's, by its code)
                if not self._same_code(inner, fn):
                    return _edited_function(fn, where_of(inner))
        return None

    def _patched_tensor_method(self, at_load: bool = False) -> Mismatch | None:
        """The first method of ``torch.Tensor`` the code calls that is not the one held
        at the load (at the load: whose code is not the one compiled in, a patch applied
        before it); None where each is. Eager calls the patch (``torch.Tensor.relu = f``),
        the package the method it traced."""
        for name, held in zip(self._tensor_methods, self._tensor_method_values):
            now = getattr(torch.Tensor, name, None)
            if now is not held or (at_load and not self._same_code(f"tensor:{name}", now)):
                return Mismatch([], "the method it held at load (its code is compiled into the package: undo the "
                                    "patch, or compile the package with it)" if not at_load else
                                "the method compiled into the package (undo the patch, or compile the package "
                                "with it)", function_name(now) if now is not None else "nothing",
                                where=f"torch.Tensor.{name}")
        return None

    def _same_code(self, path: str, fn) -> bool:
        """Whether function ``fn`` where ``path`` reads it runs the code compiled in (a
        package before 2026-12-06 records none; another Python version's is not compared)."""
        want = self.variant.function_code.get(path)
        if want is None or not code_comparable(want):
            return True
        if id(fn) not in self._function_codes:  # (a class's forward once, however many modules of it)
            self._function_codes[id(fn)] = (fn, function_code(fn))  # (fn held: its id stays its own)
        return self._function_codes[id(fn)][1] == want

    def _slots(self) -> None:
        """Where each bound parameter and buffer sits (its owner's ``_parameters`` or
        ``_buffers`` dict and name), compared with the bound tensor at each call in one
        C-level pass: setting one to None (``m.fc.weight = None``) registers nothing, and
        eager would then fail where the package ran the old weight."""
        # plain tensor attributes and global tensors (assigning one registers nothing), the hops
        # on the way to a tensor a container or plain object holds (``ws[0]``, ``caches[0].k``), the
        # globals naming a module followed, and a function's globals bound by name: each still
        # the object bound. Those a dict holds in this pass; a list's or tuple's in one of their own.
        hops = [(held, name, self.weights[i]) for i, held, name in self.attributes] + self._containers
        hops += self._global_modules
        hops += [(ns, key, getattr(self.module, name, None)) for name, ns, key in self._given_globals]
        items = [hop for hop in hops if not isinstance(hop[0], dict)]
        self._item_containers, self._item_keys, self._item_tensors = map(list, zip(*items)) if items else ([], [], [])
        hops = [hop for hop in hops if isinstance(hop[0], dict)]
        dicts, names, tensors = [h[0] for h in hops], [h[1] for h in hops], [h[2] for h in hops]
        for fqn, w in zip(self.variant.weight_fqns, self.weights):
            outer = tree.outer_of(fqn)
            if outer is not None and outer[0] in self.variant.subclass_weights:
                # an inner tensor of a subclass weight: the weight itself sits in the slot
                fqn = outer[0]
                w = _slot_value(self.module, fqn)
                if w is None or any(t is w for t in tensors):
                    continue
            *path, name = fqn.split(".")
            owner = _submodule(self.module, path)
            if owner is None:
                continue
            d = next((d for d in (owner._parameters, owner._buffers) if d.get(name) is w), None)
            if d is not None:
                dicts.append(d)
                names.append(name)
                tensors.append(w)
        self._forwards()  # the modules' own ``forward`` slots join the same pass
        dicts += self._module_dicts
        names += self._forward_names
        tensors += self._instance_forwards
        # the containers' children dicts (``del m.layers[0]`` renumbers into a new one; a deletion
        # registers nothing, so their lengths are compared at each call too)
        containers = [c for c in map(self._module_at, self._children) if c is not None]
        dicts += [c.__dict__ for c in containers]
        names += [children_held(c)[0] for c in containers]
        self._child_dicts = [children_held(c)[1] for c in containers]
        tensors += self._child_dicts
        # the hook dicts ``_watch`` left as they are (holding hooks): their lengths too
        hooked = [(m.__dict__, name) for m in map(self._module_at, self._types) if m is not None
                  for name in HOOK_KINDS if type(m.__dict__.get(name)) is OrderedDict and m.__dict__[name]]
        dicts += [d for d, _ in hooked]
        names += [name for _, name in hooked]
        tensors += [d[name] for d, name in hooked]
        self._child_dicts += [d[name] for d, name in hooked]
        self._child_counts = tuple(map(len, self._child_dicts))
        self._slot_dicts, self._slot_names, self._slot_tensors = dicts, names, tensors

    def _forwards(self) -> None:
        """Where each module whose code ran keeps its ``forward``, and the one it must find:
        the instance's own attribute (None: its class's) and each class's function, as at
        load. Kept per path and class across rebinds, so a module replaced since load by one
        with a patched forward is refused too."""
        found = [(path, self._module_at(path)) for path in self._types]
        found = [(path, m) for path, m in found if m is not None]
        self._forward_paths = [path for path, _ in found]
        modules = [m for _, m in found]
        self._module_dicts = [m.__dict__ for m in modules]
        at_load = self._forwards_at_load
        # the instances' slots join _slots' pass; the classes' functions are one tuple compare
        # (functions compare by identity)
        self._instance_forwards = [at_load.setdefault(path, d.get("forward"))
                                   for path, d in zip(self._forward_paths, self._module_dicts)]
        self._typed_modules = modules
        self._module_classes = tuple(map(type, modules))
        self._classes = list(dict.fromkeys(self._module_classes))
        self._class_forwards = tuple(at_load.setdefault(c, getattr(c, "forward", None)) for c in self._classes)
        self._forward_names = ["forward"] * len(modules)  # (map stops at the shorter: the classes)

    def _patched_forward(self) -> Mismatch | None:
        """The first module whose ``forward`` was replaced since load, on the instance or on
        its class; compiled code runs the code traced at compile time."""
        how = ("the forward it had at load (compiled code runs the code traced at compile time; undo the "
               "patch, or compile the package with it)")
        for path, d, want in zip(self._forward_paths, self._module_dicts, self._instance_forwards):
            if d.get("forward") is not want:
                return Mismatch([], how, "a forward set on the instance since load", where=f"{where_of(path)}.forward")
        for cls, want in zip(self._classes, self._class_forwards):
            if getattr(cls, "forward", None) is not want:
                return Mismatch([], how, "a forward set on the class since load",
                                where=f"{cls.__qualname__}.forward")
        return None

    def _replaced_module(self) -> Mismatch | None:
        """The first module whose code the package holds that is now of another class
        (``m.act = nn.ReLU()`` where it was a GELU); None where each is as compiled.
        Replacing a submodule registers it, so this runs only where the module changed."""
        for path, want in self._types.items():
            sub = self._module_at(path)
            got = "nothing" if sub is None else class_name(type(sub))
            if not same_class(got, want):
                return Mismatch([], f"a {want} (its code is compiled into the package)",
                                "nothing (the module is gone)" if sub is None else f"a {got}", where=where_of(path))
        return None

    def _changed_code(self) -> Mismatch | None:
        """The first module that runs other code than compiled in: replaced by one of
        another class, a container holding other children, code iterating other weights,
        its class edited, its forward wrapped; None where each runs the code compiled in."""
        return (self._replaced_module() or self._changed_children() or self._changed_iterated_weights()
                or self._edited_class() or self._edited_forward())

    def _changed_children(self) -> Mismatch | None:
        """The first container module the program ran (``module_children``) that holds
        other children than compiled (``m.layers.append(block)``, ``del m.seq[1]``, a
        ModuleList assigned anew): eager runs what it holds, compiled code what was
        traced; None where each holds the same."""
        for path, want in self._children.items():
            c = self._module_at(path)
            got = None if c is None else list(children_held(c)[1])
            if got != want:
                kind = "parameters" if c is not None and children_held(c)[0] == "_parameters" else "submodules"
                return Mismatch([], f"its {kind} {', '.join(want) or 'none'} as compiled (the code runs each of them; "
                                "compile the package from the module as it is now)",
                                "no such module" if got is None else ", ".join(got) or "none", where=where_of(path))
        return None

    def _changed_iterated_weights(self) -> Mismatch | None:
        """The first module whose own code iterates its parameters and buffers
        (``iterated_weights``) holding others than compiled (``m.extra =
        nn.Parameter(...)`` registered since, two tied): eager iterates what it holds;
        None where each holds the same. A registration moves the generation, so this
        runs at the next call."""
        for path, want in self._iterated.items():
            m = self._module_at(path)
            got = None if m is None else weight_names(m)
            if got != want:
                added = [n for n in got or () if n not in want]
                return Mismatch([], "its parameters and buffers as compiled (its code iterates them: compile the "
                                "package from the module as it is now)",
                                "no such module" if got is None else
                                f"{', '.join(added)} added" if added else ", ".join(got) or "none",
                                where=where_of(path))
        return None

    def _edited_class(self) -> Mismatch | None:
        """The first module whose class's code differs from the code compiled in (its
        source edited since the compile: the package would run the old code); only under
        the Python version that compiled it (bytecode differs between versions)."""
        want_codes, seen = self.variant.module_code, self._class_codes
        for path, name in self._types.items():
            want = want_codes.get(name)
            sub = self._module_at(path)
            if want is None or sub is None:
                continue
            python, methods, _ = (want.split(":") + ["", ""])[:3]
            names = methods.split(",")
            key = (type(sub), want, tuple(method_function(type(sub), m) for m in names))
            if key not in seen:  # (a class once, however many modules of it, and across rebinds)
                seen[key] = class_code(type(sub), names)
            got = seen[key]
            if got is not None and got.split(":")[0] == python and got != want:
                return Mismatch([], f"the code of {name.rpartition(':')[2]} compiled into the package",
                                "another code (the class was edited since the compile)",
                                where=where_of(path))
        return None

    def _edited_forward(self) -> Mismatch | None:
        """The first module whose forward, as set, runs other code than the one compiled in
        (a wrapper set on the instance or its class, or its code edited, before the load;
        one set after it is ``_patched_forward``'s); None where each runs it."""
        for path in self._types:
            sub = self._module_at(path)
            forward = resolved_forward(sub) if sub is not None else None
            if forward is not None and not self._same_code(f"{path}.forward".lstrip("."), forward):
                return Mismatch([], "the forward compiled into the package", "another code (the forward was wrapped "
                                "or edited since the compile, on the instance or its class)",
                                where=f"{where_of(path)}.forward")
        return None

    def _anchor(self, path: str) -> tuple[torch.nn.Module | None, str]:
        """(the module ``path`` starts from, the rest of it): the module bound, or for
        ``global:HELPER.0`` the module this process's global HELPER names now."""
        if not path.startswith("global:"):
            return self.module, path
        name, rest = _split_global(path.removeprefix("global:"), self._global_roots)
        held = self._global_roots.get(name, {}).get(name.rpartition(".")[2])
        return (held if isinstance(held, torch.nn.Module) else None), rest

    def _other_hooks(self) -> Mismatch | None:
        """A module whose code ran for the program with other hooks than at compile
        (``Variant.module_hooks``, compared kind and code in order): compiled code runs
        those traced in, eager those registered now (one added between compile and load,
        or one compiled in and removed since: until 2026-12-06 silently another number)."""
        compiled = self.variant.module_hooks
        if compiled is None:  # (a package from before 2026-12-06 records none: hooks added after load only)
            return None
        for path in dict.fromkeys([*compiled, *self._types]):
            m = self._module_at(path)
            now = module_hooks(m) if isinstance(m, torch.nn.Module) else []
            want = compiled.get(path, [])
            if now != want:
                where = where_of(path)
                return Mismatch([], f"the hooks registered when the package was compiled ({_hook_list(want)}: "
                                    "compiled code runs those)", _hook_list(now), where=f"{where} hooks")
        return None

    def _module_at(self, path: str) -> torch.nn.Module | None:
        """The module at a ``module_types`` path now (``block.act``, ``global:HELPER``)."""
        root, rest = self._anchor(path)
        return _submodule(root, rest.split(".") if rest else [])

    def _roots(self) -> list[tuple[str, torch.nn.Module]]:
        """The module bound and the global modules its code calls, each with its path."""
        found = [(p, self._module_at(p)) for p in self._types
                 if p.startswith("global:") and p.removeprefix("global:") in self._global_roots]
        return [("", self.module), *((p, m) for p, m in found if m is not None)]

    def _follow_given_globals(self) -> Mismatch | None:
        """A global a function's package was bound to by name, assigned anew since
        (``MODEL = other``, ``W = torch.ones(3)``): the new object is bound in its place, as
        eager's code reads it, and checked as a replaced submodule or tensor is by the
        rebind (another class, dtype or shape is refused); one that names no module or
        tensor any more is refused, naming it."""
        for name, namespace, key in self._given_globals:
            now, held = namespace.get(key, _MISSING), getattr(self.module, name, None)
            if now is held:
                continue
            kind = torch.nn.Module if isinstance(held, torch.nn.Module) else torch.Tensor
            if not isinstance(now, kind):
                got = "deleted" if now is _MISSING else _a(type(now).__qualname__)
                return Mismatch([], f"{_a('module' if kind is torch.nn.Module else 'tensor')} (the program "
                                    "reads it at each call)", got,
                                where=f"global {key} of {namespace.get('__name__', '?')}")
            delattr(self.module, name)  # (a Parameter's slot takes no plain tensor, and back)
            setattr(self.module, name, now)
        return None

    def _rebind(self) -> Mismatch | None:
        """The module changed somewhere since the last call: bind its weights again and
        refuse hooks added since load."""
        problem = self._follow_given_globals()
        if problem is not None:
            return problem
        problem = self._patched_forward()  # before the slots are taken again
        if problem is not None:
            return problem
        roots = self._roots()
        _watch(roots)  # submodules added since
        now = _hooks(roots)
        for (path, name), ids in now.items():
            added = ids - self._hooks_at_load.get((path, name), set())
            if added:
                where = where_of(path)
                return Mismatch([], f"no hooks added after load (compiled code cannot run a {HOOK_KINDS[name]}; "
                                "remove it, or compile the package with the hook registered)",
                                f"a {HOOK_KINDS[name]} on {where}", where=f"{where} hooks")
        problem = self._other_hooks()  # (a hook compiled in, removed since)
        if problem is not None:
            return problem
        # a submodule replaced by one of another class, or of the same class name whose
        # code differs (the class edited and reloaded in this process since load); a
        # container holding other children
        problem = self._changed_code()
        if problem is not None:
            return problem
        try:
            weights = self._resolve()
        except AotpackError as e:
            return Mismatch([], "the module the package was bound to at load", e.message, where="module")
        self.weights[:] = weights
        self._slots()
        self._expected = self._expect(weights)
        self.generation = _GENERATION[0]
        # a module replaced since, with a patched forward of its own: the new slots differ
        return self._patched_forward()

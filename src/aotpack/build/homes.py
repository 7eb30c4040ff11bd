"""Where a function's program reads tensors by name: module globals and closure
variables (``lambda x: lin(x) * W``), whose tensors torch.export lifts as constants
under names of its own (``lifted_tensor_0``, aotpack's ``global:W``).

The modules a function reaches by name are the program's own submodules under those
names (capture.py's ``_held_by_name``): their parameters and buffers are parameters and
buffers (``lin.weight``). A tensor read by name is named as the program reads it too
(``W`` for a Parameter, ``constant:W`` for a plain tensor; a module's under a name no
dict can give, ``args[0]``, keeps its slot's name), so
``load(path, module={"lin": lin, "W": W})`` binds the live objects by those names
(load/binding.py: tensors, Python attributes, modes and hooks followed as for a module's
package), and a package loaded alone holds them as its own. A training package trains
those that require grad (build/autograd.py's ``_train_outside``), whose trace of the
program itself puts its primals in these homes while it runs.

Example:
    >>> import aotpack, torch
    >>> lin = torch.nn.Linear(2, 2)
    >>> pkg = aotpack.compile(lambda x: lin(x), (torch.randn(3, 2),), backend="eager")
    >>> pkg.manifest.variants[0].weight_fqns
    ['lin.weight', 'lin.bias']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import _torch_compat as compat
from .frozen import held_tensors, user_functions

__all__ = ["Home", "bind_by_name", "bound_name", "frozen_homes", "memory_of", "same", "tensor_attribute"]


def memory_of(t: torch.Tensor) -> tuple | None:
    """Where and how a tensor lies in memory: the same for a parameter and the detached
    alias of it that torch.export lifts as a constant (``lambda x: lin(x)``). None for
    a tensor with no memory of its own to compare: empty, fake or of symbolic size."""
    if not isinstance(t, torch.Tensor) or compat.is_fake(t):
        return None
    try:
        return (t.data_ptr(), t.device, t.dtype, tuple(t.shape), t.stride()) if t.numel() else None
    except RuntimeError:  # (a functional tensor, symbolic sizes: no data to compare)
        return None


def tensor_attribute(program, target: str) -> bool:
    """Whether ``target`` (torch.export's name for a lifted constant, ``scale`` or
    ``m.block.scale``) is a plain tensor attribute of ``program``, which
    ``functional_call`` can swap for the traced primal as it does parameters. Tensors
    made inside forward are lifted under names of torch.export's own (``lifted_tensor_0``)."""
    obj = program
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return isinstance(obj, torch.Tensor)


@dataclass
class Home:
    """Where the program reads a frozen tensor by name: a module's namespace and the
    global's name, or closure cells (``key`` None: a tuple of cells holding it); ``what``
    says which, for messages."""
    container: Any
    key: str | None = None
    what: str = ""
    name: str = ""  # the weight's name where the package trains it (_train_outside)

    def get(self):
        return self.container[0].cell_contents if self.key is None else self.container[self.key]

    def put(self, value) -> None:
        if self.key is None:
            for cell in self.container:
                cell.cell_contents = value
        else:
            self.container[self.key] = value


@dataclass
class TupleItem(Home):
    """A tensor a tuple holds (``self.pair = (a, b)``): a tuple takes no new item, so the
    slot holding the tuple (``container[key]``) gets a copy of it with the item put in,
    and the tuple itself back once each of its own items is (the trace leaves the
    module's objects as it found them)."""

    index: int = 0
    original: tuple = ()  # the tuple the slot held before the trace

    def get(self):
        return self.container[self.key][self.index]

    def put(self, value) -> None:
        items = list(self.container[self.key])
        items[self.index] = value
        back = len(items) == len(self.original) and all(a is b for a, b in zip(items, self.original))
        self.container[self.key] = self.original if back else tuple(items)


def cells_holding(tensor) -> tuple:
    """The closure cells that hold ``tensor``: a helper's closure the program calls at any
    depth (``def outer(): scale = ...; def helper(x): return x * scale``), which the
    program's own functions do not reach. Found through the garbage collector's
    referrers, once per such tensor at compile time; every cell found gets the traced
    primal while the trace runs (a cell of another function holding the same tensor
    is put back after, as all are)."""
    import gc
    import types

    return tuple(r for r in gc.get_referrers(tensor) if isinstance(r, types.CellType))


def same(value, tensor: torch.Tensor) -> bool:
    """Whether ``value`` is ``tensor`` or the tensor torch.export lifted a detached alias
    of (an nn.Parameter read from a global or closure): the same memory."""
    memory = memory_of(tensor)
    return value is tensor or (memory is not None and memory_of(value) == memory)


def bound_name(variable: str, tensor) -> str:
    """The name a tensor the program reads by ``variable`` has in a package that trains
    it: the name ``load(path, module={variable: tensor})`` binds it by, as a module holding
    it under that name would (a Parameter is a parameter, ``W``; a plain tensor a tensor
    attribute, ``constant:W``)."""
    return variable if isinstance(tensor, torch.nn.Parameter) else f"constant:{variable}"


def frozen_homes(captured) -> dict[str, Home]:
    """Frozen tensors the program reads by name, a module global (``global:TABLE``) or a
    closure variable of the program's functions or of a helper it calls: weight name ->
    where it is read, which still holds the captured tensor. Tracing a program with
    custom autograd.Functions runs the program itself; it reads such a tensor by name, so
    the trace puts its primal there (and ``restore_globals`` puts the tensor back), as
    the exported graph reads it as an input."""
    import sys

    homes = {}
    cells = {}  # closure variable -> (its cell, the value held) of each of the program's own functions
    functions = user_functions(getattr(captured.program, "_call", None))
    for fn in functions:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                cells.setdefault(name, []).append((cell, cell.cell_contents))
            except ValueError:  # an empty cell
                continue
    for f in captured.frozen:
        if f.weight is None or f.weight not in captured.weights:
            continue
        tensor = captured.weights[f.weight]
        if f.kind == "closure":
            found = next(((c, v) for c, v in cells.get(f.name, ()) if same(v, tensor)), None)
            home = (Home((found[0],), what=f"the closure variable {f.name}", name=bound_name(f.name, found[1]))
                    if found else Home(cells_holding(tensor), what=f"the closure variable {f.name}"))
            if home.container:
                homes[f.weight] = home
            continue
        if f.kind != "global":
            continue
        file = f.where.rsplit(":", 1)[0]
        # (the program's own functions' globals first: a notebook's or `python -c`'s
        # __main__ has no file to find it by)
        namespaces = [fn.__globals__ for fn in functions] + [
            vars(m) for m in list(sys.modules.values()) if getattr(m, "__file__", None) == file]
        for namespace in namespaces:
            if same(namespace.get(f.name), tensor):
                homes[f.weight] = Home(namespace, f.name, what=f"the module global {f.name}",
                                        name=bound_name(f.name, namespace[f.name]))
                break
    return {**module_homes(captured), **homes}


def module_homes(captured) -> dict[str, Home]:
    """Weights that are parameters, buffers or plain tensor attributes of a module the
    program reaches by name (``Captured.modules_named``; ``lambda x: lin(x)``:
    torch.export lifts them as constants, ``lifted_tensor_0``, and make_fx's trace of a
    program with tensor subclass inputs names them ``graph_module._param_constant0``,
    names the program does not have): weight name -> the module's slot of it, found by
    the memory it lies in. A plain tensor attribute (``self.gain = torch.ones(4)``) is
    named ``constant:lin.gain``, as a module's own package names its own."""
    wanted: dict[tuple, list[str]] = {}  # memory -> the weights lying there (a tied weight: lifted once a slot)
    for n, w in captured.weights.items():
        if (memory := memory_of(w)) is not None and not tensor_attribute(captured.program,
                                                                          captured.weight_targets.get(n) or ""):
            wanted.setdefault(memory, []).append(n)
    if not wanted:
        return {}
    homes = {}
    for m, (var, how, *_) in captured.modules_named.items():
        slots = [(path, store, key, "") for path, store, key in compat.module_tensor_slots(m)]
        slots += [(f"{prefix}.{key}".lstrip("."), vars(sub), key, "constant:") for prefix, sub in m.named_modules()
                  for key, t in vars(sub).items() if isinstance(t, torch.Tensor)]  # plain tensor attributes
        for path, store, key, kind in slots:
            names = wanted.get(memory_of(store[key]))
            if names:  # (GPT-2's tied embedding: its two slots, wte's and lm_head's, each a weight)
                homes[names.pop(0)] = Home(store, key, what=f"{var}.{path} ({var} is {how})",
                                           name=f"{kind}{var}.{path}")
    return homes


def bind_by_name(captured):
    """``captured``, the tensors its function's program reads by name (``frozen_homes``)
    renamed to the names ``load(path, module={...})`` binds them by (``lin.weight``,
    ``W``, ``constant:W``: ``bound_name``) where they had torch.export's or aotpack's own
    (``constant:lifted_tensor_0``, ``global:W``). A module's program (or a method's)
    keeps its names: ``load(path, module=model)`` binds the module alone (a global ``W``
    is no attribute of it), and the globals its code reads, where the loading process
    holds them (``global:W``; a module global's tensors: ``_global_modules_named``)."""
    captured = _container_tensors_named(captured)
    if captured.program.of_module:  # (a module, or a method of one)
        captured = _global_modules_named(captured)
        captured.tensor_aliases = tensor_aliases(captured)
        return captured
    taken = set(captured.weights)
    renames = {}
    for name, home in frozen_homes(captured).items():
        if home.name and home.name not in taken:
            renames[name] = home.name
            taken.add(home.name)
    captured.rename_weights(renames)
    captured.tensor_aliases = tensor_aliases(captured)
    return _record_module_globals(captured)


def tensor_aliases(captured) -> dict[str, str]:
    """The places of a module's program that hold one tensor together: weights of one
    memory (tied ``head.weight = emb.weight``, a buffer a list holds too) and plain
    attributes holding a weight's tensor that are no weight themselves (``self.a =
    self.b = t``, ``self.w = self.buf``): each but the first weight -> the first
    (``head.weight`` -> ``emb.weight``, ``constant:b`` -> ``constant:a``). torch.export
    may read one input for several of them (it reads ``head.weight`` for both tied
    Linears), so a package bound to the module refuses one of them holding another tensor
    since (eager would read the new one there: load/binding.py's ``_alias_hops``)."""
    root = getattr(captured.program, "m", None)
    groups: dict = {}  # memory -> the weights lying there, in graph order
    for n, w in captured.weights.items():
        groups.setdefault(memory_of(w), []).append(n)
    groups.pop(None, None)
    # (a function's program: its weights only, bound by name; a module's: its plain attributes too)
    places = [] if root is None else [
        *((f"{prefix}.{attr}".lstrip("."), t) for prefix, sub in root.named_modules(remove_duplicate=False)
          for attr, t in vars(sub).items() if isinstance(t, torch.Tensor) and not attr.startswith("_")),
        *((path, t) for path, t, _, _ in container_tensors(root))]
    for path, t in places:
        names = groups.get(memory_of(t))
        if names is not None and f"constant:{path}" not in names:
            names.append(f"constant:{path}")
    return {n: names[0] for names in groups.values() for n in dict.fromkeys(names[1:]) if n != names[0]}


def container_tensors(module: torch.nn.Module, depth: int = 16):
    """(path, tensor, holder, key) for each tensor a list, tuple or dict attribute of ``module``
    or of a submodule holds (``self.ws = [w]``, ``self.table = {"a": t}``), or a plain
    object it holds (``self.cache = SimpleNamespace(cos=t)``): registered as no parameter
    or buffer. The path names it as Python does: ``ws[0]``, ``block.table['a']``,
    ``cache.cos``, any number of levels down (``ws[0][1]``, ``caches[0].k``,
    ``state.layers[2].kv['k']``; until 2026-12-06 two, and a tensor deeper stayed the
    package's copy, silently), each container once (a cycle ends there; ``depth`` bounds
    a chain of distinct ones); keys of a dict that are strings or integers
    (load/binding.py's ``tensor_attribute_slot`` walks the path back)."""
    seen: set[int] = set()
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if not attr.startswith("_"):  # (the module's own dicts: _parameters, _buffers, _modules, hooks)
                yield from held_tensors(f"{prefix}.{attr}".lstrip("."), value, depth, seen)


def _container_tensors_named(captured):
    """``captured``, the tensors it reads from a module's list, tuple or dict attribute, or
    a plain object it holds (torch.export lifts them as constants of its own names,
    ``lifted_tensor_0``) named as the module holds them, ``constant:ws[0]``,
    ``constant:cache.cos``: a package bound with ``module=m`` reads
    them there at each call, as eager does, so one replaced or updated in place after the
    load is used (until 2026-12-06 the package ran its copies of compile time, silently;
    load/binding.py's ``tensor_attribute_slot``)."""
    root = getattr(captured.program, "m", None)
    lifted = [n for n, kind in captured.weight_kinds.items() if kind == "constant" and n.startswith("constant:")
              and not tensor_attribute(captured.program, captured.weight_targets.get(n) or "")]
    if root is None or not lifted:
        return captured
    by_id, by_memory = {}, {}
    for path, t, _, _ in container_tensors(root):
        by_id.setdefault(id(t), path)
        by_memory.setdefault(memory_of(t), path)
    by_memory.pop(None, None)
    taken, renames = set(captured.weights), {}
    for name in lifted:
        w = captured.weights[name]
        path = by_id.get(id(w)) or by_memory.get(memory_of(w))
        if path is not None and f"constant:{path}" not in taken:
            renames[name] = f"constant:{path}"
            taken.add(renames[name])
    captured.rename_weights(renames)
    return captured


def container_homes(captured) -> dict[str, Home]:
    """Weights named as a module's list, dict or plain object holds them
    (``constant:ws[0]``, ``constant:cache.cos``: ``_container_tensors_named``) -> their
    slot there, which still holds the captured tensor: a training trace of the program
    itself (custom autograd.Functions) reads the tensor there, so its primal is put in
    the slot while the trace runs, as for a global's; a tuple's item by a copy of the
    tuple put where the tuple is (``TupleItem``; left out where that is a tuple too: the
    trace refuses it). The live tensor replaces torch.export's detached alias among the
    weights, so one that requires grad gets its gradient."""
    from ..load.binding import tensor_attribute_slot

    root = getattr(captured.program, "m", None)
    if root is None:
        return {}
    homes = {}
    for path, t, holder, key in container_tensors(root):
        name = f"constant:{path}"
        if name not in captured.weights or name in homes or not same(captured.weights[name], t):
            continue
        if t.requires_grad:
            captured.weights[name] = t  # (the live tensor: torch.export lifted a detached alias of it)
        what = f"{path} (held in a {type(holder).__name__})"
        if not isinstance(holder, tuple):
            store = holder if isinstance(holder, (list, dict)) else vars(holder)
            homes[name] = Home(store, key, what=what, name=name)
            continue
        _, _, hops = tensor_attribute_slot(root, name)
        if hops and hops[-1][2] is holder and not isinstance(hops[-1][0], tuple):
            homes[name] = TupleItem(hops[-1][0], hops[-1][1], what=what, name=name, index=key, original=holder)
    return homes


def _record_module_globals(captured):
    """``captured``, a function's program, with a ``Frozen`` record (kind ``global``, type
    ``module``) for each module its code reads as a module global (``MODEL``, or
    ``helpers.model``): where it lives, so that a package bound with
    ``module={"MODEL": MODEL}`` follows the global where the loading process's global
    still holds the module given at load (load/binding.py's ``given_globals``): eager reads
    the global at each call, so ``MODEL = other`` after the load is followed, not ignored."""
    from ..package import manifest as mf

    listed = {f.name for f in captured.frozen if f.kind == "global"}
    records = [mf.Frozen(kind="global", name=r.path, where=r.where, module=r.module, type="module",
                         value=mf.class_name(type(m)))
               for m, r in captured.modules_named.items()
               if r.path is not None and r.name.isidentifier() and r.path not in listed]
    if records:
        captured.frozen = [*captured.frozen, *records]
    return captured


def _global_modules_named(captured):
    """``captured``, a module's program that reads a module as a module global
    (``HELPER(x)`` in its forward, or ``helpers.SEQ(x)``, an attribute of a Python module
    it names; torch.export lifts its tensors as constants, ``constant:lifted_tensor_0``),
    those tensors named ``global:HELPER.weight`` (``global:helpers.SEQ.0.weight``), each
    with a ``Frozen`` record (kind ``global``, where the code read it), as a global tensor
    the code reads is, and one record for ``HELPER`` itself (type ``module``, its class): a
    package bound with ``module=m`` finds ``HELPER`` where the loading process holds it
    (load/binding.py's ``global_namespaces``) and reads its tensors there, as eager reads
    them at each call, and its class, code, hooks and Python values are guarded as a
    submodule's are (``variants[].module_types`` under ``global:HELPER``:
    guard_specs.module_paths). A function's package binds such a module by name,
    ``module={"HELPER": HELPER}``, and warns at load where the dict leaves it out."""
    from ..package import manifest as mf
    from .frozen import describe_frozen

    read_as = {r.name: (m, r) for m, r in captured.modules_named.items() if r.path is not None}
    if not read_as:
        return captured
    taken, renames, read = set(captured.weights), {}, {}  # (read: weight -> the global's path, ``HELPER.weight``)
    for name, home in module_homes(captured).items():
        var, dot, rest = home.name.removeprefix("constant:").partition(".")
        _, r = read_as.get(var, (None, None))
        if r is not None and captured.weight_kinds.get(name) == "constant" and \
                f"global:{r.path}{dot}{rest}" not in taken:
            renames[name] = f"global:{r.path}{dot}{rest}"
            read[renames[name]] = (r, f"{r.path}{dot}{rest}")
            taken.add(renames[name])
    captured.rename_weights(renames)
    captured.frozen = [*captured.frozen, *(
        mf.Frozen(kind="global", name=r.path, where=r.where, module=r.module, type="module",
                  value=mf.class_name(type(m))) for m, r in read_as.values()), *(
        mf.Frozen(kind="global", name=path, where=r.where, weight=weight, module=r.module,
                  **describe_frozen(captured.weights[weight])) for weight, (r, path) in read.items())]
    return captured

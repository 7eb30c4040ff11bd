"""What a call must match, derived at capture: per input its dtype, shape (static sizes,
named Dims, derived sizes), device and layout with the reasons some are pinned, and the
global state the compiled code depends on. The load side checks these (load/guards.py).

    >>> shapes, dims, specialized, names, narrowed = guard_dims(ep, user_nodes, flat_dyn, paths)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
import types

import torch

from .. import _torch_compat as compat
from .. import tree
from ..errors import CaptureError, SideEffectWarning, warn_caller
from ..load import layout
from ..package.manifest import (
    FUNCTION_TYPES,
    MAX_EXCLUDED,
    NOT_PLAIN,
    Dim,
    GlobalState,
    children_held,
    class_name,
    functions_inside,
    plain_value,
    same_plain,
    weight_names,
)
from .effects import EffectRecorder
from .frozen import NO_DEFAULT, class_default, plain_object
from .graphs import layout_dependent_inputs, size_text, static_int, storage_of, written_placeholders

__all__ = ["guard_dims", "input_layout", "layout_pins", "where_strides_read", "contiguous_then_updated",
           "updated_below_transforms", "requires_grad_pins", "module_training_of", "global_state_of",
           "grad_mode_left", "autocast_dtype", "dim_range", "dropped_size_guards", "user_dim", "module_paths", "global_values"]


def guard_dims(ep, user_nodes, flat_dyn, paths: list[str], excluded: dict | None = None,
               int_inputs: dict | None = None) -> tuple[list[list], dict[str, Dim], list[str], dict, list[str]]:
    """Each user input's guarded shape, the named Dims, the user Dims that capture
    specialized, the Dim name of each symbol, and the user Dims whose range capture
    narrowed (``"rows runs 2..64 of the 1..64 asked"``): (shapes, dims, specialized,
    names, narrowed). A size is an int (static), a Dim name, or ``{"expr": "2*batch"}``
    for a size derived from other Dims. ``excluded``: Dim name -> (the example's size,
    the sizes a dropped guard rules out, or None: that size alone), from
    ``dropped_size_guards``; the Dim excludes those sizes (``_without``). ``int_inputs``:
    the flat inputs carrying int arguments (treespec.IntLeaf), each with its offset; one
    no Dim names is named after its argument (``n``, ``sizes_0``), not ``dim1``; the
    messages speak of a shifted int's own values (``n (n) = -2``, ``n runs -3..0``).
    """
    int_inputs = int_inputs or {}
    shifts = {}  # Dim name -> the offset of the ints it carries
    sym_names: dict[str, str] = {}
    user_range: dict[str, tuple] = {}
    specialized: list[str] = []
    narrowed: list[str] = []
    # Names the user gave (Dim("batch")) win; other symbols get dim0, dim1, ...
    for i, (node, dyn, path) in enumerate(zip(user_nodes, flat_dyn, paths)):
        for d, spec in (dyn or {}).items():
            size = node.meta["val"].shape[d]
            name = user_dim(spec)
            if name is None:
                continue
            if int_inputs.get(i):
                shifts[name] = int_inputs[i]
            if static_int(size) is None:
                if str(compat.sym_expr(size)).isidentifier():
                    sym_names.setdefault(str(compat.sym_expr(size)), name)
                    user_range[name] = dim_range(spec)
            else:  # (an int argument's carrier: its first size is the int)
                where = path if i in int_inputs else f"{path}.shape[{d}]"
                specialized.append(f"{name} ({where}) = {static_int(size) + int_inputs.get(i, 0)}")
    taken = set(sym_names.values())
    for i in int_inputs:  # (after the user's names, which win)
        size = user_nodes[i].meta["val"].shape[0]
        if static_int(size) is not None:  # (specialized: compiled in)
            continue
        expr = str(compat.sym_expr(size))
        name = re.sub(r"\W+", "_", paths[i]).strip("_")
        if expr.isidentifier() and expr not in sym_names and name.isidentifier() and name not in taken:
            sym_names[expr] = name
            taken.add(name)
    ranges = {str(k): v for k, v in ep.range_constraints.items()}
    dims: dict[str, Dim] = {}
    shapes = []
    for node in user_nodes:
        val = node.meta["val"]
        shape = []
        for size in val.shape:
            if static_int(size) is not None:
                shape.append(static_int(size))
                continue
            expr = compat.sym_expr(size)
            if str(expr) in ranges and str(expr).isidentifier():
                name = sym_names.setdefault(str(expr), f"dim{len(sym_names)}")
                r = ranges[str(expr)]
                lo, hi = int(r.lower), (None if str(r.upper) in ("int_oo", "oo") else int(r.upper))
                if name in dims:  # another symbol of the Dim (torch.export decided each input's size
                    lo, hi = _both(dims[name], lo, hi)  # apart): the sizes both allow
                dims[name] = Dim(min=lo, max=hi)
                shape.append(name)
            else:
                shape.append(size_text(size, sym_names))
        shapes.append(shape)
    for name, (ulo, uhi) in user_range.items():  # never wider than the user asked
        if name not in dims:
            continue
        lo, hi = _both(dims[name], ulo or 0, uhi)
        dim = Dim(min=lo, max=hi)
        if name in (excluded or {}):
            dim = _without(*excluded[name], dim)
        if (dim.min, dim.max, dim.exclude) != (ulo or 0, uhi, []):
            asked = Dim(min=ulo or 0, max=uhi).shifted(shifts.get(name, 0))
            narrowed.append(f"{name} runs {dim.shifted(shifts.get(name, 0)).text()} of the {asked.text()} asked")
        dims[name] = dim
    return shapes, dims, specialized, sym_names, narrowed


def _both(dim: Dim, lo: int, hi: int | None) -> tuple[int, int | None]:
    """The sizes both ``dim`` and ``lo..hi`` allow (None: no bound)."""
    highs = [h for h in (dim.max, hi) if h is not None]
    return max(dim.min, lo), (min(highs) if highs else None)


def _without(example: int, ruled_out: set[int] | None, dim: Dim) -> Dim:
    """``dim`` without the sizes ``ruled_out`` (None: ``example`` alone): its ends moved
    past them, the others excluded (format version 10; until then the Dim was narrowed to
    the range around the example's, losing the sizes beyond an excluded one).

        >>> _without(4, {7}, Dim(min=2, max=16)).text()
        '2..16 except 7'
        >>> _without(4, {2, 16}, Dim(min=2, max=16)).text()
        '3..15'
    """
    if ruled_out is None:
        return Dim(min=example, max=example)
    lo, hi = dim.min, dim.max
    while lo in ruled_out:
        lo += 1
    while hi is not None and hi in ruled_out:
        hi -= 1
    inside = sorted(x for x in ruled_out if lo < x and (hi is None or x < hi))
    if len(inside) <= MAX_EXCLUDED:
        return Dim(min=lo, max=hi, exclude=inside)
    # (more than a manifest holds, which no real program rules out: the range between the
    # excluded sizes nearest the example)
    below = [x for x in inside if x < example]
    above = [x for x in inside if x > example]
    return Dim(min=below[-1] + 1 if below else lo, max=above[0] - 1 if above else hi)


def dropped_size_guards(message: str | None, ranges: dict | None = None) -> dict[str, set[int] | None]:
    """The guards on sizes torch.export drops where it decides a Dim itself, read from the
    constraint violation that made capture let it decide (capture._export_watched): per
    Dim name, the sizes they rule out (``((-1) + L['x'].size()[0]) != 6``: 7), or None
    where a guard is no such exclusion (``rows % 2 == 0``, one relating two sizes): the
    Dim then keeps the example's size alone. Range guards (``rows <= 8``) are left out:
    torch.export keeps those in the Dim's range. A guard of one Dim that sympy cannot
    solve (``n - max(0, n - 4) != 1``, from ``x[max(n - 4, 0):n]``) is tried at each size
    of the Dim's range in ``ranges`` (name -> (min, max), max None for none: then where
    the guard is piecewise linear, up to past its last bend), the sizes it fails ruled
    out (until 2026-12-07 such a Dim kept the example's size alone).

    The program branched on a size there (``if a.shape[1] == b.shape[1]``, with ``b``
    ``rows - 1`` long): compiled for the branch the example took, the package must refuse
    the sizes that take the other, which torch.export's range cannot say.

        >>> dropped_size_guards("Not all values of rows = L['x'].size()[0] in the specified range rows <= 16 "
        ...                     "satisfy the generated guard ((-1) + L['x'].size()[0]) != 6.")
        {'rows': {7}}
    """
    import re

    import sympy

    found: dict[str, set[int] | None] = {}
    pattern = r"Not all values of (\w+) = (\S+) in the specified range .*? satisfy the generated guard (.+?)\.?$"
    for name, source, guard in re.findall(pattern, message or "", re.M):
        text = guard.replace(source, "d")
        ops = re.findall(r"!=|==|<=|>=|<|>", text)
        if ops and all(op in ("<=", ">=", "<", ">") for op in ops) and "L[" not in text and "max(" not in text \
                and "min(" not in text:
            continue  # a range: torch.export's own
        sizes = None
        if ops == ["!="] and "L[" not in text:
            try:
                left, right = text.split("!=")
                solutions = sympy.solve(sympy.sympify(left) - sympy.sympify(right), sympy.Symbol("d"))
                if solutions and all(s.is_integer for s in solutions):
                    sizes = {int(s) for s in solutions}
            except Exception:  # (sympy's parser raises what the guard's text makes it: math.ceil(d/4), an
                sizes = None   # AttributeError; the Dim then keeps the example's size alone)
        if sizes is None and len(ops) == 1 and "L[" not in text and name in (ranges or {}):
            sizes = _failing_sizes(text, ops[0], *ranges[name])
        known = found.get(name, set())  # (None: already pinned to the example)
        found[name] = None if sizes is None or known is None else known | sizes
    return found


_MAX_TRIED = 100_000  # (sizes a guard is tried at: a Dim's range beyond that keeps the example's size)


def _failing_sizes(text: str, op: str, lo: int, hi: int | None) -> set[int] | None:
    """The sizes ``d`` in ``lo..hi`` (None: no bound) where guard ``text`` (``left op
    right`` of ``d``) fails, tried one by one; None where sympy cannot read it, the range
    is too long, or (no bound) the guard bends where no trying reaches.

        >>> sorted(_failing_sizes("(d + ((-1)*max(0, (-4) + d))) != 1", "!=", 0, 16))
        [1]
        >>> sorted(_failing_sizes("((-3)*max(0, (-4) + d)) + 3*d >= 2", ">=", 0, None))
        [0]
    """
    import sympy

    d = sympy.Symbol("d", integer=True)
    names = {"max": sympy.Max, "min": sympy.Min, "Max": sympy.Max, "Min": sympy.Min, "d": d}
    try:
        left, right = (sympy.sympify(side, locals=names) for side in text.split(op))
        relation = sympy.Rel(left, right, op)
        if hi is None:
            # piecewise linear in d (sums, constant multiples, max and min): past the largest
            # constant, each side is one line, and a relation between two lines holds from
            # some size on or fails from it: trying up to twice past it decides
            if not all(isinstance(e, (sympy.Add, sympy.Mul, sympy.Max, sympy.Min, sympy.Integer, sympy.Symbol))
                       and (not isinstance(e, sympy.Mul) or sum(a.has(d) for a in e.args) <= 1)
                       for e in sympy.preorder_traversal(left - right)):
                return None
            bend = max([abs(int(a)) for a in (left - right).atoms(sympy.Integer)] + [0])
            hi = lo + 2 * bend + 2
            if not bool(relation.subs(d, hi)):
                return None  # (fails from some size on: the example's range alone)
        if hi - lo > _MAX_TRIED:
            return None
        holds = sympy.lambdify(d, relation, modules="math")
        return {size for size in range(lo, hi + 1) if not holds(size)}
    except Exception:  # (sympy raises what the guard's text makes it: the example's size alone)
        return None


def _finite(bound) -> int | None:
    """A Dim's bound as an int; None for no bound (``Dim("b")``'s max is sympy's int_oo)."""
    return bound if isinstance(bound, int) and not isinstance(bound, bool) else None


def dim_range(spec) -> tuple[int, int | None]:
    """The sizes a ``dynamic`` spec asks: (min, max), max None for no bound."""
    return _finite(getattr(spec, "min", 0)) or 0, _finite(getattr(spec, "max", None))


def user_dim(spec) -> str | None:
    """The name of the Dim a ``dynamic`` spec gives (``Dim("batch")``); None for torch's
    AUTO/DYNAMIC/STATIC hints and unnamed specs."""
    name = getattr(spec, "__name__", None)
    return name if name and name not in ("AUTO", "DYNAMIC", "STATIC") else None


def input_layout(t: torch.Tensor, dyn, path: str):
    """The example's memory layout, which the compiled code will assume (see layout.py)."""
    if t.layout is not torch.strided:
        raise CaptureError(f"{path} is a {t.layout} tensor; packages take dense (strided) tensors",
                           hint=f"pass {path}.to_dense(), or densify inside the program")
    found = layout.layout_of(t, bool(dyn))
    if found is None:
        raise CaptureError(f"{path} has strides {tuple(t.stride())} with gaps or overlaps, and a dynamic size: "
                           "the compiled code could not address other sizes the same way",
                           hint=f"pass a contiguous example ({path}.contiguous())")
    return found


def layout_pins(gm: torch.fx.GraphModule, user_nodes: list, strides_read: dict,
                uses: dict[str | None, str] | None = None) -> list[str | None]:
    """Per user input: why its memory layout must match at a call (a copy into the
    compiled layout would change the result), or None.

    - an output is a reshape/flatten/contiguous of it that copied (layout_dependent_inputs);
    - ``uses``: what else the program does by its layout, by name (an in-place update
      through a reshape, ``as_strided``: graphs.layout_dependent_uses, read before
      decompositions);
    - the program read its strides: export took the branch the example's layout chose.
      A read of an intermediate pins every input (its layout follows theirs); reads of
      weights pin none (their layout is the stored one).
    """
    names = [n.name for n in user_nodes]
    why = dict.fromkeys(layout_dependent_inputs(gm), "whether an output shares its memory depends on its layout")
    for name, reason in (uses or {}).items():
        for pinned in names if name is None else [name]:
            why.setdefault(pinned, reason)
    for name, where in strides_read.items():
        for pinned in names if name is None else [name] if name in names else []:
            why.setdefault(pinned, f"the program reads strides at {where}")
    return [why.get(n) for n in names]


def where_strides_read(ep, recorder: EffectRecorder) -> dict[str | None, str]:
    """Where the program read strides (``x.is_contiguous()``, ``x.stride()``), by the
    graph input whose memory it read them of: placeholder name -> file:line, None for a
    tensor that is no graph input (an intermediate). Taken from the graph export traced,
    whose inputs are the tensors the program saw."""
    return _by_input(ep, recorder.layout_reads)


def contiguous_then_updated(ep, recorder: EffectRecorder) -> dict[str, str]:
    """Inputs the program calls ``.contiguous()`` on (or on a view of) and updates in
    place, by placeholder name, with why their layout must match. In the compiled layout
    ``contiguous()`` may return the input itself, so the graph (which has no op for it)
    updates the input; in another layout eager's ``contiguous()`` copies and the update
    misses the input, which a copy into the compiled layout and a write-back would not
    do. Read on torch.export's graph before decompositions, as the program saw it."""
    if not recorder.contiguous_calls:
        return {}
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    updated = {placeholders[k].name for k in written_placeholders(ep.graph_module)}
    return {name: f"the program calls contiguous() on it at {where} (no copy in the compiled layout, a copy in "
                  "another) and updates it in place"
            for name, where in _by_input(ep, recorder.contiguous_calls).items() if name in updated}


def updated_below_transforms(ep) -> dict[str, str]:
    """Inputs a program traced below torch.export (desugar.py) updates in place, by
    placeholder name, with why their layout must match. make_fx's graph has no op where
    ``contiguous()``, ``reshape`` or ``flatten`` returned the input itself, and the
    program's tensors there are not torch.export's (``contiguous_then_updated`` cannot
    tell which input a call was on): whether eager's update reaches the input in another
    layout, where those copy, is not in the graph. Until 2026-12-05 such a call was copied
    into the compiled layout and written back, a silent difference (fuzzer seed 65:
    ``x.contiguous().mul_(0.5)`` beside ``torch.func.grad``)."""
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    return {placeholders[k].name: "the program updates it in place and was traced below torch.export (a "
                                  "torch.func transform or a tensor subclass), where a reshape or contiguous() "
                                  "that would copy it in another layout leaves no trace"
            for k in written_placeholders(ep.graph_module)}


def _by_input(ep, seen: list) -> dict[str | None, str]:
    """(tensor, file:line) pairs the program's run noted, by the graph input whose memory
    each tensor is: placeholder name -> the first file:line, None for other tensors."""
    if not seen:
        return {}
    by_storage: dict = {}
    for n in ep.graph.nodes:
        if n.op == "placeholder" and storage_of(n) is not None:
            by_storage.setdefault(storage_of(n), n.name)
    found: dict[str | None, str] = {}
    for t, where in seen:
        found.setdefault(by_storage.get(storage_of(t)), where)
    return found


def requires_grad_pins(reads: list, flat, weights: dict) -> tuple[dict[int, str], dict[str, bool]]:
    """Where the program reads ``.requires_grad``: flat input index -> file:line, and
    weight name -> its requires_grad then. The branch export took holds only for calls
    with the same requires_grad (which a call under no_grad, or a bound module's
    ``requires_grad_(False)``, may change), so the guard pins it. A read of an
    intermediate (whose requires_grad follows the inputs') pins every input.
    ``weights``: the module's parameters and buffers as traced, by name."""
    pins: dict[int, str] = {}
    weight_pins: dict[str, bool] = {}
    for t, where in reads:
        named = [name for name, w in weights.items() if w is t]
        if named:
            weight_pins.update((name, bool(t.requires_grad)) for name in named)
            continue
        hit = [i for i, x in enumerate(flat) if x is t]
        for i in hit or range(len(flat)):
            pins.setdefault(i, f"the program reads {'its' if hit else 'an intermediate tensor’s'} requires_grad "
                               f"at {where}")
    return pins, weight_pins


def property_pins(reads: list, flat) -> dict[int, set[str]]:
    """What the program asked of each flat input (``manifest.TENSOR_PROPERTIES``:
    ``x.is_inference()``, ``x.is_conj()``, ``x.grad_fn`` as ``is_leaf``): index -> names. The branch
    export took holds only for a tensor answering as the example did (an inference
    tensor, a conjugate view: neither changes dtype, shape or device), so the guard pins
    the answers (``Input.properties``). A call on an intermediate (whose answer follows
    the inputs') pins every input."""
    pins: dict[int, set[str]] = {}
    for t, name, _where in reads:
        hit = [i for i, x in enumerate(flat) if x is t]
        for i in hit or range(len(flat)):
            pins.setdefault(i, set()).add(name)
    return pins


_ABSENT = object()
# what every module's __dict__ holds (its hook dicts, ``_parameters``): torch's bookkeeping,
# no value a program computes with (a hook added is refused by the binding, by name)
_MODULE_OWN = frozenset(vars(torch.nn.Module())) - {"training"}


def module_attributes(paths: dict[int, str], recorder: EffectRecorder,
                      functions: dict | None = None) -> dict[str, object]:
    """The Python values of a module's attributes that the program's module methods name
    (``self.eps``, ``self.flag``; path -> value as JSON, ``"ln.eps": 1e-05``), and every
    plain attribute of a plain object such code names (a model's ``self.config``, whose
    fields code also reads by computed names: ``"config.output_hidden_states": false``,
    recorded once, under its shortest path): torch.export compiled them in, where eager
    reads them at each call, so a module bound at load is guarded on them
    (load/binding.py). A submodule's ``training``, where its code reads it, is one of
    them (the module target's own is ``Variant.module_training``); attributes the program sets
    (``self.calls += 1``) are side effects, warned about at capture. Names are those the
    method's code uses as any attribute or global, so an attribute that only shares its
    name with one is guarded too: a change to it is refused, never missed. ``functions``,
    given, gets path -> function for those that are functions (``self.act = my_gelu``)."""
    found = {}
    for where, value in _attributes_read(paths, recorder):
        if not plain_object(value) and (plain := plain_value(value)) is not NOT_PLAIN:
            found[where] = plain
            if functions is not None and isinstance(value, FUNCTION_TYPES):
                functions[where] = value
            if functions is not None:  # (``self.acts = {"gelu": my_gelu}``: each one's code)
                functions.update(functions_inside(where, value))
    for obj, where in _plain_objects(paths, recorder):
        found.update(_object_attributes(obj, where))
    return dict(sorted(found.items()))


def _attributes_read(paths: dict[int, str], recorder: EffectRecorder):
    """(path, value) for each attribute of a bindable module that the module's code that
    ran names and does not set (module_attributes' candidates)."""
    for (key, code), module in recorder.module_methods.items():
        path = paths.get(key)
        if path is None:  # a module the program made or reached from elsewhere: not bindable
            continue
        for name in sorted(set(code.co_names) & module.__dict__.keys()):
            # (the module target's own ``training`` is Variant.module_training; a
            # submodule's, or a module a function reaches by name, is one of these)
            if (name == "training" and not path) or (key, name) in recorder.module_writes or name in _MODULE_OWN:
                continue
            if recorder.changed(module.__dict__[name], module.__dict__, name):  # (``self.cache[k] = 1``: a side effect)
                continue
            yield (f"{path}.{name}" if path else name), module.__dict__[name]


def _plain_objects(paths: dict[int, str], recorder: EffectRecorder) -> list[tuple[object, str]]:
    """(object, path) for each plain object a bindable module's code reads (a model's
    ``config``), under its shortest path (many layers hold one config)."""
    objects = {}
    for where, value in _attributes_read(paths, recorder):
        if plain_object(value):
            objects[id(value)] = min(objects.get(id(value), (value, where)), (value, where),
                                     key=lambda ow: (len(ow[1]), ow[1]))
    return list(objects.values())


def class_attributes(paths: dict[int, str], recorder: EffectRecorder,
                     functions: dict | None = None) -> dict[str, object]:
    """The values the program's module methods read through ``self`` from the module's
    class (``scale = 2.0`` in the class body, ``act = staticmethod(gelu)``; path -> value
    as JSON, ``"block.scale": 2.0``): the instance does not hold them, so
    ``module_attributes`` does not see them, yet eager reads ``M.scale = 3.0`` (or
    ``m.scale = 3.0`` set on the instance since) at the next call. A module bound at load
    is guarded on them (load/binding.py). So are the class defaults of a plain object the
    modules read (``class Config: eps = 1e-5``, read as ``self.config.eps``: ``"config.eps"``),
    where the code that ran names them. Left out: methods (their code is
    ``module_code``'s), properties and other descriptors (their code runs, and is
    recorded as it runs), and what is no plain data. ``functions``, given, gets path ->
    function for a staticmethod's or a builtin's (``function_code``)."""
    import inspect

    found = {}
    for (key, code), module in recorder.module_methods.items():
        path = paths.get(key)
        if path is None:
            continue
        held = (module.__dict__.keys() | module._parameters.keys() | module._buffers.keys()
                | module._modules.keys())
        for name in sorted(set(code.co_names) - held):
            value = inspect.getattr_static(type(module), name, _ABSENT)
            if (value is _ABSENT or name.startswith("__") or isinstance(value, types.FunctionType)
                    or (key, name) in recorder.module_writes):
                continue  # (a method: a class's own code, ``module_code``'s)
            value = value.__func__ if isinstance(value, staticmethod) else value
            if (plain := plain_value(value)) is NOT_PLAIN or recorder.changed(value, {}, name):
                continue
            where = f"{path}.{name}" if path else name
            found[where] = plain
            if functions is not None and isinstance(value, FUNCTION_TYPES):
                functions[where] = value
    # a plain object's class defaults (``class Config: eps = 1e-5``, read as ``self.config.eps``):
    # those the code that ran names, where the object does not shadow them
    named = {name for code in [*recorder.functions, *(code for _, code in recorder.module_methods)]
             for name in code.co_names}
    for obj, where in _plain_objects(paths, recorder):
        for name in sorted(named - vars(obj).keys()):
            value = class_default(obj, name)
            if (value is not NO_DEFAULT and (plain := plain_value(value)) is not NOT_PLAIN
                    and not recorder.changed(value, {}, name)):
                found[f"{where}.{name}"] = plain
    return dict(sorted(found.items()))


def global_values(recorder: EffectRecorder, functions: dict | None = None,
                  class_values: dict | None = None) -> dict[str, object]:
    """What the program's code that ran at capture reads as module globals and torch.export
    compiled in, where eager reads it at each call (torch.compile guards it, and
    recompiles): path -> value as JSON. A package bound at load compares each at every call
    where the loading process holds it (load/binding.py), and refuses another value naming
    the global. They are:

    - plain data (numbers, strings, flags, dtypes, devices, tuples and lists of them) the
      code names as a global (``"global:SCALE": 2.0``), as a Python module's attribute
      (``"global:config.FLAG": true``) or as a plain object global's (``"global:args.scale"``);
      a name the code uses only in a branch not taken is compared too: a change to it is
      refused, never missed;
    - the Python functions it calls as globals, where they ran (``"global:rotate_half":
      {"function": ...}``: their code was traced in; a kernel library's patching of a
      model's module replaces them).

    The code is that which ran, not every method of the model's classes (a transformers
    GPT-2 names some 20 globals in methods its forward never calls). Left out: a global
    the code assigns (``global step; step += 1``) or a list it appends to (side effects),
    and a module's own names (``__name__``). A name two Python modules' code reads with
    other values (``EPS`` in two files) is recorded once per Python module, under its
    name: ``"global:EPS@layers"``, and so is a Python module's attribute two modules' code
    reads with other values (``"global:config.FLAG@layers"``: ``config`` is another module
    in each). ``class_values``, given, gets those a plain object global's class
    holds (``SETTINGS.gain`` of ``class Settings: gain = 2.0``), compared where the object
    resolves them (``class_attributes``), not as the object's own. ``functions``, given,
    gets path -> function for those functions, and for the functions of torch's modules
    the code names (``global:F.gelu``, ``global:torch.cat``; ``frozen.torch_functions``),
    which only ``function_code`` records (older readers would refuse them as values).

    Example (``Variant.global_values`` reads them back from a package):
        >>> import aotpack, torch
        >>> SCALE, DTYPE = 2.0, torch.float16
        >>> pkg = aotpack.compile(lambda x: (x * SCALE).to(DTYPE), (torch.ones(2),), backend="eager")
        >>> pkg.manifest.variants[0].module_attributes
        {'global:DTYPE': {'dtype': 'float16'}, 'global:SCALE': 2.0}
    """
    from .frozen import globals_read, is_data, torch_functions

    stored = {(id(g), name) for code, (g, _) in recorder.functions.items() for name in _assigned_globals(code)}
    found: dict[str, object] = {}
    clashing = set()  # (a name two modules' code reads with other values: which one a path names is unknown)
    by_module: dict[str, dict] = {}  # (so each is recorded under its Python module's name: ``EPS@layers``)
    torch_paths = set()
    arrays: dict[str, str] = {}  # numpy array globals read -> where
    for code, (globals_, _) in recorder.functions.items():
        torch_calls = dict(torch_functions(code.co_names, globals_))
        torch_paths |= {f"global:{name}" for name in torch_calls}
        for name, value in globals_read(code.co_names, globals_):
            if type(value).__name__ == "ndarray" and type(value).__module__ == "numpy":
                arrays.setdefault(name, f"`{code.co_name}` in {code.co_filename}")
            # (a function: where it ran, so its code was traced in; one only named, in a branch not
            # taken, is not the program's; a torch module's function the code names: torch's own
            # code is not recorded running, and a patch of it is what is compared)
            ran = (isinstance(value, types.FunctionType) and value.__code__ in recorder.functions
                   or torch_calls.get(name) is value
                   or isinstance(value, functools.partial))  # (called through C: named by code that ran)
            if ((id(globals_), name) in stored or name.startswith("__") or not (is_data(value) or ran)
                    or recorder.changed(value, globals_, name)):  # (a log the program appends to, a cache it fills)
                continue
            if (plain := plain_value(value)) is NOT_PLAIN:
                continue
            root, _, attr = name.partition(".")
            if attr and "." not in attr and plain_object(globals_.get(root)) and attr not in vars(globals_[root]):
                if class_values is not None and class_default(globals_[root], attr) is value:
                    class_values[f"global:{name}"] = plain  # (a default of the object's class)
                continue
            if not same_plain(found.setdefault(f"global:{name}", plain), plain):
                clashing.add(f"global:{name}")
            # (per Python module: a plain global, or a Python module's attribute, ``config.FLAG``;
            # not a plain object's, which another module's code may hold as another object)
            if ("." not in name or isinstance(globals_.get(root), types.ModuleType)) and \
                    isinstance(globals_.get("__name__"), str):
                held = by_module.setdefault(f"global:{name}", {})
                qualified = f"global:{name}@{globals_['__name__']}"
                before = held.setdefault(qualified, (plain, value, ran))
                if before is not None and not same_plain(before[0], plain):
                    held[qualified] = None  # (two namespaces of one name, a script run twice, with other values)
            if ran and functions is not None:
                functions[f"global:{name}"] = value
            if functions is not None:  # (``ACTS = {"gelu": my_gelu}``: each one's code)
                functions.update(functions_inside(f"global:{name}", value))
    for name, where in arrays.items():
        # (torch.from_numpy(A) in the trace made a constant of its values: the program's
        # origin is not in the graph to be followed, as a tensor global's is)
        warn_caller(f"aotpack: the numpy array global {name} read by {where} is compiled in as its values at "
                    "capture: a change to it after is not seen, bound or not, where eager reads it at each call "
                    "(hold it as a tensor, a module buffer or global, which a bound package follows, or pass it "
                    "as an argument)", SideEffectWarning)
    for path in clashing:
        _per_module(path, found, by_module.get(path, {}), functions)
    if functions is not None:
        functions.update(torch_module_functions(recorder))
        functions.update(tensor_methods(recorder))
    return {path: value for path, value in sorted(found.items()) if path not in torch_paths}


def torch_module_functions(recorder: EffectRecorder) -> dict[str, object]:
    """The functions of torch's modules that the code of torch's own ``nn`` modules names,
    where their ``forward`` ran for the program (``GELU.forward`` calls ``F.gelu``;
    ``Conv2d.forward`` its ``_conv_forward``, which calls ``F.conv2d``): path, under the
    Python module whose globals the name is read from (``"global:F.gelu@torch.nn.modules.
    activation"``) -> the function. Eager's ``nn.GELU`` calls whatever ``F.gelu`` is at each
    call, so a patch (``F.gelu = my_kernel``, as kernel libraries install theirs) runs
    there, where the package runs the function traced: a bound package compares each, as
    it does those the user's code names (until 2026-12-07 these ran as compiled, silently;
    torch.compile's guards recompile). Only the code of those modules and the methods of
    theirs it names: what a torch function calls inside is torch's (not followed)."""
    from .frozen import torch_functions

    found = {}
    for cls, code in {(type(module), code) for (_, code), module in recorder.module_methods.items()}:
        for home, names in _torch_method_names(cls, code):  # (once a class: a model's 32 Linears share it)
            for name, fn in torch_functions(names, home):
                found[f"global:{name}@{home['__name__']}"] = fn
    return found


def tensor_methods(recorder: EffectRecorder) -> dict[str, object]:
    """The methods of ``torch.Tensor`` the program's code and torch's own ``nn`` modules'
    code name where they ran (``x.relu()``, ``h.view(...)``): ``"tensor:relu"`` -> the
    method as ``torch.Tensor`` resolves it. Eager calls whatever the class holds at each
    call, so a patch (``torch.Tensor.relu = my_relu``) runs there; the package runs the
    method traced: a bound package compares each by identity (load/binding.py), as
    torch.compile's guards recompile (until 2026-12-07 such a patch after the load ran
    as compiled, silently). A name the code uses on another object (``self.norm``) that
    a tensor has too is compared all the same: a false alarm only where the method is
    patched. Operators (``x + y``: ``__add__``) are not named by the code: not compared.

        >>> from aotpack.build.effects import EffectRecorder
        >>> rec = EffectRecorder()
        >>> def f(x):
        ...     return x.relu().view(-1)
        >>> rec.functions[f.__code__] = (f.__globals__, {})
        >>> sorted(tensor_methods(rec))
        ['tensor:relu', 'tensor:view']
    """
    import inspect

    names = {name for code in recorder.functions for name in code.co_names}
    for cls, code in {(type(module), code) for (_, code), module in recorder.module_methods.items()}:
        for _home, inner in _torch_method_names(cls, code):
            names.update(inner)
    found = {}
    for name in sorted(names):
        method = getattr(torch.Tensor, name, None) if not name.startswith("__") else None
        if method is not None and inspect.isroutine(method):
            found[f"tensor:{name}"] = method
    return found


def _torch_method_names(cls: type, code: types.CodeType, depth: int = 0):
    """(globals, names) of ``code``, a method of ``cls`` defined in torch, and of the
    methods of ``cls`` it names (``self._conv_forward``), a few levels down."""
    for owner in cls.__mro__:
        fn = next((f for f in vars(owner).values() if getattr(f, "__code__", None) is code), None)
        if fn is not None:
            break
    else:
        return
    home = fn.__globals__
    if not str(home.get("__name__", "")).startswith("torch."):
        return
    yield home, code.co_names
    if depth < 3:
        for name in code.co_names:
            method = getattr(cls, name, None)
            inner = getattr(method, "__code__", None)
            if isinstance(inner, types.CodeType) and inner is not code:
                yield from _torch_method_names(cls, inner, depth + 1)


def _per_module(path: str, found: dict, by_module: dict, functions: dict | None) -> None:
    """A global two Python modules' code reads with other values (``global:EPS``): in
    ``found`` (and ``functions``) once per module instead, ``global:EPS@layers``; where one
    module's name held two values (``by_module``'s None), not at all."""
    found.pop(path)
    if functions is not None:
        for p in [p for p in functions if p == path or p.startswith(f"{path}[")]:
            del functions[p]
    for qualified, (plain, value, ran) in filter(lambda item: item[1] is not None, by_module.items()):
        found[qualified] = plain
        if ran and functions is not None:
            functions[qualified] = value
        if functions is not None:
            functions.update(functions_inside(qualified, value))


def function_codes(functions: dict[str, types.FunctionType], paths: dict[int, str],
                   recorder: EffectRecorder) -> dict[str, str]:
    """The code of the functions a module's call ran (path -> ``manifest.function_code``):
    those ``module_attributes`` and ``global_values`` found (``functions``) and the forward
    of each module whose forward ran (``block.attn.forward``, ``forward`` for the module
    itself; ``manifest.resolved_forward``). A module bound at load where one's code
    differs (a kernel library's patch applied before the load, a forward wrapped: eager
    runs the patch, the package the code traced) is refused (load/binding.py), as
    torch.compile's guards on the code it traced would recompile."""
    from ..package.manifest import function_code, resolved_forward

    for (key, code), module in recorder.module_methods.items():
        if key in paths and code.co_name == "forward":
            functions[f"{paths[key]}.forward".lstrip(".")] = resolved_forward(module)
    return dict(sorted((path, code) for path, fn in functions.items() if (code := function_code(fn)) is not None))


def _assigned_globals(code: types.CodeType) -> set[str]:
    """The globals ``code`` assigns or deletes (``global n; n += 1``)."""
    import dis

    return {i.argval for i in dis.get_instructions(code) if i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL")}


def module_types(paths: dict[int, str], recorder: EffectRecorder) -> dict[str, str]:
    """The class of each module whose methods ran for the program (path -> ``module:QualName``,
    ``""`` for the module itself): torch.export compiled their code in, where eager runs
    the code of whatever module sits there at the call, so a module bound at load is
    guarded on them (load/binding.py; dynamo guards a module's type too)."""
    found = {paths[key]: class_name(type(module)) for (key, _), module in recorder.module_methods.items()
             if key in paths}
    return dict(sorted(found.items()))


def hooks_compiled(paths: dict[int, str], recorder: EffectRecorder) -> dict[str, list[str]]:
    """The hooks registered on each module whose code ran (``module_types``' paths ->
    ``manifest.module_hooks``, where it has any): torch.export traced them in, and eager
    runs whatever hooks a module has at the call, so a bound module is compared on them
    (load/binding.py; until 2026-12-06 one registered between compile and load ran in eager
    only, and one removed after the load still ran in the package, silently)."""
    from ..package.manifest import module_hooks

    found = {paths[key]: hooks for (key, _), module in recorder.module_methods.items()
             if key in paths and (hooks := module_hooks(module))}
    return dict(sorted(found.items()))


def module_code(paths: dict[int, str], recorder: EffectRecorder) -> dict[str, str]:
    """The code of the classes ``module_types`` names (``manifest.class_code``), where it
    is not torch's: ``class_name`` -> digest. A module bound at load whose class was
    edited since the compile is refused (load/binding.py), as torch.compile's guards on
    the code it traced would recompile."""
    from ..package.manifest import class_code, method_function

    ran: dict[type, set[str]] = {}
    for (key, code), module in recorder.module_methods.items():
        if key in paths and getattr(method_function(type(module), code.co_name), "__code__", None) is code:
            ran.setdefault(type(module), set()).add(code.co_name)  # (a method cls resolves to the code that ran)
    found = {class_name(cls): code for cls, names in ran.items() if (code := class_code(cls, names)) is not None}
    return dict(sorted(found.items()))


def module_paths(target, named: dict) -> dict[int, str]:
    """id(module) -> its path under the module the program is (or a method of); for a
    function's program, under the name it reaches each module by (``named``:
    frozen.modules_by_name; ``lin``, ``lin.0``: ``load(path, module={"lin": lin})`` binds
    them), except one no dict can name (``args[0]``). A module's program also reaches the
    modules its code calls as module globals (``HELPER(x)``, ``helpers.SEQ(x)``), under
    ``global:HELPER`` and ``global:helpers.SEQ``: a package bound with ``module=m``
    follows them where the loading process holds them (load/binding.py). The paths
    ``module_attributes``, ``module_types`` and ``module_code`` record under.

    Example:
        >>> lin = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> sorted(module_paths(lambda x: lin(x), {lin: ("lin", "a closure variable", "")}).values())
        ['lin', 'lin.0']
    """
    return {id(m): path for path, m in reversed(_module_tree(target, named))}


def _module_tree(target, named: dict) -> list[tuple[str, torch.nn.Module]]:
    """(path, module) of every module ``module_paths`` names, in order (a module held
    twice: once per path)."""
    root = target if isinstance(target, torch.nn.Module) else getattr(target, "__self__", None)
    if isinstance(root, torch.nn.Module):
        roots = [(root, ""), *((m, f"global:{r.path}") for m, r in named.items() if r.path is not None)]
    else:
        first = {}  # (a helper's global of a name the function gives another module: not bindable)
        for m, (var, *_) in named.items():
            first.setdefault(var, m)
        roots = [(m, var) for var, m in first.items() if var.isidentifier()]
    return [(".".join(filter(None, (var, path))), m) for module, var in roots
            for path, m in module.named_modules(remove_duplicate=False)]


# containers whose children are what their code (or the code iterating them) runs
_MODULE_CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)
# what a module's own code names to iterate its children (``for block in self.children()``)
_ITERATES_CHILDREN = frozenset({"children", "named_children", "modules", "named_modules", "_modules"})
_ITERATES_MODULES = frozenset({"modules", "named_modules"})  # (recursively: every module below)


def module_children(target, named: dict, recorder: EffectRecorder) -> dict[str, list[str]]:
    """The children of each container module the program ran (path -> their names as
    held, ``"layers": ["0", "1"]``): a ``ModuleList``, ``ModuleDict`` or ``Sequential``
    one of whose children ran, every ``ParameterList`` and ``ParameterDict``, and a module
    whose own code iterates its children (``for block in self.children()``), and every
    module below one whose code iterates them all (``self.modules()``). Eager
    runs whatever the container holds at the call (``m.layers.append(block)``, ``del
    m.seq[1]``), where compiled code runs the children traced, so a module bound at load
    is guarded on them (load/binding.py; dynamo guards the length and keys it iterates)."""
    ran = {key for key, _ in recorder.module_methods}
    iterating = {key for key, code in recorder.module_methods if _ITERATES_CHILDREN & set(code.co_names)}
    below = {key for key, code in recorder.module_methods if _ITERATES_MODULES & set(code.co_names)}
    tree = _module_tree(target, named)
    roots = [path for path, m in tree if id(m) in below]  # (their whole subtrees)
    found = {}
    for path, m in tree:
        if (children_held(m)[0] == "_parameters"
                or isinstance(m, _MODULE_CONTAINERS) and (id(m) in ran or any(id(c) in ran for c in m.children()))
                or id(m) in iterating
                or any(path == r or path.startswith(f"{r}.") or not r and not path.startswith("global:") for r in roots)):
            found.setdefault(path, list(children_held(m)[1]))
    return dict(sorted(found.items()))


# what a module's own code names to iterate its weights (``sum(p.sum() for p in self.parameters())``)
_ITERATES_WEIGHTS = frozenset({"parameters", "named_parameters", "buffers", "named_buffers", "_parameters",
                               "_buffers", "state_dict"})


def iterated_weights(target, named: dict, recorder: EffectRecorder) -> dict[str, list[str]]:
    """The parameters and buffers of each module whose own code iterates them (path ->
    their names, as ``named_parameters()`` then ``named_buffers()`` give them: ``"":
    ["lin.weight", "lin.bias", "gain"]``). Eager iterates whatever the module holds at
    the call (a parameter registered since, ``m.extra = nn.Parameter(...)``, or tied to
    another), where compiled code reads the weights traced, so a module bound at load is
    guarded on them (load/binding.py; a registration moves its check)."""
    iterating = {key for key, code in recorder.module_methods if _ITERATES_WEIGHTS & set(code.co_names)}
    found = {}
    for path, m in _module_tree(target, named):
        if id(m) in iterating:
            found.setdefault(path, weight_names(m))
    return dict(sorted(found.items()))


def _object_attributes(obj, where: str) -> dict[str, object]:
    """Every plain value a plain object holds: code reads a config's fields by names it
    computes too (``getattr(self.config, f"output_{k}")``), so all are compiled-in values."""
    found = {}
    for name, value in vars(obj).items():
        value = plain_value(value)
        if value is not NOT_PLAIN and not name.startswith("__"):
            found[f"{where}.{name}"] = value
    return found


def module_training_of(target) -> bool | None:
    module = target if isinstance(target, torch.nn.Module) else getattr(target, "__self__", None)
    return bool(module.training) if isinstance(module, torch.nn.Module) else None


def global_state_of(autocast: str | None, recorder: EffectRecorder, record: dict) -> GlobalState:
    """The global state the compiled code depends on (manifest.GlobalState), now, and
    the grad mode the program leaves its caller in (replayed after each call), from the
    capture's ``record``: whether the program made a tensor with no ``device=``, which the
    default device then placed (its device is compiled in)."""
    reads = dict(recorder.setting_reads)
    read_default = reads.pop("default_device", None) is not None or bool(record.get("default_device_reads"))
    grad_mode_after = grad_mode_left(record, recorder)
    return GlobalState(autocast=autocast, default_dtype=tree.dtype_name(torch.get_default_dtype()),
                       matmul_precision=torch.get_float32_matmul_precision(),
                       deterministic=torch.are_deterministic_algorithms_enabled(),
                       # the program took a branch on it: the compiled code holds that branch
                       grad_mode=torch.is_grad_enabled() if recorder.grad_mode_reads else None,
                       grad_mode_after=grad_mode_after, environ=dict(sorted(recorder.environ_reads.items())),
                       reads=sorted(reads), inference_mode=torch.is_inference_mode_enabled(),
                       anomaly=torch.is_anomaly_enabled(), default_device=str(torch.get_default_device()),
                       default_device_read=read_default,
                       cuda_available="cuda_available" in reads and torch.cuda.is_available(),
                       backends={name: compat.backend_settings().readers[name]()
                                 for name in sorted(recorder.backend_reads)})


def grad_mode_left(record: dict, recorder: EffectRecorder) -> bool | None:
    """The grad mode the program leaves its caller in, to replay after each call; None
    where it leaves the caller's as it was. A ``torch.set_grad_enabled(x)`` called as a
    function (never exited by a ``with``) sets it whatever the caller's was, even where
    it equals the mode at capture (``set_grad_enabled(True)`` captured with grad on)."""
    if record["grad_mode_after"] != record["grad_mode_before"] or recorder.grad_mode_sets:
        return record["grad_mode_after"]
    return None


def autocast_dtype(device: str, autocast) -> str | None:
    """The autocast dtype a program is captured under (None: off): ``autocast`` as
    asked, or (None) the caller's autocast on ``device`` now."""
    if autocast is None:
        if not torch.is_autocast_enabled(device):
            return None
        autocast = torch.get_autocast_dtype(device)
    if autocast is False:
        return None
    dtype = getattr(torch, autocast, None) if isinstance(autocast, str) else autocast
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"autocast takes a floating dtype (torch.bfloat16, 'float16'), False or None, not {autocast!r}")
    return tree.dtype_name(dtype)

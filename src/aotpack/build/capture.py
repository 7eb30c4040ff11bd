"""Capture: a function or nn.Module + example inputs -> one flat, functional graph.

The pipeline starts here::

    fn/module, args, kwargs ──bind to signature──► values per parameter
        ──tree.flatten──► in_spec + flat tensors
        ──torch.export (non-strict)──► ExportedProgram
        ──► Captured: graph(weights..., inputs...) -> outputs, guards, frozen values

Why flat: every backend compiles the same contract, ``graph(*weights, *inputs)``, with
the weights as *inputs* rather than constants baked into the binary. That keeps one copy
of the weights in the package (safetensors, shared by every variant), lets
``aotpack.load(path, module=m)`` bind a live module's parameters without copying, and
matches torch.compile, which also passes parameters as graph inputs.

Python values the program reads (globals, closure cells, non-tensor arguments, default
arguments) are frozen at capture time. That is what torch.compile does too, silently;
we list each one in ``Captured.frozen`` and so in the manifest and ``aotpack inspect``.

Example:
    >>> import torch, aotpack.build.capture as cap
    >>> c = cap.capture(torch.nn.Linear(4, 2), (torch.randn(3, 4),))
    >>> [w for w in c.weights], len(c.inputs)
    (['weight', 'bias'], 1)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import linecache
import re
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _torch_compat as compat
from .. import tree
from ..errors import CaptureError, SideEffectWarning, SpecializationWarning
from ..load import layout
from .effects import EffectRecorder

__all__ = ["Captured", "capture", "Dim"]

Dim = torch.export.Dim

_KINDS = {kind: name for name, kind in tree.PARAM_KINDS.items()}


def device_of(values) -> str:
    """The device type a program on these values runs on: the first non-CPU one among
    the tensors, else ``"cpu"``."""
    return next((t.device.type for t in values if isinstance(t, torch.Tensor) and t.device.type != "cpu"), "cpu")


@dataclass
class Captured:
    """A captured program: ``graph(*weights, *inputs) -> outputs`` plus what a call needs.

    Attributes:
      name: the program's qualified name (``MLP`` or ``my_fn``).
      kind: ``"module"`` or ``"function"``.
      source: ``file:line`` where the program is defined.
      signature: the parameters (name, kind, frozen default) in JSON form.
      in_spec: tree spec of the bound arguments, one child per parameter.
      out_spec: tree spec of the result.
      inputs: one guard dict per flat input tensor (dtype, shape, device, requires_grad).
      dims: symbolic dimensions by name, ``{"batch": {"min": 1, "max": 4096}}``.
      weights: graph weights in graph order, name -> tensor (params, buffers, constants).
      weight_kinds: name -> ``"parameter" | "buffer" | "constant"``.
      weight_targets: name -> the name torch.export gives it in ``exported`` (its state
        dict or constants key), to rebuild the program from its serialized form.
      frozen: Python values read at capture and baked in (globals, closures, defaults).
      example_inputs: the flat input tensors the program was captured with.
      exported: torch.export's ExportedProgram (the portable program).
      graph_module: the flat fx graph; all placeholders are positional inputs.
      mutations: what the program changes in place (``allow_mutations=True`` only):
        ``[{"kind": "buffer", "weight": name} | {"kind": "input", "index": i}]``; the
        graph returns their new values first, before the program's own outputs.
      state: weights (buffers) an inference program updates in place, as a static KV
        cache: the graph writes them in place; each loaded package owns a copy.
      aliased: outputs that are views of a graph argument, as eager returns them (see
        ``output_aliases``); the loaded package returns views of the caller's tensors.
      module_training: the module's ``training`` flag at capture (None for functions);
        a package bound to a live module checks it at each call.
      custom_functions: ``torch.autograd.Function`` classes the outputs' gradient goes
        through (their backward is not in the graph: training refuses them).
      mutated_inputs: flat inputs an inference program updates in place (the compiled
        code writes into the caller's tensor, as eager; see ``_input_writes``).
      global_state: the global state the program was captured under, as far as the
        compiled code depends on it (``manifest.GlobalState``; guards.py checks it).
    """

    name: str
    kind: str
    source: str
    signature: list[dict]
    in_spec: dict
    out_spec: dict
    inputs: list[dict]
    dims: dict[str, dict]
    weights: dict[str, torch.Tensor]
    weight_kinds: dict[str, str]
    weight_targets: dict[str, str]
    frozen: list[dict]
    example_inputs: list[torch.Tensor]
    exported: Any = field(repr=False)
    graph_module: torch.fx.GraphModule = field(repr=False)
    mutations: list[dict] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    aliased: list[dict] = field(default_factory=list)
    module_training: bool | None = None
    custom_functions: list[type] = field(default_factory=list)  # the classes (described by function_names)
    global_state: dict = field(default_factory=dict)
    mutated_inputs: list[int] = field(default_factory=list)
    program: Any = field(default=None, repr=False)  # the traced module (flat tensors in): training's joint

    def graph_args(self) -> list[torch.Tensor]:
        """The full argument list of ``graph_module``: weights, then inputs."""
        return list(self.weights.values()) + list(self.example_inputs)

    @property
    def device(self) -> str:
        """The device the program runs on: the first non-CPU one among its tensors."""
        return device_of(self.graph_args())

    def export_weights_as_inputs(self):
        """torch.export of ``graph_module`` with every weight a *user input*, the Dims of
        the guards kept: what compiling backends take, so no weight is baked in."""
        named = {n: Dim(n, min=r["min"], max=r["max"] if r["max"] is not None else int(2**62))
                 for n, r in self.dims.items()}
        dyn: list = [None] * len(self.weights)
        for guard in self.inputs:
            spec = {d: named[s] if isinstance(s, str) else Dim.AUTO
                    for d, s in enumerate(guard["shape"]) if not isinstance(s, int)}
            dyn.append(spec or None)
        gm, args = self._unaliased_weights()
        with compat.quiet_export_logs():
            return torch.export.export(gm, tuple(args), dynamic_shapes=dyn if any(dyn) else None, strict=False)

    def _unaliased_weights(self) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
        """``graph_module`` and its arguments with each weight storage passed once.

        One tensor can be two weights (a static KV cache registered as a buffer and also
        read through the cache object, which torch.export lifts as a constant). Passed
        twice as inputs that the graph writes, torch.export refuses the aliasing; so the
        later placeholder's uses go to the first one, and a stand-in tensor is passed for
        it while exporting (at run time the caller passes the same tensor twice, unused
        the second time)."""
        args = self.graph_args()
        first, twins = {}, {}
        for i, t in enumerate(args[:len(self.weights)]):
            if not t.numel():
                continue
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            if key in first:
                twins[i] = first[key]
            else:
                first[key] = i
        if not twins:
            return self.graph_module, args
        gm = torch.fx.GraphModule(self.graph_module, copy.deepcopy(self.graph_module.graph))
        nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for i, j in twins.items():
            nodes[i].replace_all_uses_with(nodes[j])
            args[i] = args[i].clone()
        gm.recompile()
        return gm, args


class _Program(torch.nn.Module):
    """Wraps the user's program so torch.export sees ``forward(*flat_tensors)``.

    Non-tensor arguments are closed over (frozen), so the export signature holds only
    tensors and every backend gets the same flat calling convention.
    """

    def __init__(self, target: Callable, signature: list[dict], in_spec: dict, record: Callable, how: list[str]):
        super().__init__()
        if isinstance(target, torch.nn.Module):
            self.m = target
        elif isinstance(getattr(target, "__self__", None), torch.nn.Module):
            # A bound method of a module (model.generate): register the module so its
            # parameters are parameters, not anonymous constants.
            self.m = target.__self__
        # Not registered as a submodule (that would list every parameter twice).
        object.__setattr__(self, "_call", target)
        self._signature = signature
        self._in_spec = in_spec
        self._how = how
        # A function, not an attribute: torch.export may trace a copy of this module,
        # and a function is shared by copies, so the output spec reaches the caller.
        self._record = record
        # (device type, dtype name): run the program inside torch.autocast, so its casts
        # are in the graph (an ambient autocast around torch.export is not captured)
        self._autocast: tuple[str, str] | None = None

    def forward(self, *flat):
        args, kwargs = _call_as_passed(self._signature, tree.unflatten(self._in_spec, list(flat)), self._how)
        grad_before = torch.is_grad_enabled()
        with compat.requires_grad_reads(lambda f: not compat.is_torch_internal_frame(f)) as reads:
            if self._autocast is not None:
                device, dtype = self._autocast
                with torch.autocast(device, dtype=getattr(torch, dtype)):
                    result = self._call(*args, **kwargs)
            else:
                result = self._call(*args, **kwargs)
        grad_after = torch.is_grad_enabled()
        spec, outs = tree.flatten(result, "output")
        self._record({"out_spec": spec, "grad_mode_before": grad_before, "grad_mode_after": grad_after,
                      "requires_grad_reads": _requires_grad_pins(reads, flat),
                      "custom_functions": _custom_functions(outs)})
        return tuple(outs)


def _requires_grad_pins(reads: list, flat) -> dict[int, str]:
    """Flat input index -> where the program reads its ``.requires_grad``. The branch
    export took holds only for calls with the same requires_grad (which a call under
    no_grad may change), so the guard pins it. A read of an intermediate (whose
    requires_grad follows the inputs') pins every input."""
    pins: dict[int, str] = {}
    for t, where in reads:
        hit = [i for i, x in enumerate(flat) if x is t]
        for i in hit or range(len(flat)):
            pins.setdefault(i, f"the program reads {'its' if hit else 'an intermediate tensor’s'} requires_grad "
                               f"at {where}")
    return pins


def function_names(functions: list[type]) -> str:
    """``module.Class (file:line of its backward)`` of custom autograd Functions, for messages."""
    return ", ".join(f"{c.__module__}.{c.__qualname__} ({_where(c.backward)})" for c in functions)


def _custom_functions(outs) -> list[type]:
    """The ``torch.autograd.Function`` classes the outputs' autograd graph goes through.

    torch.export keeps a Function's forward and drops its backward (the graph is
    functional aten ops); a training package would differentiate the forward's ops
    instead, which is wrong for a straight-through estimator or any custom gradient.
    Found by walking the autograd graph torch.export's tracing builds on fake tensors.
    """
    found: list[type] = []
    seen: set = set()
    stack = [o.grad_fn for o in outs if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        cls = getattr(node, "_forward_cls", None)
        if cls is not None and cls not in found:
            found.append(cls)
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return found


def _signature(target: Callable) -> inspect.Signature:
    fn = target.forward if isinstance(target, torch.nn.Module) else target
    try:
        return inspect.signature(fn)  # follows functools.wraps' __wrapped__
    except (TypeError, ValueError) as e:
        raise CaptureError(f"cannot read the signature of {target!r}: {e}") from None


def _signature_json(sig: inspect.Signature) -> list[dict]:
    out = []
    for p in sig.parameters.values():
        entry: dict = {"name": p.name, "kind": _KINDS[p.kind]}
        if p.default is not p.empty:
            if isinstance(p.default, torch.Tensor):
                raise CaptureError(
                    f"parameter {p.name!r} has a tensor default value",
                    hint="pass the tensor explicitly, or register it as a buffer of the module",
                )
            entry["default"] = tree.encode_const(p.default, f"default of {p.name}")
        out.append(entry)
    return out


def _where(obj) -> str:
    fn = obj.forward if isinstance(obj, torch.nn.Module) else obj
    fn = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return "<unknown>"
    return f"{code.co_filename}:{code.co_firstlineno}"


def _user_functions(target: Callable) -> list[types.FunctionType]:
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


def _frozen_values(target: Callable, ran: dict | None = None) -> list[dict]:
    """Globals and closure cells the program's functions read, with their values now.

    The functions are the target's own (its methods, those of its submodules' classes)
    and every user function that ran during capture (``ran``: code -> (globals,
    closure values), from EffectRecorder), so helpers called at any depth count."""
    sources: dict = {}
    for f in _user_functions(target):
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


def _input_writes(ep, recorder: EffectRecorder, paths: list[str]) -> tuple[set[str], list[int]]:
    """What an inference program writes in place, as eager writes it: (the export names
    of the weights it updates, the flat indices of the inputs it updates).

    torch.export's training IR keeps in-place ops and lists no mutation for them; every
    backend runs them in place on the tensors it is given (eager's aten ops; inductor
    and AOTInductor copy the new values back into their inputs, torch.compile's
    functionalization epilogue). So a package writes where eager writes if it is given
    the caller's tensors themselves: a written input is guarded to the compiled layout
    (no copy may stand in) and to share memory with no other input (guards.py). A
    written buffer or parameter is *state*: the loaded package's own copy, or the bound
    module's tensor (``load(path, module=m)``), as eager updates the module's."""
    keys = []
    user = iter(enumerate(paths))
    for spec in ep.graph_signature.input_specs:
        keys.append(next(user)[0] if spec.kind.name == "USER_INPUT" else spec.target)
    weights = {s.target for s in ep.graph_signature.input_specs if s.kind.name in ("BUFFER", "PARAMETER")}
    written, written_inputs = set(), []
    for j in sorted(_written_placeholders(ep.graph_module)):
        key = keys[j]
        if key in weights:
            written.add(key)
        elif isinstance(key, int):
            written_inputs.append(key)
    return written, sorted(written_inputs)


def _written_placeholders(gm: torch.fx.GraphModule) -> set[int]:
    """Indices of ``gm``'s placeholders that its ops write in place, directly, through a
    view, or inside a higher-order op's subgraph (``torch.no_grad()`` and
    ``torch.autocast`` regions are such subgraphs in torch.export's graphs)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    by_storage: dict = {}
    for j, p in enumerate(placeholders):
        if storage_of(p) is not None:
            by_storage.setdefault(storage_of(p), j)
    written: set[int] = set()

    def mark(value) -> None:
        j = by_storage.get(storage_of(value)) if isinstance(value, torch.fx.Node) else None
        if j is not None:
            written.add(j)

    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        schema = getattr(node.target, "_schema", None)
        if schema is not None:
            if schema.is_mutable:
                for arg, value in zip(schema.arguments, node.args):
                    if arg.alias_info is not None and arg.alias_info.is_write:
                        mark(value)
            continue
        subs = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"
                and isinstance(getattr(gm, a.target, None), torch.fx.GraphModule)]
        if not subs:
            continue
        after = node.args[node.args.index(subs[-1]) + 1:]
        operands = [v for a in after for v in (a if isinstance(a, (tuple, list)) else (a,))]
        for sub in subs:  # a subgraph's placeholders are the operands, in order
            for k in _written_placeholders(getattr(gm, sub.target)):
                if k < len(operands):
                    mark(operands[k])
    return written


def _mutation_site(ep, signature, spec, recorder: EffectRecorder) -> str:
    """`` at file:line: `code``` of the in-place call behind an update, or "".

    torch.export's stack traces stop at the exported module's forward (aotpack's
    wrapper), so the site comes from the in-place tensor methods the recorder saw,
    matched by op name (``aten.trunc`` <- ``x.trunc_()``)."""
    index = list(signature.output_specs).index(spec)
    out = next(n for n in ep.graph.nodes if n.op == "output")
    node = out.args[0][index]
    op = getattr(getattr(node, "target", None), "__name__", "").split(".")[0]
    sites = [w for name, w in recorder.inplace if name[:-1] == op] or [w for _, w in recorder.inplace]
    if len(sites) != 1:
        return f" (in-place calls at {', '.join(dict.fromkeys(sites))})" if sites else ""
    file, line = sites[0].rsplit(":", 1)
    return f" at {sites[0]}: `{linecache.getline(file, int(line)).strip()}`"


def _module_training(target) -> bool | None:
    module = target if isinstance(target, torch.nn.Module) else getattr(target, "__self__", None)
    return bool(module.training) if isinstance(module, torch.nn.Module) else None


def _layout(t: torch.Tensor, dyn, path: str):
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


def storage_of(value):
    """The storage ``value`` (a tensor, or an fx node by its example value) lives in, as a
    hashable key that compares equal for every view of it; None for anything else."""
    from torch.multiprocessing.reductions import StorageWeakRef

    if isinstance(value, torch.fx.Node):
        value = value.meta.get("val")
    return StorageWeakRef(value.untyped_storage()) if isinstance(value, torch.Tensor) else None


def op_name(node: torch.fx.Node) -> str | None:
    """The aten op a graph node calls, without overload (``"lstm"`` for aten.lstm.input)."""
    return getattr(getattr(node.target, "overloadpacket", None), "__name__", None)


def output_aliases(gm: torch.fx.GraphModule, skip: int = 0) -> list[dict]:
    """Outputs of ``gm`` (from the ``skip``-th on) that are views of one of its arguments.

    Eager returns such outputs as views (``x.view(-1)``, ``x[0]``, ``x`` itself): they
    share memory with the caller's tensor. Compiled code returns copies, so the package
    rebuilds the view instead: ``{"output": i, "primal": j, "same": bool, "size",
    "stride", "offset"}`` (offset relative to the argument's own offset; ``same``: the
    output *is* the argument). Raises CaptureError for a view with a dynamic size.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    storages: dict = {}
    for j, p in enumerate(placeholders):
        if storage_of(p) is not None:
            storages.setdefault(storage_of(p), j)  # (the first argument of a storage names it)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    aliased = []
    for i, node in enumerate(list(out.args[0])[skip:]):
        val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        if not isinstance(val, torch.Tensor):
            continue
        j = storages.get(storage_of(val))
        if j is None:
            continue
        if _through_inplace(node) is placeholders[j]:  # x itself, or x.add_(1): eager returns x
            aliased.append({"output": i, "primal": j, "same": True})
            continue
        base = placeholders[j].meta["val"]
        numbers = [_static(s) for s in (*val.shape, *val.stride(), val.storage_offset(), base.storage_offset())]
        if any(n is None for n in numbers):
            raise CaptureError(f"output {i} is a view of an input with a dynamic size; the package cannot rebuild "
                               "that view", hint="return a copy (.clone()) or drop the Dim")
        aliased.append({"output": i, "primal": j, "same": False, "size": [_static(s) for s in val.shape],
                        "stride": [_static(s) for s in val.stride()],
                        "offset": _static(val.storage_offset()) - _static(base.storage_offset())})
    return aliased


def _through_inplace(node):
    """The tensor an in-place op (``add_``: returns its first argument) was applied to,
    through chains of them; ``node`` itself otherwise."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        schema = getattr(node.target, "_schema", None)
        returns = schema.returns if schema is not None else ()
        if not (len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write
                and node.args and schema.arguments[0].alias_info is not None):
            break
        node = node.args[0]
    return node


# Ops that return a view of their input in some layouts and a copy in others (and, after
# decomposition, the contiguous clone they become where they copy).
_MAYBE_VIEWS = frozenset({"reshape", "reshape_as", "flatten", "ravel", "contiguous"})


def layout_dependent_inputs(gm: torch.fx.GraphModule) -> set[str]:
    """Names of the placeholders of ``gm`` whose memory layout decides whether an
    output shares their memory: an output reached from one through views and at least
    one reshape/flatten/contiguous that copied in the example (``x.reshape(-1)`` of a
    sliced x is a copy, of a contiguous x a view of it). Where they all made views, the
    output is a view of the input (``output_aliases``) and is pinned for that reason.

    The graph holds what the compile-time example did. A call in another layout copied
    into that layout would get the other answer to "is the output a view of my tensor",
    so the guard refuses such calls for these inputs instead (``Input.layout_pinned``).
    """
    def maybe_view(node) -> bool:
        name = op_name(node)
        return name in _MAYBE_VIEWS or (name == "clone" and node.kwargs.get("memory_format") is torch.contiguous_format)

    out = next(n for n in gm.graph.nodes if n.op == "output")
    found = set()
    for node in out.args[0]:
        through = False
        while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.args \
                and isinstance(node.args[0], torch.fx.Node):
            mine, base = storage_of(node), storage_of(node.args[0])
            copied = mine is None or base is None or mine != base
            if maybe_view(node) and copied:
                through = True  # a copy here, a view in another layout
            elif copied:
                break  # computes a new tensor: its layout no longer matters
            node = node.args[0]
        if through and isinstance(node, torch.fx.Node) and node.op == "placeholder":
            found.add(node.name)
    return found


def _strides_read(ep, recorder: EffectRecorder) -> dict[str | None, str]:
    """Where the program read strides (``x.is_contiguous()``, ``x.stride()``), by the
    graph input whose memory it read them of: placeholder name -> file:line, None for a
    tensor that is no graph input (an intermediate). Taken from the graph export traced,
    whose inputs are the tensors the program saw."""
    if not recorder.layout_reads:
        return {}
    by_storage: dict = {}
    for n in ep.graph.nodes:
        if n.op == "placeholder" and storage_of(n) is not None:
            by_storage.setdefault(storage_of(n), n.name)
    found: dict[str | None, str] = {}
    for t, where in recorder.layout_reads:
        found.setdefault(by_storage.get(storage_of(t)), where)
    return found


def _layout_pins(gm: torch.fx.GraphModule, user_nodes: list, strides_read: dict) -> list[str | None]:
    """Per user input: why its memory layout must match at a call (a copy into the
    compiled layout would change the result), or None.

    - an output is a reshape/flatten/contiguous of it that copied (layout_dependent_inputs);
    - the program read its strides: export took the branch the example's layout chose.
      A read of an intermediate pins every input (its layout follows theirs); reads of
      weights pin none (their layout is the stored one).
    """
    names = [n.name for n in user_nodes]
    why = dict.fromkeys(layout_dependent_inputs(gm), "whether an output shares its memory depends on its layout")
    for name, where in strides_read.items():
        for pinned in names if name is None else [name] if name in names else []:
            why.setdefault(pinned, f"the program reads strides at {where}")
    return [why.get(n) for n in names]


def _describe_frozen(value) -> dict | None:
    if isinstance(value, torch.Tensor):
        dtype = tree.dtype_name(value.dtype)
        return {"type": "tensor", "value": f"{dtype}{list(value.shape)}"}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return {"type": type(value).__name__, "value": repr(value)}
    if isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return {"type": "tuple", "value": repr(value)}
    return None  # modules, functions, classes: code, not data


def _capture_error(e: BaseException, target) -> CaptureError:
    """One CaptureError naming the user's file:line and the reason, from torch's error."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not compat.is_torch_internal_frame(f.filename)]
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    reason = reason.split(" (unhinted:")[0]
    if frames:
        fr = frames[-1]
        line = (fr.line or linecache.getline(fr.filename, fr.lineno)).strip()
        where = f"{fr.filename}:{fr.lineno}: `{line}`"
    else:
        where = _where(target)
    hint = "move the Python control flow out of the compiled program, or express it with torch.cond / torch.where"
    if "data-dependent" in reason or "data dependent" in reason:
        reason = f"Python code depends on a value read from tensor data ({reason})"
    elif "Constraints violated" in reason or "specializ" in reason:
        hint = "widen or drop the Dim for that dimension, or pass dynamic=None"
    elif "leaf Variable that requires grad" in reason:
        reason += " (eager PyTorch refuses it too)"
        hint = "work on a copy (x = x.clone()) or pass an input that does not require grad"
    return CaptureError(f"cannot capture {getattr(target, '__qualname__', type(target).__qualname__)} "
                        f"as one graph at {where}: {reason}", hint=hint)


def _bind(sig: inspect.Signature, args: tuple, kwargs: dict) -> tuple[list, list[str]]:
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


def _call_as_passed(signature: list[dict], values: list, how: list[str]) -> tuple[list, dict]:
    """(args, kwargs) as the example call passed them: defaults left out."""
    args: list = []
    kwargs: dict = {}
    for p, v, h in zip(signature, values, how):
        if h == "default":
            continue
        if p["kind"] == "var_positional":
            args.extend(v)
        elif p["kind"] == "var_keyword":
            kwargs.update(v)
        elif h == "pos":
            args.append(v)
        else:
            kwargs[p["name"]] = v
    return args, kwargs


def _flat_dynamic(dynamic, sig: inspect.Signature, values: list, n_flat: int) -> list:
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

    def walk(value, spec, path):
        if isinstance(value, torch.Tensor):
            i = counter[0]
            counter[0] += 1
            if spec is None:
                return
            if isinstance(spec, (list, tuple)):
                spec = {d: s for d, s in enumerate(spec) if s is not None}
            if not isinstance(spec, dict):
                raise CaptureError(f"dynamic[{path}] must be a dict {{dim: Dim}} for a tensor, got {spec!r}")
            for d in spec:
                if not isinstance(d, int) or not -value.dim() <= d < value.dim():
                    raise CaptureError(f"dynamic[{path}] names dimension {d!r}, but the tensor has rank {value.dim()}")
            flat[i] = {d % value.dim(): s for d, s in spec.items()}
            return
        if isinstance(value, (list, tuple)):
            for j, v in enumerate(value):
                walk(v, None if spec is None else spec[j], f"{path}[{j}]")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, None if spec is None else spec.get(k), f"{path}[{k!r}]")

    unknown = set(dynamic) - set(names)
    if unknown:
        raise CaptureError(f"dynamic names {sorted(unknown)}, which are not parameters; the parameters are {names}")
    for name, value in zip(names, values):
        walk(value, dynamic.get(name), repr(name))
    return flat


def _tensors_of(values) -> list[torch.Tensor]:
    return tree.flatten(list(values))[1]


def _finite(bound) -> int | None:
    """A Dim's bound as an int; None for no bound (``Dim("b")``'s max is sympy's int_oo)."""
    return bound if isinstance(bound, int) and not isinstance(bound, bool) else None


def _user_dim(spec) -> str | None:
    name = getattr(spec, "__name__", None)
    return name if name and name not in ("AUTO", "DYNAMIC", "STATIC") else None


def _static(size) -> int | None:
    """The int value of a size, also of a SymInt that export specialized to a number."""
    if not isinstance(size, torch.SymInt):
        return int(size)
    expr = compat.sym_expr(size)
    return int(expr) if getattr(expr, "is_number", False) else None


def _guard_dims(ep, user_nodes, flat_dyn, paths: list[str]):
    """Input guards, named Dims, and the user Dims that capture specialized.

    Returns (inputs, dims, specialized). A size is an int (static), a Dim name, or
    ``{"expr": "2*batch"}`` for a size derived from other Dims.
    """
    sym_names: dict[str, str] = {}
    user_range: dict[str, tuple] = {}
    specialized: list[str] = []
    # Names the user gave (Dim("batch")) win; other symbols get dim0, dim1, ...
    for node, dyn, path in zip(user_nodes, flat_dyn, paths):
        for d, spec in (dyn or {}).items():
            size = node.meta["val"].shape[d]
            name = _user_dim(spec)
            if name is None:
                continue
            if _static(size) is None:
                if str(compat.sym_expr(size)).isidentifier():
                    sym_names.setdefault(str(compat.sym_expr(size)), name)
                    user_range[name] = (_finite(getattr(spec, "min", 0)), _finite(getattr(spec, "max", None)))
            else:
                specialized.append(f"{name} ({path}.shape[{d}]) = {_static(size)}")
    ranges = {str(k): v for k, v in ep.range_constraints.items()}
    dims: dict[str, dict] = {}
    inputs = []
    for node in user_nodes:
        val = node.meta["val"]
        shape = []
        for size in val.shape:
            if _static(size) is not None:
                shape.append(_static(size))
                continue
            expr = compat.sym_expr(size)
            if str(expr) in ranges and str(expr).isidentifier():
                name = sym_names.setdefault(str(expr), f"dim{len(sym_names)}")
                r = ranges[str(expr)]
                lo, hi = int(r.lower), (None if str(r.upper) in ("int_oo", "oo") else int(r.upper))
                if name in user_range:  # never wider than the user asked
                    ulo, uhi = user_range[name]
                    lo = max(lo, ulo or 0)
                    hi = uhi if hi is None else (hi if uhi is None else min(hi, uhi))
                dims[name] = {"min": lo, "max": hi}
                shape.append(name)
            else:
                text = str(expr)
                for sym in sorted(expr.free_symbols, key=lambda x: -len(str(x))):
                    text = re.sub(rf"\b{re.escape(str(sym))}\b", sym_names.setdefault(str(sym), f"dim{len(sym_names)}"),
                                  text)
                shape.append({"expr": text})
        inputs.append({
            "dtype": tree.dtype_name(val.dtype),
            "shape": shape,
            "device": val.device.type,
        })
    return inputs, dims, specialized


def _export(program, flat, flat_dyn):
    with compat.quiet_export_logs():
        return torch.export.export(
            program, tuple(flat), dynamic_shapes={"flat": tuple(flat_dyn)} if any(flat_dyn) else None, strict=False)


def capture(target: Callable, args: tuple = (), kwargs: dict | None = None, *, dynamic=None,
            strict_dims: bool = False, allow_mutations: bool = False, autocast=None) -> Captured:
    """Capture ``target`` (function or nn.Module) called with example inputs as one graph.

    Args:
      target: a function or nn.Module.
      args, kwargs: example inputs; tensors, nested tuples/lists/dicts, Python constants.
      dynamic: None (all sizes static), True (every dimension may vary), or a dict
        ``{"x": {0: Dim("batch", min=1, max=4096)}}`` keyed by parameter name.
      strict_dims: raise CaptureError (instead of a SpecializationWarning) when the program
        forces a named Dim to one size.
      allow_mutations: accept in-place updates of buffers (BatchNorm's running stats)
        and of inputs that do not require grad (training packages replay them on the
        caller's tensors); without it they are refused.
      autocast: run the program inside ``torch.autocast`` with this dtype (a dtype or
        its name; False: off) on the program's device type; None: as the caller's
        autocast is now. The casts are compiled in and calls are guarded on it.
    Returns:
      Captured.
    Raises:
      CaptureError: the program cannot be one graph; names the user's file:line.
    """
    from .collectives import refuse_dtensor

    refuse_dtensor(target)  # before torch.export fails on it with a message about pytree constants
    kwargs = dict(kwargs or {})
    if not isinstance(args, tuple):
        args = (args,) if isinstance(args, torch.Tensor) else tuple(args)
    sig = _signature(target)
    signature = _signature_json(sig)
    values, how = _bind(sig, args, kwargs)
    names = list(sig.parameters)
    children, flat = [], []
    for name, v in zip(names, values):
        children.append(tree.flatten(v, name, flat)[0])
    in_spec = {"kind": "tuple", "children": children}
    flat_dyn = _flat_dynamic(dynamic, sig, values, len(flat))
    paths = [p for p, leaf in tree.named_leaves(in_spec, names) if leaf["kind"] == "tensor"]
    layouts = [_layout(t, dyn, path) for t, dyn, path in zip(flat, flat_dyn, paths)]

    program = _Program(target, signature, in_spec, None, how)
    device = device_of([*flat, *(target.parameters() if isinstance(target, torch.nn.Module) else ())])
    amp = _autocast_dtype(device, autocast)
    program._autocast = (device, amp) if amp else None
    with torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext():
        ep, record, recorder = _export_watched(program, target, flat, flat_dyn)
    strides_read = _strides_read(ep, recorder)  # before decompositions retrace the graph
    frozen = _frozen_values(target, recorder.functions)
    if allow_mutations:
        # torch.export's training IR keeps in-place ops (BatchNorm's running stats); the
        # functional form returns the new values instead, which AOT autograd needs.
        with compat.quiet_export_logs():
            ep = ep.run_decompositions({})
    written_buffers, written_inputs = (set(), []) if allow_mutations else _input_writes(ep, recorder, paths)
    if amp and not allow_mutations:
        ep = _inline_autocast(ep, written_buffers | set(map(str, written_inputs)), target)
    mutation_specs = _mutation_outputs(ep, recorder, allow_mutations)
    weights, weight_kinds, weight_targets, user_nodes = _graph_weights(ep, "m." if hasattr(program, "m") else "",
                                                                       frozen)

    inputs, dims, specialized = _guard_dims(ep, user_nodes, flat_dyn, paths)
    if specialized:
        what = ", ".join(specialized)
        if strict_dims:
            raise CaptureError(f"the program specializes dynamic dimensions: {what}",
                               hint="drop those Dims (the package then runs only that size), or change the program")
        warnings.warn(f"aotpack: the program specialized dynamic dimensions, which will accept only one size: {what}",
                      SpecializationWarning, stacklevel=3)
    for i, (guard, t, memory_layout) in enumerate(zip(inputs, flat, layouts)):
        guard["requires_grad"] = bool(t.requires_grad)
        guard["layout"] = memory_layout
        if i in record["requires_grad_reads"]:
            guard["requires_grad_pinned"] = record["requires_grad_reads"][i]
    mutations = _mutations(ep, mutation_specs, weight_targets, [n.name for n in user_nodes], flat, paths, recorder)

    gm = compat.plain_graph_module(ep.graph_module)
    for guard, why in zip(inputs, _layout_pins(gm, user_nodes, strides_read)):
        if why:
            guard["layout_pinned"] = why
    for f in frozen:
        f.pop("_value")
    for p in signature:
        if "default" in p:
            frozen.append({"kind": "default", "name": p["name"], "where": _where(target),
                           "type": p["default"]["type"], "value": tree.const_repr(p["default"])})
    return Captured(
        name=_program_name(target),
        kind="module" if isinstance(target, torch.nn.Module) else "function",
        source=_where(target),
        signature=signature,
        in_spec=in_spec,
        out_spec=record["out_spec"],
        inputs=inputs,
        dims=dims,
        weights=weights,
        weight_kinds=weight_kinds,
        weight_targets=weight_targets,
        frozen=frozen,
        example_inputs=list(flat),
        exported=ep,
        graph_module=gm,
        mutations=mutations,
        state=[n for n, t in weight_targets.items() if t in written_buffers],
        aliased=[] if mutation_specs else output_aliases(gm),
        module_training=_module_training(target),
        custom_functions=list(record["custom_functions"]),
        global_state=_global_state(amp, recorder, _grad_mode_left(record, recorder)),
        program=program,
        mutated_inputs=written_inputs,
    )


def _inline_autocast(ep, written_buffers: set, target):
    """The program with its autocast region inlined as plain casts: torch.export keeps
    ``torch.autocast`` as a higher-order op around a subgraph, which the analyses here
    (aliases, layout pins, collectives) and the backends would otherwise see as one node."""
    if written_buffers:
        raise CaptureError(f"{_program_name(target)} updates tensors in place ({', '.join(sorted(written_buffers))}) "
                           "and was asked to compile inside autocast: aotpack does not package both yet",
                           hint="compile it without autocast (autocast=False), or cast the model to the dtype")
    with compat.quiet_export_logs():
        return ep.run_decompositions({})


def _autocast_dtype(device: str, autocast) -> str | None:
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


def _grad_mode_left(record: dict, recorder: EffectRecorder) -> bool | None:
    """The grad mode the program leaves its caller in, to replay after each call; None
    where it leaves the caller's as it was. A ``torch.set_grad_enabled(x)`` called as a
    function (never exited by a ``with``) sets it whatever the caller's was, even where
    it equals the mode at capture (``set_grad_enabled(True)`` captured with grad on)."""
    if record["grad_mode_after"] != record["grad_mode_before"] or recorder.grad_mode_sets:
        return record["grad_mode_after"]
    return None


def _global_state(autocast: str | None, recorder: EffectRecorder, grad_mode_after: bool | None) -> dict:
    """The global state the compiled code depends on (manifest.GlobalState), now, and
    the grad mode the program leaves its caller in (replayed after each call)."""
    state = {"autocast": autocast, "default_dtype": tree.dtype_name(torch.get_default_dtype()),
             "matmul_precision": torch.get_float32_matmul_precision(),
             "deterministic": torch.are_deterministic_algorithms_enabled()}
    if recorder.grad_mode_reads:  # the program took a branch on it: the compiled code holds that branch
        state["grad_mode"] = torch.is_grad_enabled()
    if grad_mode_after is not None:
        state["grad_mode_after"] = grad_mode_after
    return state


@contextlib.contextmanager
def _restoring_grad_mode(grad_mode: bool):
    """The capturing process's grad mode as it was, whatever the traced program set."""
    try:
        yield
    finally:
        torch.set_grad_enabled(grad_mode)


def _export_watched(program: _Program, target, flat: list, flat_dyn: list):
    """torch.export of the program, watched: (ExportedProgram, what the program's call
    recorded, the EffectRecorder). Raises CaptureError for what cannot be one graph;
    warns of side effects run only once. A program that leaves grad mode changed has it
    recorded (replayed after each call of the package), and undone here."""
    records: list[dict] = []
    program._record = records.append
    recorder = EffectRecorder()
    grad_mode = torch.is_grad_enabled()
    try:
        try:
            with recorder, _restoring_grad_mode(grad_mode):
                ep = _export(program, flat, flat_dyn)
        except compat.capture_exception_kinds() as e:
            if "Constraints violated" not in str(e):
                raise
            # A named Dim was specialized by the program. Export again letting torch
            # decide each such dimension, then say which ones became constants.
            records.clear()
            with recorder:
                with _restoring_grad_mode(grad_mode):
                    ep = _export(program, flat, [{d: Dim.AUTO for d in dyn} if dyn else None for dyn in flat_dyn])
    except CaptureError:
        raise
    except compat.capture_exception_kinds() as e:
        raise _capture_error(e, target) from e  # torch's own error stays attached, for a bug report
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as e:
        raise _capture_error(e, target) from e
    record = records[-1]
    for effect in recorder.effects:
        warnings.warn(f"aotpack: {effect.where}: {effect.what} {effect.why}", SideEffectWarning, stacklevel=4)
    return ep, record, recorder


def _mutation_outputs(ep, recorder: EffectRecorder, allow_mutations: bool) -> list:
    """The graph's outputs that are in-place updates (allowed ones), refusing the rest
    with the site that makes them."""
    sig_out = ep.graph_signature
    allowed = []
    for spec in sig_out.output_specs:
        kind = spec.kind.name
        if kind == "USER_OUTPUT":
            continue
        if allow_mutations and kind in ("BUFFER_MUTATION", "USER_INPUT_MUTATION"):
            allowed.append(spec)
            continue
        where = _mutation_site(ep, sig_out, spec, recorder)
        if kind == "PARAMETER_MUTATION":
            raise CaptureError(f"the program changes parameter {spec.target.removeprefix('m.')} in place{where}; "
                               "packages do not support in-place updates of parameters inside the program "
                               "(a training package would lose the gradient eager gives the parameter)",
                               hint="update parameters outside the compiled program, as an optimizer does")
        what = {"BUFFER_MUTATION": "updates a buffer in place", "USER_INPUT_MUTATION": "changes an input in place"}
        raise CaptureError(f"the program {what.get(kind, f'has a {kind} output')} ({spec.target}){where}, which an "
                           "inference package does not support",
                           hint="compile with train=True (in-place updates are replayed on the caller's tensors), "
                                "or make the program functional")
    return allowed


def _graph_weights(ep, prefix: str, frozen: list[dict]):
    """The graph's weight inputs in graph order: (name -> tensor, name -> kind, name ->
    torch.export's name for it, the user input nodes). Constants read from globals or
    closures are named after the frozen value they are (``global:table``)."""
    weights: dict[str, torch.Tensor] = {}
    weight_kinds: dict[str, str] = {}
    weight_targets: dict[str, str] = {}
    user_nodes = []
    by_id = {id(f["_value"]): f for f in frozen if f["type"] == "tensor"}
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    for node, spec in zip(placeholders, ep.graph_signature.input_specs):
        kind = spec.kind.name
        if kind == "USER_INPUT":
            user_nodes.append(node)
            continue
        if user_nodes:  # pragma: no cover - torch.export orders weights first
            raise CaptureError("unexpected placeholder order from torch.export")
        target_name = spec.target
        if kind in ("PARAMETER", "BUFFER"):
            tensor = ep.state_dict.get(target_name, ep.constants.get(target_name))
            name = target_name.removeprefix(prefix)
            weight_kinds[name] = kind.lower()
        elif kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ"):
            tensor = ep.constants[target_name]
            if not isinstance(tensor, torch.Tensor):
                raise CaptureError(f"the program holds a {type(tensor).__name__} object, which a package cannot store")
            f = by_id.get(id(tensor))
            name = f"{f['kind']}:{f['name']}" if f else f"constant:{target_name.removeprefix(prefix)}"
            if f:
                f["weight"] = name
            weight_kinds[name] = "constant"
        else:  # pragma: no cover
            raise CaptureError(f"unsupported graph input kind {kind}")
        weights[name] = tensor
        weight_targets[name] = target_name
    return weights, weight_kinds, weight_targets, user_nodes


def _mutations(ep, mutation_specs: list, weight_targets: dict, user_names: list[str], flat: list, paths: list,
               recorder: EffectRecorder) -> list[dict]:
    """The allowed in-place updates as the package records them; refuses an update of
    an input that requires grad (eager refuses it for a leaf; a package for any)."""
    mutations = []
    by_target = {t: n for n, t in weight_targets.items()}
    for spec in mutation_specs:
        if spec.kind.name == "BUFFER_MUTATION":
            mutations.append({"kind": "buffer", "weight": by_target[spec.target]})
            continue
        index = user_names.index(spec.target)
        if flat[index].requires_grad:
            site = _mutation_site(ep, ep.graph_signature, spec, recorder)
            if flat[index].is_leaf:
                why = ("eager PyTorch refuses that too (a leaf Variable that requires grad is being used in an "
                       "in-place operation)")
            else:
                why = ("eager accepts it for a tensor that is not a leaf, but a training package does not "
                       "support in-place updates of inputs that require grad")
            raise CaptureError(f"the program changes input {paths[index]} in place{site}, and it requires grad: "
                               + why, hint="work on a copy (x = x.clone()) or pass an input that does not "
                                           "require grad")
        mutations.append({"kind": "input", "index": index})
    return mutations


def _program_name(target) -> str:
    if isinstance(target, torch.nn.Module):
        return type(target).__qualname__
    if isinstance(target, functools.partial):
        return f"partial({getattr(target.func, '__qualname__', '?')})"
    return getattr(target, "__qualname__", None) or type(target).__qualname__

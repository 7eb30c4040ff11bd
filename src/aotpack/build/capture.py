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
import linecache
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _torch_compat as compat
from .. import tree
from ..errors import CaptureError, SideEffectWarning, SpecializationWarning, warn_caller
from ..load.layout import layout_of
from ..package import manifest as mf
from ..package.sizes import size_evaluator
from ..treespec import TreeSpec, TupleSpec
from . import desugar, eager_check, subclass_weights
from .effects import EffectRecorder
from .frozen import frozen_values, modules_by_name
from .graphs import (
    examples_from_two,
    layout_dependent_uses,
    library_ops,
    output_aliases,
    repair_users,
    static_int,
    updates_in_place,
    written_placeholders,
)
from .guard_specs import (
    autocast_dtype,
    class_attributes,
    contiguous_then_updated,
    dim_range,
    dropped_size_guards,
    function_codes,
    global_state_of,
    global_values,
    guard_dims,
    hooks_compiled,
    input_layout,
    iterated_weights,
    layout_pins,
    module_attributes,
    module_children,
    module_code,
    module_paths,
    module_training_of,
    module_types,
    property_pins,
    requires_grad_pins,
    updated_below_transforms,
    user_dim,
    where_strides_read,
)
from .homes import bind_by_name, memory_of
from .signature import (
    bind,
    call_as_passed,
    defined_at,
    flat_dynamic,
    int_arguments,
    parameters,
    program_name,
    signature_of,
)

__all__ = ["Captured", "capture", "Dim"]

Dim = torch.export.Dim


def device_of(values) -> str:
    """The device type a program on these values runs on: the first non-CPU one among
    the tensors, else ``"cpu"``."""
    return next((t.device.type for t in values if isinstance(t, torch.Tensor) and t.device.type != "cpu"), "cpu")


@dataclass
class Captured:
    """A captured program: ``graph(*weights, *inputs) -> outputs`` plus what a call needs.

    The program model of the build side, in the manifest's own records (package/
    manifest.py): what capture derives is what the package stores, with no JSON form
    between (``Package.add_variant`` writes these records as they are).

    Attributes:
      name: the program's qualified name (``MLP`` or ``my_fn``).
      kind: ``"module"`` or ``"function"``.
      source: ``file:line`` where the program is defined.
      signature: the parameters (``Param``: name, kind, frozen default).
      in_spec: tree spec of the bound arguments, one child per parameter.
      out_spec: tree spec of the result.
      inputs: one guard per flat input tensor (``Input``: dtype, shape, device, layout,
        requires_grad, and why a layout or requires_grad is pinned).
      dims: symbolic dimensions by name (``Dim``: ``{"batch": Dim(min=1, max=4096)}``).
      weights: graph weights in graph order, name -> tensor (params, buffers, constants).
      weight_kinds: name -> ``"parameter" | "buffer" | "constant"``.
      weight_targets: name -> the name torch.export gives it in ``exported`` (its state
        dict or constants key), to rebuild the program from its serialized form.
      frozen: Python values read at capture and baked in (``Frozen``: globals, closures,
        defaults).
      example_inputs: the flat input tensors the program was captured with.
      exported: torch.export's ExportedProgram (the portable program).
      graph_module: the flat fx graph; all placeholders are positional inputs.
      mutations: what the program changes in place (``allow_mutations=True`` only;
        ``Mutation``: a buffer by weight name, or flat input ``index``); the graph
        returns their new values first, before the program's own outputs.
      state: weights (buffers) an inference program updates in place, as a static KV
        cache: the graph writes them in place; each loaded package owns a copy.
      aliased: outputs that are views of a graph argument, as eager returns them
        (``Alias``, see ``graphs.output_aliases``); the loaded package returns views of
        the caller's tensors.
      module_training: the module's ``training`` flag at capture (None for functions);
        a package bound to a live module checks it at each call.
      custom_functions: ``torch.autograd.Function`` classes the outputs' gradient goes
        through (training traces the program itself to keep their backward).
      applied_functions: every ``torch.autograd.Function`` class the program applies
        (grad mode or not): the graph holds their forwards, not their derivative rules,
        so the package refuses a call under a torch.func transform or with forward-mode
        tangents (``Variant.custom_functions``).
      traced_below_transforms: ``exported`` was traced from make_fx's graph of the
        program (desugar.py: a ``torch.func`` transform or ``torch.autograd.grad`` inside
        it, or tensor subclass inputs); training traces the program itself, as for
        ``custom_functions``.
      mutated_inputs: flat inputs an inference program updates in place (the compiled
        code writes into the caller's tensor, as eager; see ``_input_writes``).
      inputs_updated_without_grad: flat inputs a training program updates in place with
        grad mode off (``with torch.no_grad(): x.mul_(2)``): eager hides those updates
        from autograd (build/autograd.py does too).
      global_state: the global state the program was captured under, as far as the
        compiled code depends on it (``GlobalState``; load/guards.py checks it).
      in_order_program: where ``exported`` was retraced functionally (training, autocast)
        and the program updates an input: the program before, serialized, with its
        in-place updates in order (``_in_order_program``); else None.
    """

    name: str
    kind: str
    source: str
    signature: list[mf.Param]
    in_spec: TreeSpec
    out_spec: TreeSpec
    inputs: list[mf.Input]
    dims: dict[str, mf.Dim]
    weights: dict[str, torch.Tensor]
    weight_kinds: dict[str, str]
    weight_targets: dict[str, str]
    frozen: list[mf.Frozen]
    example_inputs: list[torch.Tensor]
    exported: Any = field(repr=False)
    graph_module: torch.fx.GraphModule = field(repr=False)
    mutations: list[mf.Mutation] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    aliased: list[mf.Alias] = field(default_factory=list)
    module_training: bool | None = None
    custom_functions: list[type] = field(default_factory=list)  # the classes (described by function_names)
    applied_functions: list[type] = field(default_factory=list)
    traced_below_transforms: bool = False
    # a value that requires grad, no input or parameter, updated in place with grad mode
    # off (_detach_grad_disabled_regions): training traces the program itself
    straight_through: bool = False
    # ``namespace::name`` of the ops the graph calls that a library registers (graphs.library_ops)
    library_ops: list[str] = field(default_factory=list)
    inputs_updated_without_grad: set[int] = field(default_factory=set)
    global_state: mf.GlobalState = field(default_factory=mf.GlobalState)
    mutated_inputs: list[int] = field(default_factory=list)
    # weights whose requires_grad the program reads: name -> the value export's branch holds
    requires_grad_weights: dict[str, bool] = field(default_factory=dict)
    # weights that required grad at capture and that no output's autograd graph reaches
    # (an inference variant: _detached_kept)
    detached_weights: list[str] = field(default_factory=list)
    # flat outputs eager makes as inference tensors (the program runs under torch.inference_mode())
    inference_outputs: list[int] = field(default_factory=list)
    # the int outputs of dynamic sizes, in Dim names (``_output_sizes``; out_spec's size leaves)
    output_sizes: list = field(default_factory=list)
    # other plain attributes of the module holding a weight's tensor (homes.tensor_aliases)
    tensor_aliases: dict[str, str] = field(default_factory=dict)
    # a module's Python attributes the program names -> their values (guard_specs.module_attributes)
    module_attributes: dict[str, Any] = field(default_factory=dict)
    # the class of each module whose methods ran (guard_specs.module_types)
    module_types: dict[str, str] = field(default_factory=dict)
    # those classes' code, where not torch's (guard_specs.module_code)
    module_code: dict[str, str] = field(default_factory=dict)
    module_hooks: dict[str, list[str]] = field(default_factory=dict)  # (guard_specs.hooks_compiled)
    # the children of the container modules it ran (guard_specs.module_children)
    module_children: dict[str, list[str]] = field(default_factory=dict)
    # the weights of the modules whose code iterates them (guard_specs.iterated_weights)
    iterated_weights: dict[str, list[str]] = field(default_factory=dict)
    # the values its code reads through ``self`` from a module's class (guard_specs.class_attributes)
    class_attributes: dict[str, Any] = field(default_factory=dict)
    # the Python functions among module_attributes, their code (guard_specs.function_codes)
    function_code: dict[str, str] = field(default_factory=dict)
    # weights of a tensor subclass, packaged as their inner tensors -> the subclass and its
    # flatten context (build/subclass_weights.py)
    subclass_weights: dict[str, str] = field(default_factory=dict)
    in_order_program: bytes | None = field(default=None, repr=False)
    # the Dim name of each size symbol of ``graph_module`` (``{"s0": "batch"}``)
    dim_names: dict[str, str] = field(default_factory=dict)
    program: Any = field(default=None, repr=False)  # the traced module (flat tensors in): training's joint
    # the modules the program reaches by name, from its own functions and every helper that
    # ran (frozen.modules_by_name): module -> (name, how)
    modules_named: dict = field(default_factory=dict, repr=False)
    # with ``capture(..., at_one_apart=True)``: the named Dims the trace compiled in at the
    # example's size 1 (an int's 0 or 1) where their range goes on (transformers' Llama
    # from a batch of one), each with that size, and the example call (args, kwargs) with
    # each at 2, for a variant of the other sizes
    compiled_at_one: dict[str, int] = field(default_factory=dict)
    examples_from_two: tuple | None = field(default=None, repr=False)

    def detach_all(self) -> None:
        """Mark every input and weight that requires grad as one the program detaches
        (``Input.detached``, ``detached_weights``): a training compile found that no
        output of the program's own run requires grad (NothingToDifferentiate), so eager
        builds no autograd graph of them, whatever the trace (below torch.export too).
        Not where the program updates a tensor in place (eager's update would carry a
        history the package's has not)."""
        if self.mutated_inputs or self.state or self.mutations:
            return
        self.inputs = [g.replace(detached=True) if g.requires_grad else g for g in self.inputs]
        # (every name of a tied weight: the bound module's check reads each)
        names = self.program._weights(every_name=True) if self.program is not None else self.weights
        self.detached_weights = sorted(n for n, w in names.items() if w.requires_grad)

    def rename_weights(self, names: dict[str, str]) -> None:
        """Give weights new names (old -> new), in every record that names one; the graph
        order and torch.export's names for them (``weight_targets``' values) stay."""
        if not names:
            return

        def renamed(d: dict) -> dict:
            return {names.get(k, k): v for k, v in d.items()}

        self.weights, self.weight_kinds = renamed(self.weights), renamed(self.weight_kinds)
        self.weight_targets, self.requires_grad_weights = renamed(self.weight_targets), renamed(self.requires_grad_weights)
        self.subclass_weights = renamed(self.subclass_weights)
        self.state = [names.get(n, n) for n in self.state]
        self.detached_weights = [names.get(n, n) for n in self.detached_weights]
        self.mutations = [m.replace(weight=names[m.weight]) if m.weight in names else m for m in self.mutations]
        self.frozen = [f.replace(weight=names[f.weight]) if f.weight in names else f for f in self.frozen]

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
        # (a Dim narrowed to one size is that size: torch.export takes no Dim of one value,
        # and raised a raw AssertionError until 2026-12-07)
        named = {n: Dim(n, min=r.min, max=r.max if r.max is not None else int(2**62))
                 for n, r in self.dims.items() if r.min != r.max}
        dyn: list = [None] * len(self.weights)
        for guard in self.inputs:
            spec = {d: named[s] if isinstance(s, str) else Dim.AUTO for d, s in enumerate(guard.shape)
                    if not isinstance(s, int) and (not isinstance(s, str) or s in named)}
            dyn.append(spec or None)
        gm, args = self._unaliased_weights()
        with compat.quiet_export_logs():
            return torch.export.export(gm, tuple(self._examples_of_two(args)), strict=False,
                                       dynamic_shapes=dyn if any(dyn) else None)

    def _examples_of_two(self, args: list) -> list:
        """``args`` with the inputs of each Dim whose example is 0 or 1 (its graph traced
        size-obliviously: ``_export``) at the Dim's first size from 2, for compiling
        backends (``graphs.examples_from_two``)."""
        n = len(self.weights)
        sizes = {s: size for guard, t in zip(self.inputs, args[n:]) for s, size in zip(guard.shape, t.shape)
                 if isinstance(s, str)}

        def first_from_two(name):
            dim = self.dims[name]
            return next((k for k in range(2, (dim.max if dim.max is not None else 2) + 1) if k not in dim.exclude), None)

        shapes = [None] * n + [[None if isinstance(s, int) else size_evaluator(s) for s in guard.shape]
                               for guard in self.inputs]
        return examples_from_two(args, shapes, sizes, first_from_two)

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

    def __init__(self, target: Callable, signature: list[mf.Param], in_spec: TreeSpec, record: Callable, how: list[str],
                 ran: dict | None = None):
        super().__init__()
        # a module's own program (or a method's): ``load(path, module=model)`` binds it alone
        self.of_module = isinstance(target, torch.nn.Module) or isinstance(getattr(target, "__self__", None),
                                                                            torch.nn.Module)
        if isinstance(target, torch.nn.Module):
            self.m = target
        elif isinstance(getattr(target, "__self__", None), torch.nn.Module):
            # A bound method of a module (model.generate): register the module so its
            # parameters are parameters, not anonymous constants.
            self.m = target.__self__
        elif (held := _held_by_name(target, ran)) is not None:
            # A function: the modules it reaches by name (``lambda x: lin(x)``), held under
            # those names, so their parameters and buffers are the program's, named as
            # ``load(path, module={"lin": lin})`` binds them, and a buffer the program
            # updates (batch norm in training mode) is a buffer, not a constant
            # torch.export would copy (until 2026-12-05 they were constants: the update
            # was lost, and a training package refused it)
            self.m = held
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
        # take tensor subclass outputs apart (tree.flatten): where make_fx traces the
        # program (desugar.py) and their inner tensors are values of its graph; a
        # subclass torch.export returns (a weight's) stays whole, for capture to refuse
        self._subclasses = False

    def _weights(self, every_name: bool = False) -> dict:
        """The module's parameters and buffers by name, as the trace sees them;
        ``every_name``: each name of a tied weight too (``lm_head.weight`` beside
        ``embed.weight``), for per-name guards, which must see every name a weight has."""
        m = getattr(self, "m", None)
        once = not every_name
        return {} if m is None else {**dict(m.named_parameters(remove_duplicate=once)),
                                     **dict(m.named_buffers(remove_duplicate=once))}

    def forward(self, *flat):
        args, kwargs = call_as_passed(self._signature, tree.unflatten(self._in_spec, list(flat)), self._how)
        grad_before = torch.is_grad_enabled()
        leaves = [i for i, t in enumerate(flat) if isinstance(t, torch.Tensor) and not t.requires_grad]
        # (the user's program is called from this frame: effects.py finds its code below a
        # frame named ``forward`` in this file)
        properties: list = []  # (tensor, "is_inference", file:line): what the program asked of a tensor
        defaults: list = []  # file:line of each tensor made on the default device (no ``device=``)
        with compat.capture_mode(lambda f: not compat.is_torch_internal_frame(f), properties, defaults) as reads, \
                compat.symbols_typed_as_python(_is_program_file):
            if self._autocast is not None:
                device, dtype = self._autocast
                with torch.autocast(device, dtype=getattr(torch, dtype)):
                    result = self._call(*args, **kwargs)
            else:
                result = self._call(*args, **kwargs)
        grad_after = torch.is_grad_enabled()
        sizes: list = []  # (path, SymInt) of each int output of a dynamic size (x.shape[0])
        spec, outs = tree.flatten(result, "output", subclasses=self._subclasses, sizes=sizes)
        self._record({"out_spec": spec, "output_sizes": sizes, "size_places": _size_places(flat) if sizes else {}, "grad_mode_before": grad_before, "grad_mode_after": grad_after,
                      # (inputs the program set requires_grad on: ``pos.requires_grad_()``)
                      "made_to_require_grad": [i for i in leaves if flat[i].requires_grad],
                      "requires_grad_reads": requires_grad_pins(reads, flat, self._weights()),
                      "property_reads": property_pins(properties, flat), "default_device_reads": defaults[:1],
                      "custom_functions": _custom_functions(outs),
                      "detached": _detached(outs, flat, self._weights(every_name=True), grad_before),
                      # (``@torch.inference_mode()`` on forward: eager returns inference tensors)
                      "inference_outputs": [k for k, o in enumerate(outs)
                                            if isinstance(o, torch.Tensor) and o.is_inference()],
                      "subclass_outputs": [tree.type_name(type(o)) for o in outs
                                           if isinstance(o, torch.Tensor) and tree.flattens_into_tensors(o)]})
        return tuple(outs)


def _is_program_file(filename: str) -> bool:
    """Whether code in ``filename`` is the program's, as eager would run it (the user's,
    a library's such as transformers', the standard library's): not torch's, not
    aotpack's, not code torch or Python generates (``<eval_with_key>``, ``<frozen>``).
    ``python -c``, ``exec`` and doctest code (``<string>``, ``<doctest>``) is the user's."""
    if filename.startswith("<"):
        return not filename.startswith(("<eval_with_key", "<frozen"))
    return not compat.is_torch_internal_frame(filename)


def _size_places(flat) -> dict:
    """Symbol -> (flat input, dimension, traced value) of each size of the traced inputs
    that is a symbol of its own: what a returned number's expression is read in (the trace
    that recorded it may be another than torch.export's, with symbols of its own: make_fx's,
    desugar.py)."""
    places: dict = {}
    for i, t in enumerate(flat):
        for d, size in enumerate(t.shape if isinstance(t, torch.Tensor) else ()):
            if isinstance(size, torch.SymInt) and str(compat.sym_expr(size)).isidentifier():
                places.setdefault(str(compat.sym_expr(size)), (i, d, compat.sym_hint(size)))
    return places


def _output_sizes(sizes: list, places: dict, inputs: list[mf.Input]) -> list:
    """Each number a program returns of its sizes (``x.shape[0]``, ``2*n + 1``,
    ``n / 2``, ``n > 4``) as the call's Dims give it: a Dim's name, ``{"expr": ...}`` in
    Dim names, or ``{"expr": ..., "type": ...}`` for a float, a bool or an int past the
    size grammar (an int where the program fixed it), its symbols read where the inputs'
    guards hold them (``places``: ``_size_places``). CaptureError for one no Dim gives (a
    number read from tensor data, ``x.sum().item()``), and for one a package could
    compute otherwise than eager (``_output_number``)."""
    names, held, traced = {}, {}, {}
    for symbol, (i, d, hint) in places.items():
        size = inputs[i].shape[d]
        if isinstance(size, str):
            names[symbol], traced[size] = size, hint
        elif isinstance(size, int):  # (the program fixed it: that int)
            held[symbol] = size
    out = []
    for path, size in sizes:
        symbols = {str(s) for s in compat.sym_expr(size).free_symbols}
        if not symbols <= set(names) | set(held):
            raise CaptureError(f"{path} is a Python number computed from tensor data ({size}), which cannot be "
                               "frozen", hint="return a tensor instead (e.g. skip .item()/.tolist(), or wrap with "
                                              "torch.tensor)")
        out.append(_output_number(path, size, names, held, traced))
    return out


# torch's functions of symbolic numbers that round (torch/utils/_sympy/functions.py)
_ROUNDING_CALLS = ("IntTrueDiv", "FloatTrueDiv", "FloatPow")


def _evaluates_as_eager(expr) -> bool:
    """Whether evaluating ``expr`` gives eager's float to the last bit whatever order eager
    computed it in: at most one rounding (a correctly rounded operation on exact values),
    and no float sum, product or power of sympy's, which may hold constants it folded
    (``n * 0.1 * 3`` is kept as ``0.30000000000000004*n``: eager rounds ``n * 0.1``
    first). Ints and comparisons of ints are exact."""
    def floating(e) -> bool:
        return e.is_Float or type(e).__name__ in (*_ROUNDING_CALLS, "ToFloat") or (
            (e.is_Add or e.is_Mul or e.is_Pow) and any(map(floating, e.args)))

    roundings = 0
    for e in _sympy_nodes(expr):
        if (e.is_Add or e.is_Mul or e.is_Pow) and floating(e):
            return False
        roundings += type(e).__name__ in _ROUNDING_CALLS
    return roundings <= 1


def _sympy_nodes(expr) -> list:
    """``expr`` and every expression inside it."""
    return [expr, *(n for a in expr.args for n in _sympy_nodes(a))]


def _output_number(path: str, size, names: dict, held: dict, traced: dict):
    """One returned number's record (``graphs.number_text``), checked: evaluated at the
    traced sizes it must give the traced value, and a float must be one that evaluates
    as eager's in any order (``_evaluates_as_eager``): ``n / 2``, ``n / cols``,
    ``n ** 0.5``, comparisons of them; not ``n * 0.1`` (a product sympy may have folded),
    which would be a silently different number at some size."""
    from ..package.sizes import number_evaluator
    from .graphs import number_text

    value = number_text(size, dict(names), held)
    shown = value["expr"] if isinstance(value, dict) else value
    if not _evaluates_as_eager(compat.sym_expr(size)):
        kind = "bool" if isinstance(size, torch.SymBool) else "float" if isinstance(size, torch.SymFloat) else "int"
        raise CaptureError(f"{path} is a {kind} computed from the call's sizes with float constants or in several "
                           f"rounding steps ({shown}): torch keeps it as a simplified expression, whose rounding may "
                           "differ from eager's in the last bit", hint="return it as a tensor (torch.tensor(...)), "
                                                                       "or compute it outside the compiled program")
    evaluate, want = number_evaluator(value), compat.sym_hint(size)
    got = evaluate(traced) if evaluate is not None else None
    if got is None or (want is not None and (type(got) is not type(want) or got != want)):
        raise CaptureError(f"{path} is a number of the call's sizes, {shown}, whose expression a package cannot "
                           "evaluate", hint="return it as a tensor (torch.tensor(n)), or compute it outside the "
                                            "compiled program")
    return value


def function_names(functions: list[type]) -> str:
    """``module.Class (file:line of its backward)`` of custom autograd Functions, for messages."""
    return ", ".join(f"{c.__module__}.{c.__qualname__} ({defined_at(c.backward)})" for c in functions)


def _custom_functions(outs) -> list[type]:
    """The ``torch.autograd.Function`` classes the outputs' autograd graph goes through.

    torch.export keeps a Function's forward and drops its backward (the graph is
    functional aten ops); a training package would differentiate the forward's ops
    instead, which is wrong for a straight-through estimator or any custom gradient.
    Found by walking the autograd graph torch.export's tracing builds on fake tensors.
    """
    found: list[type] = []
    for node in _autograd_nodes(outs):
        cls = getattr(node, "_forward_cls", None)
        if cls is not None:  # (torch's transforms run a Function as a class of their own, each call)
            cls = compat.users_function_class(cls)
        if cls is not None and cls not in found:
            found.append(cls)
    return found


def _detached_kept(record: dict, inputs: list[mf.Input], unsure) -> tuple[list[mf.Input], list[str]]:
    """``inputs`` with the trace's ``_detached`` ones marked, and the detached weights'
    names: what an inference variant may take requiring grad (``Input.detached``,
    ``Variant.detached_weights``); none where ``unsure``: a training program (its own
    pattern of requires_grad), one that updates a tensor in place (eager's update would
    carry a history the package's has not), or one traced below torch.export
    (desugar.py: another trace's autograd graph)."""
    if unsure:
        return inputs, []
    flat, weights = record["detached"]
    return [g.replace(detached=True) if i in flat else g for i, g in enumerate(inputs)], sorted(weights)


def _layout_uses(ep, recorder: EffectRecorder, record: dict) -> dict[str | None, str]:
    """What the program does by its inputs' layout (guard_specs.layout_pins' ``uses``),
    read before decompositions retrace the graph (reshape is itself only there, and the
    placeholders are the tensors the program saw); below torch.export, every input it
    updates in place (``updated_below_transforms``)."""
    uses = {**contiguous_then_updated(ep, recorder), **layout_dependent_uses(ep.graph_module)}
    return {**updated_below_transforms(ep), **uses} if record.get("traced_below_transforms") else uses


def _refuse_subclasses_left(ep, in_spec: TreeSpec, record: dict, target, subclass_kinds: dict) -> None:
    """A subclass weight's class left in the graph, or an output subclass no input or
    weight has (``_refuse_new_subclass_outputs``): CaptureError."""
    if subclass_kinds:
        subclass_weights.refuse_kept_subclasses(ep.graph_module, subclass_kinds)
    _refuse_new_subclass_outputs(in_spec, record, target)


def _autograd_nodes(outs):
    """Each node of the autograd graph behind ``outs`` (the trace's fake tensors), once."""
    seen: set = set()
    stack = [o.grad_fn for o in outs if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))


def _detached(outs, flat, weights: dict, grad_mode: bool) -> tuple[set[int], set[str]]:
    """(flat input indices, weight names) that require grad in this trace but that no
    output's autograd graph reaches: the program detaches them (``with torch.no_grad():``
    around their use, ``.detach()``, only integer results of them), so eager's outputs
    require no grad through them and an inference package may take them requiring grad
    under grad mode. Read from the autograd graph torch.export's trace builds, which
    holds what eager's would (a custom Function's node, ``mark_non_differentiable``); with
    grad mode off at capture there is none, and nothing is known (empty sets)."""
    if not grad_mode:
        return set(), set()
    reached = {id(node.variable) for node in _autograd_nodes(outs) if hasattr(node, "variable")}
    reached |= {id(o) for o in outs if isinstance(o, torch.Tensor) and o.requires_grad}  # an input returned
    return ({i for i, t in enumerate(flat) if isinstance(t, torch.Tensor) and t.requires_grad and id(t) not in reached},
            {n for n, t in weights.items() if t.requires_grad and id(t) not in reached})


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
    for j in sorted(written_placeholders(ep.graph_module)):
        key = keys[j]
        if key in weights:
            written.add(key)
        elif isinstance(key, int):
            written_inputs.append(key)
    return written, sorted(written_inputs)


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
        where = defined_at(target)
    # (an error eager would raise too, a shape mismatch say, is the program's own: named as such)
    hint = "check that the program runs eagerly on these example inputs; torch.export failed at that line"
    if "data-dependent" in reason or "data dependent" in reason:
        reason = f"Python code depends on a value read from tensor data ({reason})"
        hint = "move the Python control flow out of the compiled program, or express it with torch.cond / torch.where"
    elif "Constraints violated" in reason or "specializ" in reason:
        hint = "widen or drop the Dim for that dimension, or pass dynamic=None"
    elif "leaf Variable that requires grad" in reason:
        reason += " (eager PyTorch refuses it too)"
        hint = "work on a copy (x = x.clone()) or pass an input that does not require grad"
    return CaptureError(f"cannot capture {getattr(target, '__qualname__', type(target).__qualname__)} "
                        f"as one graph at {where}: {reason}", hint=hint)


def _export(program, flat, flat_dyn, size_oblivious: bool = True):
    # (where an example input is empty, without FakeTensor's cache, which can misplace views
    # of empty tensors: compat.without_fake_tensor_cache)
    empty = compat.has_empty_tensor(flat)
    # an example leaf holding a .grad (compiled after a training step) stands in as an alias
    # without it: torch.export guards the grad's size and its decompositions then fail on
    # the grad-less fakes they retrace with (AttributeError "'NoneType' object has no
    # attribute 'size'" with Dims, raised raw)
    flat = [t.detach().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) and t.is_leaf
            and t.grad is not None else t for t in flat]
    # a named Dim whose example is 0 or 1 (a batch of one, a first position): torch.export
    # compiles those sizes in, as special cases, where the Dim asks for others too; traced
    # size-obliviously, the graph is every size's (a branch the program takes on the size
    # is still a guard: the Dim is narrowed to it). torch.compile compiles once for the 1
    # and again at the first other size; a package holds this one graph (until 2026-12-07
    # it took the example's size alone, with a warning), and the export runs as before
    # where that trace fails (transformers' attention passes ``q_len > 1`` to SDPA, which
    # takes no symbolic bool: such a model needs its 1 apart, and its package a second
    # variant from 2: api.Plan.build)
    # (``size_oblivious=False``: where that trace took a branch on the size that eager does
    # not take at the example, ``pos == 0`` at 0: _dynamic_as_eager captures again so)
    for oblivious in [True, False] if size_oblivious and _small_examples(flat, flat_dyn) else [False]:
        with compat.quiet_export_logs(), compat.without_fake_tensor_cache() if empty else contextlib.nullcontext(), \
                compat.size_oblivious() if oblivious else contextlib.nullcontext(), \
                compat.backends_for_the_program(lambda f: not compat.is_torch_internal_frame(f)), \
                compat.attention_deciding_symbolic_bools():
            try:
                return torch.export.export(program, tuple(flat), strict=False,
                                           dynamic_shapes={"flat": tuple(flat_dyn)} if any(flat_dyn) else None)
            except Exception:  # noqa: BLE001 - (the size-oblivious trace's failure, whatever it is: traced again)
                if not oblivious:
                    raise


def _small_examples(flat: list, flat_dyn: list) -> bool:
    """Whether a named Dim has an example of size 0 or 1 and asks for a size of 2 or more."""
    for t, dyn in zip(flat, flat_dyn):
        for d, spec in (dyn or {}).items():
            if user_dim(spec) is not None and isinstance(t, torch.Tensor) and t.shape[d] in (0, 1):
                hi = dim_range(spec)[1]
                if hi is None or hi >= 2:
                    return True
    return False


def capture(target: Callable, args: tuple = (), kwargs: dict | None = None, *, dynamic=None,
            strict_dims: bool = False, allow_mutations: bool = False, autocast=None,
            at_one_apart: bool = False, at_one_covered: dict | None = None) -> Captured:
    """Capture ``target`` (function or nn.Module) called with example inputs as one graph.

    Args:
      target: a function or nn.Module.
      args, kwargs: example inputs; tensors, nested tuples/lists/dicts, Python constants.
      dynamic: None (all sizes static), True (every dimension and int may vary), or a dict
        ``{"x": {0: Dim("batch", min=1, max=4096)}, "n": Dim("n")}`` keyed by parameter
        name (an int's Dim: ``treespec.IntLeaf``).
      strict_dims: raise CaptureError (instead of a SpecializationWarning) when the program
        forces a named Dim to one size.
      allow_mutations: accept in-place updates of buffers (BatchNorm's running stats)
        and of inputs that do not require grad (training packages replay them on the
        caller's tensors); without it they are refused.
      autocast: run the program inside ``torch.autocast`` with this dtype (a dtype or
        its name; False: off) on the program's device type; None: as the caller's
        autocast is now. The casts are compiled in and calls are guarded on it.
      at_one_apart: a named Dim the trace compiles in at the example's size 1 (an int's 0
        or 1), its range going on past 2, is the caller's to cover: no warning (nor
        error), and ``Captured.compiled_at_one``/``examples_from_two`` say which and give
        the example call with those sizes at 2, for a second variant (``aotpack.compile``
        adds it).
      at_one_covered: Dim name -> the size below 2 another variant runs (that second
        variant's capture): a range narrowed to start at 2 but for it is not warned of.
    Returns:
      Captured.
    Raises:
      CaptureError: the program cannot be one graph; names the user's file:line.
    """
    from .collectives import refuse_dtensor

    target = _capturable(target)
    refuse_dtensor(target)  # before torch.export fails on it with a message about pytree constants
    options = {"strict_dims": strict_dims, "allow_mutations": allow_mutations, "autocast": autocast,
               "at_one_apart": at_one_apart, "at_one_covered": dict(at_one_covered or {})}
    try:
        return _capture(target, args, kwargs, dynamic, **options)
    except _CaptureAgain as again:
        latest = again
    # what a trace found (an input's layout the program depends on, a helper's
    # module it updates): captured again with it (the side effects of the program were
    # reported by the first capture); at most once a kind of change
    changes = {}
    while True:
        changes.update(latest.changes)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SideEffectWarning)
            try:
                return _capture(target, args, kwargs, dynamic, **changes, **options)
            except _CaptureAgain as again:
                if again.changes.keys() <= changes.keys():
                    raise latest.refusal from again
                latest = again
            except (CaptureError, AttributeError) as e:
                # torch could not trace the program so (seen in training, in strides kept:
                # an AttributeError from the guards torch.export adds, in the functional
                # retrace): the refusal of the capture that asked for it
                raise latest.refusal from e


def _capturable(target):
    """The program to capture for ``target``: an ExportedProgram (``torch.export.export``'s
    result) is captured as its module (``ep.module()``, the program torch.export traced,
    with its weights); a TorchScript program is refused naming what to pass instead
    (torch.export cannot trace it: it failed with a message about ``forward``'s arguments)."""
    if isinstance(target, torch.export.ExportedProgram):
        return target.module()
    if isinstance(target, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise CaptureError(f"{type(target).__name__} is a TorchScript program (torch.jit.script or torch.jit.trace): "
                           "torch.export, which aotpack captures with, cannot trace TorchScript",
                           hint="pass the nn.Module or function it was scripted from")
    return target


def _capture(target: Callable, args, kwargs, dynamic, *, strict_dims: bool, allow_mutations: bool, autocast,
             at_one_apart: bool, at_one_covered: dict, keep_strides: frozenset = frozenset(),
             ran: dict | None = None, freeze_ints: bool = False, freeze_sizes: bool = False,
             size_oblivious: bool = True) -> Captured:
    """One capture (``capture``); ``keep_strides``: inputs compiled in the example's strides,
    not a contiguous copy (``_bind_call``); ``ran``: a first capture's user functions, whose
    modules read by name the program holds; ``freeze_ints``, ``freeze_sizes``,
    ``size_oblivious``: see ``_dynamic_as_eager``."""
    call = _bind_call(target, args, kwargs, dynamic, keep_strides, freeze_ints, freeze_sizes)
    program = _Program(target, call.signature, call.in_spec, None, call.how, ran)
    device = device_of([*call.flat, *(target.parameters() if isinstance(target, torch.nn.Module) else ())])
    program._autocast = (device, amp) if (amp := autocast_dtype(device, autocast)) else None
    with torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext():
        # (tensor subclass weights traced as the plain tensors inside them, as torch.compile does)
        with subclass_weights.unwrapped(target) as subclass_kinds:
            ep, record, recorder = _export_watched(program, target, call.flat, call.flat_dyn,
                                                   subclass_inputs=bool(tree.subclass_types(call.in_spec)),
                                                   subclass_weights_held=bool(subclass_kinds),
                                                   size_oblivious=size_oblivious)
    _refuse_subclasses_left(ep, call.in_spec, record, target, subclass_kinds)
    _dynamic_as_eager(ep, program, call, dynamic, recorder, record, device, size_oblivious)
    repair_users(ep.graph_module)  # before any rewrite of the graph
    _autograd_effects(recorder, target, call, record, allow_mutations)
    strides_read = where_strides_read(ep, recorder)  # before decompositions retrace the graph
    layout_uses = _layout_uses(ep, recorder, record)
    module_records = _module_records(target, recorder)
    frozen = _listed_frozen(target, recorder, module_records)
    ep, (updated_with_grad, updated_without_grad, given_history), in_order, straight_through = (
        _training_updates(ep, call, record, target, program, recorder, ran) if allow_mutations
        else (ep, (set(), set(), set()), None, False))
    written_buffers, written_inputs = (set(), []) if allow_mutations else _input_writes(ep, recorder, call.paths)
    aliases_from = None  # the graph whose outputs' views of inputs are eager's (None: gm)
    if amp and not allow_mutations:
        in_order = _in_order_program(ep, written_inputs, ())
        if written_inputs:
            # the functional retrace computes a view of an updated input from the new value,
            # no view of the input any more: read the views before it, as eager makes them
            aliases_from = compat.plain_graph_module(ep.graph_module)
        ep = _inline_autocast(ep)
    mutation_specs = _mutation_outputs(ep, recorder, allow_mutations)
    weights, weight_kinds, weight_targets, user_nodes = _graph_weights(ep, "m." if hasattr(program, "m") else "",
                                                                       frozen)
    gm = compat.plain_graph_module(ep.graph_module)
    at_one = _compiled_below_two(call, user_nodes) if at_one_apart else {}
    inputs, dims, names = _input_guards(ep, gm, call, user_nodes, record, strides_read, layout_uses, strict_dims,
                                        at_one, at_one_covered)
    inputs, detached_weights = _detached_kept(record, inputs, allow_mutations or written_buffers or written_inputs
                                              or subclass_kinds or record.get("traced_below_transforms"))
    # (a function's weights named as it reads them, ``lin.weight``, ``W``: bind_by_name)
    return bind_by_name(Captured(
        name=program_name(target),
        kind="module" if isinstance(target, torch.nn.Module) else "function",
        source=defined_at(target),
        signature=call.signature,
        in_spec=call.in_spec,
        out_spec=record["out_spec"],
        inputs=inputs,
        dims=dims,
        weights=weights,
        weight_kinds=weight_kinds,
        weight_targets=weight_targets,
        frozen=_frozen_records(frozen, call.signature, target),
        example_inputs=list(call.flat),
        exported=ep,
        graph_module=gm,
        mutations=_mutations(ep, mutation_specs, weight_targets, [n.name for n in user_nodes], call.flat,
                             call.paths, recorder, updated_with_grad, updated_without_grad, given_history),
        inputs_updated_without_grad=updated_without_grad,
        state=[n for n, t in weight_targets.items() if t in written_buffers],
        aliased=[] if mutation_specs else _output_views(gm, aliases_from, names),
        module_training=module_training_of(target),
        custom_functions=list(record["custom_functions"]),
        applied_functions=list(dict.fromkeys([*record["custom_functions"], *recorder.applied_functions])),
        traced_below_transforms=record.get("traced_below_transforms", False), straight_through=straight_through,
        library_ops=library_ops(gm),
        global_state=global_state_of(amp, recorder, record),
        requires_grad_weights=record["requires_grad_reads"][1],
        detached_weights=detached_weights,
        inference_outputs=[] if allow_mutations else list(record["inference_outputs"]),
        **module_records,
        subclass_weights=subclass_kinds,
        program=program,
        mutated_inputs=written_inputs,
        in_order_program=in_order,
        dim_names=names, output_sizes=_output_sizes(record["output_sizes"], record["size_places"], inputs),
        compiled_at_one=at_one, examples_from_two=_examples_at_two(call, at_one) if at_one else None,
    ))


def _training_updates(ep, call: _Call, record: dict, target, program: _Program, recorder: EffectRecorder,
                      ran: dict | None):
    """What a training capture (``allow_mutations``) keeps of the program's in-place
    updates before its graph is made functional: (the functional ExportedProgram, (inputs
    updated with grad on, with it off, given history by both), the in-order program, and
    whether grad-disabled regions were detached: ``straight_through``)."""
    with_grad, without_grad = _input_updates_by_grad_mode(ep)
    given_history = _inputs_given_history(ep, call.flat) if with_grad & without_grad else set()
    in_order = _in_order_program(ep, with_grad | without_grad, record["custom_functions"])
    straight_through = _detach_grad_disabled_regions(ep, call.flat)
    ep = _functional(ep, target, None if ran is not None or program.of_module else recorder.functions)
    return ep, (with_grad, without_grad, given_history), in_order, straight_through


def _compiled_below_two(call: _Call, user_nodes: list) -> dict[str, int]:
    """The named Dims the trace compiled in at the example's size 1 (or an int's 0 or 1)
    where the Dim's range goes on past 2: the program depends on that size (transformers'
    Llama from a batch or a length of one: ``batch == 1`` in its masks, ``q_len > 1``
    passed to attention; ``if pos == 0`` in a decode step), where torch.compile compiles a
    second graph at the first other size. Dim name -> the example's value. Not a tensor
    size of 0 (no values to repeat) nor an int whose Dim runs below 0."""
    offsets = tree.int_offsets(call.in_spec)
    found: dict[str, int] = {}
    blocked = set()
    for i, (node, dyn) in enumerate(zip(user_nodes, call.flat_dyn)):
        for d, spec in (dyn or {}).items():
            name, size = user_dim(spec), static_int(node.meta["val"].shape[d])
            if name is None or size is None:
                continue
            hi = dim_range(spec)[1]
            small = (size in (0, 1) and not offsets[i]) if i in offsets else size == 1
            if small and (hi is None or hi >= 2):
                found.setdefault(name, size)
            else:
                blocked.add(name)
    return {name: size for name, size in found.items() if name not in blocked}


def _from_two_alone(name: str, dims: dict, call: _Call, covered: dict[str, int]) -> bool:
    """Whether Dim ``name``, one of ``covered`` (name -> the size the other variant runs),
    runs every other size of its range from 2 on (a size neither runs is still warned of)."""
    if name not in covered or name not in dims:
        return False
    lo, hi = next(dim_range(spec) for dyn in call.flat_dyn for spec in (dyn or {}).values() if user_dim(spec) == name)
    dim = dims[name]
    return {*range(lo, dim.min), *dim.exclude} <= {covered[name]} and dim.max == hi


def _examples_at_two(call: _Call, names) -> tuple[tuple, dict]:
    """The example call (args, kwargs, as it was passed) with each size and int of the
    Dims ``names`` at 2: a tensor's values repeated along it, so they stay values the
    program was given (token ids, masks)."""
    offsets = tree.int_offsets(call.in_spec)
    flat = []
    for i, (t, dyn) in enumerate(zip(call.flat, call.flat_dyn)):
        grown = {d for d, spec in (dyn or {}).items() if user_dim(spec) in names}
        if grown and i in offsets:  # (an int's carrier: its first size is the int)
            t = tree.size_carrier(2, t.device)
        elif grown:
            t = eager_check.tiled(t, [2 if d in grown else s for d, s in enumerate(t.shape)])
        flat.append(t)
    args, kwargs = call_as_passed(call.signature, list(tree.unflatten(call.in_spec, flat)), call.how)
    return tuple(args), kwargs


def _dynamic_as_eager(ep, program: _Program, call: _Call, dynamic, recorder: EffectRecorder, record: dict,
                      device: str, size_oblivious: bool = True) -> None:
    """Where the program has dynamic sizes or int arguments: its graph gives eager's tensors
    at the example and at other sizes (``eager_check``), or the capture is refused
    (``dynamic=True``: captured again with the ints, then the sizes, compiled in). A
    size-oblivious trace (an example of 0 or 1: ``_export``) that computes otherwise is
    traced again as torch.export traces (``size_oblivious=False``) first: it takes a size
    to be 2 or more where the program asks ``pos == 0`` (the other branch at the example's
    0, refused as a SymInt's type until 2026-12-08)."""
    carriers = call.in_spec.int_indices()
    dynamic_inputs = [i for i, dyn in enumerate(call.flat_dyn) if dyn]
    if not dynamic_inputs:
        return
    user_nodes = [n for n, spec in zip((n for n in ep.graph.nodes if n.op == "placeholder"),
                                       ep.graph_signature.input_specs) if spec.kind.name == "USER_INPUT"]
    _, dims, _, names, _ = _guarded_dims(ep, user_nodes, call, record)
    found = eager_check.divergence(ep, program, call, recorder, device, user_nodes, dims, names,
                                   tree.int_offsets(call.in_spec))
    if found is None:
        # (sizes 0 and 1 the trace of a larger example took to be as large: where the graph
        # computes otherwise there, they leave the Dim, as a dropped guard's sizes do)
        record["small_sizes_differ"] = eager_check.sizes_zero_and_one_differ(
            ep, program, call, recorder, device, user_nodes, dims, names, tree.int_offsets(call.in_spec))
        return
    ints = [i for i in dynamic_inputs if i in carriers]
    named = ", ".join(call.paths[i] if i in carriers else
                      ", ".join(f"{call.paths[i]}.shape[{d}]" for d in sorted(call.flat_dyn[i]))
                      for i in (ints if ints and dynamic is True else dynamic_inputs))
    refusal = CaptureError(
        f"the program computes otherwise traced with dynamic {named} than eager does {found.where}: {found.how}. "
        "Traced, a dynamic size or int is a torch.SymInt, where eager's is an int: a program that branches on its "
        "type (type(n) is int) or its text (str(n)) takes another branch",
        hint="drop those Dims (the values are then compiled in: compile a variant per value), or branch with "
             "isinstance(n, int), which is answered as eager's")
    if size_oblivious and _small_examples(call.flat, call.flat_dyn):
        raise _CaptureAgain(refusal, size_oblivious=False)
    if dynamic is True:
        what = "int arguments" if ints else "sizes"
        warn_caller(f"aotpack: the {what} {named} are compiled in (a call with another is a GuardError): traced "
                    f"as dynamic, the program computed otherwise than eager {found.where} ({found.how})",
                    SpecializationWarning)
        raise _CaptureAgain(refusal, **({"freeze_ints": True} if ints else {"freeze_sizes": True}))
    raise refusal


def _listed_frozen(target, recorder: EffectRecorder, module_records: dict) -> list[dict]:
    """The frozen values the package lists (``frozen_values``): a function where a bound
    package compares it (a global's: guard_specs.global_values, function_codes)."""
    compared = {*module_records["module_attributes"], *module_records["function_code"]}
    return [f for f in frozen_values(target, recorder.functions) if f["type"] != "function"
            or f["kind"] == "global" and f"global:{f['name']}" in compared]


def _module_records(target, recorder: EffectRecorder) -> dict:
    """``Captured``'s records of the modules the program reaches (the module target and its
    submodules, or those a function reaches by name) as a bound module is guarded on them."""
    named = modules_by_name(target, recorder.functions)
    paths = module_paths(target, named)
    functions, class_values = {}, {}
    attributes = {**module_attributes(paths, recorder, functions), **global_values(recorder, functions, class_values)}
    class_values.update(class_attributes(paths, recorder, functions))
    return {"module_attributes": attributes, "class_attributes": dict(sorted(class_values.items())),
            "module_types": module_types(paths, recorder), "module_children": module_children(target, named, recorder),
            "iterated_weights": iterated_weights(target, named, recorder),
            "module_code": module_code(paths, recorder),
            "module_hooks": hooks_compiled(paths, recorder),
            "function_code": function_codes(functions, paths, recorder),
            "modules_named": named}


def _held_by_name(target: Callable, ran: dict | None = None) -> torch.nn.Module | None:
    """A module holding the modules a function reaches by name under those names (what
    ``load(path, module={...})`` binds: load/binding.py's ``holder``), or None where it
    reaches none: those its own code names, and (``ran``) those the helpers that ran in
    a first capture name. A name no dict can give (``training``; ``args[0]``, a partial's
    argument to a function with no signature) leaves its module's tensors constants."""
    held = torch.nn.Module()
    for module, (var, *_) in modules_by_name(target, ran).items():
        if var.isidentifier() and not hasattr(held, var):
            held.add_module(var, module)
    return held if held._modules else None


@dataclass(frozen=True)
class _Call:
    """The example call, bound: the program's parameters, the flat tensors with their
    paths (``args[0]['x']``), dynamic specs and layouts, and how each value was passed."""

    signature: list[mf.Param]
    in_spec: TupleSpec
    flat: list[torch.Tensor]
    paths: list[str]
    flat_dyn: list
    layouts: list
    how: list[str]
    # flat inputs compiled for a contiguous copy of the example: index -> the example's
    # strides, which had gaps or overlaps where a size is dynamic (``_bind_call``)
    relaid: dict = field(default_factory=dict)
    # flat inputs with such strides compiled in the example's own strides, because the
    # program depends on their layout: index -> those strides (guarded exactly)
    kept: dict = field(default_factory=dict)


class _CaptureAgain(Exception):
    """Capture again with these options of ``_capture`` changed, because the first
    capture found what it needed only in its trace: ``keep_strides``, flat inputs whose
    layout the program depends on, so a contiguous copy cannot stand in (``_bind_call``);
    ``ran``, the user functions that ran, whose modules read by name are held as the
    program's own then (``_held_by_name``)."""

    def __init__(self, refusal: CaptureError, **changes):
        super().__init__(sorted(changes))
        self.changes = changes
        self.refusal = refusal  # what the caller is told where the second capture fails too


def refuse_meta_tensors(named: dict) -> None:
    """A ``CaptureError`` naming the first tensor on the meta device among ``named``
    (name -> value): it holds no data for the trace to compute on or the package to store
    (a model built under ``with torch.device("meta"):`` whose weights were never loaded;
    until 2026-12-07 torch's raw ``RuntimeError`` about autocast, or ``NotImplementedError``
    where the program made one under ``torch.set_default_device("meta")``)."""
    name = next((n for n, t in named.items() if isinstance(t, torch.Tensor) and t.device.type == "meta"), None)
    if name is not None:
        raise CaptureError(f"{name} is on the meta device: it holds no data to compute with or to store",
                           hint="load the model's weights first (load_state_dict(sd, assign=True), or "
                                "to_empty(device=...) and initialize), and pass example inputs with data; "
                                "a tensor the program makes with no device= goes to torch.set_default_device's")


def _bind_call(target: Callable, args, kwargs: dict | None, dynamic, keep_strides: frozenset = frozenset(),
               freeze_ints: bool = False, freeze_sizes: bool = False) -> _Call:
    """The example call bound to the program (``_Call``); its tensor subclasses refused
    where a package cannot compute on them (``_refuse_tensor_subclasses``).
    ``freeze_ints``, ``freeze_sizes``: see ``_dynamic_as_eager``."""
    dynamic = None if freeze_sizes else dynamic
    kwargs = dict(kwargs or {})
    if not isinstance(args, tuple):
        args = (args,) if isinstance(args, torch.Tensor) else tuple(args)
    sig = signature_of(target)
    values, how = bind(sig, args, kwargs)
    if not (freeze_ints and dynamic is True):
        values = int_arguments(dynamic, sig, values, how)
    names = list(sig.parameters)
    children, flat = [], []
    for name, v in zip(names, values):
        children.append(tree.flatten(v, name, flat)[0])
    in_spec = TupleSpec(children)
    if carriers := in_spec.int_indices():  # (on the program's device: a graph's inputs share one)
        device = device_of(flat)
        for i in carriers:
            flat[i] = flat[i].to(device)
    flat = _separate_memory(flat)
    flat_dyn = flat_dynamic(dynamic, sig, values, len(flat))
    paths = tree.tensor_paths(in_spec, names)
    relaid, kept = {}, {}
    for i, (t, dyn) in enumerate(zip(flat, flat_dyn)):
        if dyn and t.layout is torch.strided and layout_of(t, True) is None:
            # strides with gaps or overlaps (``base[:, ::2]``) and a dynamic size: the
            # package is compiled for a contiguous copy, into which each call is copied,
            # unless the program depends on the layout (_input_guards); then it is
            # compiled for the example's strides, where torch.export keeps them static
            if i in keep_strides:
                kept[i] = tuple(t.stride())
                continue
            relaid[i] = tuple(t.stride())
            flat[i] = t.detach().clone(memory_format=torch.contiguous_format).requires_grad_(t.requires_grad)
    layouts = [{"stride": list(t.stride())} if i in kept else input_layout(t, dyn, path)
               for i, (t, dyn, path) in enumerate(zip(flat, flat_dyn, paths))]
    call = _Call(parameters(sig), in_spec, flat, paths, flat_dyn, layouts, how, relaid, kept)
    _refuse_tensor_subclasses(target, call)
    weights = ({f"the module's {n!r}": t for n, t in [*target.named_parameters(), *target.named_buffers()]}
               if isinstance(target, torch.nn.Module) else {})
    refuse_meta_tensors({**dict(zip(call.paths, call.flat)), **weights})
    return call


def _refuse_tensor_subclasses(target, call: _Call) -> None:
    """CaptureError for an input or weight of a tensor subclass that runs code of its own
    at each op (``__torch_dispatch__`` or ``__torch_function__``: torchao's quantized
    weights, TwoTensor). A package computes on plain tensors: its guards refuse such a
    subclass at a call, where eager runs the subclass's code; until 2026-12-04 compiling
    one failed deep in the package writer with torch's raw RuntimeError."""
    named = [(f"input {path}", t) for path, t in zip(call.paths, call.flat)]
    if isinstance(target, torch.nn.Module):  # (weights of a traceable wrapper subclass: subclass_weights.py)
        named += [(f"module weight {n!r}", t) for n, t in [*target.named_parameters(), *target.named_buffers()]
                  if not tree.is_wrapper_subclass(t)]
    for where, t in named:
        if isinstance(t, torch.Tensor) and not tree.computes_as_plain(type(t)):
            raise CaptureError(
                f"{where} is a {type(t).__qualname__}, a tensor subclass that runs its own __torch_dispatch__ or "
                "__torch_function__ at each op and is not made of tensors it can be taken apart into "
                "(__tensor_flatten__, __tensor_unflatten__, as TwoTensor is): aotpack packages compute on plain "
                "tensors",
                hint="pass plain tensors (t.as_subclass(torch.Tensor) where the subclass adds nothing to the "
                     "numbers); for int8 weights, aotpack.llm.int8_weights(model) stores plain int8 tensors")


def _separate_memory(flat: list) -> list:
    """The example inputs, each in memory of its own: an input sharing memory with an
    earlier one (views of one tensor, ``x[:5], x[7:13]``) is replaced by a copy of its
    storage with the same size, strides and offset. A package is compiled for inputs
    that are separate tensors (a call whose inputs overlap where the program writes is
    told apart by the guards); traced as views of one storage, the graph would tell
    which input an in-place update or an output view belongs to by storage alone, and
    credit the first of them with all of them."""
    from .graphs import storage_of

    seen, out = set(), []
    for t in flat:
        if isinstance(t, torch.Tensor) and t.layout == torch.strided:
            if storage_of(t) in seen:  # (by storage, not address: empty tensors share address 0)
                t = eager_check.same_layout_copy(t)
            seen.add(storage_of(t))
        out.append(t)
    return out


def _guarded_dims(ep, user_nodes: list, call: _Call, record: dict):
    """``guard_dims`` of this capture: the sizes a dropped guard rules out excluded."""
    examples = {user_dim(spec): t.shape[d] for t, dyn in zip(call.flat, call.flat_dyn) for d, spec in (dyn or {}).items()}
    ranges = {user_dim(spec): dim_range(spec) for dyn in call.flat_dyn for spec in (dyn or {}).values()}
    dropped = dropped_size_guards(record.get("violation"), ranges)
    for name, sizes in record.get("small_sizes_differ", {}).items():  # (_dynamic_as_eager)
        dropped[name] = None if dropped.get(name, set()) is None else dropped.get(name, set()) | sizes
    return guard_dims(
        ep, user_nodes, call.flat_dyn, call.paths,
        int_inputs=tree.int_offsets(call.in_spec),
        excluded={name: (examples[name], sizes) for name, sizes in dropped.items() if name in examples})


def _input_guards(ep, gm, call: _Call, user_nodes: list, record: dict, strides_read: dict, layout_uses: dict,
                  strict_dims: bool, at_one: dict | None = None,
                  at_one_covered: dict | None = None) -> tuple[list[mf.Input], dict[str, mf.Dim], dict[str, str]]:
    """The guard of each flat input (``manifest.Input``), the named Dims and the Dim name
    of each size symbol; warns (or, ``strict_dims``, raises) where the program forced a
    named Dim to one size. _CaptureAgain where the program depends on the layout of an
    input compiled for a contiguous copy: capture runs again with its own strides, which
    the guard then pins exactly (``{"stride": [12, 2]}``) where torch.export kept them static.
    The exception carries the refusal ``capture`` gives where that second capture fails
    (training programs torch's functional retrace cannot trace in those strides).
    ``at_one``: Dims compiled in at 1 that the caller covers with a second variant
    (``_compiled_below_two``): not warned of; ``at_one_covered``: that second variant's
    Dims, whose range starting at 2 is not warned of either."""
    pins = layout_pins(gm, user_nodes, strides_read, layout_uses)
    pinned_copies = [i for i in call.relaid if pins[i]]
    if pinned_copies:
        raise _CaptureAgain(_gapped_layout_refusal(call, pinned_copies[0], call.relaid[pinned_copies[0]], pins),
                            keep_strides=frozenset(pinned_copies))
    shapes, dims, specialized, names, narrowed = _guarded_dims(ep, user_nodes, call, record)
    specialized = [one for one in specialized if one.split(" (")[0] not in (at_one or {})]
    narrowed = [one for one in narrowed
                if not _from_two_alone(one.split(" runs ")[0], dims, call, at_one_covered or {})]
    sizes = {name: t.shape[d] for t, shape in zip(call.flat, shapes) for d, name in enumerate(shape)
             if isinstance(name, str)}  # (each Dim's size in the examples, by the name the guards give it)
    for i, strides in call.kept.items():
        call.layouts[i] = {"stride": _kept_strides(call, i, strides, user_nodes[i], names, sizes, pins)}
    if narrowed:
        warn_caller(f"aotpack: the program narrowed dynamic dimensions ({', '.join(narrowed)}): torch.export "
                    "could not keep the rest of the range (sizes 0 and 1 are special cases to it, and a branch on a "
                    "size holds for some sizes only); a call outside "
                    "is a GuardError. To cover those sizes, add a variant compiled with an example of that size",
                    SpecializationWarning)
    if specialized:
        what = ", ".join(specialized)
        if strict_dims:
            raise CaptureError(f"the program specializes dynamic dimensions: {what}",
                               hint="drop those Dims (the package then runs only that size), or change the program")
        small = any(re.search(r" = [01]$", one) for one in specialized)
        warn_caller(f"aotpack: the program specialized dynamic dimensions, which will accept only one size: {what}"
                    + (" (an example of 0 or 1 makes sizes of 0 and 1 in the trace, which torch compiles in, as "
                       "torch.compile does: compile with an example of 2 or more)" if small else ""),
                    SpecializationWarning)
    reads, properties = record["requires_grad_reads"][0], record.get("property_reads", {})
    inputs = [mf.Input(dtype=tree.dtype_name(node.meta["val"].dtype), device=node.meta["val"].device.type,
                       shape=shape, layout=memory_layout, requires_grad=bool(t.requires_grad),
                       layout_pinned=pin, requires_grad_pinned=reads.get(i),
                       properties={name: tree.tensor_property(t, name) for name in sorted(properties.get(i, ()))})
              for i, (node, shape, t, memory_layout, pin) in enumerate(zip(user_nodes, shapes, call.flat,
                                                                           call.layouts, pins))]
    return inputs, dims, names


def _kept_strides(call: _Call, i: int, strides: tuple, node, names: dict[str, str], sizes: dict,
                  pins: list) -> list:
    """The strides input ``i`` (an example with gaps, ``base[:, ::2]``, and a Dim, whose
    layout the program depends on) is compiled for, as the guard records them: ints, or,
    where torch.export makes a stride follow a size (``2*cols``: the base's rows are twice
    the slice's columns), that expression in the Dims' names, evaluated at each call
    (format version 11; a CaptureError before). A stride torch.export gave a symbol of
    its own (``(6*s, s)``) is held at the example's value: the compiled code takes any,
    the guard the example's, so the layout the program's result depends on stays the
    example's. CaptureError where the expressions do not give the example's own strides
    (``sizes``: each Dim's size in the examples) or follow a symbol that is neither a
    Dim's nor a stride's by itself."""
    from .graphs import size_text, static_int

    stride = node.meta["val"].stride()
    symbols = [None if static_int(st) is not None else str(compat.sym_expr(st)) for st in stride]
    held = {sym: value for sym, value in zip(symbols, strides) if sym and sym.isidentifier() and sym not in names}
    known = dict(names)
    recorded = [size_text(st, known, held) for st in stride]
    evaluated = [None if (f := size_evaluator(r)) is None else f(sizes) for r in recorded]
    if len(known) > len(names) or evaluated != list(strides):
        raise _gapped_layout_refusal(call, i, strides, pins)
    return recorded


def _gapped_layout_refusal(call: _Call, i: int, strides: tuple, pins: list) -> CaptureError:
    return CaptureError(f"{call.paths[i]} has strides {strides} with gaps or overlaps and a dynamic size, and the "
                        f"program depends on its layout ({pins[i]}): the compiled code could not address other "
                        "sizes the same way", hint=f"pass a contiguous example ({call.paths[i]}.contiguous())")


def _frozen_records(frozen: list[dict], signature: list[mf.Param], target) -> list[mf.Frozen]:
    """The frozen values as the manifest lists them: globals and closures read, then
    the defaults of parameters the call left out (baked in too)."""
    out = [mf.Frozen(**{k: v for k, v in f.items() if k not in ("_value", "_held")}) for f in frozen
           if not f.get("_held") or f.get("weight")]  # (a container's tensor: where the graph reads it)
    for p in signature:
        if p.default is not None:
            out.append(mf.Frozen(kind="default", name=p.name, where=defined_at(target), type=p.default.type,
                                 value=tree.const_repr(p.default)))
    return out


def _detach_grad_disabled_regions(ep, flat: list) -> bool:
    """Each value computed with grad mode off (``with torch.no_grad():`` in forward, or
    after ``torch.set_grad_enabled(False)``) is detached where it leaves its region.

    torch.export keeps such a region as one op, but the functional retrace training
    needs (``run_decompositions``) inlines it: AOT autograd would then differentiate
    through it, and the gradients of the inputs it read would differ from eager's,
    silently. The detach is what grad mode off does to autograd: no history.

    Returns whether a region updates in place a value that requires grad and is no input
    or parameter (``_updates_intermediate``): a straight-through update, which the
    functional graph cannot express (eager's gradient skips the update), so training
    traces the program itself."""
    from .graphs import writes_in_place

    graph = ep.graph_module.graph
    changed = False
    requiring_grad, straight_through = None, False
    for region, enabled, body in compat.grad_mode_regions(ep.graph_module):
        if enabled:  # torch.enable_grad() inside: the training capture runs with grad on anyway
            continue
        for node in body.graph.nodes:
            if node.op == "call_function" and writes_in_place(node) and not straight_through:
                requiring_grad = _grad_flow(ep, flat)[0] if requiring_grad is None else requiring_grad
                straight_through = _updates_intermediate(ep, region, body, node, requiring_grad)
        results = next(n for n in body.graph.nodes if n.op == "output").args[0]
        for out in list(region.users):
            if not isinstance(out.meta.get("val"), torch.Tensor):  # a size: nothing to detach
                continue
            if writes_in_place(results[out.args[1]]):
                # `w.mul_(0.5)` under no_grad returns w itself, which stays w for autograd
                # (a parameter keeps its grad): build/autograd.py's hidden updates handle it
                continue
            with graph.inserting_after(out):
                detached = graph.call_function(torch.ops.aten.detach.default, (out,))
            detached.meta = {**out.meta}  # (views of it are rebuilt from it: autograd._rebuilt_as_view)
            out.replace_all_uses_with(detached, delete_user_cb=lambda user, d=detached: user is not d)
            changed = True
    if changed:
        ep.graph_module.recompile()
    return straight_through


def _grad_flow(ep, flat: list) -> tuple[set, set[int]]:
    """(the nodes of ``ep``'s graph whose values require grad, the user inputs given a
    history by an update). What requires grad flows from the user inputs and parameters
    that do, through the top-level ops (a grad-off region's outputs require nothing; the
    graph's metadata does not say it); an in-place update from a value that requires grad
    (``x.add_(w)``) gives the tensor it writes a history: after it, eager's ``x`` requires
    grad, whether or not it did before."""
    from .graphs import storage_of

    sig, state = ep.graph_signature, ep.state_dict
    user, params = list(sig.user_inputs), sig.inputs_to_parameters
    grad_off = {node for node, enabled, _ in compat.grad_mode_regions(ep.graph_module) if not enabled}
    tracked, inputs, given = set(), {}, set()
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in user:
                inputs[storage_of(node)] = i = user.index(node.name)
                if flat[i].requires_grad:
                    tracked.add(node)
            elif getattr(state.get(params.get(node.name)), "requires_grad", False):
                tracked.add(node)
            continue
        reads = [a for a in node.all_input_nodes if a in tracked]
        if node.op != "call_function" or node in grad_off or not reads:
            continue
        tracked.add(node)
        schema = getattr(node.target, "_schema", None)
        for arg, value in zip(schema.arguments if schema is not None and schema.is_mutable else (), node.args):
            written = arg.alias_info is not None and arg.alias_info.is_write and isinstance(value, torch.fx.Node)
            if written and any(r is not value for r in reads) and inputs.get(storage_of(value)) is not None:
                given.add(inputs[storage_of(value)])
                tracked.add(value)
    return tracked, given


def _updates_intermediate(ep, region, body, written, requiring_grad: set) -> bool:
    """Whether in-place op ``written``, in grad-off ``region``, updates a value that
    requires grad and is no input or parameter (``h = x * w`` then ``with torch.no_grad():
    h.clamp_(-1, 1)``, a straight-through update): eager's autograd keeps ``h``'s history
    and skips the update, so the gradient passes it unchanged, where the functional graph
    differentiates it (until 2026-12-05 a training package's gradient then differed
    silently: the fuzzer's program behind a parameter found it). Inputs and parameters
    updated so are hidden updates (autograd.py)."""
    from .graphs import is_view, storage_of

    target = written.args[0] if written.args else None
    while isinstance(target, torch.fx.Node) and target.op == "call_function" and is_view(target) \
            and isinstance(target.args[0], torch.fx.Node):  # (through views of it)
        target = target.args[0]
    placeholders = [n for n in body.graph.nodes if n.op == "placeholder"]
    if not isinstance(target, torch.fx.Node) or target not in placeholders:
        return False
    outer = region.args[2 + placeholders.index(target)]
    inputs = {storage_of(n) for n in ep.graph.nodes if n.op == "placeholder"}
    # (an input or parameter, or a view of one: a hidden update, autograd.py)
    return isinstance(outer, torch.fx.Node) and outer in requiring_grad and storage_of(outer) not in inputs


def _inputs_given_history(ep, flat: list) -> set[int]:
    """User inputs (indices) that the program updates in place, with grad mode on, from a
    value that requires grad (``x.add_(w)``): after it, eager's ``x`` requires grad and has
    a history, whether or not it required grad before (``_grad_flow``)."""
    return _grad_flow(ep, flat)[1]


def _input_updates_by_grad_mode(ep) -> tuple[set[int], set[int]]:
    """(user inputs the program updates in place with grad mode on, those it updates
    inside a grad-off region), as indices of the user inputs (graphs.written_placeholders)."""
    from .graphs import storage_of, written_placeholders

    gm = ep.graph_module
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    user_inputs = list(ep.graph_signature.user_inputs)
    index = {storage_of(p): user_inputs.index(p.name) for p in placeholders if p.name in user_inputs}
    regions = [(node, body) for node, enabled, body in compat.grad_mode_regions(gm) if not enabled]
    with_grad = {index[storage_of(placeholders[k])] for k in written_placeholders(gm, {r for r, _ in regions})
                 if storage_of(placeholders[k]) in index}
    without_grad = {index[storage_of(region.args[2 + k])] for region, body in regions
                    for k in written_placeholders(body) if storage_of(region.args[2 + k]) in index}
    return with_grad, without_grad


def _output_views(gm, before_retrace, names: dict) -> list[mf.Alias]:
    """The outputs that are views of inputs (``graphs.output_aliases``), from ``gm``, and
    where a functional retrace lost some (an output computed from an updated input's new
    value, no view of it any more), those found in the graph from before it."""
    found = output_aliases(gm, names=names)
    if before_retrace is None:
        return found
    have = {a.output for a in found}
    return sorted(found + [a for a in output_aliases(before_retrace, names=names) if a.output not in have],
                  key=lambda a: a.output)


def _in_order_program(ep, updated_inputs, custom_functions) -> bytes | None:
    """torch.export's program with its in-place updates in the program's order, serialized
    before a functional retrace (training's, or autocast's inlining) loses that order, where
    the program updates an input: a call whose inputs overlap runs it op by op on the
    caller's tensors, as eager (compiled code and the functional program would read a value
    from before another input's update). None where no input is updated (no call is
    refused for an overlap), or where a custom autograd.Function's backward, which the
    program does not hold, would be replaced by its forward's."""
    if not updated_inputs or custom_functions:
        return None
    return compat.serialize_program(ep)


def _functional(ep, target, helpers: dict | None = None):
    """torch.export's training IR keeps in-place ops (BatchNorm's running stats); the
    functional form AOT autograd needs returns the new values instead. CaptureError where
    torch's retrace refuses the program (a view of an input returned after an update of
    the input under no_grad), not torch's RuntimeError. ``helpers``: the user functions
    that ran, where the program does not hold their modules yet: a tensor torch.export
    held as a constant and the program updates (a batch norm a helper reaches by its
    global name, ``def loss(x): return model(x)``) captures again holding them."""
    try:
        with compat.quiet_export_logs(), warnings.catch_warnings():
            # (a tensor that requires grad read from a global or closure: torch detaches
            # its lifted constant and says so; a training package trains it, _train_outside)
            warnings.filterwarnings("ignore", message="A model attribute .* requires gradient")
            return ep.run_decompositions({})
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("torch.compile may split such a program into several graphs; compile the part without the "
                "in-place update, or an inference package (train=False)")
        constant = re.search(r"Constant \S+ is mutated", reason)
        if constant:  # (a batch norm the program reaches by no name: ``registry["model"]``)
            hint = _constant_updated_hint(target)
        refusal = CaptureError(f"cannot trace {program_name(target)}'s training graph: torch's functional retrace "
                               f"of the program failed: {reason}", hint=hint)
        if constant and helpers is not None:
            raise _CaptureAgain(refusal, ran=helpers) from e
        raise refusal from e


def _constant_updated_hint(target) -> str:
    """What to do where the program updates a tensor torch.export holds as a constant: a
    module a module's code calls as a module global (a batch norm in training mode: a
    function's package holds it by name, and trains it), else one reached by no name."""
    from .homes import container_tensors

    module = target if isinstance(target, torch.nn.Module) else getattr(target, "__self__", None)
    held = [path for m in (module, *modules_by_name(target)) if isinstance(m, torch.nn.Module)
            for path, _, _, _ in container_tensors(m)]
    if held:  # (``self.steps[0].add_(1)``: an update eager makes in the module's tensor)
        return (f"the program may update a tensor that a list, tuple or dict attribute holds ({', '.join(held[:3])}), "
                "which torch.export holds as a constant in a training package: register it as a buffer "
                "(self.register_buffer), or compile an inference package (train=False), which updates it in place")
    if isinstance(module, torch.nn.Module):
        named = sorted((r.name, r.path) for r in modules_by_name(target).values() if r.path is not None)
        if named:
            held = ", ".join(f"{name!r}: {path}" for name, path in named)  # (a function binds ``helpers.SEQ`` as SEQ)
            return (f"the module's code updates a tensor of {', '.join(p for _, p in named)}, a module it calls as a "
                    "module global, "
                    "which torch.export holds as a constant: make it a submodule (self.norm = ...), or compile a "
                    f"function that calls the module, lambda x: model(x), and load it with module={{'model': model, "
                    f"{held}}}")
    return ("the program updates a tensor of a module it reaches by no name a package can bind (an item of a dict, an "
            "attribute of an object), which torch.export holds as a constant: name the module in the function "
            "compiled (model = registry['model']; lambda x: step(model, x)), whose modules are the package's own")


def _inline_autocast(ep):
    """The program with its autocast region inlined as plain casts: torch.export keeps
    ``torch.autocast`` as a higher-order op around a subgraph, which the analyses here
    (aliases, layout pins, collectives) and the backends would otherwise see as one node.
    Inlining retraces the program functionally; its in-place updates are made in place
    again, where eager makes them (``graphs.updates_in_place``)."""
    with compat.quiet_export_logs():
        ep = ep.run_decompositions({})
    updates_in_place(ep)
    return ep


@contextlib.contextmanager
def _restoring_grad_mode(grad_mode: bool):
    """The capturing process's grad mode as it was, whatever the traced program set."""
    try:
        yield
    finally:
        torch.set_grad_enabled(grad_mode)


def _export_watched(program: _Program, target, flat: list, flat_dyn: list, subclass_inputs: bool = False,
                    subclass_weights_held: bool = False, size_oblivious: bool = True):
    """torch.export of the program, watched: (ExportedProgram, what the program's call
    recorded, the EffectRecorder). Raises CaptureError for what cannot be one graph;
    warns of side effects run only once. A program that leaves grad mode changed has it
    recorded (replayed after each call of the package), and undone here.

    Some programs are exported from make_fx's graph of them instead (desugar.py; the
    record says ``traced_below_transforms``), where torch's transforms and the subclasses'
    own ``__torch_dispatch__`` have run down to aten ops on plain tensors
    (``size_oblivious``: see ``_export``):

    - a ``torch.func`` transform that differentiates, or ``torch.autograd.grad`` (which
      torch.export fails on, or traces with its input frozen into a constant);
    - ``vmap`` where torch.export failed (over a custom autograd.Function, whose vmap rule
      torch's pre-dispatch trace cannot run; torch.compile runs it in one graph);
    - tensor subclass inputs (``subclass_inputs``: torch.export keeps their ops opaque);
    - subclass weights (``subclass_weights_held``: subclass_weights.py) or subclasses the
      program makes (torchao's float8 casts), where torch.export failed on them or kept
      them in its graph (TwoTensor: its ops are its ``__torch_dispatch__``'s). If make_fx
      fails too, torch.export's error is the one raised.
    """
    recorder = EffectRecorder()
    first = None  # torch.export's own error, where it failed
    if not subclass_inputs:
        try:
            ep, record = _export_watched_once(program, target, flat, flat_dyn, recorder,
                                              size_oblivious=size_oblivious)
        except CaptureError as e:
            first = e
        on_subclasses = (subclass_weights_held or recorder.subclasses_made) and (
            first is not None or subclass_weights.kept_subclass(ep.graph_module) is not None)
        # (vmap over a custom autograd.Function: torch.export's pre-dispatch trace fails,
        # "Current active mode ... not registered", where make_fx runs the Function's vmap rule)
        vmapped = first is not None and bool(recorder.vmaps)
        if not (recorder.transforms or on_subclasses or vmapped):
            if first is not None:
                raise first
            return ep, record, recorder
    warned = not subclass_inputs and first is None  # (the first export warned of the side effects)
    fallback = None if subclass_inputs or recorder.transforms else first  # (make_fx's says more of a transform)
    recorder = EffectRecorder()
    with warnings.catch_warnings():
        if warned:
            warnings.filterwarnings("ignore", category=SideEffectWarning)
        try:
            ep, record = _export_watched_once(program, target, flat, flat_dyn, recorder, below_transforms=True,
                                              size_oblivious=size_oblivious)
        except CaptureError:
            if fallback is None:
                raise
            raise fallback from None
    record["traced_below_transforms"] = True
    return ep, record, recorder


def _refuse_new_subclass_outputs(in_spec: TreeSpec, record: dict, target) -> None:
    """A package rebuilds an output tensor subclass only of a class an input or a module
    weight has (a TwoTensor weight's products are TwoTensors): a class the caller passes,
    or their module holds, is imported where the package runs, and a package never makes
    aotpack import a module it names (load says which to import where it is not). (Where
    torch.export traced the program, such an output is whole, a leaf:
    ``record["subclass_outputs"]``.)"""
    made = tree.subclass_types(record["out_spec"]) | set(record["subclass_outputs"])
    new = sorted(made - tree.subclass_types(in_spec) - subclass_weights.classes(target))
    if new:
        raise CaptureError(f"{program_name(target)} returns a {new[0]}, a tensor subclass that no input of the call "
                           "and no module weight is: a loaded package would have to import its module to rebuild it",
                           hint="return its inner tensors, or take one such tensor as an input")


def _export_watched_once(program: _Program, target, flat: list, flat_dyn: list, recorder: EffectRecorder, *,
                         below_transforms: bool = False, size_oblivious: bool = True):
    """``_export_watched`` without its second try: (ExportedProgram, record).
    ``below_transforms``: export make_fx's graph of the program (desugar.py)."""
    records: list[dict] = []
    grad_mode = torch.is_grad_enabled()
    try:
        try:
            with recorder, _restoring_grad_mode(grad_mode):
                if below_transforms:
                    program = desugar.Desugared(program, flat)
                program._record = records.append
                ep = _export(program, flat, flat_dyn, size_oblivious)
        except compat.capture_exception_kinds() as e:
            if "Constraints violated" not in str(e):
                raise
            # A named Dim was specialized or narrowed by the program. Export again letting
            # torch decide each such dimension (the others keep the user's range: a Dim of
            # min 1 left to torch would start at 2), then say which ones changed.
            violated = _violated_dims(str(e))
            for retry in ([violated] if violated else []) + [None]:
                records.clear()
                auto = [{d: Dim.AUTO if retry is None or user_dim(spec) in retry else spec for d, spec in dyn.items()}
                        if dyn else None for dyn in flat_dyn]
                try:
                    with recorder, _restoring_grad_mode(grad_mode):
                        ep = _export(program, flat, auto, size_oblivious)
                    # the guards torch.export dropped for the sizes it decided (``rows - 1 != 6``
                    # where the program branched on a size): guard_specs.dropped_size_guards
                    records[-1]["violation"] = str(e)
                    break
                except compat.capture_exception_kinds():
                    if retry is None:  # (the partial retry failing is one more reason for the full one)
                        raise
    except CaptureError:
        raise
    except compat.capture_exception_kinds() as e:
        _refuse_autograd_calls(recorder, target, e)
        raise _capture_error(e, target) from e  # torch's own error stays attached, for a bug report
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError, AttributeError) as e:
        _refuse_autograd_calls(recorder, target, e)
        raise _capture_error(e, target) from e
    _refuse_autograd_calls(recorder, target)
    record = records[-1]
    for effect in recorder.effects:
        warn_caller(f"aotpack: {effect.where}: {effect.what} {effect.why}", SideEffectWarning)
    return ep, record


def _violated_dims(message: str) -> set[str] | None:
    """The Dim names torch.export's constraint violation names ("Constraints violated
    (rows, cols)!"); None where the message has another form."""
    import re

    found = re.search(r"Constraints violated \(([^)]*)\)", message)
    return {n.strip() for n in found.group(1).split(",")} if found else None


def _autograd_effects(recorder: EffectRecorder, target, call: _Call, record: dict, training: bool) -> None:
    """What the program does to autograd that a package's graph cannot hold: a hook on a
    tensor (``h.register_hook(lambda g: g * 10)``) or ``h.retain_grad()``, which eager's
    backward runs and a training package's compiled backward would leave out (until
    2026-12-07 its gradients differed, and a returned tensor's ``.grad`` stayed None,
    silently: torch.export keeps neither), and a Parameter made inside
    (``_refuse_parameter_ctors``): refused; ``requires_grad_()`` on an input (a forces
    program's ``pos.requires_grad_()``), which eager leaves set on the caller's tensor and
    the package does not: a SideEffectWarning (unwarned until 2026-12-07)."""
    for i in record.get("made_to_require_grad", ()):
        warn_caller(f"aotpack: the program set requires_grad on its input {call.paths[i]} (requires_grad_()): "
                    "eager leaves the caller's tensor requiring grad after each call, the package leaves it as it "
                    f"was (call {call.paths[i]}.requires_grad_() before the call, or detach inside the program)",
                    SideEffectWarning)
    if training and recorder.tensor_hooks:
        raise CaptureError(f"{program_name(target)} registers a hook on a tensor at {recorder.tensor_hooks[0]}: "
                           "eager's backward runs it, a training package's compiled backward cannot (torch.export "
                           "keeps no hook)",
                           hint="register the hook (or call retain_grad()) on the package's outputs or inputs "
                                "outside the program, or write the change to the gradient as a custom "
                                "torch.autograd.Function, which a training package runs")
    _refuse_parameter_ctors(recorder, target, call.flat, training)


def _refuse_parameter_ctors(recorder: EffectRecorder, target, flat: list, training: bool) -> None:
    """A ``torch.nn.Parameter`` made inside the program is a new leaf that requires grad
    at each eager call, and so are the outputs computed from it: an inference package
    (or a training one where nothing else requires grad) would return them without
    grad. Refused then, as torch.compile breaks its graph there; a training package
    whose other inputs require grad runs it (the new leaf's own gradient is unreachable
    in eager too)."""
    if not recorder.parameter_ctors:
        return
    params = target.parameters() if isinstance(target, torch.nn.Module) else ()
    if training and any(t.requires_grad for t in (*flat, *params) if isinstance(t, torch.Tensor)):
        return
    raise CaptureError(f"{program_name(target)} creates a torch.nn.Parameter at {recorder.parameter_ctors[0]}: in eager "
                       "each call makes a new leaf that requires grad, and so do the outputs computed from it, "
                       "which this package cannot give; torch.compile breaks its graph there too",
                       hint="create the parameter once, in the module's __init__, or use a plain tensor")


def _refuse_autograd_calls(recorder: EffectRecorder, target, cause: BaseException | None = None) -> None:
    """A program that calls ``backward()`` (``loss.backward()`` in forward) accumulates
    into the ``.grad`` of tensors outside the call, an effect a package's graph cannot
    have: torch.compile breaks its graph there too. Refused naming the call, not with
    torch.export's error about it. (``torch.autograd.grad``, which returns the gradients,
    is traced through make_fx: desugar.py.)"""
    if recorder.autograd_calls:
        raise CaptureError(f"{program_name(target)} calls torch.autograd.{recorder.autograd_calls[0]}: it "
                           "accumulates gradients into .grad, which a package's graph cannot do (torch.compile "
                           "breaks its graph there)",
                           hint="return the loss and call backward() on the package's output, or compute the "
                                "gradients with torch.autograd.grad inside the program") from cause


def _mutation_outputs(ep, recorder: EffectRecorder, allow_mutations: bool) -> list:
    """The graph's outputs that are in-place updates, for a training program (its
    functional graph returns them; autograd.py replays them). An inference program has
    none: torch.export's training IR keeps in-place ops, and an autocast region's
    functional retrace gets them back in place (``_inline_autocast``). Any other kind of
    output is refused with the site that makes it."""
    allowed = []
    for spec in ep.graph_signature.output_specs:
        kind = spec.kind.name
        if kind == "USER_OUTPUT":
            continue
        if allow_mutations and kind in ("BUFFER_MUTATION", "USER_INPUT_MUTATION", "PARAMETER_MUTATION"):
            allowed.append(spec)  # (a parameter: eager allows it only hidden from autograd, see autograd.py)
            continue
        where = _mutation_site(ep, ep.graph_signature, spec, recorder)
        raise CaptureError(f"the program has a {kind} output ({spec.target}){where}, which a package does not "
                           "support", hint="make the program functional, or compile it with train=True")
    return allowed


def _graph_weights(ep, prefix: str, frozen: list[dict]):
    """The graph's weight inputs in graph order: (name -> tensor, name -> kind, name ->
    torch.export's name for it, the user input nodes). Constants read from globals or
    closures are named after the frozen value they are (``global:table``)."""
    weights: dict[str, torch.Tensor] = {}
    weight_kinds: dict[str, str] = {}
    weight_targets: dict[str, str] = {}
    user_nodes = []
    by_id, by_memory = {}, {}
    # (a tensor a global names itself before one a global container holds: ``W`` over ``WS[0]``)
    for f in sorted((f for f in frozen if f["type"] == "tensor"), key=lambda f: not f.get("_held")):
        by_id[id(f["_value"])] = f
        # (an nn.Parameter read from a global or closure: torch.export lifts a detached alias
        # of it, another object on the same memory)
        by_memory[memory_of(f["_value"])] = f
    by_memory.pop(None, None)
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
            if compat.is_fake(tensor):
                raise _fake_constant_refusal(target_name)
            f = by_id.get(id(tensor)) or by_memory.get(memory_of(tensor))
            if f and f.get("_held") and not target_name.removeprefix(prefix).startswith("lifted_tensor"):
                f = None  # (a global container's tensor that is a module's attribute too: the module's name)
            name = f"{f['kind']}:{f['name']}" if f else f"constant:{target_name.removeprefix(prefix)}"
            if f:
                f["weight"] = name
            weight_kinds[name] = "constant"
        else:  # pragma: no cover
            raise CaptureError(f"unsupported graph input kind {kind}")
        weights[name] = tensor
        weight_targets[name] = target_name
    refuse_meta_tensors({f"the program's tensor {n!r}": t for n, t in weights.items()})  # (one it made: constant:)
    return weights, weight_kinds, weight_targets, user_nodes


def _fake_constant_refusal(target_name: str) -> CaptureError:
    """torch.export left one of its traced values (a FakeTensor, no data) among the
    program's constants: the graph reads it where the program read an input, so packaged
    it would be wrong for every call. Seen with ``torch.func`` transforms inside the
    program, which capture now traces through make_fx (desugar.py): a refusal for what
    that still leaves."""
    return CaptureError(f"torch.export traced the program with one of its values frozen into a constant "
                        f"({target_name}), so the graph does not read the input there; torch "
                        f"{compat.torch_version()} cannot export it correctly",
                        hint="torch.compile may run it with a graph break; compile the parts around it")


def _mutations(ep, mutation_specs: list, weight_targets: dict, user_names: list[str], flat: list, paths: list,
               recorder: EffectRecorder, with_grad: set[int] = frozenset(),
               without_grad: set[int] = frozenset(), given_history: set[int] = frozenset()) -> list[mf.Mutation]:
    """The allowed in-place updates as the package records them; refuses an update of
    a leaf input that requires grad made with grad mode on (eager refuses it too; under
    ``torch.no_grad()``, ``without_grad``, eager allows it, as an optimizer's step), and
    an input that requires grad updated both with grad mode on and off (``with_grad``
    and ``without_grad``: eager keeps the first in its history and hides the second; a
    package replays one update per input, either way), as one that comes to require grad
    by its update (``given_history``: ``x.add_(w)``, then ``x.mul_(2)`` under no_grad)."""
    mutations = []
    by_target = {t: n for n, t in weight_targets.items()}
    for spec in mutation_specs:
        if spec.kind.name in ("BUFFER_MUTATION", "PARAMETER_MUTATION"):  # a weight of the module
            mutations.append(mf.Mutation(kind="buffer", weight=by_target[spec.target]))
            continue
        index = user_names.index(spec.target)
        if flat[index].requires_grad and flat[index].is_leaf and index not in without_grad:
            site = _mutation_site(ep, ep.graph_signature, spec, recorder)
            raise CaptureError(f"the program changes input {paths[index]} in place{site}, and it requires grad: "
                               "eager PyTorch refuses that too (a leaf Variable that requires grad is being used "
                               "in an in-place operation)",
                               hint="work on a copy (x = x.clone()) or pass an input that does not require grad")
        if (flat[index].requires_grad or index in given_history) and index in with_grad and index in without_grad:
            which = "which requires grad" if flat[index].requires_grad else "which comes to require grad"
            raise CaptureError(f"the program changes input {paths[index]}, {which}, in place both with "
                               "grad mode on and "
                               f"inside torch.no_grad() (at {', '.join(recorder.inplace_no_grad)}): eager keeps the "
                               "first update in the tensor's history and hides the second, which a training package "
                               "cannot replay as one update", hint="make both updates in the same grad mode")
        # (an input that requires grad and is no leaf: the update is replayed through autograd, autograd_runtime)
        mutations.append(mf.Mutation(kind="input", index=index))
    return mutations

"""Training packages: the forward and the backward, both compiled ahead of time.

``aotpack.compile(model, args, train=True)`` runs this pipeline::

    capture (torch.export, in-place buffer updates allowed)
      -> capture_joint: AOT autograd traces forward + backward as one joint graph (of the
         exported graph; of the program itself where it uses custom autograd.Functions,
         whose backward the exported graph does not hold)
      -> joint_pass (yours, optional): edit the joint graph
      -> partition (min-cut rematerialization, as torch.compile does)
      -> forward graph:  (*weights, *inputs) -> (*updates, *outputs, *saved)
         backward graph: (*saved, *grads of outputs) -> grads of weights and inputs
      -> each compiled by the chosen backend (aoti or eager) and stored in the package

The load side lives in ``autograd_runtime.py`` (the load path imports nothing of this
module's tracing). At load, a ``torch.autograd.Function`` runs the compiled forward, keeps what it saved,
and runs the compiled backward when autograd asks: ``fn(x).sum().backward()`` fills the
``.grad`` of the module's parameters (bind them with ``load(path, module=model)``) and
of inputs that require grad. Nothing is traced or compiled at load.

Eager semantics kept (tests/packages/test_training.py): in-place updates of buffers
(BatchNorm's running statistics) and of inputs that do not require grad land on the
caller's tensors after the forward; an in-place update of an input that requires grad
is refused at compile time, as eager refuses it; the same tensor passed twice gets the
sum of both gradients; inputs with and without requires_grad mix (each variant is
compiled for one pattern, which its guards check); dropout draws from the caller's
RNG. ``backward(create_graph=True)`` computes the first-order gradients; a second
backward through them raises AotpackError (as torch.compile's). Custom
``torch.autograd.Function``s run their own backward. A tensor subclass input made of
tensors (TwoTensor) that requires grad gets a gradient of its class: the joint graph is
of its inner tensors, and its gradient crosses the package's boundary as the inner
tensors of one of its class and context (``tree.take_apart``, at capture and at each
call), as AOT autograd's subclass wrappers carry it for torch.compile. A plain parameter
or input that meets one gets eager's gradient of the subclass too: the joint graph
returns its inner tensors (``tree.SubclassGradient``, ``_companions``) and the runtime
rebuilds it (``meta.train.subclass_grads``).

Dynamic shapes: with Dims, the joint graph is traced on fake tensors of symbolic sizes
(torch.export's symbols, ``compat.symbolic_like``), so the forward and backward work for
every size the Dims allow; each is exported again with those symbols as Dims
(``_graph_dims``). Sizes the backward needs (a Dim's value, a data-dependent size) pass
as shapes of saved tensors, never as ints (``_sizes_as_shapes``).

For compiler engineers::

    jc = aotpack.autograd.capture_joint(model, (x,))
    jc.forward.code, jc.backward.code      # fx graphs
    jc.saved, jc.donatable, jc.mutated     # metadata
    jc.source_of(node)                     # user file:line and module path of a node
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import tree
from ..errors import AotpackError, CaptureError, NothingToDifferentiate
from ..load.autograd_runtime import load_training  # noqa: F401 - the load side, re-exported
from ..package.manifest import Alias, Mutation, OutputView, SubclassGrad, subclass_grad_places
from . import subclass_weights
from .homes import Home, container_homes, frozen_homes, tensor_attribute

__all__ = ["JointCapture", "capture_joint", "compile_training", "load_training"]


@dataclass
class JointCapture:
    """Forward and backward graphs of a program, partitioned from one joint graph.

    Attributes:
      forward: ``(*primals) -> (*outputs, *saved)``; ``primals`` are the captured
        graph's arguments, weights first, then the flat inputs.
      backward: ``(*saved, *tangents) -> grads``, one grad per primal in ``grad_mask``.
      joint: the joint graph the two were cut from (after ``joint_pass``).
      num_outputs: forward outputs before the saved tensors (updates, then the
        program's outputs).
      mutated: what the first outputs update, one ``manifest.Mutation`` each (see
        ``Captured.mutations``).
      out_requires_grad: per forward output, whether it requires grad (one tangent each).
      grad_mask: per primal, whether the backward returns its grad.
      saved: names of the tensors the forward saves for the backward.
      donatable: those of them that are intermediates (not inputs, weights or outputs,
        nor views of them): the backward may free or overwrite them.
      primal_names: names of the primals (weights by name, then inputs by path).
      aliased: outputs that are views of an input, as eager returns them
        (``manifest.Alias``); the package returns ``input.as_strided(size, stride,
        offset)`` for them, a view again.
      output_views: outputs that are views of another output (``manifest.OutputView``),
        rebuilt from it at run time.
      hidden_outputs: the last of the forward's outputs that are intermediates some
        output views, not the program's (dropped after the views are rebuilt).
      subclass_grads: primals whose gradient is a tensor subclass (a Linear's weight
        meeting a TwoTensor input), in order (``manifest.SubclassGrad``): the backward
        returns the first inner tensor of each as the primal's gradient, and the others,
        in order, after every primal's.
    """

    forward: torch.fx.GraphModule
    backward: torch.fx.GraphModule
    joint: torch.fx.GraphModule
    num_outputs: int
    mutated: list[Mutation]
    out_requires_grad: list[bool]
    grad_mask: list[bool]
    saved: list[str]
    donatable: list[str]
    primal_names: list[str]
    aliased: list[Alias] = field(default_factory=list)
    output_views: list[OutputView] = field(default_factory=list)
    hidden_outputs: int = 0
    subclass_grads: list[SubclassGrad] = field(default_factory=list)
    captured: object = field(repr=False, default=None)

    def source_of(self, node: torch.fx.Node) -> dict:
        """Where a forward or backward node comes from in the user's code:
        ``{"stack_trace", "module", "forward_node"}``. Backward nodes are matched to the
        forward op they differentiate through autograd's sequence number (``seq_nr``)."""
        seq = node.meta.get("seq_nr")
        fw = node if node.graph is self.forward.graph else None
        if fw is None and seq is not None:
            fw = next((n for n in self.forward.graph.nodes if n.op == "call_function" and n.meta.get("seq_nr") == seq),
                      None)
        meta = (fw or node).meta
        stack = meta.get("nn_module_stack") or {}
        module = next(reversed(stack.values()))[0] if stack else None
        if module is not None:  # the path inside the user's module, not aotpack's capture wrapper
            module = module.removeprefix("m.") if module != "m" else ""
        return {"stack_trace": _user_frames(meta.get("stack_trace")), "module": module,
                "forward_node": fw.name if fw is not None else None}


def _user_frames(stack: str | None) -> str | None:
    """A stack trace without the frames of aotpack's own capture wrapper."""
    if not stack:
        return stack
    import re

    frames = re.split(r"(?m)^(?=\s*File \")", stack)
    return "".join(f for f in frames if os.path.join("aotpack", "build", "capture.py") not in f).strip() or stack


def _gets_grad(captured, name: str, w: torch.Tensor) -> bool:
    """Whether the backward computes weight ``name``'s gradient: a parameter's, a
    module's plain tensor attribute's (``constant:scale``), or a tensor's the program reads
    from outside (``_train_outside``) that requires grad, as eager accumulates into it."""
    return captured.weight_kinds[name] != "buffer" and w.requires_grad and w.is_floating_point()


def _primals(captured) -> tuple[list[torch.Tensor], list[str]]:
    """The captured graph's arguments as leaves with the requires_grad of the program's
    own tensors: parameters that require grad, inputs as passed. Copies in the examples'
    own strides: ``clone`` makes one with gaps (``base[1:, 2:]``) contiguous, and a
    program traced again on that (custom Functions, transforms) took the other branch
    of a layout read than the capture, whose graph then failed on the example (fuzzer
    seed 68: torch's raw "view size is not compatible" at compile)."""
    from .. import tree
    from ..package.weights import copy_in_layout

    primals, names = [], []
    for name, w in captured.weights.items():
        primals.append(copy_in_layout(w.detach()).requires_grad_(_gets_grad(captured, name, w)))
        names.append(name)
    paths = tree.tensor_paths(captured.in_spec, [p.name for p in captured.signature])
    for path, x in zip(paths, captured.example_inputs):
        primals.append(copy_in_layout(x.detach()).requires_grad_(x.requires_grad))
        names.append(path)
    return primals, names


def _run_with_meta(gm: torch.fx.GraphModule):
    """A function that runs ``gm`` node by node, so the graph AOT autograd traces keeps
    each node's stack trace and module path (fx's preserve_node_meta)."""
    from torch.fx import traceback as fx_traceback

    def run(*args):
        with fx_traceback.preserve_node_meta():
            return tuple(torch.fx.Interpreter(gm).run(*args))

    return run


def _unalias_outputs(gm: torch.fx.GraphModule, mutations: list[Mutation], weights: list[str],
                     hidden_updates: set[str] = frozenset(), dim_names: dict[str, str] | None = None,
                     ) -> tuple[torch.fx.GraphModule, list[Alias], list[OutputView], int, set[int]]:
    """Outputs that alias an input or another output become copies in the graph (AOT
    autograd's simple export takes no aliasing outputs); how to rebuild them is returned
    so the package hands back real views instead:

    - a view of an input (``x.view(-1)``, ``x[0]``): its view parameters
      (``capture.output_aliases``), rebuilt on the caller's tensor;
    - an argument the program updates in place (``y.add_(1); return y``), in the
      functional graph the update's value: the caller's tensor itself, updated, as eager
      returns it. A view of such an argument (``y.add_(1); return y[0]``) is that view of
      the caller's tensor, after the update (``_view_of_updated``);
    - a view of another output (``h`` and ``h.t()``): ``OutputView``, rebuilt from that
      output at run time (as torch.compile regenerates aliases of intermediates);
    - a view of an intermediate no output shows (``return (x * y).t()``): its copy, with
      eager's strides (only memory the caller cannot reach differs); where a copy cannot
      have them (an ``expand``), or several outputs view it, the intermediate becomes a
      hidden output and the views ``OutputView``s of it.

    ``hidden_updates``: weights whose in-place update eager hides from autograd, and
    inputs (``input:<flat index>``) updated with grad mode off (``_hidden_from_autograd``).
    ``dim_names``: the Dim name of each size symbol, for views whose sizes follow Dims.

    Returns (the graph, input aliases, output views, number of hidden outputs, the
    outputs the graph returns copies of)."""
    import copy

    from .graphs import output_aliases, storage_of

    n_mutations = len(mutations)
    gm = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))
    aliased = output_aliases(gm, skip=n_mutations, names=dim_names)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    values = list(out.args[0])
    updated = {values[k]: _mutation_target(m, weights) for k, m in enumerate(mutations)}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    storages = {storage_of(n) for n in updated} - {None}
    done = {a.output for a in aliased}
    for i, node in enumerate(values[n_mutations:]):
        if i in done or not isinstance(node, torch.fx.Node):
            continue
        if node in updated:
            aliased.append(Alias(output=i, primal=updated[node], same=True))
        elif storage_of(node) in storages:
            aliased.append(_view_of_updated(i, node, updated, placeholders, dim_names))
    _hidden_from_autograd(gm, values, mutations, weights, hidden_updates)
    views, copies, hidden = _views_among_outputs(values[n_mutations:], {a.output for a in aliased}, dim_names)
    copied = {a.output for a in aliased} | set(copies)
    for i in sorted(copied):
        node = values[n_mutations + i]
        with gm.graph.inserting_before(out):
            copy_node = gm.graph.call_function(torch.ops.aten.clone.default, (node,))
        copy_node.meta["val"] = node.meta["val"]
        values[n_mutations + i] = copy_node
    out.args = (tuple(values + hidden),)
    gm.recompile()
    return gm, aliased, views, len(hidden), copied


def _view_of_updated(i: int, node: torch.fx.Node, updated: dict, placeholders: list,
                     dim_names: dict[str, str] | None = None) -> Alias:
    """Output ``i``, a view of an argument the program updates in place, as a view of the
    caller's tensor (rebuilt after the update is written back). Its numbers are taken
    relative to the update's value, which stands for the argument when it has the
    argument's shape and strides (elementwise updates keep them); otherwise refused.
    Numbers that follow the Dims are recorded in them (``_view_numbers``)."""
    from .graphs import storage_of

    base = next(n for n in updated if storage_of(n) == storage_of(node))
    b, v, arg = base.meta["val"], node.meta["val"], placeholders[updated[base]].meta["val"]
    offset = v.storage_offset() - b.storage_offset()
    if b.shape == arg.shape and b.stride() == arg.stride():
        numbers, n = _view_numbers(i, [*v.shape, *v.stride(), offset], dim_names), v.dim()
        return Alias(output=i, primal=updated[base], size=numbers[:n], stride=numbers[n:2 * n], offset=numbers[-1])
    moved = _in_layout_of(arg, b, v, offset) if b.shape == arg.shape else None
    if moved is None:
        raise CaptureError(f"output {i} is a view of an argument the program updates in place, and the update "
                           "changes its layout; a training package cannot rebuild that view of the caller's tensor",
                           hint="return the argument itself, or a .clone() of the view")
    return Alias(output=i, primal=updated[base], size=list(v.shape), stride=moved[0], offset=moved[1])


def _view_numbers(i: int, numbers: list, dim_names: dict[str, str] | None) -> list:
    """The size, strides and offset of output ``i`` (a view the package rebuilds at run
    time) as recorded: ints, or Dim names and ``{"expr": ...}`` in them where they follow
    the Dims (``dim_names``: symbol -> Dim name), evaluated from the call's sizes.
    CaptureError for a number the call's sizes cannot give."""
    from ..package.sizes import size_evaluator
    from .graphs import size_text

    known = dict(dim_names or {})
    recorded = [size_text(n, known) for n in numbers]
    if len(known) > len(dim_names or {}) or any(size_evaluator(n) is None for n in recorded):
        raise CaptureError(f"output {i} is a view whose size is not one the call's sizes give; a training "
                           "package cannot rebuild it", hint="return a .clone() of the view, or drop the Dim")
    return recorded


def _in_layout_of(arg, b, v, offset: int) -> tuple[list[int], int] | None:
    """The strides and offset in ``arg``'s memory of view ``v``, which views ``b`` (the
    same tensor as ``arg`` in another layout: the update's value in the functional graph,
    contiguous where the caller's tensor is transposed) at ``offset`` in ``b``'s memory:
    each step of the view and its start, as a step in ``b``'s element indices, laid out
    with ``arg``'s strides. None where that is no view of ``arg`` (a step that carries
    from one dimension into the next, a flatten) or the sizes are symbolic."""
    if any(isinstance(n, torch.SymInt) for n in (*b.shape, *b.stride(), *arg.stride(), *v.shape, *v.stride(), offset)):
        # (int() of a size a Dim gives would be its example's value, without an error: those
        # numbers went into the manifest as SymInts, which its check refused as malformed,
        # fuzzer seed 63)
        return None
    shape, b_stride, a_stride = list(b.shape), list(b.stride()), list(arg.stride())
    sizes, steps, start = list(v.shape), list(v.stride()), offset
    order = sorted((d for d in range(len(shape)) if shape[d] > 1), key=lambda d: -b_stride[d])

    def index(memory: int) -> list[int] | None:
        """The element index whose memory is at ``memory`` from b's start (greedy by
        stride: unique for a tensor whose elements do not overlap)."""
        digits = [0] * len(shape)
        for d in order:
            digits[d], memory = divmod(memory, b_stride[d]) if b_stride[d] else (0, memory)
        return digits if memory == 0 else None

    first = index(start)
    moves = [index(st) if n > 1 else [0] * len(shape) for n, st in zip(sizes, steps)]
    if first is None or any(m is None for m in moves):
        return None
    last = [first[k] + sum((n - 1) * m[k] for n, m in zip(sizes, moves)) for k in range(len(shape))]
    if any(x >= n for x, n in zip(last, shape)) or any(n > 1 and s == 0 for n, s in zip(shape, b_stride)):
        return None  # a step past a dimension's end: it carries into the next one
    in_arg = lambda digits: sum(x * s for x, s in zip(digits, a_stride))  # noqa: E731
    return [in_arg(m) for m in moves], in_arg(first)


def _hidden_from_autograd(gm: torch.fx.GraphModule, values: list, mutations: list[Mutation], weights: list[str],
                          names: set[str]) -> None:
    """Parameters updated in place where autograd does not see it (``with torch.no_grad():
    self.w.mul_(0.5)``; eager refuses the update with grad on), and inputs updated with
    grad mode off (``names`` holds ``input:<flat index>`` for those), made so in the
    functional graph too. Eager's gradient for such a tensor is the gradient of its
    value after the update, the tensor the rest of the program uses; the functional
    graph computes that value (``w1 = w * 0.5``) differentiably, which would scale it.
    So each later use reads ``w1.detach() + (w - w.detach())``: the same value (``w -
    w.detach()`` is zero; ``nan_to_num`` keeps it zero where ``w`` is inf or nan), with
    the gradient passing to ``w`` unchanged. The update's own output keeps ``w1`` for a
    parameter (written back with grad off: a leaf), and is ``w1.detach()`` for an input,
    so the write-back records nothing in the caller's graph, as eager's hidden update."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    aten = torch.ops.aten
    for k, m in enumerate(mutations):
        if (m.weight if m.kind == "buffer" else f"input:{m.index}") not in names:
            continue
        value, weight = values[k], placeholders[_mutation_target(m, weights)]
        with gm.graph.inserting_after(value):
            frozen = gm.graph.call_function(aten.detach.default, (value,))
        with gm.graph.inserting_after(frozen):
            w_frozen = gm.graph.call_function(aten.detach.default, (weight,))
        with gm.graph.inserting_after(w_frozen):
            zero = gm.graph.call_function(aten.sub.Tensor, (weight, w_frozen))
        with gm.graph.inserting_after(zero):
            zero_finite = gm.graph.call_function(aten.nan_to_num.default, (zero, 0.0, 0.0, 0.0))
        with gm.graph.inserting_after(zero_finite):
            seen = gm.graph.call_function(aten.add.Tensor, (frozen, zero_finite))
        for node in (frozen, w_frozen, zero, zero_finite, seen):
            node.meta["val"] = value.meta["val"]
        value.replace_all_uses_with(seen, delete_user_cb=lambda user, keep=(frozen, out): user not in keep)
        if m.kind == "input":
            values[k] = frozen
            out.args = (tuple(frozen if i == k else v for i, v in enumerate(out.args[0])),)


def _views_among_outputs(outputs: list, skip: set[int], dim_names: dict[str, str] | None = None,
                         ) -> tuple[list[OutputView], list[int], list]:
    """(outputs that are views of another output, every output to copy in the graph, the
    intermediates to return as hidden outputs): see ``_unalias_outputs``. Outputs sharing
    memory are grouped; one that is no view (its op allocates) is the base the others are
    rebuilt from; where none is, the intermediate they view becomes a hidden output,
    after the program's (``Train.hidden_outputs``)."""
    from .graphs import non_overlapping_and_dense, storage_of

    groups: dict = {}
    for i, node in enumerate(outputs):
        if i not in skip and isinstance(node, torch.fx.Node) and storage_of(node) is not None:
            groups.setdefault(storage_of(node), []).append(i)
    views, copies, hidden = [], [], []
    for members in groups.values():
        owners = [i for i in members if not _rebuilt_as_view(outputs[i])]
        if not owners and len(members) == 1 and non_overlapping_and_dense(outputs[members[0]].meta["val"]):
            copies.append(members[0])  # a copy with eager's strides: only memory the caller cannot reach differs
            continue
        if owners:
            base, base_node = owners[0], outputs[owners[0]]
        else:  # views of an intermediate no output is (``(x * y).expand(...)``, ``h.t()`` beside ``h[1:]``)
            base_node = _view_base(outputs[members[0]])
            if storage_of(base_node) != storage_of(outputs[members[0]]):  # pragma: no cover - a view op chain
                raise CaptureError(f"outputs {members} are views of an intermediate aotpack could not find",
                                   hint="return a .clone() of the view")
            base = len(outputs) + len(hidden)
            hidden.append(base_node)
        b = base_node.meta["val"]
        for i in members:
            if i != base:
                v, n = outputs[i].meta["val"], outputs[i].meta["val"].dim()
                numbers = _view_numbers(i, [*v.shape, *v.stride(), v.storage_offset() - b.storage_offset(),
                                            *b.stride()], dim_names)
                views.append(OutputView(output=i, base=base, size=numbers[:n], stride=numbers[n:2 * n],
                                        offset=numbers[2 * n], base_stride=numbers[2 * n + 1:]))
                copies.append(i)
    return views, copies, hidden


def _rebuilt_as_view(node: torch.fx.Node) -> bool:
    """Whether output ``node`` is rebuilt from another as a view: a view op's result, but
    not a ``detach`` (a value computed with grad mode off, capture.py): a view rebuilt
    from what it detaches would carry that tensor's gradient history, so the detached
    value is the base its own views are rebuilt from."""
    from .graphs import is_view

    return is_view(node) and node.target is not torch.ops.aten.detach.default


def _view_base(node: torch.fx.Node) -> torch.fx.Node:
    """The node a chain of view ops starts from (``h`` of ``h.t()[1:]``), or the
    ``detach`` in it (``_rebuilt_as_view``)."""
    while _rebuilt_as_view(node) and node.args and isinstance(node.args[0], torch.fx.Node):
        node = node.args[0]
    return node


def _from_function(t) -> bool:
    """Whether tensor ``t`` (an output aliasing an argument) came out of a custom
    ``torch.autograd.Function`` (``Test.apply(x, y)`` returning ``y``), maybe through
    views of it: its gradient is then that Function's backward, not the view's. (An
    output aliasing an argument is made by views and such Functions only, each node's
    first input the tensor it aliases; the chain ends at the traced leaf.)"""
    node = getattr(t, "grad_fn", None)
    while node is not None:
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            return True
        node = node.next_functions[0][0] if node.next_functions else None
    return False


def _program_outputs(captured, copied: set[int], made: set[str], homes: dict, viewing: list[int] = (),
                     hidden_dims: list[int] = ()) -> Callable:
    """``fn(*primals)``: the captured program run on ``primals`` (weights, then inputs),
    with the exported graph's outputs (in-place updates' values, then the program's
    outputs, then the hidden ones). For programs with custom ``torch.autograd.Function``s,
    whose backward the exported graph does not hold: tracing this runs them, backward
    included.

    In-place updates land on copies of the arguments (so the trace is functional, as AOT
    autograd's simple export wants), and the outputs the exported graph returns copies of
    (``copied``: views of an argument, of another output or of an intermediate) are
    copies too (``_unalias_outputs``). ``viewing``: for each hidden output
    (an intermediate that outputs view and no output is, ``(x * y).expand(...)``), an
    output that views it; the intermediate is that output's ``_base`` (autograd's view
    tracking), checked against the number of dimensions it has in the exported graph
    (``hidden_dims``; its sizes may be symbols in the trace, which a comparison would
    pin). ``made``: constants the program makes itself (``_made_by_the_program``),
    which its own run makes again. ``homes``: where it reads the tensors it does not
    package (``frozen_homes``), which the trace's primals stand in for."""
    from torch.func import functional_call

    from .capture import function_names

    names = list(captured.weights)
    targets = [captured.weight_targets.get(n) for n in names]
    missing = [n for n, t in zip(names, targets) if n not in homes and n not in made and (
        t is None or (captured.weight_kinds.get(n) == "constant" and not tensor_attribute(captured.program, t)))]
    uses = (f"torch.autograd.Function {function_names(captured.custom_functions)}" if captured.custom_functions
            else "an update under no_grad of a value that requires grad" if captured.straight_through
            else "a torch.func transform or a tensor subclass")
    if missing:
        raise CaptureError(f"{captured.name} uses {uses} "
                           f"and tensors that are no parameter, buffer, module global or closure variable ({', '.join(missing[:3])}): "
                           "a training package cannot run its backward on them",
                           hint="register such tensors as buffers of the module, or compile with train=False")
    written = [_mutation_target(m, names) for m in captured.mutations]
    program = captured.program
    program._record = lambda record: None  # (metadata of the capture's own call, taken already)

    n_primals = len(names) + len(captured.example_inputs)

    def run(*primals):
        # (after the primals, companions: tensors standing for further inner tensors of
        # a subclass gradient, run.joined, tree.SubclassGradient)
        primals, companions = primals[:n_primals], iter(primals[n_primals:])
        copies = {i: primals[i].clone() for i in written}
        args = [copies.get(i, p) for i, p in enumerate(primals)]
        for k, (kind, _, inner) in run.joined.items():
            args[k] = tree.SubclassGradient.apply(kind, args[k], *[next(companions) for _ in inner[1:]])
        params = {t: a for n, t, a in zip(names, targets, args) if n not in homes and n not in made}
        for k, n in enumerate(names):  # frozen globals and cells: the traced primals stand in (restore_globals)
            if n in homes:
                homes[n].put(args[k])
        # (subclass weights are named by their inner tensors, as capture traced them)
        # (tie_weights=False: a tied weight is one primal per name, as the exported graph
        # has it, each with its share of the gradient, which the runtime sums; tied, the
        # two primals were "multiple values for keys which are tied", torch's ValueError)
        with subclass_weights.unwrapped(program):
            outs = functional_call(program, params, tuple(args[len(names):]), tie_weights=False)
        bases = [outs[k]._base for k in viewing]
        if any(b is None or b.dim() != n for b, n in zip(bases, hidden_dims)):
            # (its training graph is traced from the program itself, where the view's base is
            # another tensor than the exported graph's: an update through a view of it)
            raise CaptureError(f"{captured.name} uses {uses} and returns a view of an intermediate tensor that no "
                               "output is, which aotpack could not find in the program's own run",
                               hint="return a .clone() of the view")
        run.through_function.update(k for k, o in enumerate(outs) if k in copied and _from_function(o))
        outs = [o.clone() if k in copied else o for k, o in enumerate(outs)]
        return (*[copies[i] for i in written], *outs, *bases)

    run.through_function = set()  # outputs aliasing an argument that a custom Function returned
    run.joined = {}  # primals whose gradient is a tensor subclass (_subclass_gradients)
    saved = {n: home.get() for n, home in homes.items()}

    def restore_globals() -> None:
        for n, home in homes.items():
            home.put(saved[n])

    run.restore_globals = restore_globals
    return run


def _own_requires_grad(run: Callable, primals: list, names: list[str], captured) -> tuple[list[bool], dict]:
    """Which of ``run``'s outputs (``_program_outputs``) require grad in the program's own
    run on the example: what the package's outputs must say. The exported graph may say
    otherwise where make_fx traced it (desugar.py): it has no grad-mode regions, so a
    value the program computed under ``no_grad`` requires grad there (fuzzer seeds 60
    and 61: the joint graph's output grads did not match, a CaptureError). With them,
    for a program with tensor subclass inputs or weights, the primals (``names``) whose
    eager gradient is a subclass (``_subclass_gradients``; else {})."""
    from .. import _torch_compat as compat

    joined = {}
    with torch.enable_grad(), compat.as_torch_export_traces():
        try:
            outs = run(*primals)
        finally:
            run.restore_globals()
        if tree.subclass_types(captured.in_spec) or captured.subclass_weights:
            joined = _subclass_gradients(outs, primals, names, captured.name)
    return [isinstance(o, torch.Tensor) and o.requires_grad for o in outs], joined


def _refuse_updated_subclasses(captured, aliased: list) -> None:
    """CaptureError for a tensor subclass input whose gradient the package carries (it
    requires grad), updated in place (under no_grad: eager refuses it otherwise) and
    returned, or a view of it: the call's inner tensors of it come from one autograd
    Function (tree.take_apart), whose outputs autograd lets no update reach while a view
    of them is returned (torch's RuntimeError at the call). Updated and not returned, it
    trains as eager."""
    inner = tree.subclass_inner_indices(captured.in_spec)
    updated = {m.index for m in captured.mutations if m.kind == "input" and m.index in inner
               and captured.example_inputs[m.index].requires_grad}
    n_weights = len(captured.weights)
    returned = sorted(a.primal - n_weights for a in aliased if a.primal - n_weights in updated)
    if returned:
        path = tree.tensor_paths(captured.in_spec, [p.name for p in captured.signature])[returned[0]]
        raise CaptureError(f"{captured.name} updates {path} in place and returns it (or a view of it), an inner "
                           "tensor of a tensor subclass input that requires grad: a training package does not "
                           "return such an updated input beside the subclass's gradient",
                           hint="return a .clone() of it, pass it not requiring grad, or compile with train=False")


def _subclass_gradients(outs: list, primals: list, names: list[str], program: str) -> dict[int, tuple]:
    """The primals (indices) whose eager gradient is a tensor subclass: a parameter or
    input that meets a TwoTensor input gets a TwoTensor gradient in eager (its backward
    computes through the subclass). Per such primal ``(kind, record, inner)``: what
    ``tree.SubclassGradient`` takes (class, inner names, context), the manifest's record
    of it (``SubclassGrad``: the gradient's ``SubclassSpec``, its inner tensors numbered
    0..n-1) and the inner tensors of the example's gradient. Found from one backward of
    the program's own run on the examples; CaptureError where a subclass input's gradient is not of its class and
    context (tree._Rebuild), or where a package could not return the gradient: a
    subclass of subclasses, or a first inner tensor of another dtype than the tensor's."""
    wanted = [k for k, p in enumerate(primals) if p.requires_grad]
    diff = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    if not wanted or not diff:
        return {}
    try:
        grads = torch.autograd.grad(diff, [primals[k] for k in wanted], [torch.ones_like(o) for o in diff],
                                    allow_unused=True, retain_graph=True)
    except AotpackError as e:  # (tree._Rebuild: a subclass input's gradient of another class)
        raise CaptureError(f"{program}: {e.message}", hint=e.hint) from None
    except Exception:  # noqa: BLE001 - the joint trace below reports what torch refuses
        return {}
    found = {}
    for k, g in zip(wanted, grads):
        if not (isinstance(g, torch.Tensor) and tree.flattens_into_tensors(g)):
            continue
        if len(diff) > 1:  # the outputs whose own share of the gradient is of the subclass
            shares = [torch.autograd.grad(o, primals[k], torch.ones_like(o), retain_graph=True, allow_unused=True)[0]
                      for o in diff]
            tangents = [j for j, share in enumerate(shares) if share is not None and tree.flattens_into_tensors(share)]
        else:
            tangents = [0]
        spec, inner = tree.flatten(g, f"eager's gradient of {names[k]}")
        if not (all(c.kind == "tensor" for c in spec.children) and inner[0].dtype == primals[k].dtype):
            raise CaptureError(
                f"{program}: eager's gradient of {names[k]} is a {spec.type} whose inner tensors are "
                + ("tensor subclasses themselves" if any(c.kind != "tensor" for c in spec.children)
                   else f"of dtype {inner[0].dtype}, not {primals[k].dtype}")
                + ": a training package returns a plain tensor's subclass gradient as plain inner tensors "
                  "of the tensor's dtype",
                hint="keep it out of the gradient (requires_grad False), or compile with train=False")
        attrs, meta = g.__tensor_flatten__()
        found[k] = ((type(g), tuple(attrs), meta), SubclassGrad(primal=k, spec=spec, name=names[k], tangents=tangents),
                    inner)
    return found


def _companions(joined: dict, primals: list, captured) -> list[tuple]:
    """For each primal whose gradient is a tensor subclass (``joined``,
    ``_subclass_gradients``), in order, one leaf per further inner tensor of the
    gradient: traced after the primals, each receives that inner tensor as its gradient
    (``tree.SubclassGradient``). ``(k, t)`` each, as ``symbolic_like`` takes them: sized
    as primal ``k`` where the inner tensor is (None: of its own static size); CaptureError
    for an in-place update of such a primal."""
    updated = {_mutation_target(m, list(captured.weights)) for m in captured.mutations}
    out = []
    for k, (_, record, inner) in sorted(joined.items()):
        if k in updated:
            raise CaptureError(f"{captured.name} updates {record.name} in place, whose eager gradient is a "
                               f"{record.spec.type}: "
                               "a training package does not return such a gradient of an updated tensor",
                               hint="keep it out of the gradient (requires_grad False), or compile with train=False")
        out += [(k if t.shape == primals[k].shape else None, torch.zeros_like(t).requires_grad_())
                for t in inner[1:]]
    return out


def _drop_companions(fw: torch.fx.GraphModule, n_primals: int, program: str) -> None:
    """Remove the companions (``_companions``) from the forward graph's inputs: the
    program never reads them, so a call passes the primals alone."""
    extra = [n for n in fw.graph.nodes if n.op == "placeholder"][n_primals:]
    for node in extra:
        if node.users:  # pragma: no cover - SubclassGradient's forward ignores them
            raise CaptureError(f"{program}: the forward reads an inner tensor of a subclass gradient")
        fw.graph.erase_node(node)
    if extra:
        fw.graph.lint()
        fw.recompile()


def _made_by_the_program(captured, names: list[str]) -> set[str]:
    """The constants among ``names`` (the captured graph's first inputs) that the program
    makes itself at each call (``torch.tensor([0, 2])`` in its code: torch.export lifts the
    value and copies it fresh, ``lift_fresh_copy`` or a clone, at its only uses). The program's own
    run makes them again, so nothing stands in for them (a tensor the program reads from
    somewhere, used as it is, needs a home the trace can swap). A constant the graph does
    not use (its only use was dropped: an index whose result no output needs) needs
    none either."""
    placeholders = [n for n in captured.graph_module.graph.nodes if n.op == "placeholder"]
    return {name for name, node in zip(names, placeholders)
            if captured.weight_kinds.get(name) == "constant"
            and all(u.target in _FRESH_COPIES for u in node.users)}


def _refuse_example_zeros(joint: torch.fx.GraphModule, captured) -> None:
    """CaptureError where a joint graph traced on the symbolic sizes of Dims holds a real
    tensor of zeros as a constant: autograd's zero derivative of ``sgn`` in a double
    backward (``compat.aot_export_joint``), made at the example's sizes, which compiled
    code would read at every size (AOTInductor's forward crashed, until 2026-12-07)."""
    from .. import _torch_compat as compat

    if captured.dims and any(isinstance(c := getattr(joint, n.target, None), torch.Tensor) and not compat.is_fake(c)
                             and c.numel() and not c.any() for n in joint.graph.nodes if n.op == "get_attr"):
        raise CaptureError(f"{captured.name}: differentiating twice through abs (or another op whose derivative is "
                           "zero) makes a zero gradient of the example's sizes, which cannot follow the Dims",
                           hint="compile it without dynamic= (each size its own package or variant)")


def _constants_as_primals(joint: torch.fx.GraphModule, primals: list, made: set[str], captured) -> None:
    """Where the joint graph, traced from the program itself, holds a tensor the program
    made (``torch.tensor([0, 2])``: a ``get_attr`` constant of the trace), read it from
    the primal that stands for it instead (the captured constant of the same value), so
    the forward graph takes every tensor as an input (the eager backend stores no
    tensor attributes). Then ``_refuse_example_zeros``."""
    if made:
        _made_as_primals(joint, primals, made, list(captured.weights))
    _refuse_example_zeros(joint, captured)


def _made_as_primals(joint: torch.fx.GraphModule, primals: list, made: set[str], names: list[str]) -> None:
    placeholders = [n for n in joint.graph.nodes if n.op == "placeholder"]
    candidates = [(placeholders[k], primals[k]) for k, name in enumerate(names) if name in made]
    for node in [n for n in joint.graph.nodes if n.op == "get_attr"]:
        value = getattr(joint, node.target, None)
        if not isinstance(value, torch.Tensor):
            continue
        same = next((p for p, t in candidates if t.dtype == value.dtype and t.shape == value.shape
                     and t.device == value.device and torch.equal(t, value)), None)
        if same is not None:
            node.replace_all_uses_with(same)
            joint.graph.erase_node(node)
    joint.graph.lint()
    joint.recompile()


# (torch.export's copy of a value the program makes; its functional form is a clone)
_FRESH_COPIES = (torch.ops.aten.lift_fresh_copy.default, torch.ops.aten.clone.default)


def _train_outside(captured, homes: dict[str, Home]) -> dict[str, Home]:
    """Tensors that require grad which the program reads from outside what it packages
    (``homes``, ``frozen_homes``): a module global or closure variable (``W``), or a
    parameter of a module held under a name no dict can give (``training``, or a partial's ``args[0]`` where its function has no signature;
    the modules a function reaches by a name are the program's own submodules, whose
    parameters are parameters: capture's ``_held_by_name``). Eager accumulates their
    gradients into their ``.grad``, as torch.compile does; the package trains them as its
    own parameters: each is a weight the backward computes the gradient of (``_gets_grad``),
    named as the program reads it (``W``, ``constant:W``: ``bound_name``),
    which a package loaded alone holds as a leaf that requires grad, and
    ``load(path, module={"lin": lin})`` binds to the caller's tensor. (Until 2026-12-05
    the gradient was silently dropped; then refused.) Returns ``homes`` under the new
    names. CaptureError for a module's program: ``load(path, module=model)`` binds the
    module alone, so no call could give such a tensor its gradient; a function calling
    the module binds both."""
    renames = {}
    for name, home in homes.items():
        t = home.get()
        if isinstance(t, torch.Tensor) and t.requires_grad and t.is_floating_point():
            if captured.program.of_module:
                var = home.name.removeprefix("constant:").split(".")[0] or "W"
                raise CaptureError(
                    f"{captured.name} reads {home.what}, a tensor that requires grad, from outside the module: a "
                    "package bound to the module (load(path, module=model)) could not give it its gradient",
                    hint=f"compile a function that calls the module, aotpack.compile(lambda x: model(x), ...), and "
                         f"bind both by name: aotpack.load(path, module={{'model': model, {var!r}: {var}}})")
            # (the live tensor, not torch.export's detached alias of it: it requires grad)
            captured.weights[name] = t
            if home.name and home.name != name and home.name not in captured.weights:
                renames[name] = home.name
    captured.rename_weights(renames)
    return {renames.get(n, n): h for n, h in homes.items()}


@contextlib.contextmanager
def _own_grads(functions: list):
    """Each Function's backward gets its own copy of the incoming gradients while the
    joint graph is traced. A backward that updates a gradient in place (PyTorch's
    test_aot_autograd: tangent_mutation) would otherwise change, in the traced graph, the
    same gradient another branch receives; eager's engine does not show it that change.
    (A copy that is not written is free: the functional graph drops it.)"""
    # the method autograd calls: ``backward``, or ``vjp`` where a class defines that instead
    names = {cls: "backward" if cls.backward is not torch.autograd.Function.backward else "vjp" for cls in functions}
    saved = {cls: vars(cls).get(name) for cls, name in names.items()}
    for cls, name in names.items():
        setattr(cls, name, staticmethod(_with_own_grads(getattr(cls, name))))
    try:
        yield
    finally:
        for cls, original in saved.items():
            if original is None:
                delattr(cls, names[cls])
            else:
                setattr(cls, names[cls], original)


def _saved_in_forward_order(bw: torch.fx.GraphModule, saved: list[str]) -> None:
    """The backward's first inputs in the order the forward returns the saved values.
    The partitioner puts saved sizes (the int of a data-dependent size, nonzero's) last
    among the forward's outputs and first among the backward's inputs; the package hands
    the one's outputs to the other as they come."""
    placeholders = [n for n in bw.graph.nodes if n.op == "placeholder"]
    by_name = {n.name: n for n in placeholders}
    if [n.name for n in placeholders[:len(saved)]] == saved or not set(saved) <= set(by_name):
        return
    body = next(n for n in bw.graph.nodes if n.op != "placeholder")
    for node in [by_name[name] for name in saved] + [n for n in placeholders if n.name not in set(saved)]:
        body.prepend(node)
    bw.graph.lint()
    bw.recompile()


def _sizes_as_shapes(fw: torch.fx.GraphModule, bw: torch.fx.GraphModule, saved: list) -> list:
    """Sizes the forward saves for the backward as ints (a Dim's value ``s0``, or a size
    that depends on data, nonzero's) passed as shapes instead: AOTInductor in torch
    2.11-2.13 compiles no graph that takes an int (its inputs arrive as None). A size one
    of the backward's tensors has (``primals_3.size(0)``) is read from it and no longer
    passed; any other is carried by an empty tensor of that length (``(n, 0)``, no
    bytes), whose ``size(0)`` the backward reads. Returns the forward's saved nodes."""
    from .. import _torch_compat as compat

    inputs = [n for n in bw.graph.nodes if n.op == "placeholder"]
    sources = {}
    for node in inputs:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            for d, size in enumerate(val.shape):
                if isinstance(size, torch.SymInt):
                    sources.setdefault(str(compat.sym_expr(size)), (node, d))
    fake_of = next((t for t in (n.meta.get("val") for n in inputs) if isinstance(t, torch.Tensor)), None)
    fw_out = next(n for n in fw.graph.nodes if n.op == "output")
    values = list(fw_out.args[0])
    first = len(values) - len(saved)
    body = next(n for n in bw.graph.nodes if n.op != "placeholder")
    dropped = set()
    for k, node in enumerate(inputs[:len(saved)]):
        val = node.meta.get("val")
        if not isinstance(val, (torch.SymInt, int)):
            continue
        known = sources.get(str(compat.sym_expr(val))) if isinstance(val, torch.SymInt) else None
        if known is None and fake_of is None:  # pragma: no cover - a backward that takes no tensor
            continue
        low = 0
        if known is None:  # carried: the forward returns an empty tensor of that length
            # (less its least value where that is below 0: an int argument's Dim running
            # below 0, ``x * k``, saves ``k``; until 2026-12-07 such a training package
            # failed at a negative ``k``, "Trying to create tensor with negative dimension")
            bound = compat.sym_lower_bound(val)
            low = min(_unbounded(val) if bound is None else bound, 0)
            device = fake_of.device
            with fw.graph.inserting_before(fw_out):
                length = saved[k] if not low else fw.graph.call_function(operator.sub, (saved[k], low))
                if low:
                    length.meta["val"] = val - low
                carrier = fw.graph.call_function(torch.ops.aten.empty.memory_format, ([length, 0],),
                                                 {"dtype": torch.uint8, "device": device})
            carrier.meta["val"] = compat.fake_empty(fake_of, (val - low, 0), torch.uint8, device)
            values[first + k] = saved[k] = carrier
            with bw.graph.inserting_before(node):
                holder = bw.graph.placeholder(f"{node.name}_shape")
            holder.meta["val"] = carrier.meta["val"]
            known = (holder, 0)
        else:
            dropped.add(k)
        with bw.graph.inserting_before(body):
            size = bw.graph.call_function(torch.ops.aten.sym_size.int, known)
            size.meta["val"] = val - low
            if low:
                size = bw.graph.call_function(operator.add, (size, low))
        size.meta["val"] = val
        node.replace_all_uses_with(size)
        bw.graph.erase_node(node)
    fw_out.args = (tuple(v for i, v in enumerate(values) if i < first or i - first not in dropped),)
    for gm in (fw, bw):  # (the forward's sym_size nodes stay, unused: cheap, and no pass may drop an RNG op)
        gm.graph.lint()
        gm.recompile()
    return [n for k, n in enumerate(saved) if k not in dropped]


def _unbounded(val) -> int:
    """A saved size with no least value (``-k`` of an unbounded ``k``) cannot be carried
    as a length: refused, naming it."""
    raise CaptureError(f"the backward needs the number {val}, which may take any value below 0: a training "
                       "package carries such numbers as lengths",
                       hint="give the int's Dim a minimum (Dim('k', min=-64, max=64))")


def _strip_none_outputs(gm: torch.fx.GraphModule) -> list[bool]:
    """Drop None outputs (grads of primals that need none); returns the kept mask."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    values = list(out.args[0])
    mask = [v is not None for v in values]
    out.args = (tuple(v for v in values if v is not None),)
    gm.graph.lint()
    gm.recompile()
    return mask


def _donatable(fw: torch.fx.GraphModule, saved_nodes: list, num_outputs: int) -> list[str]:
    from .graphs import storage_of as storage

    out_node = next(n for n in fw.graph.nodes if n.op == "output")
    kept = {storage(n) for n in fw.graph.nodes if n.op == "placeholder"}
    kept |= {storage(n) for n in out_node.args[0][:num_outputs]}
    kept.discard(None)
    return [n.name for n in saved_nodes if n.op != "placeholder" and storage(n) is not None
            and storage(n) not in kept]


def capture_joint(target, args: tuple = (), kwargs: dict | None = None, *,
                  joint_pass: Callable[[torch.fx.GraphModule], torch.fx.GraphModule | None] | None = None,
                  captured=None) -> JointCapture:
    """Trace ``target``'s forward and backward and partition them.

    Args:
      target: the program (as for aotpack.compile).
      args: example positional inputs; inputs that should get gradients must require grad.
      kwargs: example keyword inputs.
      joint_pass: called with the joint graph (fx GraphModule; inputs ``primals_*``
        then ``tangents_*``; outputs the forward's, then one grad per primal) before
        partitioning; may edit it in place or return a new one.
      captured: an aotpack Captured to use instead of capturing ``target``.
    Returns:
      JointCapture.

    Example:
        >>> import aotpack, torch
        >>> jc = aotpack.autograd.capture_joint(torch.nn.Linear(4, 2), (torch.randn(3, 4, requires_grad=True),))
        >>> print(jc.backward.code)                                # doctest: +SKIP
    """
    from .. import _torch_compat as compat
    from .capture import capture

    if captured is None:
        captured = capture(target, args, kwargs, allow_mutations=True)
    # (where the program reads what it does not package; those that require grad train)
    # (a tensor a module's list, dict or object holds: trained where it requires grad, as
    # eager and torch.compile train it; until 2026-12-06 refused, before that silently frozen)
    homes = {**_train_outside(captured, frozen_homes(captured)), **container_homes(captured)}
    primals, names = _primals(captured)
    hidden_updates = {m.weight for m in captured.mutations if m.kind == "buffer"
                      and _gets_grad(captured, m.weight, captured.weights[m.weight])}
    hidden_updates |= {f"input:{i}" for i in captured.inputs_updated_without_grad}
    graph, aliased, views, hidden, copied = _unalias_outputs(captured.graph_module, captured.mutations,
                                                     list(captured.weights), hidden_updates, captured.dim_names)
    _refuse_updated_subclasses(captured, aliased)
    run = _run_with_meta(graph)
    with torch.enable_grad():
        outs = run(*primals)
    out_requires_grad = [isinstance(o, torch.Tensor) and o.requires_grad for o in outs]
    # (a straight-through update: eager's gradient skips an update the functional graph holds)
    itself = own_gradients(captured)
    made = _made_by_the_program(captured, list(captured.weights)) if itself else set()
    if itself:
        # torch.export kept each Function's forward and dropped its backward (and a
        # torch.func transform's graph came from make_fx, without grad-mode regions):
        # trace the program itself, so autograd runs the Functions' own backward into
        # the joint graph
        n_outputs = len(outs) - len(captured.mutations) - hidden
        viewing = [next(v.output for v in views if v.base == n_outputs + j) for j in range(hidden)]
        run = _program_outputs(captured, copied, made, homes, viewing, [o.dim() for o in outs[len(outs) - hidden:]])
        out_requires_grad, run.joined = _own_requires_grad(run, primals, names, captured)
    if not any(out_requires_grad):
        raise NothingToDifferentiate(f"no output of {captured.name} requires grad, so there is no backward to "
                                     "compile", hint="compile with train=False, or make parameters/inputs require grad")
    joined = getattr(run, "joined", {})
    companions = _companions(joined, primals, captured)
    # with Dims, the joint graph is traced on tensors of symbolic sizes (torch.export's
    # symbols), as torch.compile's dynamic shapes: the forward and backward work for any
    # size the Dims allow; the sizes the backward needs pass as shapes (_sizes_as_shapes)
    traced = (compat.symbolic_like(captured.graph_module, primals, companions) if captured.dims
              else [*primals, *(t for _, t in companions)])
    try:
        # (the backward is traced after run returns: the Functions stay patched meanwhile)
        # (a program traced again runs as torch.export traced it: as_torch_export_traces)
        with compat.quiet_export_logs(), _own_grads(captured.custom_functions), compat.as_torch_export_traces():
            try:
                joint = compat.aot_export_joint(run, traced)
            finally:
                getattr(run, "restore_globals", lambda: None)()
    except AotpackError as e:  # (a subclass gradient of another class, tree._Rebuild)
        raise CaptureError(f"{captured.name}: {e.message}", hint=e.hint) from None
    except Exception as e:  # noqa: BLE001 - one clear error, with torch's reason
        reason = str(e).splitlines()[0] if str(e) else ""
        if "outputs that alias inputs" in reason:  # torch appends kilobytes of its internal metadata
            reason = ("an output is a view of an input or of another output/intermediate (e.g. `y[0]` returned "
                      "beside `y`); return `.clone()` of it")
        elif len(reason) > 300:
            reason = reason[:300] + "..."
        raise CaptureError(f"AOT autograd could not trace the backward of {captured.name}: "
                           f"{type(e).__name__}: {reason}",
                           hint="see aotpack.autograd's docstring for what training packages support") from e
    _constants_as_primals(joint, primals, made, captured)
    through = getattr(run, "through_function", set())
    aliased = [a.replace(through_function=True) if a.output in through else a for a in aliased]
    if joint_pass is not None:
        joint = joint_pass(joint) or joint
        joint.recompile()
    tangents = [torch.ones_like(o) for o, g in zip(outs, out_requires_grad) if g]
    n_tangent_inputs = sum(1 for n in joint.graph.nodes if n.op == "placeholder") - len(traced)
    if n_tangent_inputs != len(tangents):  # pragma: no cover - a torch change
        raise CaptureError(f"the joint graph takes {n_tangent_inputs} output grads, expected {len(tangents)}")
    if captured.dims:  # the partitioner reads sizes from the joint graph's inputs
        tangents = [n.meta["val"] for n in joint.graph.nodes if n.op == "placeholder"][len(traced):]
    fw, bw = compat.partition_joint(joint, [*traced, *tangents], len(outs))
    fw, bw = compat.plain_graph_module(fw), compat.plain_graph_module(bw)
    _drop_companions(fw, len(primals), captured.name)
    fw_out = next(n for n in fw.graph.nodes if n.op == "output").args[0]
    _refuse_other_outputs(captured, fw_out[:len(outs)], outs)
    saved_nodes = list(fw_out[len(outs):])
    grad_mask = _strip_none_outputs(bw)
    if not all(grad_mask[len(primals):]):  # pragma: no cover - SubclassGradient always returns them
        raise CaptureError(f"{captured.name}: AOT autograd left out an inner tensor of a subclass gradient")
    _saved_in_forward_order(bw, [n.name for n in saved_nodes])
    saved_nodes = _sizes_as_shapes(fw, bw, saved_nodes)
    return JointCapture(forward=fw, backward=bw, joint=joint, num_outputs=len(outs), mutated=captured.mutations,
                        out_requires_grad=out_requires_grad, grad_mask=grad_mask[:len(primals)],
                        subclass_grads=[record for _, (_, record, _) in sorted(joined.items())],
                        saved=[n.name for n in saved_nodes], donatable=_donatable(fw, saved_nodes, len(outs)),
                        primal_names=names, aliased=aliased, output_views=views, hidden_outputs=hidden,
                        captured=captured)


@dataclass
class _GraphUnit:
    """One graph of a training package, shaped like a Captured for the backends:
    every argument is an input (no weights of its own)."""

    graph_module: torch.fx.GraphModule
    example_inputs: list[torch.Tensor]
    name: str = "graph"
    weights: dict = field(default_factory=dict)
    dims: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)

    def graph_args(self) -> list[torch.Tensor]:
        return list(self.example_inputs)

    @property
    def device(self) -> str:
        from .capture import device_of

        return device_of(self.example_inputs)

    def export_weights_as_inputs(self):
        from .. import _torch_compat as compat

        examples = self._examples_of_two()

        def export(derived: bool):
            dynamic = _graph_dims(self.graph_module, self.dims, derived)
            with compat.quiet_export_logs(), (contextlib.nullcontext() if derived else compat.size_oblivious()):
                return torch.export.export(self.graph_module, tuple(examples), strict=False,
                                           dynamic_shapes=dynamic if any(d is not None for d in dynamic) else None)

        if not self.dims:
            return export(True)
        # Two ways to keep the graph as general as its trace, for the two ways torch.export
        # specializes: sizes derived from a Dim (a flatten's 2*s0) as that expression of
        # the Dim; else every size free and no size assumed other than 0 or 1 (``x[1:]``
        # where the Dim allows 2, whose length 1 export would otherwise rule out)
        try:
            return export(True)
        except Exception:  # noqa: BLE001 - torch's constraint violations; the second way raises its own
            return export(False)


    def _examples_of_two(self) -> list:
        """The example inputs with each Dim of size 0 or 1 in them at its first size from 2,
        for compiling backends (``graphs.examples_from_two``): a size that is an expression
        of the Dims (``2*s0 + 1``) follows them, any other keeps the example's."""
        from .. import _torch_compat as compat
        from .graphs import examples_from_two, static_int

        vals = [n.meta.get("val") for n in self.graph_module.graph.nodes if n.op == "placeholder"]
        sizes, shapes = {}, []
        for val, t in zip(vals, self.example_inputs):
            if not isinstance(val, torch.Tensor) or not isinstance(t, torch.Tensor):
                shapes.append(None)
                continue
            shape = []
            for size, example in zip(val.shape, t.shape):
                expr = None if static_int(size) is not None else compat.sym_expr(size)
                if expr is not None and str(expr) in self.dims:
                    sizes[str(expr)] = example
                free = {str(x) for x in expr.free_symbols} if expr is not None else {"-"}
                shape.append((lambda new, expr=expr: int(expr.subs({x: new[str(x)] for x in expr.free_symbols})))
                             if free <= set(self.dims) else None)
            shapes.append(shape)

        def first_from_two(symbol):
            lo, hi = self.dims[symbol]
            return 2 if hi is None or hi >= 2 else None
        return examples_from_two(self.example_inputs, shapes, sizes, first_from_two)


def _graph_dims(gm: torch.fx.GraphModule, dims: dict[str, tuple], derived: bool = True) -> list:
    """torch.export's ``dynamic_shapes`` for a forward or backward graph (its inputs are
    tensors: ``_sizes_as_shapes``): a size that is a size symbol of the joint trace
    (``s0``) is a Dim of that name, so every input of that size shares it, within the
    captured Dim's range (``dims``: symbol -> (min, max)); a size derived from one Dim
    (``2*s0 + 1``) is that expression of it where ``derived``, else free (``Dim.AUTO``),
    as is any other symbolic size (a data-dependent one, nonzero's ``u0``)."""
    from .. import _torch_compat as compat
    from .graphs import static_int

    Dim = torch.export.Dim
    named: dict[str, Any] = {}

    def root(symbol: str):
        lo, hi = dims[symbol]
        return named.setdefault(symbol, Dim(f"d_{symbol}", min=lo, max=hi if hi is not None else int(2**62)))

    def dim(size):
        if static_int(size) is not None:
            return None
        expr = compat.sym_expr(size)
        if str(expr) in dims:
            return root(str(expr))
        # a size derived from one Dim (a flatten's 2*s0, a concatenation's s0 + 1): the
        # same expression of its Dim, which torch.export needs to relate it to that Dim
        if derived and len(expr.free_symbols) == 1 and str(next(iter(expr.free_symbols))) in dims:
            symbol = next(iter(expr.free_symbols))
            a, b = expr.coeff(symbol), expr.subs(symbol, 0)
            if expr == a * symbol + b and a.is_Integer and b.is_Integer and int(a) > 0:
                return int(a) * root(str(symbol)) + int(b) if int(a) != 1 else root(str(symbol)) + int(b)
        return Dim.AUTO

    shapes: list = []
    for node in [n for n in gm.graph.nodes if n.op == "placeholder"]:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            spec = {d: dim(n) for d, n in enumerate(val.shape) if dim(n) is not None}
            shapes.append(spec or None)
        else:
            shapes.append(None)
    return shapes


def own_gradients(captured) -> bool:
    """Whether the program's gradients come from code torch.export's graph does not hold:
    a custom autograd.Function's backward, a torch.func transform's graph (make_fx keeps
    no grad-mode regions), a straight-through update (eager's gradient skips an update the
    functional graph holds). The joint graph is then traced from the program itself."""
    return bool(captured.custom_functions) or captured.traced_below_transforms or captured.straight_through


def _refuse_other_outputs(captured, nodes: list, outs: list) -> None:
    """CaptureError where the forward graph AOT autograd traced gives an output another
    shape or dtype than the program's graph does on the same arguments: torch 2.11
    decomposes a bidirectional LSTM's final states into ``[4, 1, 4, 8]`` where eager
    returns ``[4, 4, 8]`` (a squeeze of the wrong dimension; until 2026-12-06 the package
    returned them so, silently). Static sizes only: with Dims both are symbols."""
    from .._torch_version import torch_version

    for k, (node, o) in enumerate(zip(nodes, outs)):
        val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        if not (isinstance(val, torch.Tensor) and isinstance(o, torch.Tensor)):
            continue
        sizes = [(a, b) for a, b in zip(val.shape, o.shape) if isinstance(a, int) and isinstance(b, int)]
        if val.dim() != o.dim() or any(a != b for a, b in sizes) or val.dtype != o.dtype:
            raise CaptureError(f"{captured.name}: torch {torch_version()}'s training graph gives output {k} "
                               f"{tree.dtype_name(val.dtype)}{list(val.shape)} where the program gives "
                               f"{tree.dtype_name(o.dtype)}{list(o.shape)} (a decomposition of torch's differs from "
                               "eager)", hint="compile an inference package (train=False), or use a torch where the "
                                              "two agree (2.13 does for torch.nn.LSTM)")


def compile_training(captured, backend, options: dict, *, joint_pass=None, say=lambda line: None):
    """Compile ``captured``'s forward and backward with ``backend``; returns a Compiled
    whose files are ``fw/...`` and ``bw/...`` and whose meta has ``"train"``."""
    from ..backends import Compiled

    if not getattr(backend, "supports_training", False):
        raise CaptureError(f"backend {backend.name!r} does not compile training packages (the aoti and eager "
                           "backends do; a backend declares supports_training = True)",
                           hint="use backend='aoti'")
    jc = capture_joint(None, captured=captured, joint_pass=joint_pass)
    say(f"joint graph: forward {len(jc.forward.graph.nodes)} nodes, backward {len(jc.backward.graph.nodes)} nodes, "
        f"{len(jc.saved)} saved tensors ({len(jc.donatable)} donatable)")
    primals = [t.detach() for t in captured.graph_args()]
    # grad mode on, as at training time: some kernels (mkldnn's RNN) only save their
    # workspace for the backward when it is
    with torch.enable_grad():
        fw_out = [o.detach() if isinstance(o, torch.Tensor) else o for o in jc.forward(*primals)]
    saved = list(fw_out[jc.num_outputs:])
    tangents = [torch.ones_like(o) for o, g in zip(fw_out[: jc.num_outputs], jc.out_requires_grad) if g]
    # each Dim by its symbol in the joint trace, with its captured range
    dims = {symbol: (captured.dims[name].min, captured.dims[name].max)
            for symbol, name in captured.dim_names.items() if name in captured.dims}
    # (sizes the backward needs come as shapes of saved tensors, _sizes_as_shapes: it takes
    # tensors alone)
    fw = backend.compile(_GraphUnit(jc.forward, primals, "forward", dims=dims), dict(options))
    bw = backend.compile(_GraphUnit(jc.backward, [t.detach() for t in saved] + tangents, "backward", dims=dims),
                         dict(options))
    files = {f"fw/{k}": v for k, v in fw.files.items()}
    files.update({f"bw/{k}": v for k, v in bw.files.items()})
    targets = _mutation_targets(jc)
    train = {
        "num_outputs": jc.num_outputs,
        "mutated": [m.to_json() for m in jc.mutated],
        # the argument (weights, then inputs) each in-place update lands on
        "mutation_targets": targets,
        "out_requires_grad": jc.out_requires_grad,
        "grad_mask": jc.grad_mask,
        "saved": jc.saved,
        "donatable": jc.donatable,
        # saved tensors that are primals the forward then updates in place (a buffer):
        # kept as copies, so the update neither changes them nor trips autograd's check
        "saved_mutated": _saved_mutated(jc, set(targets)),
        "aliased": [a.to_json() for a in jc.aliased],
        "output_views": [v.to_json() for v in jc.output_views] or None,
        "hidden_outputs": jc.hidden_outputs or None,
        # per weight: whether the backward computes its gradient (a parameter that
        # required grad at compile time)
        "weights_requires_grad": [_gets_grad(captured, n, w) for n, w in captured.weights.items()],
        "grad_tangents": _joined(jc, _grad_tangents(jc.backward)),
        "grad_inputs": _joined(jc, _grad_inputs(jc)),
        "subclass_grads": [g.to_json() for g in jc.subclass_grads] or None,
        "program_gradients": not own_gradients(captured),
    }
    meta = {"device": fw.meta.get("device", captured.device), "fw": fw.meta, "bw": bw.meta, "train": train}
    # the library ops the forward and the backward call (a custom op's backward may call an
    # op the forward does not), which load checks are registered (Meta.ops)
    from .graphs import library_ops

    ops = list(dict.fromkeys([*captured.library_ops, *library_ops(jc.forward), *library_ops(jc.backward)]))
    if ops:
        meta["proxy_ops"] = ops
    for key in ("cpu_isa", "compute_capability", "machine"):
        if key in fw.meta:
            meta[key] = fw.meta[key]
    return Compiled(files=files, meta=meta), jc


def _with_own_grads(user_backward: Callable) -> Callable:
    def backward(ctx, *grads):
        return user_backward(ctx, *[g.clone() if isinstance(g, torch.Tensor) else g for g in grads])

    return backward


def _grad_tangents(backward: torch.fx.GraphModule) -> list[list[int]]:
    """Per output of the backward graph: the tangents (output grads, in order) it is
    computed from. A gradient none of whose tangents reach the backward at a call is
    None there, as in eager (an output left out of the loss gives its parameters no grad)."""
    tangents = [n for n in backward.graph.nodes if n.op == "placeholder" and n.name.startswith("tangents")]
    return _outputs_reached(backward, tangents)


def _joined(jc: JointCapture, dependencies: list[list[int]]) -> list[list[int]]:
    """Per output of the backward graph, its ``dependencies``, where the inner tensors of
    one subclass gradient (``jc.subclass_grads``) each depend on what any of them does:
    the runtime rebuilds the gradient from all of them, so they are None together."""
    out = [list(d) for d in dependencies]
    for places in subclass_grad_places(jc.grad_mask, jc.subclass_grads):
        union = sorted(set().union(*(out[p] for p in places)))
        for p in places:
            out[p] = union
    return out


def _grad_inputs(jc: JointCapture) -> list[list[int]]:
    """Per output of the backward graph: the forward's arguments (weights, then inputs)
    it depends on through the tensors the forward saved. Under ``backward(create_graph=
    True)`` a gradient requires grad when one of them does (or one of its tangents), as
    eager's: ``exp``'s gradient does (it is computed from exp's result), ``x * 2``'s does
    not. Over, never under: dependencies through comparisons count too, so a gradient
    that eager could differentiate is never silently a constant (differentiating it again
    is refused)."""
    primals = [n for n in jc.forward.graph.nodes if n.op == "placeholder"]
    forward_reach = _reach(jc.forward, primals)
    fw_out = next(n for n in jc.forward.graph.nodes if n.op == "output").args[0]
    saved_nodes = [n for n in jc.backward.graph.nodes if n.op == "placeholder"][:len(jc.saved)]
    through = [set() if not isinstance(node, torch.fx.Node) or not isinstance(node.meta.get("val"), torch.Tensor)
               else forward_reach.get(node, set()) for node in fw_out[jc.num_outputs:]]  # a saved int: no grad
    return [sorted(set().union(*(through[s] for s in saved))) for saved in _outputs_reached(jc.backward, saved_nodes)]


def _reach(graph: torch.fx.GraphModule, sources: list) -> dict:
    """Per node of ``graph``: the indices of the ``sources`` (nodes) it is computed from."""
    index = {n: i for i, n in enumerate(sources)}
    reach: dict = {}
    for node in graph.graph.nodes:
        own = {index[node]} if node in index else set()
        reach[node] = own.union(*(reach[a] for a in node.all_input_nodes))
    return reach


def _outputs_reached(graph: torch.fx.GraphModule, sources: list) -> list[list[int]]:
    """Per output of ``graph``: the indices of the ``sources`` it is computed from."""
    reach = _reach(graph, sources)
    out = next(n for n in graph.graph.nodes if n.op == "output")
    return [sorted(reach.get(v, set())) if isinstance(v, torch.fx.Node) else [] for v in out.args[0]]


def _mutation_targets(jc: JointCapture) -> list[int]:
    """Per in-place update, the index of the graph argument it changes."""
    return [_mutation_target(m, list(jc.captured.weights)) for m in jc.mutated]


def _mutation_target(mutation: Mutation, weights: list[str]) -> int:
    """The index among the graph arguments (weights, then inputs) of what ``mutation``
    (a captured in-place update) changes."""
    return weights.index(mutation.weight) if mutation.kind == "buffer" else len(weights) + mutation.index


def _saved_mutated(jc: JointCapture, targets: set[int]) -> list[int]:
    """Saved tensors that are arguments the forward then updates in place."""
    placeholders = [n.name for n in jc.forward.graph.nodes if n.op == "placeholder"]
    return [i for i, name in enumerate(jc.saved) if name in placeholders and placeholders.index(name) in targets]

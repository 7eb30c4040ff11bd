"""Training packages at load: the compiled forward and backward as one
``torch.autograd.Function``. The compile side (capture_joint, partitioning) is
``autograd.py``; this module imports none of it, so loading a training package traces
and compiles nothing.
"""

from __future__ import annotations

import torch

from .. import tree
from ..errors import AotpackError
from ..package.manifest import subclass_grad_places
from .layout import write_update
from .views import output_view_rebuilder, view_rebuilder


class _Sub:
    """A variant's files under a prefix (``fw/``, ``bw/``), as a backend's loader sees them."""

    def __init__(self, files, prefix: str, meta: dict):
        self._files, self._prefix, self.meta = files, prefix, meta

    def read(self, name: str) -> bytes:
        return self._files.read(self._prefix + name)

    def path(self, name: str) -> str:
        return self._files.path(self._prefix + name)


def training_parts(files, meta) -> list[tuple[str, _Sub]]:
    """``[("forward", its files), ("backward", its files)]`` of a training variant."""
    return [("forward", _Sub(files, "fw/", meta.fw.to_json())), ("backward", _Sub(files, "bw/", meta.bw.to_json()))]


def load_training(backend, files, meta, dims: dict | None = None):
    """The callable of a training variant (``meta``: its ``manifest.Meta``): ``flat ->
    outputs`` through autograd. ``dims``: where each Dim's value is among the arguments
    (``views.dim_places``), for outputs that are views of an input sized by Dims."""
    (_, fw), (_, bw) = training_parts(files, meta)
    run_fw, run_bw = backend.load(fw), backend.load(bw)
    train = meta.train
    n_out, grad_mask = train.num_outputs, train.grad_mask
    out_requires_grad = train.out_requires_grad
    targets = train.mutation_targets
    n_mut = len(targets)
    saved_mutated = train.saved_mutated
    aliased = train.aliased
    # outputs a custom Function returned as (a view of) an argument: the autograd.Function
    # returns them itself, so they are views whose gradient runs its backward, as in eager
    returned = [a for a in aliased if a.through_function]
    rebuilt = [a for a in aliased if not a.through_function]
    rebuild_returned = view_rebuilder(returned, dims or {}, skip=len(targets))
    rebuild_all, rebuild_rest = view_rebuilder(aliased, dims or {}), view_rebuilder(rebuilt, dims or {})
    output_views = train.output_views or []  # (None before format version 6)
    rebuild_views_of_outputs = output_view_rebuilder(output_views, dims or {})  # (Dims: format version 9)
    n_user = n_out - n_mut - (train.hidden_outputs or 0)  # the program's outputs, before hidden bases
    grad_tangents = train.grad_tangents  # (None in packages before 2026-12-03: every grad computed)
    run_backward = _backward_runner(run_bw, train)
    rebuild_subclass_grads = _subclass_grad_rebuilder(train)

    class PackageFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *flat):
            ctx.set_materialize_grads(False)  # which outputs' grads reach the backward: see backward
            # the arguments that require grad (a reference each, no copy): under
            # create_graph=True the gradients are connected to those they depend on
            # (_backward_runner)
            ctx.inputs = [f if isinstance(f, torch.Tensor) and f.requires_grad else None for f in flat]
            outs = run_fw(list(flat))
            saved = list(outs[n_out:])
            for i in saved_mutated:
                saved[i] = saved[i].clone()
            if targets:  # (also any other saved tensor in an updated argument's memory: a manifest
                # whose saved_mutated lost one would have autograd's raw "modified by an inplace
                # operation" at the backward, now that a package's own parameters require grad)
                written = {flat[i].untyped_storage().data_ptr() for i in targets}
                for k, t in enumerate(saved):
                    if k not in saved_mutated and isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() in written:
                        saved[k] = t.clone()
            # packages built before 2026-12-04 save a data-dependent size (nonzero, unique)
            # as an int beside the tensors (now: the shape of an empty tensor); autograd
            # keeps tensors, the context the ints
            ctx.save_for_backward(*[s for s in saved if isinstance(s, torch.Tensor)])
            ctx.saved_ints = {i: s for i, s in enumerate(saved) if not isinstance(s, torch.Tensor)}
            ctx.outputs = [(o.shape, o.dtype, o.device) for o in outs[:n_out]]  # for grads autograd leaves None
            outs = rebuild_returned(list(outs[:n_out]), list(flat)) if returned else outs
            # one call with all of them: each call replaces the set the last one marked
            ctx.mark_non_differentiable(*[o for o, g in zip(outs[:n_out], out_requires_grad) if not g])
            return tuple(outs[:n_out])

        @staticmethod
        def backward(ctx, *grads):
            for k, g in enumerate(grads):
                if g is not None and type(g) is not torch.Tensor and tree.flattens_into_tensors(g):
                    _refuse_subclass_tangent(k, g)
            reached = [g is not None for g, needs in zip(grads, out_requires_grad) if needs]
            tangents = [g.contiguous() if g is not None else torch.zeros(shape, dtype=dtype, device=device)
                        for g, needs, (shape, dtype, device) in zip(grads, out_requires_grad, ctx.outputs) if needs]
            tensors = iter(ctx.saved_tensors)
            saved = [ctx.saved_ints[i] if i in ctx.saved_ints else next(tensors)
                     for i in range(len(ctx.saved_ints) + len(ctx.saved_tensors))]
            computed = run_backward(ctx, saved, tangents)
            if grad_tangents is not None and not all(reached):
                # a gradient computed from output grads none of which reached the backward is
                # eager's None (no path from the loss), not zeros: optimizers skip None
                computed = [g if any(reached[t] for t in deps) else None for g, deps in zip(computed, grad_tangents)]
            if rebuild_subclass_grads is not None:
                computed = rebuild_subclass_grads(computed, reached)
            computed = iter(computed)
            return tuple(next(computed) if m else None for m in grad_mask)

    def run(flat):
        rebuild = rebuild_all
        if torch.is_grad_enabled():
            outs, rebuild = PackageFunction.apply(*flat), rebuild_rest
        else:  # no autograd graph wanted (evaluation): the forward alone
            outs = run_fw(list(flat))[:n_out]
        for i, value in zip(targets, outs[:n_mut]):  # replay in-place updates on the caller's tensors
            # recorded where the input has a history (it requires grad and is no leaf: eager
            # refuses a leaf's; a parameter's update is hidden from autograd, autograd.py),
            # so the caller's tensor now has the update's history, as in eager
            write_update(flat[i], value)
        return rebuild_views_of_outputs(rebuild(list(outs[n_mut:]), flat), flat)[:n_user]

    return run


def _refuse_subclass_tangent(k: int, grad) -> None:
    """AotpackError for a tensor subclass gradient reaching a package's plain output
    ``k`` (the graph's flat outputs; a subclass output's inner tensors get plain ones):
    ``out.sum() + pair.sum()`` is a TwoTensor, so ``out`` gets a TwoTensor gradient.
    Eager's backward then computes through the subclass; the package's compiled backward
    takes plain tensors (torch.compile raises its RuntimeError "we guessed its metadata
    incorrectly" there)."""
    raise AotpackError(
        f"the gradient reaching the package's output {k} is a {tree.type_name(type(grad))}, where the output is a "
        "plain tensor: the package's compiled backward takes plain gradients for plain outputs (a loss adding a "
        "plain term to a subclass term sends the subclass gradient into both)",
        hint="run the backward of the plain and the subclass terms separately: "
             "torch.autograd.backward([plain_loss, subclass_loss])")


def _subclass_grad_rebuilder(train):
    """``gradients -> gradients``: the backward's outputs with each gradient that is a
    tensor subclass (``train.subclass_grads``: the argument's gradient is the first inner
    tensor, the others come after every argument's) rebuilt from its inner tensors, as
    eager's (a Linear's weight meeting a TwoTensor input gets a TwoTensor); None where
    the variant has none. A gradient and its inner tensors depend on the same output
    grads (autograd.py), so they are None together."""
    records = train.subclass_grads or ()
    if not records:
        return None
    n = sum(train.grad_mask)
    places = subclass_grad_places(train.grad_mask, records)

    def rebuild(computed: list, reached: list[bool]) -> list:
        out = list(computed[:n])
        for g, (at, *more) in zip(records, places):
            parts = [computed[at], *(computed[k] for k in more)]
            if parts[0] is not None and not any(reached[t] for t in g.tangents):
                raise AotpackError(
                    f"the loss reaches only outputs whose share of {g.name}'s gradient is a plain tensor: eager's "
                    f"gradient is then a plain tensor, where this package computes a {g.spec.type} (it is one "
                    "when the loss reaches an output computed with the subclass input)",
                    hint="include such an output in the loss (times zero keeps its value out), or compile a "
                         "package for this loss")
            out[at] = None if parts[0] is None else tree.unflatten(g.spec, parts)
        return out

    return rebuild


def _backward_runner(run_bw, train):
    """``(ctx, saved, tangents) -> gradients``: the compiled backward, and under
    ``backward(create_graph=True)`` (grad mode on in the backward) the gradients that
    eager's would require grad for (one of their tangents does, or an argument they depend
    on through the saved tensors: ``train.grad_inputs``; packages before it count every
    argument) come from a Function connected to those arguments, whose own backward
    refuses: as torch.compile, the first-order gradients are computed, and differentiating
    them again is an error, never a silent zero."""
    every_tangent = list(range(sum(train.out_requires_grad)))
    every_input = [i for i, m in enumerate(train.grad_mask) if m]
    dependencies = [(train.grad_tangents[j] if train.grad_tangents is not None else every_tangent,
                     train.grad_inputs[j] if train.grad_inputs is not None else every_input)
                    for j in range(len(train.grad_tangents) if train.grad_tangents is not None
                                   else sum(train.grad_mask))]

    class CompiledBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, wants, n_connect, *inputs):
            # the first ``n_connect`` inputs are the forward's arguments the gradients
            # depend on through the saved tensors (which are detached): passed so that
            # differentiating a gradient again reaches this Function (and is refused)
            # wherever eager's would reach them; gradients eager's would not connect are
            # marked non-differentiable
            outs = tuple(run_bw(list(inputs[n_connect:])))
            ctx.mark_non_differentiable(*[o for o, w in zip(outs, wants) if not w and isinstance(o, torch.Tensor)])
            return outs

        @staticmethod
        def backward(ctx, *grads):
            raise AotpackError("double backward through an aotpack training package is not supported: its backward "
                               "is compiled code without a backward of its own (torch.compile refuses it too)",
                               hint="differentiate the gradients in eager PyTorch, or compute the penalty "
                                    "without a second backward")

    def run_backward(ctx, saved: list, tangents: list) -> list:
        if torch.is_grad_enabled():
            wants = [any(tangents[t].requires_grad for t in ts) or any(ctx.inputs[i] is not None for i in args)
                     for ts, args in dependencies]
            if any(wants):
                reached = sorted({i for w, (_, args) in zip(wants, dependencies) if w for i in args})
                connect = [ctx.inputs[i] for i in reached if ctx.inputs[i] is not None]
                return list(CompiledBackward.apply(wants, len(connect), *connect, *saved, *tangents))
        return list(run_bw([*saved, *tangents]))

    return run_backward

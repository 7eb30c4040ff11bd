"""Rebuild a variant from the portable program every package carries.

An AOTInductor binary is tied to one torch version, CPU ISA and machine. When a package
meets another one, ``aotpack.load(path, on_mismatch="rebuild")`` (or ``aotpack rebuild``)
deserializes the variant's ``program.json`` (torch.export's JSON; no pickle), puts the
package's own weights back in, and compiles it again with the variant's backend. With
``rewrite=True`` the package file is rewritten atomically, so the next load is fast again.

Example:
    >>> fn = aotpack.load("old.aot", on_mismatch="rebuild", rewrite=True)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time

import torch

from .. import _torch_compat as compat
from ..backends import Compiled, get_backend
from ..package import fmt
from ..package.manifest import Manifest, Variant
from ..package.weights import to_device
from .capture import Captured


def _example_inputs(variant: Variant, examples: dict | None) -> list[torch.Tensor]:
    if examples is not None and len(examples) == len(variant.inputs):
        return [examples[f"input{i}"] for i in range(len(examples))]
    # No recorded examples: any tensors of the right metadata do for compiling.
    out = []
    for g in variant.inputs:
        shape = []
        for s in g.shape:
            if isinstance(s, int):
                shape.append(s)
            elif isinstance(s, str):
                r = variant.dims[s]
                size = min(max(r.min, 2), r.max if r.max is not None else 2**31)
                while not r.allows(size):  # (an excluded size: the next one the Dim allows)
                    size += 1
                shape.append(size)
            else:
                shape.append(2)
        out.append(torch.zeros(shape, dtype=getattr(torch, g.dtype)))
    return out


def captured_from_package(manifest: Manifest, variant: Variant, program_json: bytes, weights: dict,
                          examples: dict | None, on_device: bool = True) -> Captured:
    """The Captured program of a package variant, rebuilt from its serialized form
    (``on_device=False``: its weights left where ``weights`` are, for a graph that is
    handed its weights at each call)."""
    program = manifest.program
    device = variant.device if on_device else "cpu"
    keys = variant.weights
    fqns = variant.weight_fqns
    targets = variant.weight_targets
    tensors = {fqn: to_device(weights[key], device) for fqn, key in zip(fqns, keys)}
    kinds = {fqn: program.weight(key).kind for fqn, key in zip(fqns, keys)}
    by_target = {t: tensors[fqn] for fqn, t in zip(fqns, targets)}
    state = {}
    for fqn, t in zip(fqns, targets):
        if kinds[fqn] == "parameter":
            state[t] = torch.nn.Parameter(tensors[fqn], requires_grad=False)
        elif kinds[fqn] == "buffer":
            state[t] = tensors[fqn]
    if b'"torch.ops.aotpack.' in program_json:  # a call of aotpack's own op: registered by a fixed module
        from .. import kernels  # noqa: F401 - (never a module a package names)
    try:
        ep = compat.deserialize_program(program_json, state, by_target)
    except Exception as e:  # noqa: BLE001 - any failure to read the program is the file's, named once
        from ..errors import FormatError

        raise FormatError(f"the portable program of variant {variant.name} cannot be read by torch "
                          f"{compat.torch_version()}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                          hint="the package was edited, or written by a torch this one cannot read: rebuild it "
                               "from the model") from e
    return Captured(
        name=program.name, kind=program.kind, source=program.source,
        signature=list(program.signature), in_spec=variant.in_spec, out_spec=program.out_spec,
        inputs=list(variant.inputs), dims=dict(variant.dims), weights=tensors, weight_kinds=kinds,
        weight_targets=dict(zip(fqns, targets)), frozen=list(program.frozen),
        example_inputs=[t.to(device) for t in _example_inputs(variant, examples)],
        exported=ep, graph_module=compat.plain_graph_module(ep.graph_module))


def captured_from_reader(reader, variant: Variant, weights: dict, on_device: bool = True,
                         program: str = fmt.PROGRAM) -> Captured:
    """The Captured program of ``variant`` in an open package, its members verified first
    (``program``: which of its programs, ``fmt.PROGRAM`` or ``fmt.PROGRAM_IN_ORDER``)."""
    prefix = fmt.variant_dir(variant.name)
    if variant.weight_targets is None or not reader.has(prefix + program):
        from ..errors import IncompatibleError

        raise IncompatibleError(f"variant {variant.name} carries no portable program to rebuild from")
    members = [prefix + program] + ([prefix + fmt.EXAMPLES] if reader.has(prefix + fmt.EXAMPLES) else [])
    reader.verify(members)
    examples = reader.tensors(members[1]) if len(members) > 1 else None
    return captured_from_package(reader.manifest, variant, reader.read(members[0]), weights, examples, on_device)


def has_in_order_program(reader, variant: Variant) -> bool:
    """Whether ``variant`` stores its program with in-place updates in order beside a
    functional one (training and autocast variants that update an input)."""
    return reader.has(fmt.variant_dir(variant.name) + fmt.PROGRAM_IN_ORDER)


def portable_program(reader, variant: Variant):
    """``flat -> outputs``: a variant's portable program with its in-place updates in the
    program's order (an inference variant's program.json; a training or autocast variant's
    program_in_order.json, stored before the functional retrace), run op by op on the
    tensors it is given, weights first, as the variant's compiled code is called. The
    runtime runs it for a call whose inputs overlap where the program updates one of
    them, which compiled code assumes they do not: eager ops on the caller's own tensors
    give eager's result, overlaps included; in a training variant with the caller's grad
    mode, so autograd records the ops as eager's and gradients are eager's.

    Example:
        >>> run = portable_program(reader, variant); run(weights + flat)   # doctest: +SKIP
    """
    member = fmt.PROGRAM_IN_ORDER if has_in_order_program(reader, variant) else fmt.PROGRAM
    gm = captured_from_reader(reader, variant, reader.weights(), on_device=False, program=member).graph_module
    device = variant.device
    grad = torch.no_grad if variant.train is None else contextlib.nullcontext

    def run(flat: list) -> list:
        # an inference variant builds no autograd graph, as its compiled code; capture ran
        # the program with autocast off (a variant compiled for autocast has its casts or
        # its autocast region in the graph), so it is off here
        with grad(), torch.autocast(device, enabled=False):
            return list(gm(*flat))

    return run


def rebuild_variant(reader, variant: Variant, weights: dict, *, backends=(), say=print) -> Compiled:
    """Compile ``variant`` of the package open in ``reader`` again, on this machine."""
    captured = captured_from_reader(reader, variant, weights)
    backend = get_backend(variant.backend, variant.backend_entry, backends)
    t = time.perf_counter()
    say(f"aotpack: rebuilding variant {variant.name} with {backend.name} ...")
    compiled = backend.compile(captured, {})
    compiled.meta.setdefault("device", variant.device)
    compiled.meta["torch"] = compat.torch_version()
    say(f"aotpack: rebuilt variant {variant.name} in {time.perf_counter() - t:.1f}s")
    return compiled

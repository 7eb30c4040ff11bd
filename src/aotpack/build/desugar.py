"""Programs torch.export cannot trace as written, traced first below torch's transforms.

Two kinds of program go this way. Tensor subclass inputs made of tensors (TwoTensor,
a scaled tensor: tree.py takes them apart into their inner tensors, which the graph
takes): torch.export keeps a subclass's ops opaque, where make_fx runs its
``__torch_dispatch__`` down to aten ops on the inner tensors, as torch.compile
flattens subclasses at a graph's boundary. And
``torch.func.grad``, ``vjp``, ``jacrev`` (and ``torch.autograd.grad``, which make_fx
traces the same way) inside a program: torch.export (2.11-2.13,
strict or not) traces the transform with the input it differentiates frozen into a
constant of no data, so its graph ignores that input, or fails (a module's parameter
used inside ``grad``, ``jacfwd``, ``hessian``: torch's AttributeError or RuntimeError).
torch.compile runs such programs in one graph: dynamo hands the transform to
functorch, which AOT autograd traces below. The same route here:

    program ──make_fx, functorch running for real, symbolic sizes──► graph of aten ops
        ──replayed with the module's own weights──► torch.export ──► the usual capture

make_fx runs the program on fake tensors whose every size is a symbol of its own, so
the graph it gives works at any size; what the program's Python decided on sizes (a
branch on ``x.shape[0] > 2``) is a guard of make_fx's shape environment, which the replay
asserts on each traced call's sizes (``torch._check``). torch.export records those as if
it had seen the branch itself: a Dim whose range a branch narrows is the usual
constraint violation, with its suggested fix. The replay keeps each op's stack trace,
so errors and layout pins still name the user's lines.

A training package of such a program traces its joint graph from the program itself
(autograd.py, as for custom ``torch.autograd.Function``s), so grad-mode regions and the
transforms' own gradients are autograd's, not the derivative of this graph.

Example:
    >>> import torch, aotpack
    >>> def slope(x):
    ...     return torch.func.grad(lambda t: (t.sin() ** 2).sum())(x)
    >>> path = aotpack.compile(slope, (torch.randn(4),)).save("slope.aot")
    >>> x = torch.randn(4)
    >>> torch.allclose(aotpack.load("slope.aot")(x), slope(x))
    True
"""

from __future__ import annotations

import operator

import torch

from .. import _torch_compat as compat

__all__ = ["Desugared"]


# ops that read only a tensor's metadata, whose results a trace may leave unused
_METADATA_OPS = (torch.ops.aten.size.default, torch.ops.aten.sym_size.int, torch.ops.aten.stride.default,
                 torch.ops.aten.sym_stride.int, torch.ops.aten.dim.default)


def _drop_unused_wrapped_constants(gm: torch.fx.GraphModule) -> None:
    """make_fx leaves a transform's own wrapped values (``hessian``'s basis, a fake tensor
    inside functorch's wrapper) as constants of the graph where the transform asked only
    their size, and the answer went unused: dropped, with those unused reads. A constant
    still used stays, and capture refuses it (``_fake_constant_refusal``)."""
    def unused(node: torch.fx.Node) -> bool:
        for user in list(node.users):
            if (user.op == "call_function" and (user.target in _METADATA_OPS or user.target is operator.getitem)
                    and unused(user)):
                gm.graph.erase_node(user)
        return not node.users

    for node in [n for n in gm.graph.nodes if n.op == "get_attr"]:
        value = getattr(gm, node.target, None)
        if isinstance(value, torch.Tensor) and (compat.is_fake(value) or compat.functorch_wrapped(value)) \
                and unused(node):
            gm.graph.erase_node(node)
            delattr(gm, node.target)
    gm.recompile()


def _weights(program: torch.nn.Module) -> dict:
    """The program's parameters and buffers under the names ``functional_call`` on it takes."""
    return {f"m.{k}": v for k, v in program._weights().items()}


def _size_of(t: torch.Tensor, kind: str, d: int):
    return t.size(d) if kind == "size" else t.stride(d) if kind == "stride" else t.storage_offset()


class Desugared(torch.nn.Module):
    """``program`` (capture's ``_Program``: ``forward(*flat) -> tuple``) as the aten graph
    make_fx traced from it, for torch.export to trace: same weights (registered under
    the same names), same flat inputs and outputs, the same record of the call."""

    def __init__(self, program: torch.nn.Module, flat: list):
        super().__init__()
        from torch.func import functional_call

        if hasattr(program, "m"):
            self.m = program.m  # the same parameters under the same names
        object.__setattr__(self, "_program", program)
        records: list[dict] = []
        record, program._record = program._record, records.append
        program._subclasses = True  # (subclass outputs: their inner tensors are this trace's values)
        try:
            # (as torch.export and torch.compile trace: code asking torch.compiler.is_compiling()
            # takes the branch it takes in their traces)
            with compat.as_torch_export_traces():
                gm, fakes, guards = compat.trace_below_transforms(
                    lambda weights, *inputs: functional_call(program, weights, inputs), [_weights(program), *flat])
        finally:
            program._record = record
        _drop_unused_wrapped_constants(gm)
        for name in list(gm._buffers):  # make_fx's constants: the program's (torch.export lifts
            object.__setattr__(gm, name, gm._buffers.pop(name))  # attributes), not buffers of the module
        self.graph_module = gm
        self._recorded = records[-1]
        self._record = record
        # each symbol of make_fx's trace, as the size, stride or offset of the input it stands for
        self._symbols = {}
        for i, fake in enumerate(fakes[1:]):
            if isinstance(fake, torch.Tensor):
                for symbol, (kind, d) in compat.size_symbols(fake).items():
                    self._symbols.setdefault(symbol, (i, kind, d))
        self._guards = [g for g in guards if g.free_symbols <= self._symbols.keys()]
        # the sizes make_fx compiled in: its shape environment takes a size of 0 or 1 to be
        # that size alone (so a dimension of 1 broadcasts), and torch.export is told each, so
        # a Dim whose example is 1 is compiled in at 1 (aotpack.compile adds a variant of the
        # other sizes) where the graph held the 1 unguarded: a size the program returned was
        # the example's 1 at every size, silently, until 2026-12-08
        self._fixed = [(i, d, size) for i, fake in enumerate(fakes[1:]) if isinstance(fake, torch.Tensor)
                       for d, size in enumerate(fake.shape) if type(size) is int and size in (0, 1)]

    def forward(self, *flat):
        values = {s: _size_of(flat[i], kind, d) for s, (i, kind, d) in self._symbols.items()}
        for guard in self._guards:
            compat.assert_size_guard(guard, values)
        for i, d, size in self._fixed:
            compat.assert_size_is(flat[i].size(d), size)
        self._record(self._recorded)
        return tuple(compat.replay_keeping_lines(self.graph_module, _weights(self._program), *flat,
                                                 interpreter=_Replay))


class _Replay(torch.fx.Interpreter):
    """The make_fx graph run op by op. Its graph has no grad-mode regions: an in-place
    update the program made under ``torch.no_grad()`` of a leaf that requires grad (which
    eager allows there, and make_fx's run of the program did) runs under no_grad again,
    where autograd would otherwise refuse it ("a leaf Variable that requires grad is
    being used in an in-place operation", a false CaptureError until 2026-12-05)."""

    def call_function(self, target, args, kwargs):
        first = args[0] if args else None
        if (isinstance(first, torch.Tensor) and first.is_leaf and first.requires_grad and torch.is_grad_enabled()
                and _updates_in_place(target)):
            with torch.no_grad():
                return super().call_function(target, args, kwargs)
        return super().call_function(target, args, kwargs)


def _updates_in_place(target) -> bool:
    """Whether ``target`` is an aten op that updates its first argument (``mul_``)."""
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", "")
    return name.endswith("_") and not name.startswith("_")

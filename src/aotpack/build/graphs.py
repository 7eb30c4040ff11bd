"""Graph helpers shared by the build side: which storage a node's value lives in, which
ops write their arguments, which outputs are views of the graph's arguments.

    >>> output_aliases(gm)                                   # doctest: +SKIP
    [Alias(output=0, primal=1, same=True, ...)]
"""

from __future__ import annotations

import dataclasses
import operator
import re

import torch
from torch.export.graph_signature import TensorArgument

from .. import _torch_compat as compat
from ..errors import CaptureError
from ..package.manifest import Alias

__all__ = ["storage_of", "op_name", "output_aliases", "layout_dependent_inputs", "written_placeholders",
           "static_int", "number_text", "updates_in_place", "is_view", "writes_in_place", "non_overlapping_and_dense"]


def storage_of(value):
    """The storage ``value`` (a tensor, or an fx node by its example value) lives in, as a
    hashable key that compares equal for every view of it; None for anything else, and
    for a tensor without a storage of its own (the example values inside ``torch.func.vmap``
    or ``torch.func.grad``: functorch's wrappers, whose storage torch refuses to give)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    if isinstance(value, torch.fx.Node):
        value = value.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return StorageWeakRef(value.untyped_storage())
    except NotImplementedError:  # "Cannot access storage of BatchedTensorImpl"
        return None


def is_view(node: torch.fx.Node) -> bool:
    """Whether ``node``'s op returns a view of an argument (``t``, ``slice``, ``expand``:
    its schema's result aliases an input) rather than new memory."""
    schema = getattr(node.target, "_schema", None)
    return (schema is not None and not schema.is_mutable and bool(schema.returns)
            and schema.returns[0].alias_info is not None)


def non_overlapping_and_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its memory exactly once in some order of its dims
    (a permutation of contiguous): ``clone`` keeps such strides; it cannot keep an
    ``expand``'s zeros or a slice's gaps."""
    dims = sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def op_name(node: torch.fx.Node) -> str | None:
    """The aten op a graph node calls, without overload (``"lstm"`` for aten.lstm.input)."""
    return getattr(getattr(node.target, "overloadpacket", None), "__name__", None)


def size_text(size, names: dict[str, str], held: dict[str, int] | None = None) -> int | str | dict:
    """A size as a guard or a view records it: an int (static), a Dim's name, or
    ``{"expr": "n - 2"}`` in Dim names. ``names``: symbol -> Dim name, extended with
    ``dim0, dim1, ...`` for symbols no Dim names. ``held``: symbol -> the value it is held
    at (an int in the record)."""
    if static_int(size) is not None:
        return static_int(size)
    expr = compat.sym_expr(size)
    if held:
        import sympy  # (torch's own dependency: its symbolic sizes are sympy expressions)

        expr = expr.xreplace({sym: sympy.Integer(held[str(sym)]) for sym in expr.free_symbols if str(sym) in held})
        if expr.is_number:
            return int(expr)
    if str(expr).isidentifier():
        return names.setdefault(str(expr), f"dim{len(names)}")
    return {"expr": _in_dim_names(expr, names)}


def number_text(value, names: dict[str, str], held: dict[str, int] | None = None) -> int | str | dict:
    """A number a program returns of its sizes (a SymInt, SymFloat or SymBool), as its
    variant records it: ``size_text``'s form for an int the size grammar reads, else
    ``{"expr": ..., "type": "int" | "float" | "bool"}`` in Dim names, its floats written
    to the last bit (``package/sizes.number_evaluator`` reads it)."""
    from ..package.sizes import size_evaluator

    if isinstance(value, torch.SymInt):
        text = size_text(value, names, held)
        if size_evaluator(text) is not None:
            return text
    expr = compat.sym_expr(value)
    if held:
        import sympy

        expr = expr.xreplace({sym: sympy.Integer(held[str(sym)]) for sym in expr.free_symbols if str(sym) in held})
    kind = "bool" if isinstance(value, torch.SymBool) else "float" if isinstance(value, torch.SymFloat) else "int"
    return {"expr": _in_dim_names(expr, names), "type": kind}


def _in_dim_names(expr, names: dict[str, str]) -> str:
    """``expr`` as text, its symbols replaced by their Dim names (``dim0, dim1, ...`` added
    to ``names`` for symbols no Dim names) and its floats by their shortest exact repr
    (sympy writes 15 digits: ``1/3`` would come back another float)."""
    from sympy.printing.str import StrPrinter

    class Printer(StrPrinter):
        def _print_Float(self, f):
            return repr(float(f))

    text = Printer().doprint(expr)
    for sym in sorted(expr.free_symbols, key=lambda x: -len(str(x))):
        text = re.sub(rf"\b{re.escape(str(sym))}\b", names.setdefault(str(sym), f"dim{len(names)}"), text)
    return text


def output_aliases(gm: torch.fx.GraphModule, skip: int = 0, names: dict[str, str] | None = None) -> list[Alias]:
    """Outputs of ``gm`` (from the ``skip``-th on) that are views of one of its arguments.

    Eager returns such outputs as views (``x.view(-1)``, ``x[0]``, ``x`` itself): they
    share memory with the caller's tensor. Compiled code returns copies, so the package
    rebuilds the view instead (``manifest.Alias``: output i, primal j, same, size,
    stride, offset; offset relative to the argument's own offset; ``same``: the
    output *is* the argument). A view whose size depends on the inputs' Dims records
    each such number as a Dim name or ``{"expr": ...}`` in them (``names``: symbol ->
    Dim name, from the guards), evaluated from the call's sizes at each call; one the
    call's sizes cannot give is a CaptureError.
    """
    from ..package.sizes import size_evaluator
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
            aliased.append(Alias(output=i, primal=j, same=True))
            continue
        base = placeholders[j].meta["val"]
        known = dict(names or {})
        numbers = [size_text(s, known) for s in (*val.shape, *val.stride(), val.storage_offset() -
                                                 base.storage_offset())]
        if len(known) > len(names or {}) or any(size_evaluator(n) is None for n in numbers):
            raise CaptureError(f"output {i} is a view of an input whose size is not one the call's sizes give; the "
                               "package cannot rebuild that view", hint="return a copy (.clone()) or drop the Dim")
        n = val.dim()
        aliased.append(Alias(output=i, primal=j, same=False, size=numbers[:n], stride=numbers[n:2 * n],
                             offset=numbers[-1]))
    return aliased


def region_parts(node) -> tuple[list[torch.fx.GraphModule], list]:
    """(the subgraphs, the operands) of higher-order op ``node`` (a ``torch.no_grad()`` or
    ``torch.autocast`` region in torch.export's graphs): a subgraph's placeholders are the
    operands, in order. ([], []) for any other node."""
    gm = node.graph.owning_module
    subs = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"
            and isinstance(getattr(gm, a.target, None), torch.fx.GraphModule)]
    if not subs:
        return [], []
    after = node.args[node.args.index(subs[-1]) + 1:]
    return ([getattr(gm, a.target) for a in subs],
            [v for a in after for v in (a if isinstance(a, (tuple, list)) else (a,))])


def repair_users(gm: torch.fx.GraphModule) -> None:
    """List every node among the users of the nodes it reads. torch.export (2.11-2.13)
    can leave a dead op whose list argument holds a node that does not list it
    (``cat([index, getitem])`` beside a no_grad region: fuzzer seed 38), and torch.fx's
    ``replace_all_uses_with`` then fails with a raw SystemError; every rewrite of a
    captured graph runs after this."""
    for node in gm.graph.nodes:
        for used in node.all_input_nodes:
            used.users.setdefault(node, None)


def _through_inplace(node):
    """The tensor an in-place op (``add_``: returns its first argument) was applied to,
    through chains of them, and out of a higher-order region (``torch.no_grad()``) whose
    output is such a chain on one of its operands; ``node`` itself otherwise."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        if node.target is operator.getitem and isinstance(node.args[0], torch.fx.Node):
            operand = _region_operand_returned(node.args[0], node.args[1])
            if operand is None:
                break
            node = operand
            continue
        schema = getattr(node.target, "_schema", None)
        returns = schema.returns if schema is not None else ()
        if not (len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write
                and node.args and schema.arguments[0].alias_info is not None):
            break
        node = node.args[0]
    return node


def _region_operand_returned(region, k):
    """The operand of higher-order op ``region`` that its subgraph's ``k``-th output is,
    through in-place ops (``x.mul_(2)`` under no_grad returns x), or None."""
    bodies, operands = region_parts(region)
    if len(bodies) != 1 or not isinstance(k, int):
        return None
    results = next(n for n in bodies[0].graph.nodes if n.op == "output").args[0]
    if not isinstance(results, (tuple, list)) or k >= len(results):
        return None
    inner = _through_inplace(results[k])
    placeholders = [n for n in bodies[0].graph.nodes if n.op == "placeholder"]
    m = placeholders.index(inner) if inner in placeholders else len(operands)
    return operands[m] if m < len(operands) and isinstance(operands[m], torch.fx.Node) else None


# Ops that return a view of their input in some layouts and a copy in others (and, after
# decomposition, the contiguous clone they become where they copy).
_MAYBE_VIEWS = frozenset({"reshape", "reshape_as", "flatten", "ravel", "contiguous"})


def _maybe_view(node) -> bool:
    """A reshape/flatten/contiguous (or the contiguous clone one became), or a ``to`` with
    a memory format: a view of its input (the input itself) in some layouts, a copy in
    others."""
    name = op_name(node)
    return (name in _MAYBE_VIEWS or (name == "clone" and node.kwargs.get("memory_format") is torch.contiguous_format)
            or (name == "to" and node.kwargs.get("memory_format") not in (None, torch.preserve_format)))


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
    out = next(n for n in gm.graph.nodes if n.op == "output")
    found = set()
    for node in out.args[0]:
        through = False
        while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.args \
                and isinstance(node.args[0], torch.fx.Node):
            mine, base = storage_of(node), storage_of(node.args[0])
            copied = mine is None or base is None or mine != base
            if _maybe_view(node) and copied:
                through = True  # a copy here, a view in another layout
            elif copied:
                break  # computes a new tensor: its layout no longer matters
            node = node.args[0]
        if through and isinstance(node, torch.fx.Node) and node.op == "placeholder":
            found.add(node.name)
    return found


def layout_dependent_uses(gm: torch.fx.GraphModule) -> dict[str | None, str]:
    """Placeholders of ``gm`` whose memory layout decides what the program does with
    them, by name, with why:

    - an in-place update reaches the input or not by its layout: the updated tensor is
      reached from it through views and a reshape/flatten/contiguous
      (``x.t().reshape(-1).add_(1)`` updates a copy where ``x`` is contiguous and ``x``
      itself where ``x.t()`` is; ``x.reshape(-1).add_(1)`` the other way round);
    - ``as_strided`` of it (or of a view of it): its strides address the input's memory,
      so another layout gives other elements; of an intermediate, key None (every input:
      its strides follow theirs).

    A call in another layout, copied into the compiled one (or updated through such a
    copy and written back), would differ from eager, so the guard refuses it for these
    inputs. Read on torch.export's graph before any decomposition (``reshape`` is still
    itself there)."""
    placeholders = {n for n in gm.graph.nodes if n.op == "placeholder"}

    def source(value):
        """(the placeholder ``value`` is memory of, through views; whether a reshape or
        the like lies between), or (None, _) for a tensor computed anew."""
        through = False
        while value.op == "call_function" and value.args and isinstance(value.args[0], torch.fx.Node):
            if _maybe_view(value):
                through = True
            else:
                mine, base = storage_of(value), storage_of(value.args[0])
                if mine is None or base is None or mine != base:
                    return None, through
            value = value.args[0]
        return (value if value in placeholders else None), through

    found: dict[str | None, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or not node.args:
            continue
        bodies, operands = region_parts(node)
        if bodies:  # a higher-order op (a no_grad or autocast region)
            for body in bodies:
                names = [n.name for n in body.graph.nodes if n.op == "placeholder"]
                for name, why in layout_dependent_uses(body).items():
                    if name is None:
                        found.setdefault(None, why)
                        continue
                    k = names.index(name)
                    base = source(operands[k])[0] if k < len(operands) and isinstance(operands[k], torch.fx.Node) \
                        else None
                    if base is not None:
                        found.setdefault(base.name, why)
            continue
        if not isinstance(node.args[0], torch.fx.Node):
            continue
        if (op_name(node) or "").startswith("as_strided"):
            # of an input: its memory; of an intermediate: a tensor whose strides follow the
            # inputs' layouts (elementwise ops keep them), so every input (key None)
            base, _ = source(node.args[0])
            found.setdefault(base.name if base is not None else None,
                             "the program calls as_strided on it, which addresses its memory" if base is not None
                             else "the program calls as_strided on a value whose strides follow the inputs' layouts")
        schema = getattr(node.target, "_schema", None)
        if schema is None or not schema.is_mutable:
            continue
        for arg, value in zip(schema.arguments, node.args):
            if arg.alias_info is not None and arg.alias_info.is_write and isinstance(value, torch.fx.Node):
                base, through = source(value)
                if base is not None and through:
                    found.setdefault(base.name, "whether the program's in-place update reaches it depends on "
                                                "its layout (a reshape, contiguous() or memory-format conversion on the way)")
    return found


def writes_in_place(node) -> bool:
    """Whether graph node ``node`` is an in-place op (``mul_``, ``copy_``): its result is
    the tensor it wrote, not a new value."""
    schema = getattr(getattr(node, "target", None), "_schema", None)
    returns = schema.returns if schema is not None else ()
    return bool(returns) and returns[0].alias_info is not None and returns[0].alias_info.is_write


def written_placeholders(gm: torch.fx.GraphModule, ignore=frozenset()) -> set[int]:
    """Indices of ``gm``'s placeholders that its ops write in place, directly, through a
    view, or inside a higher-order op's subgraph (``torch.no_grad()`` and
    ``torch.autocast`` regions are such subgraphs in torch.export's graphs), except
    inside the higher-order ops in ``ignore``."""
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
        if node in ignore:
            continue
        bodies, operands = region_parts(node)
        for body in bodies:
            for k in written_placeholders(body):
                if k < len(operands):
                    mark(operands[k])
    return written


def static_int(size) -> int | None:
    """The int value of a size, also of a SymInt that export specialized to a number."""
    if not isinstance(size, torch.SymInt):
        return int(size)
    expr = compat.sym_expr(size)
    return int(expr) if getattr(expr, "is_number", False) else None


_UPDATES = ("USER_INPUT_MUTATION", "BUFFER_MUTATION", "PARAMETER_MUTATION")


def updates_in_place(ep) -> None:
    """Turn a functional exported program's updates back into in-place writes, in place.

    ``run_decompositions`` makes a program functional: ``x.add_(1)`` becomes ``x1 = x +
    1``, returned as an extra output the signature calls a mutation, and later reads of
    ``x`` read ``x1``. torch.compile writes such outputs back after its graph (its
    functionalization epilogue); an inference package instead keeps the write inside the
    graph, where eager makes it, so every backend updates the caller's tensor and an
    output that was ``x`` stays the caller's ``x``. Each update becomes ``x.copy_(x1)``
    right where ``x1`` is computed, and every later use of ``x1`` reads ``x`` (the graph's
    order is eager's, so nothing after that point wants the old value).

        >>> ep = torch.export.export(Model(), (x,)).run_decompositions({})   # doctest: +SKIP
        >>> updates_in_place(ep)       # the graph writes the buffer; no mutation output left  # doctest: +SKIP
    """
    sig, graph = ep.graph_signature, ep.graph_module.graph
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    weight_names = {spec.target: spec.arg.name for spec in sig.input_specs
                    if spec.kind.name in ("BUFFER", "PARAMETER")}
    out = next(n for n in graph.nodes if n.op == "output")
    updates = [spec.kind.name in _UPDATES for spec in sig.output_specs]
    for value, spec, update in zip(out.args[0], sig.output_specs, updates):
        if update:
            target = placeholders[weight_names.get(spec.target, spec.target)]
            with graph.inserting_after(value):
                write = graph.call_function(torch.ops.aten.copy_.default, (target, value))
            write.meta.update(target.meta)
            value.replace_all_uses_with(target, delete_user_cb=lambda user, w=write: user is not w)
    kept = [(v, spec) for v, spec, update in zip(out.args[0], sig.output_specs, updates) if not update]
    out.args = (tuple(v for v, _ in kept),)
    # an output that was the updated value is now the input itself: the spec names it
    sig.output_specs[:] = [dataclasses.replace(spec, arg=TensorArgument(name=v.name))
                           if isinstance(spec.arg, TensorArgument) else spec for v, spec in kept]
    ep.graph_module.recompile()
    if any(updates):
        compat.keeps_in_place_ops(ep)


# torch's own operator namespaces: registered wherever torch is imported
_TORCH_NAMESPACES = frozenset({"aten", "prims", "higher_order"})


def library_ops(gm: torch.fx.GraphModule) -> list[str]:
    """``namespace::name`` of each op ``gm`` (and its subgraphs) calls that a library
    registers (``torch.library.custom_op``, torchvision's ``nms``): a process that loads
    the package must import that library first, or the call fails. The package records
    them (``meta.proxy_ops``), so such a load is one IncompatibleError naming the op, as
    for aoti's proxy-executor ops; until 2026-12-04 an eager or inductor package failed
    at its first call with torch's AttributeError.

        >>> library_ops(torch.fx.symbolic_trace(lambda x: x.sin()))
        []
    """
    found = []
    for module in gm.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if isinstance(graph, torch.fx.Graph) else ():
            namespace = getattr(node.target, "namespace", None)
            if node.op == "call_function" and namespace and namespace not in _TORCH_NAMESPACES and callable(
                    getattr(node.target, "name", None)):
                found.append(node.target.name())
    return list(dict.fromkeys(found))


def examples_from_two(examples: list, shapes: list, sizes: dict[str, int], first_from_two) -> list:
    """``examples`` (a graph's inputs) made again where a Dim's size in them is 0 or 1: each
    such Dim at ``first_from_two(name)`` (its first size from 2 it takes; None: left as it
    is), each input of ``shapes`` (per input, per dimension: ``name -> int`` for the size
    in those Dims' sizes, or None for one that keeps the example's) as zeros in its order
    of strides. ``sizes``: each Dim's size in the examples.

    A graph traced for every size of a Dim (an example of 0 or 1, traced size-obliviously)
    is compiled from these, as for an example of 2 or more: AOTInductor's code for an
    example of 1 held choices right at 1 alone, which it compiled in unchecked (an MLP of
    example batch 1 gave other numbers at batch 2, forward and backward, silently, when
    first tried, 2026-12-07). The graph's ops are torch's own and take any data.

        >>> x = torch.ones(1, 3).t()
        >>> [tuple(t.shape) for t in examples_from_two([x], [[None, lambda s: s["b"]]], {"b": 1}, lambda n: 2)]
        [(3, 2)]
        >>> examples_from_two([x], [[None, lambda s: s["b"]]], {"b": 1}, lambda n: 2)[0].stride()
        (1, 3)
    """
    new = {name: (first_from_two(name) or size) if size < 2 else size for name, size in sizes.items()}
    if new == sizes:
        return list(examples)
    out = []
    for t, shape in zip(examples, shapes):
        if not isinstance(t, torch.Tensor) or shape is None:
            out.append(t)
            continue
        want = [t.shape[d] if size is None else size(new) for d, size in enumerate(shape)]
        if None in want or tuple(want) == tuple(t.shape):
            out.append(t)
            continue
        order = sorted(range(t.dim()), key=lambda d: -t.stride(d))  # (outermost first)
        dense = torch.zeros([want[d] for d in order], dtype=t.dtype, device=t.device)
        out.append(dense.permute([order.index(d) for d in range(t.dim())]).requires_grad_(t.requires_grad))
    return out

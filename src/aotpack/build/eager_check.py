"""The graph beside eager: a dynamic capture's graph run against the program itself.

Traced, a dynamic size or int argument is a ``torch.SymInt``. Most of what a program asks
of it is answered as eager's (arithmetic, comparisons, ``isinstance(n, int)``: capture
tells the program's own code it is an int, ``compat.symbols_typed_as_python``), but
``type(n) is int`` and ``str(n)`` reach no hook: a program branching on them takes another
branch traced than eager, silently, at every size.

So every capture with a dynamic size or int runs its exported graph and the program on
copies of the example, then on inputs of **other sizes**: each Dim moved to the nearest
size it allows (one more, else one less, past sizes it excludes), sizes derived from it
following, the data tiled from the example's along the resized dimensions (token ids stay
ids, positions stay positions). A program whose result at the example happens to equal
the traced branch's (``x * n`` where the trace computed ``x * 2``, at ``n = 2``) is caught
at the other size. Where the two differ, capture refuses the Dim (or, under
``dynamic=True``, compiles the value in): ``Divergence``.

What cannot be run here is not compared: a program with side effects other than
``print`` and ``warnings.warn`` (they would run again, and ``random.random()`` would differ), one that reads its
inputs' layout (the other sizes are contiguous), inputs eager itself refuses at the other
size.

Example (the example check alone passes: 2 * 2 either way; at n = 3 eager gives 3s):
    >>> import torch, aotpack
    >>> def scaled(x, n):
    ...     return x * (n if type(n) is int else 2)
    >>> try:
    ...     aotpack.compile(scaled, (torch.ones(3), 2), dynamic={"n": aotpack.Dim("n", max=64)})
    ... except aotpack.CaptureError as e:
    ...     print(str(e).split(":")[0])
    the program computes otherwise traced with dynamic n than eager does at n = 3 (the example's 2)
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import sympy
import torch

from .. import _torch_compat as compat
from .. import tree
from ..package.manifest import Dim
from .effects import EffectRecorder
from .graphs import static_int

__all__ = ["Divergence", "divergence", "sizes_zero_and_one_differ"]

# side effects the check's runs may repeat: output, which they silence
_REPEATABLE = {"print()", "warnings.warn()", "warnings.warn_explicit()"}


@dataclass(frozen=True)
class Divergence:
    """Where a dynamic capture's graph computes otherwise than eager: ``where`` (``at the
    example``, ``at n = 3 (the example's 2)``) and ``how`` (``output tensor 0 holds other
    values than eager's``)."""

    where: str
    how: str


def divergence(ep, program, call, recorder: EffectRecorder, device: str, user_nodes: list, dims: dict[str, Dim],
               names: dict[str, str], offsets: dict[int, int]) -> Divergence | None:
    """Run ``ep``'s graph and ``program`` (capture's flat wrapper) at the example and at
    other sizes (module docstring); the first divergence, or None. ``dims``, ``names``:
    the Dims the package will take and the Dim name of each size symbol
    (``guard_specs.guard_dims``); ``offsets``: flat index -> offset of each int argument's
    carrier (its size is the int minus the offset); ``device``: the program's device type."""
    if any(e.what not in _REPEATABLE for e in recorder.effects):
        return None
    with _state_restored(ep, program, recorder, device) as run:
        try:
            eager, traced = run(program, _copies(call.flat)), run(ep.module(), _copies(call.flat))
        except Exception:  # noqa: BLE001 - what cannot run here is not compared (the package's own checks stand)
            return None
        how = _first_difference(eager, traced)
        if how is not None:
            return Divergence("at the example", how)
        if recorder.layout_reads or recorder.contiguous_calls:
            return None
        try:
            other = _other_sizes(user_nodes, call, dims, names, offsets)
        except (RuntimeError, TypeError, ValueError, IndexError):  # (torch's own refusal to resize an input
            return None  # so, another layout: not compared; an error of this module's own stays loud)
        if other is None:
            return None
        flat, where = other
        try:  # (each run on copies: a program updating an input in place would update the other's)
            eager = run(program, _copies(flat))
        except Exception:  # noqa: BLE001 - a size eager refuses (the program's own check): nothing to compare
            return None
        try:
            traced = run(ep.module(), _copies(flat))
        except Exception as e:  # noqa: BLE001
            return Divergence(where, f"the graph fails where eager runs ({type(e).__name__}: {str(e)[:200]})")
        how = _first_difference(eager, traced)
        return None if how is None else Divergence(where, how)


@contextlib.contextmanager
def _state_restored(ep, program, recorder: EffectRecorder, device: str):
    """A function running a program on flat inputs as the trace ran it: the same random
    seed, the grad mode and autocast state the trace saw (none of the caller's: capture
    runs the program inside its own), the program's buffers, constant tensors and (where it
    updates a tensor in place) parameters put back after each run. The program's record of
    its trace is left as the trace made it."""
    # (the graph keeps its in-place ops here: no signature says which tensors it updates;
    # parameters only where the program's code updates a tensor in place, not a model's
    # weights copied at every dynamic compile)
    params = program.parameters() if recorder.inplace else ()
    held = {id(t): t for t in (*program.buffers(), *ep.constants.values(), *params) if isinstance(t, torch.Tensor)}
    buffers = [t for t in held.values() if not compat.is_fake(t)]
    saved = [b.detach().clone() for b in buffers]
    off = torch.is_autocast_enabled(device)

    def run(fn, flat: list) -> list:
        try:
            # (a program that prints or warns: its trace did so once, as it does at compile;
            # the check's runs print and warn nothing)
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == "cuda" else []), \
                    torch.autocast(device, enabled=False) if off else contextlib.nullcontext(), \
                    contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                return list(fn(*flat))  # (the program's flat output tensors, as its graph returns them)
        finally:
            with torch.no_grad():
                for b, before in zip(buffers, saved):
                    b.copy_(before)

    record, program._record = program._record, lambda what: None
    try:
        yield run
    finally:
        program._record = record


def _copies(flat: list) -> list:
    return [same_layout_copy(t) if isinstance(t, torch.Tensor) else t for t in flat]


def same_layout_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` in its own memory with its strides and storage offset (the trace saw
    them: a program reading its layout takes the same branch), requiring grad as it does.
    (Capture's ``_separate_memory`` makes its example inputs that share memory so.)"""
    copy = torch.empty(0, dtype=t.dtype, device=t.device).set_(
        t.untyped_storage().clone(), t.storage_offset(), t.shape, t.stride()) if t.layout is torch.strided \
        else t.detach().clone()
    return copy.requires_grad_(t.requires_grad)


def sizes_zero_and_one_differ(ep, program, call, recorder: EffectRecorder, device: str, user_nodes: list,
                              dims: dict[str, Dim], names: dict[str, str], offsets: dict[int, int]) -> dict[str, set]:
    """The sizes 0 and 1 of each Dim the graph computes otherwise than eager at, by Dim
    name, other than the example's: the examples cut to that size along the Dim (the
    others at the example's), each run as ``divergence`` runs them.

    torch.export's trace of an example of 2 or more takes its sizes to be 2 or more: a
    branch on ``n > 1`` or ``n == 1`` is no guard there, and its graph took the branch of
    2 or more at 1 too, where the Dim allowed it (``x * 2 if x.shape[0] > 1 else x * 3``
    compiled at 4 rows returned 2s at 1 row, silently, until 2026-12-07). So does a trace
    of an example of 1 made size-obliviously (capture._export): ``x * 0 + 1 if pos == 0
    else x * pos`` compiled at ``pos = 1`` returned 0s at 0, silently, until 2026-12-08.
    Such a size is left out of the Dim (capture._guarded_dims); a size eager refuses is
    not compared."""
    if any(e.what not in _REPEATABLE for e in recorder.effects) or recorder.layout_reads or recorder.contiguous_calls:
        return {}
    at = _symbols_at(user_nodes, call, offsets)
    found: dict[str, set] = {}
    with _state_restored(ep, program, recorder, device) as run:
        for symbol, (size, _, _) in at.items():
            name = names.get(str(symbol), "")
            dim = dims.get(name)
            for small in (1, 0):
                if small == size or dim is None or not dim.allows(small):
                    continue
                flat = _inputs_at(user_nodes, call, at, {symbol: small})
                if flat is None:
                    continue
                try:
                    eager = run(program, _copies(flat))
                except Exception:  # noqa: BLE001 - a size eager refuses: nothing to compare
                    continue
                try:
                    how = _first_difference(eager, run(ep.module(), _copies(flat)))
                except Exception:  # noqa: BLE001 - the graph fails where eager runs
                    how = "fails"
                if how is not None:
                    found.setdefault(name, set()).add(small)
    return found


def _symbols_at(user_nodes: list, call, offsets: dict[int, int]) -> dict:
    """Each size symbol of the graph's inputs -> (the example's size, where it is first
    read, the offset of the int it carries)."""
    at = {}
    for i, (node, t) in enumerate(zip(user_nodes, call.flat)):
        val = node.meta.get("val")
        if not isinstance(t, torch.Tensor) or not isinstance(val, torch.Tensor):
            continue
        for d, size in enumerate(val.shape):
            if static_int(size) is None and compat.sym_expr(size).is_Symbol:
                where = call.paths[i] if i in offsets else f"{call.paths[i]}.shape[{d}]"
                at.setdefault(compat.sym_expr(size), (t.shape[d], where, offsets.get(i, 0)))
    return at


def _other_sizes(user_nodes: list, call, dims: dict[str, Dim], names: dict[str, str],
                 offsets: dict[int, int]) -> tuple[list, str] | None:
    """The example's inputs at other sizes the package takes (module docstring), and the
    text naming them (``x.shape[0] = 5 (the example's 4)``, ``n = 3 (the example's 2)``);
    None where no Dim allows another size or a size is not one the Dims say."""
    at = _symbols_at(user_nodes, call, offsets)
    chosen, told = {}, []
    for symbol, (size, where, offset) in at.items():
        dim = dims.get(names.get(str(symbol), ""))
        other = next((s for s in (size + 1, size - 1, size + 2, size - 2) if s >= 2 and dim and dim.allows(s)), None)
        if other is not None:
            chosen[symbol] = other
            told.append(f"{where} = {other + offset} (the example's {size + offset})")
    if not chosen:
        return None
    flat = _inputs_at(user_nodes, call, at, chosen)
    return None if flat is None else (flat, "at " + ", ".join(told))


def _inputs_at(user_nodes: list, call, at: dict, chosen: dict) -> list | None:
    """The example's inputs with the size symbols ``chosen`` at those sizes (the others at
    the example's, ``at``), their data tiled or cut (``tiled``); None where a size is
    not one the symbols say."""
    flat = []
    for node, t in zip(user_nodes, call.flat):
        val = node.meta.get("val")
        if not isinstance(t, torch.Tensor) or not isinstance(val, torch.Tensor):
            flat.append(t)
            continue
        shape = []
        for size in val.shape:
            if static_int(size) is not None:
                shape.append(static_int(size))
                continue
            new = compat.sym_expr(size).xreplace({s: sympy.Integer(chosen.get(s, at[s][0])) for s in at})
            if not new.is_Integer:
                return None
            shape.append(int(new))
        flat.append(tiled(t, shape))
    return None if any(t is None for t in flat) else flat


def tiled(t: torch.Tensor, shape: list[int]) -> torch.Tensor | None:
    """``t`` at ``shape``: its values repeated (or cut) along each resized dimension, so
    they stay values the program was given; None for an empty dimension resized where the
    result holds values (an int's carrier holds none at any size)."""
    if 0 in shape:
        return t.new_empty(shape).requires_grad_(t.requires_grad)
    out = t.detach()
    for d, (old, new) in enumerate(zip(t.shape, shape)):
        if old != new:
            if old == 0:
                return None
            out = out.index_select(d, torch.arange(new, device=t.device) % old)
    return out.contiguous().requires_grad_(t.requires_grad)


def _first_difference(eager: list, traced: list) -> str | None:
    """How the traced graph's output tensors first differ from eager's, or None."""
    if len(eager) != len(traced):
        return f"{len(traced)} output tensors where eager returns {len(eager)}"
    for k, (a, b) in enumerate(zip(eager, traced)):
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return (f"output tensor {k} is {tree.dtype_name(b.dtype)}{list(b.shape)} where eager's is "
                    f"{tree.dtype_name(a.dtype)}{list(a.shape)}")
        close = torch.allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True) if a.is_complex() else \
            torch.allclose(a.double(), b.double(), rtol=1e-3, atol=1e-4, equal_nan=True) if a.is_floating_point() \
            else torch.equal(a, b)
        if not close:
            return f"output tensor {k} holds other values than eager's"
    return None

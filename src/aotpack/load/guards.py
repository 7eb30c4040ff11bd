"""Input guards: check a call's arguments against what a variant was compiled for.

A loaded package must never run on inputs it was not compiled for (an AOTInductor
binary given a wrong shape silently resizes its outputs and returns garbage). Each
variant carries a guard spec in its manifest entry:

- the parameters of the program (name, kind, frozen default),
- the tree spec of the bound arguments, with constants that must compare equal,
- per flat tensor: dtype, layout (strided, and the memory layout of layout.py), shape
  (ints, or named Dims with a range), device, requires_grad.

Checks run in this order: binding to the signature, structure, constants, then per
tensor dtype, layout, rank, each dimension, device; relations between dimensions (two
inputs sharing ``batch`` must agree); then requires_grad against grad mode, memory
layout, and memory shared between inputs. The first failure raises Mismatch, which the
runtime turns into a GuardError naming the argument path as the caller wrote it::

    args[0].shape[1]: expected 512, got 256
    kwargs['mask'].dtype: expected torch.bool, got torch.float32
    args[0].shape[0]: expected batch in 1..4096, got 5000

What each property must be (the contract; docs/concepts/contract.md):

- requires_grad, when grad mode is on: an inference variant takes no input that
  requires grad (it builds no autograd graph, eager would), except one no output's
  autograd graph reaches (``Input.detached``: the program detaches it, and eager's
  outputs require no grad of it); a training variant takes exactly the pattern it was
  compiled for. With grad mode off, anything goes.
- memory layout: an input in another layout is copied into the compiled one
  (``layout.adapt``), unless the program changes it in place, returns a view of it, or
  returns a reshape/flatten/contiguous of it that is a copy in the compiled layout and
  would be a view in others, or reads its strides (``Input.layout_pinned`` says which);
  then the layout must match.
- shared memory: an input the program changes in place may share memory with no
  other input (eager would see the update through the other one).
- stored values, for compiled code (every backend but those that run aten ops, as
  eager: aten applies these itself): a tensor with the negative or conjugate bit set (``z.conj().imag``) is
  resolved into a copy, or refused where no copy may stand in; a tensor carrying a
  forward-mode tangent, or a torch.func transform's tensor (vmap, grad, jvp), runs the
  variant's portable program (eager ops), as does one given to a training variant.
- global state (``Variant.global_state``, as dynamo's GlobalStateGuard): autocast on the
  variant's device type as compiled (a variant compiled with ``autocast`` has its casts
  in the code; the caller's autocast never reaches compiled code), the default dtype,
  grad mode where the program reads it, on CUDA the float32 matmul precision and
  deterministic algorithms; no active torch function mode but the default device's
  (``torch.set_default_device``), whose device must be the capture's where the program
  read it (``FunctionModes``). A call
  under other state runs a variant compiled for it, or is refused naming the state::

    autocast(cpu): expected off (...), got bfloat16

Each property is one ``Check`` in one list (``Guard.checks``): its fast condition and
its full check with the message sit side by side, and the generated fast check is
built from the same list: the tensor properties a native check can take (type, dtype,
device, bits, requires_grad, static sizes and strides: dynamo's ``TensorGuards``) are
checked by one call for all inputs, the rest in generated Python.

Example:
    >>> g = Guard.from_manifest(program, variant)         # doctest: +SKIP
    >>> flat = g.check(args, kwargs)  # list of tensors, or raises Mismatch  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import linecache
import operator
import os

import torch
from torch import Tensor

from .. import tree
from ..errors import GuardError
from ..package.manifest import Dim, GlobalState, Input, Param, Program, Variant, strides_follow_dims
from ..package.sizes import size_evaluator, size_expr
from ..treespec import ConstLeaf, IntLeaf, TensorLeaf, TreeSpec

__all__ = ["Check", "Guard", "GuardEntry", "Mismatch", "StateCheck", "describe_input", "mode_expected", "shape_text",
           "state_checks"]

_KIND = tree.PARAM_KINDS


class GuardEntry(tuple):
    """One check a variant makes, as ``load(..., guard_filter=f)`` sees it.

    ``f(entries) -> list[bool]`` keeps the entries it returns True for. Dropping a check
    is UNSAFE in the same way as ``check_guards=False``, for that check only.

    Attributes:
      variant: the variant's name.
      path: the argument, named by parameter (``x``, ``batch['pair'][0]``).
      kind: ``"dtype" | "shape" | "layout" | "device" | "requires_grad" | "value"``.
      expected: what the check wants, as text.
      index: internal id of the checked leaf.

    A named tuple written out (``typing.NamedTuple`` builds its class at import: 0.16 ms
    of every load, for a type only ``guard_filter`` uses).
    """

    __slots__ = ()
    _fields = ("variant", "path", "kind", "expected", "index")

    def __new__(cls, variant: str, path: str, kind: str, expected: str, index: int):
        return tuple.__new__(cls, (variant, path, kind, expected, index))

    variant = property(operator.itemgetter(0))
    path = property(operator.itemgetter(1))
    kind = property(operator.itemgetter(2))
    expected = property(operator.itemgetter(3))
    index = property(operator.itemgetter(4))

    def __repr__(self):
        return "GuardEntry(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"


class _Attr(str):
    """A path part that is an attribute (``.dtype``), not a dict key."""


class Mismatch(Exception):
    """Internal: one failed check. ``parts`` is the path inside the bound arguments,
    built only when a check fails (the success path builds no strings)."""

    def __init__(self, parts: list, expected: str, actual: str, where: str | None = None, late: bool = False,
                 portable: bool = False):
        self.parts, self.expected, self.actual, self.where = parts, expected, actual, where
        # a check that runs after structure, dtypes and shapes passed (requires_grad,
        # layout, shared memory, the bound module): the variant that got furthest
        self.late = late or where is not None
        # an assumption only the compiled code makes (an input it updates in place
        # overlaps no other input): the variant's portable program, eager ops in order on
        # the caller's tensors, runs such a call as eager
        self.portable = portable
        # a state of the call no program of the variant runs under (a custom Function's
        # rules under a torch.func transform): named even where another property sent the
        # call to the portable program
        self.decisive = False


def mode_expected(training: bool) -> str:
    """The expected side of a module's ``training`` flag that is not the one compiled in
    (the module bound, a submodule or a module a function reads by name): the package
    runs the code of the mode it was compiled in (dropout, batch norm's statistics).

    Example:
        >>> mode_expected(False)
        'False (compiled in eval mode: call .eval() on it, or compile the package in training mode)'
    """
    mode, call, other = ("training", "train", "eval") if training else ("eval", "eval", "training")
    return f"{training} (compiled in {mode} mode: call .{call}() on it, or compile the package in {other} mode)"


def describe_input(name: str, guard: Input, dims: dict[str, Dim], leaf=None) -> str:
    """One input guard for a person: ``x: float32[batch=1..4096, 512] cpu``; the carrier
    of an int argument (``leaf`` an ``IntLeaf``): ``n: int n=1..64``."""
    if leaf is not None and leaf.kind == "int":
        want = guard.shape[0]
        if isinstance(want, str):
            return f"{name}: int {want}={dims[want].shifted(leaf.offset).text()}"
        return f"{name}: int {want + leaf.offset if isinstance(want, int) else want['expr']}"
    grad = " requires_grad" if guard.requires_grad else ""
    return f"{name}: {guard.dtype}{shape_text(guard.shape, dims)} {guard.device}{grad}"


def _int_expected(want, dims: dict[str, Dim], offset: int = 0) -> str:
    """What an int argument must be, as a message says it: ``an int n in 1..64``
    (``want``: its carrier's size; ``offset``: the int's shift, treespec.IntLeaf)."""
    if isinstance(want, int):
        return f"{want + offset} (an int compiled in)"
    if isinstance(want, str):
        return f"an int {want} in {dims[want].shifted(offset).text()}"
    return f"an int {want['expr']}"


def _fast_carrier(device: str, offset: int = 0):
    """``value -> its carrier`` for the fast check of an int argument, raising (the
    generated check then returns None: the full check says why) unless ``value`` is an
    int a size can be (once shifted by ``offset``: treespec.IntLeaf); its range is the
    carrier's shape check's."""
    made: dict[int, Tensor] = {}  # (an empty tensor holds nothing a call could change: shared, 0.1 us, not 1.5)

    def carry(value):
        if type(value) is not int or value < offset:
            raise TypeError
        t = made.get(value)
        if t is None:
            with torch.inference_mode(False):  # (a normal tensor: an inference one fails the native check outside)
                t = tree.size_carrier(value - offset, device)
            if len(made) < 256:
                made[value] = t
        return t

    return carry


def shape_text(shape: list, dims: dict[str, Dim]) -> str:
    """``[batch=1..4096, 512]``: static sizes, Dims with their ranges, derived sizes."""
    sizes = []
    for s in shape:
        if isinstance(s, int):
            sizes.append(str(s))
        elif isinstance(s, str):
            sizes.append(f"{s}={dims[s].text()}")
        else:
            sizes.append(s["expr"])
    return f"[{', '.join(sizes)}]"


# --- The checks: one declarative list ---------------------------------------------------
#
# Every property a call must have is one Check object, written once: ``fast(a, env)``
# gives a Python condition for the generated straight-line check (true where the call
# may fail it), ``full(value, call)`` makes the check with its message (raising
# Mismatch) and returns the value the program runs on (a copy into the compiled layout,
# a resolved copy of a negated tensor). The generated fast check is the OR of the fast
# conditions, so it accepts a call only where every full check would: a condition may
# be stricter than its full check (then the full check decides), never looser
# (tests/packages/test_guard_checks.py checks that property across layouts, grad modes, bits,
# global state and inference mode). The native check follows the same rule: it compares
# exact dispatch keys and strides, stricter than ``is_contiguous()`` (a size-1 dimension's
# odd stride fails it), never looser.


class _Call:
    """What the full check of one call carries between checks."""

    __slots__ = ("sizes", "adapt", "portable", "flat", "given", "grad", "write_back")

    def __init__(self, flat: list, adapt: bool, portable: bool = False):
        self.sizes: dict[str, int] = {}
        self.adapt = adapt
        self.portable = portable  # for the portable program: eager ops on the caller's own tensors
        self.flat = flat
        self.given = list(flat)  # the caller's tensors, before any is copied into a compiled layout
        self.grad = torch.is_grad_enabled()
        self.write_back: list = []  # (copy the program updates, the caller's tensor) of updated inputs


class Flat(list):
    """The flat inputs of a call, some of them copies the program updates in place
    (``write_back``: (copy, the caller's tensor)); ``finish()`` after the run copies each
    update into the caller's tensor, as torch.compile's functionalization epilogue
    writes its inputs back."""

    __slots__ = ("write_back",)

    def finish(self) -> None:
        from .layout import write_update

        for copy, given in self.write_back:
            write_update(given, copy)


class Check:
    """One property of one input tensor (``index``), or of the call (``index`` None).

    Attributes:
      kind: the ``GuardEntry`` kind a guard_filter sees, or None (not filterable).
      late: checked after every input's structure, dtype, shape and device passed (a
        variant failing a late check is the one named first in errors).
      index: the flat input checked, or None for a property of the call.
    """

    kind: str | None = None
    late = False

    def __init__(self, index: int | None = None):
        self.index = index

    def fast(self, a: str, env: dict) -> str | None:
        """A condition on the input named ``a`` (unused for call checks) that is true
        where the call may fail; None where the check needs no condition; ``"True"``
        where only the full check can tell."""
        raise NotImplementedError

    def full(self, value, call: _Call):
        """``value`` or what the program runs on instead; raises Mismatch."""
        raise NotImplementedError

    def expected(self, guard: Guard) -> str:
        """What the check wants, as text (a GuardEntry's ``expected``)."""
        return ""


class IsTensor(Check):
    """A tensor, and no subclass that overrides ``__torch_function__`` or
    ``__torch_dispatch__``: eager runs those overrides at each op, the package's graph
    (traced on plain tensors) does not. (The fast check sends every subclass to the full
    one: a Parameter passed as an input costs the slow path.)"""

    def fast(self, a, env):
        return f"type({a}) is not Tensor"

    def full(self, t, call):
        if not isinstance(t, Tensor):
            raise Mismatch([], "a tensor", _what(t))
        kind = type(t)
        if not tree.computes_as_plain(kind):
            raise Mismatch([], "a torch.Tensor (the package's graph was traced on plain tensors and does not run "
                           "a subclass's __torch_function__ or __torch_dispatch__; pass t.as_subclass(torch.Tensor) "
                           "where that is what you mean)", f"a {kind.__qualname__}")
        return t


class DtypeIs(Check):
    kind = "dtype"

    def __init__(self, index, dtype: torch.dtype):
        super().__init__(index)
        self.dtype = dtype

    def fast(self, a, env):
        env[f"D{self.index}"] = self.dtype
        return f"{a}.dtype is not D{self.index}"

    def full(self, t, call):
        if t.dtype is not self.dtype:
            raise Mismatch([_Attr(".dtype")], str(self.dtype), str(t.dtype))
        return t

    def expected(self, guard):
        return guard.inputs[self.index].dtype


class Dense(Check):
    """A strided tensor: compiled code addresses elements through strides. (In the fast
    check, a memory-layout check of the same input implies it: ``is_contiguous()`` and
    ``stride()`` are False or raise for other layouts, and the generated check returns
    None on any exception.)"""

    def fast(self, a, env):
        env["STRIDED"] = torch.strided
        return f"{a}.layout is not STRIDED"

    def full(self, t, call):
        if t.layout is not torch.strided:
            raise Mismatch([_Attr(".layout")], "torch.strided (a dense tensor)", str(t.layout))
        return t


class ShapeIs(Check):
    """Rank, each static size, each Dim's range and agreement between inputs that share
    it, and derived sizes (``2*batch``)."""

    kind = "shape"

    def __init__(self, index, shape: list, dims: dict[str, Dim], offset: int = 0):
        super().__init__(index)
        self.shape, self.dims = shape, dims
        # (an int argument's carrier, the int less ``offset``: treespec.IntLeaf; its
        # messages speak of the ints, ``s = -3 (as in an earlier input)``)
        self.offset = offset
        self.static = torch.Size(shape) if all(isinstance(s, int) for s in shape) else None
        self.exprs = [(d, s["expr"], size_expr(s["expr"])) for d, s in enumerate(shape) if isinstance(s, dict)]

    def fast(self, a, env):
        i = self.index
        if self.exprs:
            return "True"  # derived sizes: the full check evaluates them
        if self.static is not None:
            env[f"S{i}"] = self.static
            return f"{a}.shape != S{i}"
        s = f"s{i}"
        conds = [f"len({s} := {a}.shape) != {len(self.shape)}"]
        for d, size in enumerate(self.shape):
            if isinstance(size, int):
                conds.append(f"{s}[{d}] != {int(size)}")
            else:
                conds += self._dim_conditions(f"{s}[{d}]", size, env)
        return " or ".join(conds)

    def fast_dims(self, a, env):
        """The part of ``fast`` a native check cannot take: each Dim's range, exclusions
        and agreement between inputs (rank and static sizes are checked natively)."""
        if self.static is not None:
            return ""
        s, conds = f"s{self.index}", []
        for d, size in enumerate(self.shape):
            if not isinstance(size, int):
                conds += self._dim_conditions(f"({s} := {a}.shape)[{d}]" if not conds else f"{s}[{d}]", size, env)
        return " or ".join(conds)

    def _dim_conditions(self, at: str, dim: str, env: dict) -> list[str]:
        """Conditions on the size ``at`` (source) of Dim ``dim``: equal to its binding
        in an earlier input, or, on first sight, bound by walrus and in its range, not
        an excluded size (inputs are checked in order: a later input sees the binding)."""
        local = env.setdefault("__dims__", {})
        if dim in local:
            return [f"{at} != {local[dim]}"]
        var = local[dim] = f"d{len(local)}"
        r = self.dims[dim]
        conds = [f"({var} := {at}) < {int(r.min)}"]
        if r.max is not None:
            conds.append(f"{var} > {int(r.max)}")
        if r.exclude:
            env[f"X{var}"] = frozenset(r.exclude)
            conds.append(f"{var} in X{var}")
        return conds

    def full(self, t, call):
        shape = t.shape
        if self.static is not None and shape == self.static:
            return t
        spec, sizes = self.shape, call.sizes
        if len(shape) != len(spec):
            raise Mismatch([_Attr(".dim()")], f"rank {len(spec)} (shape {shape_text(spec, self.dims)})",
                           f"rank {len(shape)} (shape {list(shape)})")
        off = self.offset
        for d, (want, got) in enumerate(zip(spec, shape)):
            if isinstance(want, int):
                if got != want:
                    raise Mismatch([_Attr(f".shape[{d}]")], str(want + off), str(got + off))
            elif isinstance(want, str):
                seen = sizes.get(want)
                if seen is None:
                    r = self.dims[want]
                    if not r.allows(got):
                        raise Mismatch([_Attr(f".shape[{d}]")], f"{want} in {r.shifted(off).text()}", str(got + off))
                    sizes[want] = got
                elif seen != got:
                    raise Mismatch([_Attr(f".shape[{d}]")], f"{want} = {seen + off} (as in an earlier input)",
                                   str(got + off))
        for d, text, evaluate in self.exprs:
            want_size = evaluate(sizes) if evaluate else None
            if want_size is not None and shape[d] != want_size:
                raise Mismatch([_Attr(f".shape[{d}]")], f"{text} = {want_size + off}", str(shape[d] + off))
        return t

    def expected(self, guard):
        return shape_text(self.shape, self.dims)


class DeviceIs(Check):
    kind = "device"

    def __init__(self, index, device: str):
        super().__init__(index)
        self.device = device

    def fast(self, a, env):
        if self.device == "cpu":
            return f"not {a}.is_cpu"
        if self.device == "cuda":
            return f"not {a}.is_cuda"
        env[f"V{self.index}"] = self.device
        return f"{a}.device.type != V{self.index}"

    def full(self, t, call):
        if t.device.type != self.device:
            raise Mismatch([_Attr(".device")], self.device, str(t.device))
        return t

    def expected(self, guard):
        return self.device


class RequiresGrad(Check):
    """Inference: no input requires grad while grad mode is on (eager would build an
    autograd graph, the package builds none). Training: the pattern compiled."""

    kind = "requires_grad"
    late = True

    def __init__(self, index, want: bool, train: bool, pinned: str | None = None, detached: bool = False):
        super().__init__(index)
        self.want, self.train, self.pinned = want, train, pinned
        # an inference variant's input that no output's autograd graph reaches: any
        # requires_grad passes (manifest.Input.detached)
        self.any = detached and not train and not pinned

    @property
    def fast_value(self) -> bool:
        """The requires_grad the fast check accepts (inference: False; anything else may
        still pass under no_grad, where the full check decides)."""
        return bool((self.train or self.pinned) and self.want)

    def fast(self, a, env):
        if self.any:
            return ""
        return f"not {a}.requires_grad" if self.fast_value else f"{a}.requires_grad"

    def full(self, t, call):
        if self.pinned and t.requires_grad != self.want:  # the program branched on it: under no_grad too
            raise Mismatch([_Attr(".requires_grad")], f"{self.want} ({self.pinned}; export kept that branch)",
                           str(t.requires_grad), late=True)
        if not call.grad or self.any:
            return t
        if not self.train:
            if t.requires_grad:
                raise Mismatch([_Attr(".requires_grad")],
                               "False: an inference package builds no autograd graph (call it under "
                               "torch.no_grad() or torch.inference_mode(), pass a detached tensor, or compile "
                               "with train=True)", "True", late=True)
            return t
        if t.requires_grad != self.want:
            why = ("its gradient is compiled" if self.want else
                   "no gradient was compiled for it: compile a variant with an example that requires grad")
            raise Mismatch([_Attr(".requires_grad")], f"{self.want} ({why})", str(t.requires_grad), late=True)
        return t

    def expected(self, guard):
        return str(self.want) if self.train else "False"


class PropertyIs(Check):
    """What the program asked of an input tensor at capture (``x.is_inference()``,
    ``x.is_conj()``, ``x.is_neg()``, ``x.is_leaf`` or ``x.grad_fn``: ``Input.properties``),
    answered as the example did: export kept the branch of that answer."""

    late = True

    def __init__(self, index, name: str, want: bool):
        super().__init__(index)
        self.name, self.want = name, want
        self.asked = name if name == "is_leaf" else f"{name}()"  # (a property, or a method)

    def fast(self, a, env):
        return f"{a}.{self.asked} is not {self.want}"

    def full(self, t, call):
        if tree.tensor_property(t, self.name) is not self.want:
            raise Mismatch([_Attr(f".{self.asked}")], f"{self.want} (the program asks it and holds the branch its "
                                                      "example took: pass such a tensor, or compile a variant with "
                                                      "one)", str(not self.want), late=True)
        return t

    def expected(self, guard):
        return str(self.want)


class StoredBits(Check):
    """Compiled code reads stored values: a tensor with the negative or conjugate bit
    (``z.conj().imag``) stores values that mean their negation; resolved into a copy,
    or refused where no copy may stand in. (A value, not a layout: not filterable.)"""

    late = True

    def __init__(self, index, complex_: bool, pinned: bool):
        super().__init__(index)
        self.complex, self.pinned = complex_, pinned

    def fast(self, a, env):
        return f"{a}.is_neg() or {a}.is_conj()" if self.complex else f"{a}.is_neg()"

    def full(self, t, call):
        bit = ".is_neg()" if t.is_neg() else ".is_conj()" if t.is_conj() else None
        if bit is None:
            return t
        if self.pinned or not call.adapt:
            raise Mismatch([_Attr(bit)], "False (compiled code reads the stored values, which the bit negates "
                           "or conjugates; aotpack cannot pass a resolved copy here: call "
                           "x.resolve_neg().resolve_conj() first)", "True", late=True)
        return t.resolve_conj().resolve_neg()  # a copy without the bit (differentiable)


class MemoryLayout(Check):
    """The memory layout compiled for (layout.py), and 16-byte alignment on CUDA (triton
    assumes it): another layout is copied into it unless the input is pinned."""

    kind = "layout"
    late = True

    def __init__(self, index, guard: Input, pinned: bool, mutated: bool, write_back: bool = False):
        super().__init__(index)
        self.guard, self.pinned, self.mutated = guard, pinned, mutated
        # an input the program updates, in another layout: the program updates a copy in
        # the compiled layout, copied into the caller's tensor after the run (Flat)
        self.write_back = write_back
        # strides that follow the call's Dims (2*cols): parsed once, evaluated at each call
        self.stride_plan = ([size_evaluator(st) for st in guard.layout["stride"]]
                            if strides_follow_dims(guard.layout) else None)

    def fast(self, a, env):
        i, layout = self.index, self.guard.layout
        conds = [f"{a}.data_ptr() % 16"] if self.guard.device == "cuda" else []
        if layout == "contiguous":
            conds.append(f"not {a}.is_contiguous()")
        elif layout == {"order": [0, 2, 3, 1]}:
            env["CL"] = torch.channels_last
            conds.append(f"not {a}.is_contiguous(memory_format=CL)")
        elif strides_follow_dims(layout):
            return "True"  # strides of the call's sizes (2*cols): the full check evaluates them, as ShapeIs's
        elif "stride" in layout:
            env[f"T{i}"] = tuple(layout["stride"])
            conds.append(f"{a}.stride() != T{i}")
        else:
            return "True"  # other dense orders: the full check
        return " or ".join(conds)

    def full(self, t, call):
        from . import layout as layouts  # (layout.py: imported where a layout is checked)

        g = self.guard
        want, text = g.layout, layouts.describe(g.layout)
        if self.stride_plan is not None:  # ("strides (2*cols, 2) = (10, 2)")
            want = {"stride": [f(call.sizes) if f else None for f in self.stride_plan]}
            text = f"{text} = {tuple(want['stride'])}"
            if None in want["stride"]:  # (a Dim no shape binds: an edited manifest)
                raise Mismatch([_Attr(".stride()")], text, f"strides {tuple(t.stride())}", late=True)
        # (a torch.func transform's wrapper has no storage to align: the transform's own check
        # runs the portable program on it or refuses it; its data_ptr() would raise)
        if g.device == "cuda":
            from .._torch_compat import functorch_wrapped

            aligned = functorch_wrapped(t) or t.data_ptr() % 16 == 0
        else:
            aligned = True
        if aligned and layouts.matches(t, want):
            return t
        if call.portable and not g.layout_pinned:
            return t  # eager ops take any strides, and nothing the program does depends on them
        if not call.adapt:
            raise Mismatch([_Attr(".stride()")], text, f"strides {tuple(t.stride())}", late=True)
        if self.write_back and layouts.can_adapt(want) and _no_internal_overlap(t):
            copy = layouts.adapt(t, want)
            call.write_back.append((copy, t))
            return copy
        if self.pinned or not layouts.can_adapt(want):
            why = (g.layout_pinned if g.layout_pinned else
                   "the program changes it in place" if self.mutated else
                   "an output is a view of it" if self.pinned else "its elements overlap")
            # (where nothing the program computes depends on the layout, its portable program, eager
            # ops in order on the caller's own tensor, gives eager's result, views and update alike)
            raise Mismatch([_Attr(".stride()")], f"{text} ({why}, so aotpack cannot pass a "
                           "copy in the compiled layout)", f"strides {tuple(t.stride())}", late=True,
                           portable=not g.layout_pinned and _no_internal_overlap(t))
        return layouts.adapt(t, want)

    def expected(self, guard):
        from . import layout as layouts

        return layouts.describe(self.guard.layout)


def _fixed_strides(layout, sizes: list) -> list | None:
    """The strides ``layout`` gives a tensor of ``sizes`` (None for a Dim), where none of
    them follows a Dim; else None. Contiguous strides as torch computes them (a size of 0
    counts as 1). A tensor of the layout with other strides in dimensions of size 1 fails
    a check of these, which is then only slower: the full check accepts it."""
    if strides_follow_dims(layout):
        return None
    if isinstance(layout, dict) and "stride" in layout:
        return [int(st) for st in layout["stride"]]
    if layout != "contiguous":
        return None
    strides, step = [], 1
    for size in reversed(sizes):
        if step is None:
            return None
        strides.append(step)
        step = step * max(size, 1) if size is not None else None
    return strides[::-1]


def _no_internal_overlap(t) -> bool:
    """Whether no two elements of ``t`` share memory (a copy can be written into it):
    sorted by stride, each dimension steps past everything the inner ones span."""
    span = 1
    for st, n in sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1):
        if st < span:
            return False
        span = st * n
    return True


def _span(t) -> tuple[int, int]:
    """The bytes ``[first, end)`` that tensor ``t``'s elements lie within."""
    if t.numel() == 0:
        return 0, 0
    last = sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
    return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()


class Unshared(Check):
    """An input the program changes in place shares memory with no other input (eager
    would see the change through the other one). Views of one tensor whose elements lie
    apart (``x.split(5)``) pass: only overlapping spans are refused."""

    late = True

    def __init__(self, index, names: list[str]):
        super().__init__(index)
        self.names = names

    def fast(self, a, env):
        return "True"

    def full(self, t, call):
        # against the caller's tensors: another input copied into its compiled layout
        # still shares memory with this one in eager, which sees the change through it;
        # and this one may be a copy too, whose update is written back (MemoryLayout)
        given = call.given[self.index]
        from .._torch_compat import functorch_wrapped

        if functorch_wrapped(given):  # a torch.func transform's tensor, no storage: ``Transformed`` names it
            return t
        storage = given.untyped_storage().data_ptr()
        first, end = _span(given)
        for j, other in enumerate(call.given):
            if j == self.index or other.untyped_storage().data_ptr() != storage:
                continue
            other_first, other_end = _span(other)
            if first < other_end and other_first < end:
                raise Mismatch([], f"a tensor sharing no memory with another input (the program changes it in "
                               f"place, and eager would see the change through {self.names[j]})",
                               f"one that shares memory with {self.names[j]}", late=True, portable=True)
        return t


# --- Checks of the call's global state -------------------------------------------------

class StateCheck(Check):
    """A property of the process when the call is made (``where`` names it)."""

    kind = "global_state"
    late = True
    where = ""

    def refuse(self, expected: str, actual: str) -> Mismatch:
        return Mismatch([], expected, actual, where=self.where, late=True)


class ForwardAD(StateCheck):
    """No input carries a forward-mode tangent: compiled code computes values only and
    would return no tangent where eager returns one, and a training package's autograd
    Function defines no forward-mode rule. Such a call runs the variant's portable
    program where it has one (eager ops: eager's tangents, as torch.compile falls back to
    eager for it; until 2026-12-06 a GuardError for compiled code and torch's raw error
    for a training package of the eager backend)."""

    kind = None
    where = "forward AD"

    def __init__(self, refused: str | None, portable: bool):
        super().__init__()
        from .._torch_compat import forward_ad_level  # (what compiled backends' loads import anyway)

        self.module, self.level = forward_ad_level()
        self.expected_text = (f"a tensor without a forward-mode tangent {refused}" if refused else
                              "a tensor without a forward-mode tangent (compiled code computes values only and "
                              "would drop it; compile with backend='eager' for jvp)")
        self.portable = portable

    def fast(self, a, env):
        env["FW"] = self.module
        return f"FW.{self.level} >= 0"

    def full(self, flat, call):
        # (for the portable program too where it cannot take them: a custom Function's rules)
        if (call.portable and self.portable) or getattr(self.module, self.level) < 0:
            return flat
        import torch.autograd.forward_ad as forward_ad

        for i, t in enumerate(call.given):  # (the caller's: a copy into the compiled layout may have lost it)
            if forward_ad.unpack_dual(t).tangent is not None:
                m = Mismatch([], self.expected_text, "one with a tangent", late=True, portable=self.portable)
                m.decisive = not self.portable
                m.flat_index = i
                raise m
        return flat


# (the runtime's late diagnosis of a backend's failure names it the same way)
TRANSFORMED = ("a plain tensor (compiled code runs on stored values; compile with backend='eager' to run under "
               "torch.func transforms)", "a torch.func transform's tensor (vmap, grad or jvp)")

def _refused_for(train: bool, functions: list[str]) -> tuple[str | None, bool]:
    """(why the package's compiled code takes no torch.func transform's tensor nor tangent,
    or None for compiled code's own reason; whether its portable program may run such a
    call instead). A custom Function's derivative rules are in no program of the package."""
    if functions:
        return (f"(the program applies the custom autograd.Function {', '.join(functions)}, whose derivative "
                "rules the package does not hold: its graph holds the forward; call it outside the transform, "
                "or with torch.autograd)"), False
    if train:  # (where its portable program holds the gradient, Train.program_gradients, it runs)
        return ("(a training package computes its gradient with its compiled backward, through torch.autograd "
                "only; its portable program, which transforms can run, does not hold this one's gradient: it "
                "updates buffers or inputs, or a custom autograd.Function's backward gives it; use "
                "torch.autograd.grad)"), True
    return None, True


class Transformed(StateCheck):
    """No input is a torch.func transform's tensor (``torch.vmap(fn)``, ``torch.func.grad``,
    ``jvp``): compiled code reads stored values, which such a tensor has none of, and a
    training package's autograd Function has no rule for them. Such a call runs the
    variant's portable program where it has one: eager ops, which the transform batches
    or differentiates as eager's (torch.compile runs such calls too; until 2026-12-06 a
    GuardError, or torch's raw error for a training package of the eager backend)."""

    kind = None
    where = "torch.func transform"

    def __init__(self, refused: str | None, portable: bool, vmap_only: bool = False):
        super().__init__()
        self.expected_text = f"a plain tensor {refused}" if refused else TRANSFORMED[0]
        self.portable = portable
        # the portable program runs a call under vmap alone (no grad or jvp level): its
        # custom Functions' vmap rules are generated from their forwards
        self.vmap_only = vmap_only

    def fast(self, a, env):
        # nothing to add: a transform's tensor has other dispatch keys (Batched,
        # FuncTorchGradWrapper), so the native check of the inputs fails and this runs
        return ""

    def full(self, flat, call):
        from .._torch_compat import functorch_level, functorch_transforms, functorch_wrapped

        if call.portable and self.portable:  # (the portable program cannot run a custom Function's rules)
            return flat
        if functorch_level()() is None:
            return flat
        portable = self.portable or (self.vmap_only and set(functorch_transforms()) <= {"vmap"})
        if call.portable and portable:
            return flat
        for i, t in enumerate(call.given):  # (the caller's: a copy into the compiled layout is a plain tensor)
            if isinstance(t, Tensor) and functorch_wrapped(t):
                m = Mismatch([], self.expected_text, TRANSFORMED[1], late=True, portable=portable)
                m.decisive = not portable
                m.flat_index = i
                raise m
        return flat


class GradMode(StateCheck):
    """Grad mode as at capture, for a program that reads it (``torch.is_grad_enabled()``
    took one branch at capture)."""

    where = "torch.is_grad_enabled()"

    def __init__(self, want: bool, why: str):
        super().__init__()
        self.want, self.why = want, why

    def fast(self, a, env):
        env["GM"] = torch.is_grad_enabled
        return "not GM()" if self.want else "GM()"

    def full(self, flat, call):
        if call.grad != self.want:
            hint = "torch.enable_grad()" if self.want else "torch.no_grad()"
            raise self.refuse(f"{self.want} ({self.why}; call it under {hint}, or compile a variant "
                              f"with grad mode {call.grad})", str(call.grad))
        return flat

    def expected(self, guard):
        return str(self.want)


class Autocast(StateCheck):
    """Autocast on the variant's device type as compiled: off, or on with one dtype
    (the casts are in the compiled code; the caller's autocast never reaches it)."""

    def __init__(self, device: str, dtype: str | None):
        super().__init__()
        self.device, self.dtype = device, dtype
        self.where = f"autocast({device})"

    def fast(self, a, env):
        any_autocast = _READERS.get("any_autocast")
        if self.dtype is None and any_autocast is not None:  # off everywhere: one call (stricter than full)
            env["ANY_AUTOCAST"] = any_autocast
            return "ANY_AUTOCAST()"
        env.update(AC=torch.is_autocast_enabled, ACD=torch.get_autocast_dtype, AC_DEV=self.device)
        if self.dtype is None:
            return "AC(AC_DEV)"
        env["AC_DT"] = getattr(torch, self.dtype)
        return "not AC(AC_DEV) or ACD(AC_DEV) is not AC_DT"

    def full(self, flat, call):
        on = torch.is_autocast_enabled(self.device)
        got = tree.dtype_name(torch.get_autocast_dtype(self.device)) if on else None
        if got == self.dtype:
            return flat
        if self.dtype is None:
            why = (f"off (the package was compiled without autocast and its code never sees the caller's; "
                   f"compile a variant with {{'autocast': {got!r}}} and the call runs it)")
        else:
            why = (f"{self.dtype} (compiled inside torch.autocast: its casts are in the code; call it under "
                   f"torch.autocast({self.device!r}, dtype=torch.{self.dtype}), or add a variant without autocast)")
        raise self.refuse(why, got or "off")

    def expected(self, guard):
        return self.dtype or "off"


class SettingIs(StateCheck):
    """A process-wide setting, read by one function, as it was at capture (``SETTINGS``
    lists them). ``fix`` says what to do, with ``{want}`` and ``{other}`` (the boolean's
    other value) filled in."""

    def __init__(self, want, *, where: str, reader, tag: str, fix: str, fast_reader: str = ""):
        super().__init__()
        self.want, self.where, self.reader, self.tag, self.fast_reader = want, where, reader, tag, fast_reader
        self.fix = fix.format(want=want, other=not want if isinstance(want, bool) else want)

    def fast(self, a, env):
        # the faster C reader where _torch_compat gave one (compiled backends), else the public one
        env[f"{self.tag}_READ"] = _READERS.get(self.fast_reader, self.reader)
        env[f"{self.tag}_WANT"] = self.want
        return f"{self.tag}_READ() != {self.tag}_WANT"

    def full(self, flat, call):
        got = self.reader()
        if got != self.want:
            raise self.refuse(f"{self.expected(None)} ({self.fix})", _text(got))
        return flat

    def expected(self, guard):
        return _text(self.want)


def _text(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# The settings a variant's code depends on, by name: (reader, C reader key, tag, what to do).
SETTINGS = {
    "default_dtype": (torch.get_default_dtype, "", "DD", "the program was compiled with it; set it back with "
                      "torch.set_default_dtype({want}) around the call"),
    "matmul_precision": (torch.get_float32_matmul_precision, "matmul_precision", "MP",
                         "compiled kernels chose their float32 matmuls by it; torch.set_float32_matmul_precision("
                         "{want!r}) or recompile"),
    "deterministic": (torch.are_deterministic_algorithms_enabled, "deterministic", "DET",
                      "the kernels were compiled with it; recompile with torch.use_deterministic_algorithms({other})"),
    "inference_mode": (torch.is_inference_mode_enabled, "", "IM",
                       "the program read it and holds the branch it took; call it with torch.inference_mode({want}), "
                       "or compile a variant with it {other}"),
    "anomaly": (torch.is_anomaly_enabled, "", "AN",
                "the program read it and holds the branch it took; call it with "
                "torch.autograd.set_detect_anomaly({want}), or compile with it {other}"),
    "cuda_available": (lambda: torch.cuda.is_available(), "", "CUDA",  # (as the program looks it up)
                       "the program read it and holds the branch it took; run it on a machine where it is {want} "
                       "(CUDA_VISIBLE_DEVICES= hides the GPUs), or compile it on one like the call's"),
}
# what a setting's error says where the program read it (``GlobalState.reads``), not the kernels
_READ_FIX = {"matmul_precision": "the program read it and holds the branch it took; torch.set_float32_matmul_precision("
                                 "{want!r}) around the call, or compile with the call's",
             "deterministic": "the program read it and holds the branch it took; torch.use_deterministic_algorithms("
                              "{want}) around the call, or compile with the call's"}


def setting_is(name: str, want, read: bool = False) -> SettingIs:
    """The check that setting ``name`` (``SETTINGS``) is ``want``; ``read``: the program
    itself read it (the error says so, not that kernels depend on it)."""
    reader, fast_reader, tag, fix = SETTINGS[name]
    fix = _READ_FIX.get(name, fix) if read else fix
    return SettingIs(want, where="torch.cuda.is_available()" if name == "cuda_available" else f"torch.{reader.__name__}()",
                     reader=reader, tag=tag, fix=fix, fast_reader=fast_reader)


def backend_setting_checks(backends: dict) -> list[SettingIs]:
    """The checks of the settings of ``torch.backends`` a program read (``GlobalState.backends``:
    ``torch.backends.cudnn.enabled``, ``torch.backends.mps.is_available()``), each as at
    capture (torch.compile's code keeps the branch of its compile, unguarded)."""
    if not backends:
        return []
    from .._torch_compat import backend_settings  # (only a package that read one pays the import)

    readers = backend_settings().readers
    checks = []
    for k, (name, want) in enumerate(sorted(backends.items())):
        fix = ("the program asked it and holds the branch it took; run it where it is {want!r}, or compile it "
               "where it is as here") if name.endswith("()") else (
            f"the program read it and holds the branch it took; {name} = {{want!r}} around the call, or compile "
            "with the call's")
        checks.append(SettingIs(want, where=name, reader=readers[name], tag=f"BACKEND{k}", fix=fix))
    return checks


class EnvironIs(StateCheck):
    """An environment variable as the program read it at capture (``os.environ.get("X")``
    took one branch then): the same value, or unset as it was (torch.compile does not
    guard these; its code keeps the branch of its first compile)."""

    def __init__(self, name: str, want: str | None):
        super().__init__()
        self.name, self.want = name, want
        self.where = f"os.environ[{name!r}]"

    def fast(self, a, env):
        k = sum(key.startswith("ENV_NAME") for key in env)  # (one pair of names per variable)
        env[f"ENV_NAME{k}"], env[f"ENV_WANT{k}"], env["ENV_GET"] = self.name, self.want, os.environ.get
        return f"ENV_GET(ENV_NAME{k}) != ENV_WANT{k}"

    def full(self, flat, call):
        got = os.environ.get(self.name)
        if got != self.want:
            now = "set it back" if self.want is not None else "unset it"
            raise self.refuse(f"{self.expected(None)} (the program read it at capture and holds the branch it took "
                              f"then; {now} around the call, or compile with it as the call has it)",
                              "unset" if got is None else repr(got))
        return flat

    def expected(self, guard):
        return "unset" if self.want is None else repr(self.want)


class FunctionModes(StateCheck):
    """No torch function mode is active: the package's code runs below torch functions
    (compiled code), or calls aten's ops where the program called torch's (the eager
    backend), so a mode (``TorchFunctionMode``) would not see the program's calls as
    eager's would (until 2026-12-03 the eager backend ran under one: a mode that changes
    what ``torch.mul`` returns gave another number).

    Except the mode ``torch.set_default_device(d)`` and ``with torch.device(d):`` push
    (``DeviceContext``), which only fills in the device of a factory call that names
    none (``torch.ones(3)``), as dynamo's ``DEFAULT_DEVICE`` guard knows: where the
    program made no such tensor, it changes nothing eager does that the package does
    not; where it made one (``default_device``: the device then, compiled in), a call
    must have that default device, under such a mode or not. Until 2026-12-07 every
    call under ``torch.set_default_device`` was refused as a torch function mode; older
    packages, which did not record what their program made, still are."""

    where = "torch function mode"

    def __init__(self, raw_memory: bool, default_device: str | None = None, reads_default: bool = False):
        super().__init__()
        self.raw_memory = raw_memory
        self.default_device, self.reads_default = default_device, reads_default
        if default_device is not None:
            from .._torch_compat import default_device_mode_type

            self.device_mode = default_device_mode_type()

    def _state(self) -> tuple[list, str]:
        """(the active modes a call may not run under, the default device now)"""
        from .._torch_compat import function_modes

        modes = function_modes()
        if self.default_device is None:
            return modes, "cpu"
        others, device = [], None
        for m in reversed(modes):  # (the innermost default device's mode fills in the device)
            if not isinstance(m, self.device_mode):
                others.append(m)
            elif device is None:
                device = m.device
        if device is None:
            return others, "cpu"
        # (``torch.device("cuda")`` names the current device: what torch.get_default_device() resolves)
        return others, str(device) if device.index is not None or device.type == "cpu" else str(
            torch.get_default_device())

    def _holds(self) -> bool:
        others, device = self._state()
        return not others and (not self.reads_default or device == self.default_device)

    def fast(self, a, env):
        if self.default_device is not None:
            # (a Python call only while a mode is active, or where the program made a
            # tensor on a default device other than the CPU, which no mode means)
            env["FMODES_OK"] = self._holds
            if self.reads_default and self.default_device != "cpu":
                return "not FMODES_OK()"
        if self.raw_memory:
            from .._torch_compat import global_state_readers  # (compiled backends import it anyway)

            env["TFM"] = global_state_readers()["function_mode"]
            active = "TFM()"
        else:
            # public: with a plain tensor for argument, true exactly when a mode is active
            env.update(HTF=torch.overrides.has_torch_function, HTF_ARGS=(torch.empty(0),))
            active = "HTF(HTF_ARGS)"
        return active if self.default_device is None else f"({active} and not FMODES_OK())"

    def full(self, flat, call):
        others, device = self._state()
        if others:
            raise self.refuse("none (the package's code does not call the torch functions a mode would see: "
                              "compiled code runs below them, the eager backend calls aten's ops; call it outside "
                              "the mode)",
                              ", ".join(type(m).__name__ for m in reversed(others)))
        if self.reads_default and device != self.default_device:
            raise Mismatch([], f"{self.default_device} (the program reads it, making a tensor with no device= or "
                               f"asking torch.get_default_device(): compiled in at capture; "
                               f"torch.set_default_device({self.default_device!r}) around the call, or compile "
                               f"under the call's)",
                           device, where="torch.get_default_device()", late=True)
        return flat

    def expected(self, guard):
        return "none"


def _noop_hook(*args):
    return None


_HOOK_DICTS: dict[str, dict] = {}  # (the dicts are module globals: found once a process)


def _global_module_hooks() -> dict[str, dict]:
    """The process-wide module hook dicts, kind -> dict. Public API reaches most of them:
    each ``register_module_*_hook`` returns a handle that refers to the dict it registered
    into (the no-op registered here is removed at once). The backward hooks' dict comes
    from _torch_compat: registering one, even removed at once, would fix whether global
    backward hooks are "full" for the rest of the process. (Found at the first bound
    module package's load; _torch_compat's import costs such a load under 1 ms.)"""
    if _HOOK_DICTS:
        return _HOOK_DICTS
    from torch.nn.modules import module as nn_module

    from .._torch_compat import global_backward_hooks

    dicts = {}
    for kind, register in (("forward hook", nn_module.register_module_forward_hook),
                           ("forward pre-hook", nn_module.register_module_forward_pre_hook),
                           ("backward pre-hook", nn_module.register_module_full_backward_pre_hook)):
        handle = register(_noop_hook)
        dicts[kind] = handle.hooks_dict_ref()
        handle.remove()
    dicts["backward hook"] = global_backward_hooks()
    _HOOK_DICTS.update(dicts)
    return _HOOK_DICTS


class NoGlobalModuleHooks(StateCheck):
    """No process-wide module hook (``register_module_forward_hook`` and its kin) is
    registered, for a program that is a module's forward: eager runs such a hook at every
    module call, compiled code makes none (torch.compile's result differs from eager's
    there too)."""

    where = "global module hooks"

    def __init__(self):
        super().__init__()
        self.hooks = _global_module_hooks()

    def fast(self, a, env):
        names = []
        for i, hooks in enumerate(self.hooks.values()):
            env[f"GMH{i}"] = hooks
            names.append(f"GMH{i}")
        return " or ".join(names)

    def full(self, flat, call):
        found = [f"a global {kind}" for kind, hooks in self.hooks.items() if hooks]
        if found:
            raise self.refuse("none (compiled code makes no module calls for them to run on; remove them with "
                              "the handle register_module_forward_hook returned, or call the module itself)",
                              ", ".join(found))
        return flat

    def expected(self, guard):
        return "none"


class NoDispatchMode(StateCheck):
    """No torch dispatch mode is active (``TorchDispatchMode``, FakeTensorMode...):
    compiled code runs its kernels without the dispatcher, so a mode would not see the
    ops eager runs through it (until 2026-12-03 a mode that changes what ``aten.mul``
    returns gave compiled packages another number). The eager backend runs aten's ops
    through the dispatcher, as eager does."""

    where = "torch dispatch mode"

    def fast(self, a, env):
        from .._torch_compat import global_state_readers  # (compiled backends only: see state_checks)

        env["TDM"] = global_state_readers()["dispatch_modes"]
        return "TDM()"

    def full(self, flat, call):
        from .._torch_compat import dispatch_modes

        modes = dispatch_modes()
        if modes:
            raise self.refuse("none (compiled code runs its kernels without the dispatcher a mode sees; call it "
                              "outside the mode, or compile the program with backend='eager')",
                              ", ".join(type(m).__name__ for m in modes))
        return flat

    def expected(self, guard):
        return "none"


# The C readers of global state the fast check calls (_torch_compat.global_state_readers:
# 2-3x faster than the public wrappers), once a compiled backend's variant has imported
# _torch_compat; a package of the eager backend alone keeps it off its load path and
# uses the public functions.
_READERS: dict = {}


def state_checks(state: GlobalState, device: str, raw_memory: bool, module: bool = False,
                 train: bool = False, functions: list[str] = (), vmap_functions: list[str] = ()) -> list[StateCheck]:
    """The checks of the global state a variant was compiled under (``Variant.global_state``);
    ``module``: the program is a module's forward (global module hooks are refused);
    ``train``: a training variant (its autograd Function takes no transform's tensor);
    ``functions``: the custom autograd.Functions the program applies (whose derivative
    rules the package does not hold: no transform's tensor or tangent either; under vmap
    alone, those of them whose vmap rule torch generates from their forward,
    ``vmap_functions``, run in the portable program)."""
    if raw_memory and not _READERS:
        from .._torch_compat import global_state_readers

        _READERS.update(global_state_readers())
    checks: list[StateCheck] = [Autocast(device, state.autocast),
                                setting_is("default_dtype", getattr(torch, state.default_dtype))]
    if state.grad_mode is not None:
        checks.append(GradMode(state.grad_mode, "the program reads grad mode"))
    checks += [EnvironIs(name, want) for name, want in state.environ.items()]
    # (on CUDA they choose TF32 and the kernels; on any device where the program read them)
    checks += [setting_is(name, getattr(state, name), read=name in state.reads)
               for name in ("matmul_precision", "deterministic", "inference_mode", "anomaly", "cuda_available")
               if name in state.reads or (device == "cuda" and name in ("matmul_precision", "deterministic"))]
    checks += backend_setting_checks(state.backends)
    checks.append(FunctionModes(raw_memory, state.default_device, state.default_device_read))
    if raw_memory:
        checks.append(NoDispatchMode())
    if raw_memory or train or functions:
        refused = _refused_for(train, functions)
        # (vmap of a Function whose vmap rule torch generates is its forward over batched
        # tensors: the portable program's ops, where the program is no training one)
        vmap_only = bool(functions) and not train and set(functions) <= set(vmap_functions)
        checks += [ForwardAD(*refused), Transformed(*refused, vmap_only=vmap_only)]
    if module:
        checks.append(NoGlobalModuleHooks())
    return checks


class Guard:
    """The compiled check for one variant. Build with ``Guard.from_manifest``.

    ``check(args, kwargs)`` returns the flat input tensors or raises Mismatch (the
    runtime turns it into GuardError after trying every variant); ``fast(args,
    kwargs)`` is the generated check of the common call (None: run ``check``).
    """

    def __init__(self, signature: list[Param], in_spec: TreeSpec, inputs: list[Input], dims: dict[str, Dim],
                 guard_filter=None, variant: str = "", *, train: bool = False, pinned=(), mutated=(),
                 raw_memory: bool = True, state: GlobalState | None = None, device: str = "cpu",
                 module: bool = False, functions: list[str] = (), vmap_functions: list[str] = ()):
        self.train = train
        self.functions = list(functions)  # custom autograd.Functions the program applies (Transformed)
        self.vmap_functions = list(vmap_functions)  # those whose vmap rule torch generates (Transformed)
        self.module = module  # the program is a module's forward (NoGlobalModuleHooks)
        # compiled code that reads the stored values (a backend without runs_aten_ops):
        # the negative/conjugate bits and forward-mode tangents, which only aten applies
        self.raw_memory = raw_memory
        # flat inputs the program changes in place (no other input may share their
        # memory), and those whose layout must match exactly (no copy may stand in)
        self.mutated = sorted(mutated)
        self.pinned = set(pinned) | set(mutated)
        self._pinned_by_outputs = set(pinned)  # (an output views it, or the program reads its layout)
        self.signature = signature
        self.in_spec = in_spec
        self.inputs = inputs
        self.dims = dims
        self.variant = variant
        self.names = [p.name for p in signature]
        # Fast binding applies when every parameter is plain positional-or-keyword.
        self._plain = all(p.kind in ("positional_or_keyword", "positional_only") for p in signature)
        self._sig = inspect.Signature([
            inspect.Parameter(p.name, _KIND[p.kind],
                              default=tree.decode_const(p.default) if p.default is not None else inspect.Parameter.empty)
            for p in signature
        ])
        self._children = in_spec.children
        # The common call, f(t0, t1, ...): every parameter one tensor, nothing to walk.
        self._tensors_only = all(type(c) is TensorLeaf for c in self._children)
        # flat inputs made of int arguments (treespec.IntLeaf) -> the int's offset
        self._carriers = tree.int_offsets(in_spec)
        self.device = device
        self.checks = self._build_checks(state or GlobalState(), device)
        self._dropped_consts: set = set()
        if guard_filter is not None:  # entries are built only for a filter: not on the plain load path
            self._apply_filter(guard_filter)
        self._early = [c for c in self.checks if c.index is not None and not c.late]
        self._late = [c for c in self.checks if c.index is not None and c.late]
        self._state = [c for c in self.checks if c.index is None]
        self.fast = self._generate_fast_check()

    def _build_checks(self, state: GlobalState, device: str) -> list[Check]:
        """Every check of this variant, in the order they run."""
        names = [p for p, _ in self.tensor_inputs()] if self.mutated else []
        pinned_by_outputs = self._pinned_by_outputs
        checks: list[Check] = []
        for i, g in enumerate(self.inputs):
            dtype = getattr(torch, g.dtype)
            checks += [IsTensor(i), DtypeIs(i, dtype), Dense(i), ShapeIs(i, g.shape, self.dims, self._carriers.get(i, 0)),
                       DeviceIs(i, g.device),
                       RequiresGrad(i, g.requires_grad, self.train, g.requires_grad_pinned, g.detached)]
            checks += [PropertyIs(i, name, want) for name, want in g.properties.items()]
            if self.raw_memory:
                checks.append(StoredBits(i, dtype.is_complex, i in self.pinned))
            checks.append(MemoryLayout(i, g, i in self.pinned, i in self.mutated,
                                       write_back=i in self.mutated and i not in pinned_by_outputs))
            if i in self.mutated:
                checks.append(Unshared(i, names))
        return checks + state_checks(state, device, self.raw_memory, self.module, self.train, self.functions,
                                     self.vmap_functions)

    def _apply_filter(self, guard_filter) -> None:
        entries = self.entries(self.variant)
        keep = list(guard_filter(entries))
        if len(keep) != len(entries):
            raise ValueError(f"guard_filter returned {len(keep)} booleans for {len(entries)} guard entries")
        dropped = {e.index for e, k in zip(entries, keep) if not k}
        self._dropped_consts = {e.index for e, k in zip(entries, keep) if not k and e.kind == "value"}
        self.checks = [c for c in self.checks if id(c) not in dropped]

    @classmethod
    def from_manifest(cls, program: Program, variant: Variant, guard_filter=None, raw_memory: bool = True) -> Guard:
        train = variant.train
        n_weights = len(variant.weights)
        pinned = [a.primal - n_weights for a in variant.views() if a.primal >= n_weights]
        pinned += [i for i, g in enumerate(variant.inputs) if g.layout_pinned]
        mutated = [m.index for m in train.mutated if m.kind == "input"] if train else list(variant.mutated_inputs)
        return cls(program.signature, variant.in_spec, variant.inputs, variant.dims,
                   guard_filter, variant.name, train=train is not None, pinned=pinned, mutated=mutated,
                   raw_memory=raw_memory, state=variant.global_state, device=variant.device,
                   module=variant.module_training is not None, functions=variant.custom_functions,
                   vmap_functions=variant.vmap_rule_functions)

    def entries(self, variant: str) -> list[GuardEntry]:
        """Every check of this variant a guard_filter may drop (``GuardEntry.index`` is
        internal: the check's identity)."""
        order = ("dtype", "shape", "layout", "device", "requires_grad")
        by_input: dict = {}
        for c in self.checks:
            if c.kind is not None and c.index is not None:
                by_input.setdefault(c.index, []).append(c)
        out = []
        for path, leaf in tree.named_leaves(self.in_spec, self.names):  # in the order of the arguments
            if isinstance(leaf, ConstLeaf):
                out.append(GuardEntry(variant, path, "value", tree.const_repr(leaf), id(leaf)))
                continue
            for c in sorted(by_input.get(leaf.index, ()), key=lambda c: order.index(c.kind)):
                out.append(GuardEntry(variant, path, c.kind, c.expected(self), id(c)))
        out += [GuardEntry(variant, c.where, c.kind, c.expected(self), id(c))
                for c in self.checks if c.kind is not None and c.index is None]
        return out

    def tensor_inputs(self) -> list[tuple[str, Input]]:
        """(path by parameter name, guard) for each flat tensor, for messages."""
        return [(path, self.inputs[leaf.index]) for path, leaf in tree.named_leaves(self.in_spec, self.names)
                if isinstance(leaf, TensorLeaf)]

    def described_inputs(self) -> list[str]:
        """Each flat input's guard for a person (``describe_input``), in order."""
        return [describe_input(path, self.inputs[leaf.index], self.dims, leaf)
                for path, leaf in tree.named_leaves(self.in_spec, self.names) if isinstance(leaf, TensorLeaf)]

    def _generate_fast_check(self):
        """A straight-line check for the common call ``f(t0, t1, ...)``, or None.

        Returns a function ``(args, kwargs) -> list | None``: the flat inputs when every
        check passes, None when anything may differ or the call has another form (the
        caller then runs ``check``, which raises with the full message). The tensors'
        own properties go to one native check of them all (``_input_conditions``); the
        rest is generated from the checks' fast conditions as source, because a Python
        loop over per-tensor closures costs twice as much. Only ints and generated local names go into the
        source; dtypes, devices and strides are passed in as values, never as manifest
        text. The source is registered in ``linecache`` (as torch.fx does), so a
        traceback through it shows its lines.
        """
        if not self._plain:
            return None
        n = len(self.names)
        env: dict = {"Tensor": Tensor}
        unpacked = self._fast_unpacking(env)
        if unpacked is None:
            return None
        params, unpack, names = unpacked
        start = [f"kwargs or len(args) != {n}"]
        for c in self._state:
            cond = c.fast("", env)
            if cond == "True":
                return None
            if cond:
                start.append(cond)
        lines = ["def fast(args, kwargs):", f"    if {' or '.join(start)}:", "        return None", "    try:"]
        lines.append(f"        {', '.join(params)}{',' if n == 1 else ''} = args" if n else "        pass")
        lines += unpack
        checks = self._early + self._late
        if any(c.fast(names[c.index], {}) == "True" for c in checks):
            return None  # only the full check can tell for every call
        conds, native = self._input_conditions(checks, names, env, native=True)
        if native is None:  # no native check in this torch: every property in Python
            env.pop("__dims__", None)
            conds, native = self._input_conditions(checks, names, env, native=False)
        if native:
            tensors, native_checks = native
            # (inference mode changes the dispatch keys checked: the second and third
            # checks are made under it, for tensors made outside it and in it)
            calls = []
            for k, check in enumerate(native_checks):
                env[f"NATIVE{k}"] = check
                calls.append(f"NATIVE{k}({tensors})")
            lines.append(f"        if not ({' or '.join(calls)}):")
            lines.append("            return None")
        for i in range(len(names)):  # one condition per tensor: fewer branches than one `if` per property
            if conds.get(i):
                lines += [f"        if {' or '.join(conds[i])}:", "            return None"]
        # (a try block costs nothing until it catches: a tensor of another layout may raise)
        lines += ["    except Exception:", "        return None", f"    return [{', '.join(names)}]"]
        env.pop("__dims__", None)
        source = "\n".join(lines) + "\n"
        filename = f"<aotpack guard {self.variant or 'variant'} {id(self):x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), env)  # noqa: S102 - generated above
        fast = env["fast"]
        fast.source = source
        return fast

    def _fast_unpacking(self, env: dict) -> tuple[list[str], list[str], list[str]] | None:
        """For the fast check: (a local name per parameter, the lines that take the
        tensor subclass parameters apart, a local name per flat input), or None where a
        parameter is neither a tensor nor a subclass of tensors (the full check walks it).
        A subclass parameter (TwoTensor) is checked by one call (``_subclass_parts``:
        class, inner tensor names, flatten context, size and strides its first inner
        tensor's, requires_grad under grad mode), which gives its inner tensors, the flat
        inputs the native check then takes with the rest."""
        params, unpack, names = [], [], {}
        for k, spec in enumerate(self._children):
            if spec.kind == "int":  # (an int argument: its carrier is made here, its range checked with the shapes)
                params.append(f"p{k}")
                env[f"CARRY{k}"] = _fast_carrier(self.inputs[spec.index].device, spec.offset)
                unpack.append(f"        {names.setdefault(spec.index, f'a{spec.index}')} = CARRY{k}(p{k})")
                continue
            if isinstance(spec, TensorLeaf):
                params.append(names.setdefault(spec.index, f"a{spec.index}"))
                continue
            if spec.kind != "subclass" or not all(isinstance(c, TensorLeaf) for c in spec.children):
                return None
            params.append(f"p{k}")
            inner = [names.setdefault(c.index, f"a{c.index}") for c in spec.children]
            env[f"PARTS{k}"] = _subclass_parts(spec, self._returns_inner(spec))
            unpack += [f"        {', '.join(inner)}{',' if len(inner) == 1 else ''} = PARTS{k}(p{k})"]
        if sorted(names) != list(range(len(names))):
            return None
        return params, unpack, [names[i] for i in range(len(names))]

    def _input_conditions(self, checks: list[Check], names: list[str], env: dict, native: bool):
        """Per input, the fast conditions left in Python, generated in the order of the
        inputs (the first input with a Dim binds it, later ones compare with it); and
        where ``native``, the inputs whose other properties one native call checks at
        once (``compat.tensor_properties_check``: type, dtype, device, layout and bits,
        requires_grad, static sizes and strides) as (their names, the native checks),
        ``()`` where no input's can be, None where this torch has no such check.
        Reading those properties from Python costs about 0.25 µs a tensor, the native
        check about 0.08 (bench/guard_overhead.py)."""
        from .. import _torch_compat as compat

        laid_out = {c.index for c in checks if isinstance(c, MemoryLayout)}
        by_input: dict[int, list[Check]] = {}
        for c in checks:
            by_input.setdefault(c.index, []).append(c)
        conds: dict[int, list[str]] = {}
        natives, templates, sizes, strides = [], [], [], []
        for i, mine in sorted(by_input.items()):
            part = self._native_part(self.inputs[i], mine, names[i], env) if native else None
            if part is not None:
                conds[i], template, size, stride = part
                natives.append(names[i])
                templates.append(template)
                sizes.append(size)
                strides.append(stride)
                continue
            implied = i in laid_out  # Dense: implied by the layout's check (see Dense)
            conds[i] = [cond for c in mine if not (implied and isinstance(c, Dense)) and (cond := c.fast(names[i], env))]
        if not natives:
            return conds, ()
        autocast = next((c.dtype for c in self._state if isinstance(c, Autocast)), None)
        found = compat.tensor_properties_check(templates, sizes, strides,
                                               autocast=(self.device, getattr(torch, autocast)) if autocast else None)
        return conds, None if found is None else (", ".join(natives), found)

    def _native_part(self, g: Input, checks: list[Check], a: str, env: dict):
        """(the conditions left in Python, a template tensor, sizes, strides) for one input
        whose checks the native call can take, or None (its conditions stay in Python)."""
        kinds = {type(c) for c in checks}
        if not kinds <= {IsTensor, DtypeIs, Dense, ShapeIs, DeviceIs, RequiresGrad, StoredBits, MemoryLayout}:
            return None
        if g.device not in ("cpu", "cuda") or not kinds >= {IsTensor, DtypeIs, ShapeIs, DeviceIs}:
            return None
        if any(isinstance(c, RequiresGrad) and c.any for c in checks):  # (the native check compares it)
            return None
        want_grad = next((c.fast_value for c in checks if isinstance(c, RequiresGrad)), False)
        try:
            template = torch.empty(0, dtype=getattr(torch, g.dtype), device=g.device).requires_grad_(want_grad)
        except (RuntimeError, AttributeError, AssertionError):  # no such device here: checked in Python
            return None
        shape = next(c for c in checks if isinstance(c, ShapeIs))
        sizes = [s if isinstance(s, int) else None for s in g.shape]
        left = [shape.fast_dims(a, env)] if None in sizes else []
        layout = next((c for c in checks if isinstance(c, MemoryLayout)), None)
        strides = [None] * len(sizes)
        if layout is not None:
            fixed = _fixed_strides(g.layout, sizes)
            if fixed is not None:
                strides = fixed
                if g.device == "cuda":
                    left.append(f"{a}.data_ptr() % 16")
            else:
                left.append(layout.fast(a, env))
        return [c for c in left if c], template, sizes, strides

    # -- binding ----------------------------------------------------------------------
    def bind(self, args: tuple, kwargs: dict) -> list:
        """Arguments as one value per parameter, defaults filled in."""
        if not kwargs and self._plain and len(args) == len(self.names):
            return list(args)
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as e:
            raise GuardError(f"the call does not fit the signature {self._sig}: {e}") from None
        bound.apply_defaults()
        return [bound.arguments[n] for n in self.names]

    def root_path(self, index: int, args: tuple, kwargs: dict) -> tuple[str, int]:
        """How the caller wrote parameter ``index``: ``args[0]``, ``kwargs['mask']``...

        Returns (path, offset); offset shifts child indices of a *args parameter.
        """
        p = self.signature[index]
        name = p.name
        if p.kind == "var_positional":
            start = sum(1 for q in self.signature[:index] if q.kind in ("positional_only", "positional_or_keyword"))
            return "args", start
        if p.kind == "var_keyword":
            return "kwargs", 0
        if name in kwargs:
            return f"kwargs[{name!r}]", 0
        position = [q.name for q in self.signature if q.kind in ("positional_only", "positional_or_keyword")]
        if name in position and position.index(name) < len(args):
            return f"args[{position.index(name)}]", 0
        return f"{name} (default)", 0

    def path(self, m: Mismatch, args: tuple, kwargs: dict) -> str:
        if m.where is not None:
            return m.where
        index, rest = m.parts[0], m.parts[1:]
        root, offset = self.root_path(index, args, kwargs)
        out = root
        for j, part in enumerate(rest):
            if isinstance(part, _Attr):
                out += part
            elif isinstance(part, int):
                out += f"[{part + (offset if j == 0 else 0)}]"
            else:
                out += f"[{part!r}]"
        return out

    # -- checking ---------------------------------------------------------------------
    def check(self, args: tuple, kwargs: dict, tensors: bool = True, adapt: bool = True,
              portable: bool = False) -> list[torch.Tensor]:
        """Flat input tensors if the call matches; raises Mismatch (or GuardError) if not.

        ``tensors=False`` checks only binding and structure (``load(check_guards=False)``);
        ``adapt=False`` refuses an input in another memory layout instead of copying it
        (dispatch first looks for a variant compiled for the caller's layouts);
        ``portable=True`` leaves out the check that updated inputs overlap no other
        input, and copies nothing: the caller's own tensors, for the variant's portable
        program. An input in another layout is passed as it is unless its layout is
        pinned (the graph holds choices torch.export made for the traced layout, a
        ``reshape`` that viewed rather than copied, or the program reads its strides); a
        copy of it would not see another input's update.
        """
        values = self.bind(args, kwargs)
        if self._tensors_only:
            flat = values
        else:
            flat = []
            for i, (spec, value) in enumerate(zip(self._children, values)):
                try:
                    self._walk(spec, value, flat)
                except Mismatch as m:
                    m.parts.insert(0, i)
                    raise
        if not tensors:
            return flat
        call = _Call(flat, adapt and not portable, portable)
        for checks in (self._early, self._late):  # every input's type and shape before any late check
            for c in checks:
                if portable and isinstance(c, Unshared):
                    continue
                try:
                    flat[c.index] = c.full(flat[c.index], call)
                except Mismatch as m:
                    if c.index in self._carriers:  # (an int argument: its carrier's ``.shape[0]`` is the int)
                        m.parts = [p for p in m.parts if not isinstance(p, _Attr)]
                    m.parts[:0] = self.tensor_path(c.index)
                    raise
        for c in self._state:
            try:
                c.full(flat, call)
            except Mismatch as m:
                if getattr(m, "flat_index", None) is not None:  # about one input: name it
                    m.parts[:0] = self.tensor_path(m.flat_index)
                    m.where = None
                raise
        if call.write_back:
            flat = Flat(flat)
            flat.write_back = call.write_back
        return flat

    def tensor_path(self, flat_index: int) -> list:
        """Path parts (parameter index, keys...) of flat tensor ``flat_index``."""
        for i, spec in enumerate(self._children):
            for keys, leaf in tree.leaf_keys(spec):
                if isinstance(leaf, TensorLeaf) and leaf.index == flat_index:
                    return [i, *keys]
        return [0]  # pragma: no cover

    def _walk(self, spec: TreeSpec, value, flat: list) -> None:
        kind = spec.kind
        if kind == "tensor":
            if not isinstance(value, torch.Tensor):
                raise Mismatch([], "a tensor", _what(value))
            flat.append(value)
            return
        if kind == "int":
            flat.append(self._carrier(spec, value))
            return
        if kind == "const":
            if id(spec) in self._dropped_consts:
                return
            expected = tree.decode_const(spec)
            if isinstance(value, torch.Tensor) or type(value) is not type(expected) or value != expected:
                if not (isinstance(expected, float) and isinstance(value, float) and expected != expected and value != value):
                    # (an int of another value could have been compiled dynamic: say how)
                    dim = "; give it a Dim in dynamic= to take any int" if spec.type == "int" and type(value) is int \
                        else ""
                    raise Mismatch([], f"{tree.const_repr(spec)} (frozen at compile time{dim})", _what(value))
            return
        if kind == "subclass":
            self._walk_subclass(spec, value, flat)
            return
        if kind in ("namedtuple", "node"):
            if tree.type_name(type(value)) != spec.type:
                raise Mismatch([], f"a {spec.type}", _what(value))
            values, context = tree.one_level(value)
            if kind == "node" and context != spec.context:
                raise Mismatch([], f"a {spec.type} with {spec.context}", str(context))
            if len(values) != len(spec.children):
                raise Mismatch([], f"a {spec.type} of {len(spec.children)} fields", f"{len(values)} fields")
            self._walk_each(spec.labels(), spec.children, values, flat)
            return
        # Containers by their exact type, and a dict's keys in their order, as flatten
        # recorded them (and dynamo guards them): the program may branch on the type
        # (``isinstance(v, list)``, a namedtuple's fields) or iterate the dict, which eager
        # does in the caller's order (until 2026-12-07 a tuple passed for a list, a
        # namedtuple or an OrderedDict for a plain one, or a dict's keys in another order
        # ran the compiled branch and order, silently)
        if kind == "dict":
            if type(value) is not dict:
                raise Mismatch([], "a dict", _what(value))
            keys = tuple(value)
            if keys != spec.keys:  # (a tuple: the manifest's record)
                if set(keys) == set(spec.keys):
                    raise Mismatch([], f"a dict with keys in the order {list(spec.keys)} (the program may iterate it, "
                                       "as eager does in the caller's order: pass them in the order compiled)",
                                   f"{[str(k) for k in keys]}")
                raise Mismatch([], f"a dict with keys {sorted(spec.keys)}", f"keys {sorted(map(str, value))}")
            self._walk_each(spec.keys, spec.children, [value[k] for k in spec.keys], flat)
            return
        if type(value) is not (tuple if kind == "tuple" else list):
            raise Mismatch([], f"a {kind}", _what(value))
        if len(value) != len(spec.children):
            raise Mismatch([], f"a {kind} of length {len(spec.children)}", f"length {len(value)}")
        self._walk_each(range(len(value)), spec.children, value, flat)

    def _carrier(self, leaf: IntLeaf, value) -> Tensor:
        """The carrier of int argument ``value`` (``leaf``: treespec.IntLeaf), once it is
        an int its Dim allows (the shape check binds the Dim, and compares it with other
        inputs' sizes)."""
        guard = self.inputs[leaf.index]
        want, size = guard.shape[0], value - leaf.offset if type(value) is int else None
        if size is None:
            raise Mismatch([], _int_expected(want, self.dims, leaf.offset), _what(value))
        if (size != want if isinstance(want, int) else not self.dims[want].allows(size) if isinstance(want, str)
                else size < 0):
            raise Mismatch([], _int_expected(want, self.dims, leaf.offset), str(value))
        return tree.size_carrier(size, guard.device)

    def _walk_each(self, keys, specs, values, flat: list) -> None:
        """Each child value against its spec, a mismatch's path starting at its key."""
        for key, c, v in zip(keys, specs, values):
            try:
                self._walk(c, v, flat)
            except Mismatch as m:
                m.parts.insert(0, key)
                raise

    def _walk_subclass(self, spec, value, flat: list) -> None:
        """A tensor subclass made of tensors: the class, its inner tensors' names and
        flatten context, and its size and strides being its first inner tensor's, as
        compiled; then each inner tensor as an input of its own."""
        if not isinstance(value, torch.Tensor) or tree.type_name(type(value)) != spec.type:
            raise Mismatch([], f"a {spec.type}", _what(value))
        attrs, meta, inner = tree.subclass_parts(value)
        if attrs != list(spec.attrs) or meta != spec.meta:
            raise Mismatch([], f"a {spec.type} of inner tensors {list(spec.attrs)} and context {spec.meta!r}",
                           f"{attrs} and {meta!r}")
        if value.requires_grad and torch.is_grad_enabled() and not self._differentiates(spec):
            # (autograd tracks the wrapper: a training variant compiled for it carries its
            # gradient as its inner tensors', tree.take_apart; any other would drop it)
            raise Mismatch([], f"a {spec.type} that does not require grad (the package computes on its inner "
                               "tensors and builds no autograd graph of it; eager would)", "one that requires grad")
        if not tree.sized_as_first_inner(value, inner):
            raise Mismatch([], f"a {spec.type} of the size and strides of its {attrs[0]} (as compiled)",
                           f"size {list(value.shape)} and strides {list(value.stride())}")
        if self._returns_inner(spec):
            tree.passed_apart(value, inner)
        self._walk_each(attrs, spec.children, inner, flat)


    def _returns_inner(self, spec) -> bool:
        """Whether an output may be an inner tensor of subclass input ``spec`` (views of
        inputs are pinned): then the call records the subclass tensor, so an output made
        of exactly its inner tensors is the caller's own (``tree.passed_apart``)."""
        return any(isinstance(c, TensorLeaf) and c.index in self.pinned for c in spec.children)

    def _differentiates(self, spec) -> bool:
        """Whether this variant takes subclass input ``spec`` requiring grad under grad
        mode: a training variant compiled with its gradient (its inner tensors require
        grad), or one whose outputs' autograd graph does not reach it (``Input.detached``:
        eager's outputs need no gradient of it)."""
        inner = [self.inputs[c.index] if isinstance(c, TensorLeaf) else None for c in spec.children]
        return all(g is not None and ((self.train and g.requires_grad) or g.detached) for g in inner)


def _subclass_parts(spec, remember: bool = False):
    """``value -> its inner tensors`` for the fast check of a subclass parameter, raising
    (the generated check's ``except`` then returns None: the full check says why) where
    ``value`` is not what ``Guard._walk_subclass`` accepts. The class is compared by name
    once, then by identity (a package never imports it; the caller's is the one)."""
    want_type, attrs, meta = spec.type, list(spec.attrs), spec.meta
    seen: list = []
    passed = tree.passed_apart

    def parts(value):
        cls = type(value)
        if not seen or cls is not seen[0]:
            if not issubclass(cls, torch.Tensor) or tree.type_name(cls) != want_type:
                raise TypeError
            seen[:] = [cls]
        if value.requires_grad and torch.is_grad_enabled():  # (the full check: a gradient carried, or refused)
            raise TypeError
        names, context, inner = tree.subclass_parts(value, carry_grad=False)
        if names != attrs or context != meta or not tree.sized_as_first_inner(value, inner):
            raise TypeError
        if remember:
            passed(value, inner)
        return inner

    return parts


def _what(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {tree.dtype_name(value.dtype)}{list(value.shape)}"
    if isinstance(value, (tuple, list, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{value!r} ({type(value).__name__})"


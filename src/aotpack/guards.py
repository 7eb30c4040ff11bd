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

What each property must be (the contract; README "Guards"):

- requires_grad, when grad mode is on: an inference variant takes no input that
  requires grad (it builds no autograd graph, eager would); a training variant takes
  exactly the pattern it was compiled for. With grad mode off, anything goes.
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
  forward-mode tangent, or a torch.func transform's tensor (vmap, jvp), is refused.

Example:
    >>> g = Guard.from_manifest(program, variant)         # doctest: +SKIP
    >>> flat = g.check(args, kwargs)  # list of tensors, or raises Mismatch
"""

from __future__ import annotations

import ast
import inspect
import operator

import torch
from torch import Tensor

from . import tree
from .errors import GuardError
from .package.manifest import Dim, Input, Param, Program, Variant

__all__ = ["Guard", "GuardEntry", "Mismatch", "describe_input", "shape_text"]

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

    def __init__(self, parts: list, expected: str, actual: str, where: str | None = None, late: bool = False):
        self.parts, self.expected, self.actual, self.where = parts, expected, actual, where
        # a check that runs after structure, dtypes and shapes passed (requires_grad,
        # layout, shared memory, the bound module): the variant that got furthest
        self.late = late or where is not None


def describe_input(name: str, guard: Input, dims: dict[str, Dim]) -> str:
    """One input guard for a person: ``x: float32[batch=1..4096, 512] cpu``."""
    grad = " requires_grad" if guard.requires_grad else ""
    return f"{name}: {guard.dtype}{shape_text(guard.shape, dims)} {guard.device}{grad}"


def shape_text(shape: list, dims: dict[str, Dim]) -> str:
    """``[batch=1..4096, 512]``: static sizes, Dims with their ranges, derived sizes."""
    sizes = []
    for s in shape:
        if isinstance(s, int):
            sizes.append(str(s))
        elif isinstance(s, str):
            r = dims[s]
            sizes.append(f"{s}={r.min}..{'inf' if r.max is None else r.max}")
        else:
            sizes.append(s["expr"])
    return f"[{', '.join(sizes)}]"


class Guard:
    """The compiled check for one variant. Build with ``Guard.from_manifest``.

    ``check(args, kwargs)`` returns the flat input tensors or raises Mismatch (the
    runtime turns it into GuardError after trying every variant).
    """

    def __init__(self, signature: list[Param], in_spec: dict, inputs: list[Input], dims: dict[str, Dim],
                 guard_filter=None, variant: str = "", *, train: bool = False, pinned=(), mutated=(),
                 raw_memory: bool = True):
        self.train = train
        # compiled code that reads the stored values (a backend without runs_aten_ops): a
        # tensor with the negative or conjugate bit set (``z.conj().imag``) stores values
        # that mean their negation, and a forward-mode tangent would be dropped; only aten
        # ops apply them. (_fw_level: where forward AD says a level is open.)
        self.raw_memory = raw_memory
        if raw_memory:
            from ._torch_compat import forward_ad_level  # (what compiled backends' loads import anyway)

            self._fw_level = forward_ad_level()
        # flat inputs the program changes in place (no other input may share their
        # memory), and those whose layout must match exactly (no copy may stand in)
        self.mutated = sorted(mutated)
        self.pinned = set(pinned) | set(mutated)
        self.signature = signature
        self.in_spec = in_spec
        self.inputs = inputs
        self.dims = dims
        self.names = [p.name for p in signature]
        # Fast binding applies when every parameter is plain positional-or-keyword.
        self._plain = all(p.kind in ("positional_or_keyword", "positional_only") for p in signature)
        self._sig = inspect.Signature([
            inspect.Parameter(p.name, _KIND[p.kind],
                              default=tree.decode_const(p.default) if p.default is not None else inspect.Parameter.empty)
            for p in signature
        ])
        self.dropped: set = set()
        self._dropped_consts: set = set()
        if guard_filter is not None:  # entries are built only for a filter: not on the plain load path
            entries = self.entries(variant)
            keep = list(guard_filter(entries))
            if len(keep) != len(entries):
                raise ValueError(f"guard_filter returned {len(keep)} booleans for {len(entries)} guard entries")
            self.dropped = {(e.index, e.kind) for e, k in zip(entries, keep) if not k and e.kind != "value"}
            self._dropped_consts = {e.index for e, k in zip(entries, keep) if not k and e.kind == "value"}
        self._tensor_checks = [self._compile_tensor(g, {k for i, k in self.dropped if i == n})
                               for n, g in enumerate(inputs)]

        self._children = in_spec["children"]
        # The common call, f(t0, t1, ...): every parameter one tensor, nothing to walk.
        self._tensors_only = all(c["kind"] == "tensor" for c in self._children)
        self.fast = self._generate_fast_check()

    @classmethod
    def from_manifest(cls, program: Program, variant: Variant, guard_filter=None, raw_memory: bool = True) -> Guard:
        train = variant.train
        n_weights = len(variant.weights)
        pinned = [a.primal - n_weights for a in variant.views() if a.primal >= n_weights]
        pinned += [i for i, g in enumerate(variant.inputs) if g.layout_pinned]
        mutated = [m.index for m in train.mutated if m.kind == "input"] if train else []
        return cls(program.signature, variant.in_spec, variant.inputs, variant.dims,
                   guard_filter, variant.name, train=train is not None, pinned=pinned, mutated=mutated,
                   raw_memory=raw_memory)

    def entries(self, variant: str) -> list[GuardEntry]:
        """Every check of this variant, for ``load(..., guard_filter=...)``."""
        from . import layout as layouts  # (layout.py: off the load path, which never needs it)

        out = []
        for path, leaf in tree.named_leaves(self.in_spec, self.names):
            if leaf["kind"] == "const":
                out.append(GuardEntry(variant, path, "value", tree.const_repr(leaf), id(leaf)))
                continue
            g = self.inputs[leaf["index"]]
            out.append(GuardEntry(variant, path, "dtype", g.dtype, leaf["index"]))
            out.append(GuardEntry(variant, path, "shape", shape_text(g.shape, self.dims), leaf["index"]))
            out.append(GuardEntry(variant, path, "layout", layouts.describe(g.layout), leaf["index"]))
            out.append(GuardEntry(variant, path, "device", g.device, leaf["index"]))
            out.append(GuardEntry(variant, path, "requires_grad", str(g.requires_grad) if self.train else "False",
                                  leaf["index"]))
        return out

    def tensor_inputs(self) -> list[tuple[str, Input]]:
        """(path by parameter name, guard) for each flat tensor, for messages."""
        return [(path, self.inputs[leaf["index"]]) for path, leaf in tree.named_leaves(self.in_spec, self.names)
                if leaf["kind"] == "tensor"]

    def _generate_fast_check(self):
        """A straight-line check for the common call ``f(t0, t1, ...)``, or None.

        Returns a function ``(args, kwargs) -> list | None``: the flat inputs when every
        check passes, None when anything differs or the call has another form (the
        caller then runs ``check``, which raises with the full message). Generated as
        source because a Python loop over per-tensor closures costs twice as much.
        Only ints and generated local names go into the source; dtypes and devices are
        passed in as values, never as manifest text.
        """
        if not (self._tensors_only and self._plain) or self.dropped or self.mutated or any(
                isinstance(s, dict) for g in self.inputs for s in g.shape):
            return None
        n = len(self.names)
        env: dict = {"Tensor": Tensor, "STRIDED": torch.strided, "CL": torch.channels_last}
        local: dict[str, str] = {}
        start = f"kwargs or len(args) != {n}"
        if self.raw_memory:  # inside forward-mode AD the full check looks for tangents
            env["FW"], level = self._fw_level
            start += f" or FW.{level} >= 0"
        lines = ["def fast(args, kwargs):", f"    if {start}:", "        return None"]
        names = [f"a{i}" for i in range(n)]
        lines.append(f"    {', '.join(names)}{',' if n == 1 else ''} = args" if n else "    pass")
        for i, g in enumerate(self.inputs):
            a = names[i]
            env[f"D{i}"] = getattr(torch, g.dtype)
            # One condition per tensor (fewer branches than one `if` per property):
            # type, dtype, device, requires_grad as compiled (training) or False
            # (inference; anything else may still pass under no_grad: the full check
            # decides), memory layout, then the shape.
            conds = [f"not isinstance({a}, Tensor)", f"{a}.dtype is not D{i}"]
            device = g.device
            if device == "cpu":
                conds.append(f"not {a}.is_cpu")
            elif device == "cuda":
                conds += [f"not {a}.is_cuda", f"{a}.data_ptr() % 16"]  # triton assumes 16-byte alignment
            else:
                env[f"V{i}"] = device
                conds.append(f"{a}.device.type != V{i}")
            want_grad = g.requires_grad and self.train
            conds.append(f"{a}.requires_grad" if not want_grad else f"not {a}.requires_grad")
            if self.raw_memory:  # (80 ns a tensor: only where compiled code reads the values)
                conds.append(f"{a}.is_neg()")
                if env[f"D{i}"].is_complex:
                    conds.append(f"{a}.is_conj()")
            layout = g.layout
            if layout == "contiguous":
                conds.append(f"not {a}.is_contiguous()")
            elif layout == {"order": [0, 2, 3, 1]}:
                conds.append(f"not {a}.is_contiguous(memory_format=CL)")
            elif "stride" in layout:
                env[f"T{i}"] = tuple(layout["stride"])
                conds.append(f"{a}.layout is not STRIDED or {a}.stride() != T{i}")
            else:
                conds.append("True")  # other dense orders: the full check
            if all(isinstance(size, int) for size in g.shape):
                env[f"S{i}"] = torch.Size(g.shape)
                conds.append(f"{a}.shape != S{i}")
                lines.append(f"    if {' or '.join(conds)}:")
                lines.append("        return None")
                continue
            lines.append(f"    if {' or '.join(conds)}:")
            lines.append("        return None")
            lines.append(f"    s = {a}.shape")
            conds = [f"len(s) != {len(g.shape)}"]
            binds = []
            for d, size in enumerate(g.shape):
                if isinstance(size, int):
                    conds.append(f"s[{d}] != {int(size)}")
                elif size in local:
                    conds.append(f"s[{d}] != {local[size]}")
                else:
                    var = local[size] = f"d{len(local)}"
                    r = self.dims[size]
                    binds.append((var, d, int(r.min), None if r.max is None else int(r.max)))
            lines.append(f"    if {' or '.join(conds)}:")
            lines.append("        return None")
            for var, d, lo, hi in binds:
                lines.append(f"    {var} = s[{d}]")
                bound = f"{var} < {lo}" + (f" or {var} > {hi}" if hi is not None else "")
                lines.append(f"    if {bound}:")
                lines.append("        return None")
        lines.append(f"    return [{', '.join(names)}]")
        exec(compile("\n".join(lines), "<aotpack guard>", "exec"), env)  # noqa: S102 - generated above
        return env["fast"]

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
    def check(self, args: tuple, kwargs: dict, tensors: bool = True, adapt: bool = True) -> list[torch.Tensor]:
        """Flat input tensors if the call matches; raises Mismatch (or GuardError) if not.

        ``tensors=False`` checks only binding and structure (``load(check_guards=False)``);
        ``adapt=False`` refuses an input in another memory layout instead of copying it
        (dispatch first looks for a variant compiled for the caller's layouts).
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
        sizes: dict[str, int] = {}
        for i, (check, t) in enumerate(zip(self._tensor_checks, flat)):
            try:
                check(t, sizes)
            except Mismatch as m:
                m.parts[:0] = self.tensor_path(i)
                raise
        grad = torch.is_grad_enabled()
        for i, t in enumerate(flat):
            try:
                if grad:
                    self._check_requires_grad(i, t)
                flat[i] = self._check_layout(i, t, adapt)
            except Mismatch as m:
                m.parts[:0] = self.tensor_path(i)
                raise
        for i in self.mutated:
            self._check_unshared(i, flat)
        if self.raw_memory:
            self._check_tangents(flat)
        return flat

    def _check_requires_grad(self, i: int, t: Tensor) -> None:
        if (i, "requires_grad") in self.dropped:
            return
        if not self.train:
            if t.requires_grad:
                raise Mismatch([_Attr(".requires_grad")],
                               "False: an inference package builds no autograd graph (call it under "
                               "torch.no_grad() or torch.inference_mode(), pass a detached tensor, or compile "
                               "with train=True)", "True", late=True)
            return
        want = self.inputs[i].requires_grad
        if t.requires_grad != want:
            why = ("its gradient is compiled" if want else
                   "no gradient was compiled for it: compile a variant with an example that requires grad")
            raise Mismatch([_Attr(".requires_grad")], f"{want} ({why})", str(t.requires_grad), late=True)

    def _check_tangents(self, flat: list) -> None:
        """Mismatch for an input carrying a forward-mode tangent: compiled code computes
        the value alone and would return no tangent where eager returns one."""
        module, level = self._fw_level
        if getattr(module, level) < 0:
            return
        import torch.autograd.forward_ad as forward_ad

        for i, t in enumerate(flat):
            if forward_ad.unpack_dual(t).tangent is not None:
                raise Mismatch(self.tensor_path(i), "a tensor without a forward-mode tangent (compiled code "
                               "computes values only and would drop it; compile with backend='eager' for jvp)",
                               "one with a tangent", late=True)

    def _check_layout(self, i: int, t: Tensor, adapt: bool = True) -> Tensor:
        """``t``, or a copy of it in the compiled layout; Mismatch where no copy may be made."""
        from . import layout as layouts

        bit = self.raw_memory and (".is_neg()" if t.is_neg() else ".is_conj()" if t.is_conj() else None)
        if bit:  # (a value, not a layout: resolved even where the layout guard is dropped)
            if i in self.pinned or not adapt:
                raise Mismatch([_Attr(bit)], "False (compiled code reads the stored values, which the bit negates "
                               "or conjugates; aotpack cannot pass a resolved copy here: call "
                               "x.resolve_neg().resolve_conj() first)", "True", late=True)
            t = t.resolve_conj().resolve_neg()  # a copy without the bit (differentiable)
        if (i, "layout") in self.dropped:
            return t
        g = self.inputs[i]
        want = g.layout
        aligned = g.device != "cuda" or t.data_ptr() % 16 == 0
        if aligned and layouts.matches(t, want):
            return t
        if not adapt:
            raise Mismatch([_Attr(".stride()")], layouts.describe(want), f"strides {tuple(t.stride())}", late=True)
        if i in self.pinned or not layouts.can_adapt(want):
            why = ("the program changes it in place" if i in self.mutated else
                   g.layout_pinned if g.layout_pinned else
                   "an output is a view of it" if i in self.pinned else "its elements overlap")
            raise Mismatch([_Attr(".stride()")], f"{layouts.describe(want)} ({why}, so aotpack cannot pass a "
                           "copy in the compiled layout)", f"strides {tuple(t.stride())}", late=True)
        return layouts.adapt(t, want)

    def _check_unshared(self, i: int, flat: list) -> None:
        storage = flat[i].untyped_storage().data_ptr()
        for j, other in enumerate(flat):
            if j != i and other.untyped_storage().data_ptr() == storage:
                names = [p for p, _ in self.tensor_inputs()]
                raise Mismatch(self.tensor_path(i), f"a tensor sharing no memory with another input (the program "
                               f"changes it in place, and eager would see the change through {names[j]})",
                               f"one that shares memory with {names[j]}", late=True)

    def tensor_path(self, flat_index: int) -> list:
        """Path parts (parameter index, keys...) of flat tensor ``flat_index``."""
        for i, spec in enumerate(self._children):
            for keys, leaf in tree.leaf_keys(spec):
                if leaf["kind"] == "tensor" and leaf["index"] == flat_index:
                    return [i, *keys]
        return [0]  # pragma: no cover

    def _walk(self, spec: dict, value, flat: list) -> None:
        kind = spec["kind"]
        if kind == "tensor":
            if not isinstance(value, torch.Tensor):
                raise Mismatch([], "a tensor", _what(value))
            flat.append(value)
            return
        if kind == "const":
            if id(spec) in self._dropped_consts:
                return
            expected = tree.decode_const(spec)
            if isinstance(value, torch.Tensor) or type(value) is not type(expected) or value != expected:
                if not (isinstance(expected, float) and isinstance(value, float) and expected != expected and value != value):
                    raise Mismatch([], f"{tree.const_repr(spec)} (frozen at compile time)", _what(value))
            return
        if kind in ("namedtuple", "node"):
            if tree.type_name(type(value)) != spec["type"]:
                raise Mismatch([], f"a {spec['type']}", _what(value))
            values, context = tree.one_level(value)
            if kind == "node" and context != spec["context"]:
                raise Mismatch([], f"a {spec['type']} with {spec['context']}", str(context))
            if len(values) != len(spec["children"]):
                raise Mismatch([], f"a {spec['type']} of {len(spec['children'])} fields", f"{len(values)} fields")
            for (keys, _), c, v in zip(tree.leaf_keys(spec, depth=1), spec["children"], values):
                try:
                    self._walk(c, v, flat)
                except Mismatch as m:
                    m.parts.insert(0, keys[0])
                    raise
            return
        if kind == "dict":
            if not isinstance(value, dict):
                raise Mismatch([], "a dict", _what(value))
            if set(value) != set(spec["keys"]):
                raise Mismatch([], f"a dict with keys {sorted(spec['keys'])}", f"keys {sorted(map(str, value))}")
            for k, c in zip(spec["keys"], spec["children"]):
                try:
                    self._walk(c, value[k], flat)
                except Mismatch as m:
                    m.parts.insert(0, k)
                    raise
            return
        if not isinstance(value, (tuple, list)):
            raise Mismatch([], f"a {kind}", _what(value))
        if len(value) != len(spec["children"]):
            raise Mismatch([], f"a {kind} of length {len(spec['children'])}", f"length {len(value)}")
        for j, (c, v) in enumerate(zip(spec["children"], value)):
            try:
                self._walk(c, v, flat)
            except Mismatch as m:
                m.parts.insert(0, j)
                raise

    def _compile_tensor(self, g: Input, dropped: set):
        # (a check dropped by guard_filter is None: not made)
        dtype = getattr(torch, g.dtype) if "dtype" not in dropped else None
        check_shape = "shape" not in dropped
        shape_spec = g.shape if check_shape else []
        device = g.device if "device" not in dropped else None
        rank = len(shape_spec)
        static = all(isinstance(s, int) for s in shape_spec)
        static_shape = torch.Size(shape_spec) if static else None
        dims = self.dims

        exprs = [(d, s["expr"], _size_expr(s["expr"])) for d, s in enumerate(shape_spec) if isinstance(s, dict)]

        def check(t: torch.Tensor, sizes: dict) -> None:
            if not isinstance(t, Tensor):
                raise Mismatch([], "a tensor", _what(t))
            if dtype is not None and t.dtype is not dtype:
                raise Mismatch([_Attr(".dtype")], str(dtype), str(t.dtype))
            if t.layout is not torch.strided:
                raise Mismatch([_Attr(".layout")], "torch.strided (a dense tensor)", str(t.layout))
            shape = t.shape
            if not check_shape or (static and shape == static_shape):
                pass
            else:
                if len(shape) != rank:
                    raise Mismatch([_Attr(".dim()")], f"rank {rank} (shape {shape_text(shape_spec, dims)})",
                                   f"rank {len(shape)} (shape {list(shape)})")
                for d, (want, got) in enumerate(zip(shape_spec, shape)):
                    if isinstance(want, int):
                        if got != want:
                            raise Mismatch([_Attr(f".shape[{d}]")], str(want), str(got))
                    elif isinstance(want, str):
                        seen = sizes.get(want)
                        if seen is None:
                            r = dims[want]
                            if got < r.min or (r.max is not None and got > r.max):
                                hi = "inf" if r.max is None else r.max
                                raise Mismatch([_Attr(f".shape[{d}]")], f"{want} in {r.min}..{hi}", str(got))
                            sizes[want] = got
                        elif seen != got:
                            raise Mismatch([_Attr(f".shape[{d}]")], f"{want} = {seen} (as in an earlier input)", str(got))
                for d, text, evaluate in exprs:
                    want_size = evaluate(sizes) if evaluate else None
                    if want_size is not None and shape[d] != want_size:
                        raise Mismatch([_Attr(f".shape[{d}]")], f"{text} = {want_size}", str(shape[d]))
            if device is not None and t.device.type != device:
                raise Mismatch([_Attr(".device")], device, str(t.device))

        return check


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}


def _size_expr(text: str):
    """A checker for a derived size like ``2*batch + 1``: sizes -> int, or None when a
    Dim it uses is not bound yet. Only + - * // % on ints and Dim names; anything else
    gives None (the size is then checked by the backend only)."""
    try:
        tree_ = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None

    def build(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return lambda sizes: node.value
        if isinstance(node, ast.Name):
            return lambda sizes: sizes.get(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = build(node.operand)
            return lambda sizes: None if (v := inner(sizes)) is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right, op = build(node.left), build(node.right), _BINOPS[type(node.op)]
            return lambda sizes: None if (a := left(sizes)) is None or (b := right(sizes)) is None else op(a, b)
        raise ValueError(text)

    try:
        return build(tree_)
    except ValueError:
        return None


def _what(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {tree.dtype_name(value.dtype)}{list(value.shape)}"
    if isinstance(value, (tuple, list, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{value!r} ({type(value).__name__})"


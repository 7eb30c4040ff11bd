"""Input guards: check a call's arguments against what a variant was compiled for.

A loaded package must never run on inputs it was not compiled for (an AOTInductor
binary given a wrong shape silently resizes its outputs and returns garbage). Each
variant carries a guard spec in its manifest entry:

- the parameters of the program (name, kind, frozen default),
- the tree spec of the bound arguments, with constants that must compare equal,
- per flat tensor: dtype, shape (ints, or named Dims with a range), device,
  requires_grad.

Checks run in this order: binding to the signature, structure, constants, then per
tensor dtype, rank, each dimension, device, requires_grad; last, relations between
dimensions (two inputs sharing ``batch`` must agree). The first failure raises
GuardError naming the argument path as the caller wrote it::

    args[0].shape[1]: expected 512, got 256
    kwargs['mask'].dtype: expected torch.bool, got torch.float32
    args[0].shape[0]: expected batch in 1..4096, got 5000

Example:
    >>> g = Guard.from_manifest(variant)                  # doctest: +SKIP
    >>> flat = g.check(args, kwargs)  # list of tensors, or raises GuardError
"""

from __future__ import annotations

import inspect

import torch

from . import tree
from .errors import GuardError

__all__ = ["Guard", "Mismatch", "describe_input"]

_KIND = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}


class _Attr(str):
    """A path part that is an attribute (``.dtype``), not a dict key."""


class Mismatch(Exception):
    """Internal: one failed check. ``parts`` is the path inside the bound arguments,
    built only when a check fails (the success path builds no strings)."""

    def __init__(self, parts: list, expected: str, actual: str):
        self.parts, self.expected, self.actual = parts, expected, actual


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def describe_input(name: str, guard: dict, dims: dict) -> str:
    """One input guard for a person: ``x: float32[batch=1..4096, 512] cpu``."""
    sizes = []
    for s in guard["shape"]:
        if isinstance(s, int):
            sizes.append(str(s))
        elif isinstance(s, str):
            r = dims.get(s, {})
            hi = "inf" if r.get("max") is None else r["max"]
            sizes.append(f"{s}={r.get('min', 0)}..{hi}")
        else:
            sizes.append(s["expr"])
    grad = " requires_grad" if guard.get("requires_grad") else ""
    return f"{name}: {guard['dtype']}[{', '.join(sizes)}] {guard['device']}{grad}"


class Guard:
    """The compiled check for one variant. Build with ``Guard.from_manifest``.

    ``check(args, kwargs)`` returns the flat input tensors or raises Mismatch (the
    runtime turns it into GuardError after trying every variant).
    """

    def __init__(self, signature: list[dict], in_spec: dict, inputs: list[dict], dims: dict):
        self.signature = signature
        self.in_spec = in_spec
        self.inputs = inputs
        self.dims = dims
        self.names = [p["name"] for p in signature]
        self._n_tensors = len(inputs)
        # Fast binding applies when every parameter is plain positional-or-keyword.
        self._plain = all(p["kind"] in ("positional_or_keyword", "positional_only") for p in signature)
        self._sig = inspect.Signature([
            inspect.Parameter(p["name"], _KIND[p["kind"]],
                              default=tree.decode_const(p["default"]) if "default" in p else inspect.Parameter.empty)
            for p in signature
        ])
        self._tensor_checks = [self._compile_tensor(g) for g in inputs]
        self._children = in_spec["children"]

    @classmethod
    def from_manifest(cls, program: dict, variant: dict) -> Guard:
        return cls(program["signature"], variant["in_spec"], variant["inputs"], variant.get("dims", {}))

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
        name = p["name"]
        if p["kind"] == "var_positional":
            start = sum(1 for q in self.signature[:index] if q["kind"] in ("positional_only", "positional_or_keyword"))
            return "args", start
        if p["kind"] == "var_keyword":
            return "kwargs", 0
        if name in kwargs:
            return f"kwargs[{name!r}]", 0
        position = [q["name"] for q in self.signature if q["kind"] in ("positional_only", "positional_or_keyword")]
        if name in position and position.index(name) < len(args):
            return f"args[{position.index(name)}]", 0
        return f"{name} (default)", 0

    def path(self, m: Mismatch, args: tuple, kwargs: dict) -> str:
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
    def check(self, args: tuple, kwargs: dict, tensors: bool = True) -> list[torch.Tensor]:
        """Flat input tensors if the call matches; raises Mismatch (or GuardError) if not.

        ``tensors=False`` checks only binding and structure (``load(check_guards=False)``).
        """
        values = self.bind(args, kwargs)
        flat: list[torch.Tensor] = []
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
                m.parts[:0] = self._tensor_path(i)
                raise
        return flat

    def _tensor_path(self, flat_index: int) -> list:
        """Path parts (parameter index, keys...) of flat tensor ``flat_index``."""
        for i, spec in enumerate(self._children):
            for path, leaf in tree.leaf_paths(spec):
                if leaf["kind"] == "tensor" and leaf["index"] == flat_index:
                    return [i] + _parse_path(path)
        return [0]  # pragma: no cover

    def _walk(self, spec: dict, value, flat: list) -> None:
        kind = spec["kind"]
        if kind == "tensor":
            if not isinstance(value, torch.Tensor):
                raise Mismatch([], "a tensor", _what(value))
            flat.append(value)
            return
        if kind == "const":
            expected = tree.decode_const(spec)
            if isinstance(value, torch.Tensor) or type(value) is not type(expected) or value != expected:
                if not (isinstance(expected, float) and isinstance(value, float) and expected != expected and value != value):
                    raise Mismatch([], f"{tree.const_repr(spec)} (frozen at compile time)", _what(value))
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

    def _compile_tensor(self, g: dict):
        dtype = getattr(torch, g["dtype"])
        rank = len(g["shape"])
        device = g["device"]
        requires_grad = g.get("requires_grad", False)
        static = all(isinstance(s, int) for s in g["shape"])
        static_shape = torch.Size(g["shape"]) if static else None
        dims = self.dims
        shape_spec = g["shape"]

        def check(t: torch.Tensor, sizes: dict) -> None:
            if t.dtype is not dtype:
                raise Mismatch([_Attr(".dtype")], str(dtype), str(t.dtype))
            shape = t.shape
            if static and shape == static_shape:
                pass
            else:
                if len(shape) != rank:
                    raise Mismatch([_Attr(".dim()")], f"rank {rank} (shape {_shape_str(shape_spec)})",
                                   f"rank {len(shape)} (shape {list(shape)})")
                for d, (want, got) in enumerate(zip(shape_spec, shape)):
                    if isinstance(want, int):
                        if got != want:
                            raise Mismatch([_Attr(f".shape[{d}]")], str(want), str(got))
                    elif isinstance(want, str):
                        seen = sizes.get(want)
                        if seen is None:
                            r = dims[want]
                            if got < r["min"] or (r["max"] is not None and got > r["max"]):
                                hi = "inf" if r["max"] is None else r["max"]
                                raise Mismatch([_Attr(f".shape[{d}]")], f"{want} in {r['min']}..{hi}", str(got))
                            sizes[want] = got
                        elif seen != got:
                            raise Mismatch([_Attr(f".shape[{d}]")], f"{want} = {seen} (as in an earlier input)", str(got))
            if t.device.type != device:
                raise Mismatch([_Attr(".device")], device, str(t.device))
            if requires_grad and not t.requires_grad:
                raise Mismatch([_Attr(".requires_grad")], "True", "False")

        return check


def _parse_path(path: str) -> list:
    """``"[0]['a']"`` -> ``[0, 'a']`` (paths made by tree.leaf_paths)."""
    import ast

    parts = []
    for piece in path.strip("[]").split("][") if path else []:
        parts.append(ast.literal_eval(piece))
    return parts


def _what(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {_dtype_name(value.dtype)}{list(value.shape)}"
    if isinstance(value, (tuple, list, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{value!r} ({type(value).__name__})"


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(s) if not isinstance(s, dict) else s["expr"] for s in shape) + "]"

"""Argument and result structures as JSON: flatten, unflatten, and name a leaf's path.

A *spec* is a JSON-ready description of a nested Python value made of tuples, lists,
dicts (string keys) and leaves. A leaf is a tensor (``{"kind": "tensor", "index": i}``,
its position in the flat tensor list) or a constant (``{"kind": "const", ...}``, a value
frozen at compile time: None, bool, int, float, str, torch.dtype, torch.device).

Why our own and not ``torch.utils._pytree``: the spec goes into the package manifest,
must be readable without torch's private serializer, and must carry constants so that
guards can name ``args[1]['mode']`` when a baked-in value differs.

Example:
    >>> import torch
    >>> spec, flat = flatten({"a": (torch.ones(1), 2)})
    >>> unflatten(spec, flat)["a"][1]
    2
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import CaptureError

__all__ = ["flatten", "unflatten", "encode_const", "decode_const", "const_repr", "leaf_keys", "leaf_paths",
           "named_leaves", "call_arguments"]

_SCALARS = (bool, int, float, str, type(None))


def encode_const(value: Any, path: str) -> dict:
    """The JSON form of a constant leaf; CaptureError for values we cannot freeze."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"kind": "const", "type": "float", "value": repr(value)}
    if type(value) in _SCALARS:
        return {"kind": "const", "type": type(value).__name__, "value": value}
    if isinstance(value, torch.dtype):
        return {"kind": "const", "type": "dtype", "value": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"kind": "const", "type": "device", "value": str(value)}
    raise CaptureError(
        f"{path} is a {type(value).__qualname__}, which aotpack cannot freeze into a package",
        hint="pass tensors, nested tuples/lists/dicts of them, or None/bool/int/float/str",
    )


def decode_const(leaf: dict) -> Any:
    """The Python value of a constant leaf (inverse of encode_const)."""
    t, v = leaf["type"], leaf["value"]
    if t == "float":
        return float(v)
    if t == "dtype":
        return getattr(torch, v)
    if t == "device":
        return torch.device(v)
    return v


def const_repr(leaf: dict) -> str:
    """How a constant leaf reads to a person: ``3``, ``'mean'``, ``torch.float32``."""
    value = decode_const(leaf)
    if isinstance(value, torch.dtype):
        return str(value)
    return repr(value)


def flatten(value: Any, path: str = "", tensors: list | None = None) -> tuple[dict, list]:
    """Split ``value`` into a spec and the flat list of its tensors (depth first).

    Args:
      value: a tensor, a constant, or tuples/lists/dicts of them.
      path: how the value is named in messages, e.g. ``"args[0]"``.
    Returns:
      (spec, tensors)
    """
    tensors = [] if tensors is None else tensors
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"kind": "tensor", "index": len(tensors) - 1}, tensors
    if isinstance(value, (tuple, list)) and (type(value) in (tuple, list)):
        children = [flatten(v, f"{path}[{i}]", tensors)[0] for i, v in enumerate(value)]
        return {"kind": type(value).__name__, "children": children}, tensors
    if type(value) is dict:
        keys = list(value)
        for k in keys:
            if not isinstance(k, str):
                raise CaptureError(
                    f"{path} is a dict with a non-string key {k!r}",
                    hint="use string keys in dicts passed to or returned from the program",
                )
        children = [flatten(value[k], f"{path}[{k!r}]", tensors)[0] for k in keys]
        return {"kind": "dict", "keys": keys, "children": children}, tensors
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise CaptureError(
            f"{path} is a Python number computed from tensor data or a dynamic size "
            f"({type(value).__name__}), which cannot be frozen",
            hint="return a tensor instead (e.g. skip .item()/.tolist(), or wrap with torch.tensor)",
        )
    return encode_const(value, path), tensors


def unflatten(spec: dict, tensors: list) -> Any:
    """Rebuild the value that ``flatten`` described, taking tensors from ``tensors``."""
    kind = spec["kind"]
    if kind == "tensor":
        return tensors[spec["index"]]
    if kind == "const":
        return decode_const(spec)
    children = [unflatten(c, tensors) for c in spec["children"]]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    return dict(zip(spec["keys"], children))


def leaf_keys(spec: dict, keys: tuple = ()) -> list[tuple[tuple, dict]]:
    """Every leaf of ``spec`` with its key path (list indices, dict keys), depth first
    (tensors in flat order)."""
    kind = spec["kind"]
    if kind in ("tensor", "const"):
        return [(keys, spec)]
    out = []
    labels = spec["keys"] if kind == "dict" else range(len(spec["children"]))
    for k, c in zip(labels, spec["children"]):
        out += leaf_keys(c, keys + (k,))
    return out


def leaf_paths(spec: dict, path: str = "") -> list[tuple[str, dict]]:
    """Every leaf of ``spec`` with its path as text (``x['pair'][0]``), depth first."""
    return [(path + "".join(f"[{k!r}]" for k in keys), leaf) for keys, leaf in leaf_keys(spec)]


def named_leaves(in_spec: dict, names: list[str]) -> list[tuple[str, dict]]:
    """The leaves of an argument spec (one child per parameter), paths by parameter name."""
    return [pair for name, child in zip(names, in_spec["children"]) for pair in leaf_paths(child, name)]


def describe(spec: dict) -> str:
    """A one-line picture of a spec's structure: ``(T, {'a': T, 'n': 2})``."""
    kind = spec["kind"]
    if kind == "tensor":
        return "T"
    if kind == "const":
        return const_repr(spec)
    inner = ", ".join(describe(c) for c in spec["children"])
    if kind == "dict":
        inner = ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(spec["keys"], spec["children"]))
        return "{" + inner + "}"
    if kind == "tuple":
        return "(" + inner + ("," if len(spec["children"]) == 1 else "") + ")"
    return "[" + inner + "]"


def call_arguments(signature: list[dict], values: list) -> tuple[list, dict]:
    """Per-parameter values (in ``signature``'s JSON form, as in the manifest) -> the
    (args, kwargs) of a call: positional parameters and ``*args`` positionally,
    keyword-only parameters and ``**kwargs`` by name."""
    args: list = []
    kwargs: dict = {}
    for p, v in zip(signature, values):
        kind = p["kind"]
        if kind in ("positional_only", "positional_or_keyword"):
            args.append(v)
        elif kind == "var_positional":
            args.extend(v)
        elif kind == "keyword_only":
            kwargs[p["name"]] = v
        else:
            kwargs.update(v)
    return args, kwargs

"""Sizes that follow the call's Dims, as the manifest records them: an int, a Dim's name,
or ``{"expr": "2*batch + 1"}`` in Dim names (shapes, the numbers of views rebuilt at run
time, strides). Read by the guards and the views at each call, and checked by the
manifest where an unreadable one would be refused at every call (strides).

    >>> size_evaluator({"expr": "2*cols"})({"cols": 20})
    40
    >>> size_evaluator({"expr": "__import__('os')"}) is None      # only + - * // % on ints and names
    True
"""

from __future__ import annotations

import ast
import operator

__all__ = ["size_evaluator", "size_expr"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}


def size_evaluator(value):
    """``sizes -> int`` for a recorded number: an int, a Dim's name, or ``{"expr": ...}``
    in Dim names (``size_expr``); None where it cannot be evaluated. Shapes, view
    numbers and strides that follow the call's Dims are all read with it."""
    if isinstance(value, int):
        return lambda sizes: value
    if isinstance(value, str):
        return lambda sizes: sizes.get(value)
    if isinstance(value, dict) and isinstance(value.get("expr"), str):
        return size_expr(value["expr"])
    return None


def size_expr(text: str):
    """A checker for a derived size like ``2*batch + 1``: sizes -> int, or None when a
    Dim it uses is not bound yet. Only + - * // % on ints and Dim names; anything else
    gives None (the size is then checked by the backend only)."""
    try:
        tree_ = ast.parse(text, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
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
            return lambda sizes: None if (a := left(sizes)) is None or (b := right(sizes)) is None or (
                b == 0 and op in (operator.floordiv, operator.mod)) else op(a, b)  # (x // 0: the backend's to check)
        raise ValueError(text)

    try:
        return build(tree_)
    except (ValueError, RecursionError):
        return None

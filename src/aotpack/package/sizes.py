"""Sizes that follow the call's Dims, as the manifest records them: an int, a Dim's name,
or ``{"expr": "2*batch + 1"}`` in Dim names (shapes, the numbers of views rebuilt at run
time, strides). Read by the guards and the views at each call, and checked by the
manifest where an unreadable one would be refused at every call (strides).

    >>> size_evaluator({"expr": "2*cols"})({"cols": 20})
    40
    >>> size_evaluator({"expr": "Mod(b, 3) + b**2"})({"b": 5})
    27
    >>> size_evaluator({"expr": "__import__('os')"}) is None      # only + - * // % ** on ints and names,
    True
    >>> size_evaluator({"expr": "b**99"}) is None                   # small powers, Mod, Max, Min, FloorDiv
    True
"""

from __future__ import annotations

import ast
import operator

__all__ = ["size_evaluator", "size_expr"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}
# the functions sympy writes a size's expression with (torch's symbolic sizes): name -> (function,
# whether it takes two arguments, the second a divisor)
_CALLS = {"Mod": (operator.mod, True), "PythonMod": (operator.mod, True), "FloorDiv": (operator.floordiv, True),
          "Max": (max, False), "Min": (min, False)}


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
    Dim it uses is not bound yet. Only + - * // % on ints and Dim names, small powers
    (``b**2``) and sympy's Mod, FloorDiv, Max and Min; anything else gives None (the
    size is then checked by the backend only)."""
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
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
                and type(node.right.value) is int and 0 <= node.right.value <= 8:  # (a matmul's numel: ``b**2``)
            base, n = build(node.left), node.right.value
            # (bounded: a hostile ``((b**8)**8)**8...`` stops at the first power past any size)
            return lambda sizes: None if (v := base(sizes)) is None or abs(v) > 2**62 else v ** n
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS \
                and not node.keywords and 2 <= len(node.args) <= 8:  # (sympy's ``Mod(b, 3)``, ``Max(1, b)``)
            parts, (f, binary) = [build(a) for a in node.args], _CALLS[node.func.id]
            if binary and len(parts) != 2:
                raise ValueError(text)

            def call(sizes):
                values = [p(sizes) for p in parts]
                if None in values or (binary and values[1] == 0):
                    return None
                return f(*values)
            return call
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right, op = build(node.left), build(node.right), _BINOPS[type(node.op)]
            return lambda sizes: None if (a := left(sizes)) is None or (b := right(sizes)) is None or (
                b == 0 and op in (operator.floordiv, operator.mod)) else op(a, b)  # (x // 0: the backend's to check)
        raise ValueError(text)

    try:
        return build(tree_)
    except (ValueError, RecursionError):
        return None

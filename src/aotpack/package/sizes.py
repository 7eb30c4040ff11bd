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

The numbers a program returns of its sizes (``return y, x.shape[0] / 2, x.shape[0] > 4``)
add a type and a wider grammar: floats, true division, comparisons and torch's own
functions of symbolic numbers (``ToFloat``, ``IntTrueDiv``, ``FloatPow``, ...), each
evaluated with Python's arithmetic, as eager computes it:

    >>> number_evaluator({"expr": "IntTrueDiv(b, 2)", "type": "float"})({"b": 5})
    2.5
    >>> number_evaluator({"expr": "Eq(b, 3) | (b > 4)", "type": "bool"})({"b": 5})
    True
    >>> number_evaluator({"expr": "b > 4", "type": "float"})({"b": 5}) is None   # not the type it claims
    True
"""

from __future__ import annotations

import ast
import math
import operator

__all__ = ["size_evaluator", "size_expr", "number_evaluator", "NUMBER_TYPES"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}
# the functions sympy writes a size's expression with (torch's symbolic sizes): name -> (function, arity)
_CALLS = {"Mod": (operator.mod, 2), "PythonMod": (operator.mod, 2), "FloorDiv": (operator.floordiv, 2),
          "Max": (max, None), "Min": (min, None)}
# and those of a returned number (torch/utils/_sympy/functions.py, sympy's relations)
_NUMBER_CALLS = {"ToFloat": (float, 1), "IntTrueDiv": (operator.truediv, 2), "FloatTrueDiv": (operator.truediv, 2),
                 "FloatPow": (operator.pow, 2), "TruncToInt": (math.trunc, 1), "FloorToInt": (math.floor, 1),
                 "CeilToInt": (math.ceil, 1), "RoundToInt": (round, 1), "Abs": (abs, 1), "Eq": (operator.eq, 2),
                 "Ne": (operator.ne, 2)}
_NUMBER_BINOPS = {ast.Div: operator.truediv, ast.BitAnd: operator.and_, ast.BitOr: operator.or_}
_COMPARES = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
             ast.Eq: operator.eq, ast.NotEq: operator.ne}
NUMBER_TYPES = {"int": int, "float": float, "bool": bool}  # a returned number's "type" -> its Python type


def size_evaluator(value):
    """``sizes -> int`` for a recorded number: an int, a Dim's name, or ``{"expr": ...}``
    in Dim names (``size_expr``); None where it cannot be evaluated. Shapes, view
    numbers and strides that follow the call's Dims are all read with it."""
    if isinstance(value, int):
        return lambda sizes: value
    if isinstance(value, str):
        return lambda sizes: sizes.get(value)
    if isinstance(value, dict) and isinstance(value.get("expr"), str) and "type" not in value:
        return size_expr(value["expr"])
    return None


def number_evaluator(value):
    """``sizes -> int | float | bool`` for a number a program returns of its sizes: what
    ``size_evaluator`` reads, or ``{"expr": ..., "type": "int" | "float" | "bool"}`` in
    the wider grammar of returned numbers (None from the evaluator where the expression
    gives no value of that type: a division by zero, an overflow, an edited manifest)."""
    if not (isinstance(value, dict) and "type" in value):
        return size_evaluator(value)
    kind, text = NUMBER_TYPES.get(value["type"]), value.get("expr")
    evaluate = size_expr(text, numbers=True) if isinstance(text, str) and kind is not None else None
    if evaluate is None:
        return None

    def typed(sizes):
        v = evaluate(sizes)
        return v if type(v) is kind else None
    return typed


def size_expr(text: str, numbers: bool = False):
    """A checker for a derived size like ``2*batch + 1``: sizes -> int, or None when a
    Dim it uses is not bound yet. Only + - * // % on ints and Dim names, small powers
    (``b**2``) and sympy's Mod, FloorDiv, Max and Min; anything else gives None (the
    size is then checked by the backend only). ``numbers``: the wider grammar of a
    returned number too (``number_evaluator``)."""
    try:
        return _build(ast.parse(text, mode="eval").body, text, numbers)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None


def _numeric(*values) -> bool:
    return all(type(v) in (int, float) for v in values)


def _bools(*values) -> bool:
    return all(type(v) is bool for v in values)


def _apply(f, parts: list, check=_numeric):
    """``f`` of the parts' values; None where one is None, fails ``check`` (a bool in
    arithmetic, an int in logic) or ``f`` fails (x // 0, an overflow: eager's or the
    backend's to report)."""
    def run(sizes):
        values = [p(sizes) for p in parts]
        if None in values or not check(*values):
            return None
        try:
            return f(*values)
        except (ArithmeticError, ValueError):
            return None
    return run


def _build(node, text: str, numbers: bool):
    def build(n):
        return _build(n, text, numbers)

    if isinstance(node, ast.Constant) and (type(node.value) is int or numbers and type(node.value) in (float, bool)):
        value = node.value
        return lambda sizes: value
    if isinstance(node, ast.Name):
        return lambda sizes: sizes.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _apply(operator.neg, [build(node.operand)])
    if numbers and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):  # (sympy writes Not as ~)
        return _apply(operator.not_, [build(node.operand)], _bools)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
            and type(node.right.value) is int and 0 <= node.right.value <= 8:  # (a matmul's numel: ``b**2``)
        # (bounded: a hostile ``((b**8)**8)**8...`` stops at the first power past any size)
        return _apply(lambda v: v ** node.right.value, [build(node.left)], lambda v: type(v) is int and abs(v) <= 2**62)
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINOPS or numbers and type(node.op) in _NUMBER_BINOPS):
        op = _BINOPS.get(type(node.op)) or _NUMBER_BINOPS[type(node.op)]
        return _apply(op, [build(node.left), build(node.right)],
                      _bools if op in (operator.and_, operator.or_) else _numeric)
    if numbers and isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARES:
        return _apply(_COMPARES[type(node.ops[0])], [build(node.left), build(node.comparators[0])])
    calls = {**_CALLS, **_NUMBER_CALLS} if numbers else _CALLS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in calls \
            and not node.keywords and 1 <= len(node.args) <= 8:  # (sympy's ``Mod(b, 3)``, ``Max(1, b)``)
        f, arity = calls[node.func.id]
        if len(node.args) != (arity or max(2, len(node.args))):
            raise ValueError(text)
        check = _numeric if f not in (max, min) else lambda *v: all(type(x) is int for x in v)
        return _apply(f, [build(a) for a in node.args], check)
    raise ValueError(text)

"""A tiny, safe evaluator for answer expressions such as `a + b` or `(a - b) * c`.

Only integer literals, names, parentheses, unary minus and the operators + - * are allowed,
so an expression written in a probe file can never run code or take unbounded time.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import cast

MAX_EXPRESSION_CHARS = 200

_BINARY: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: lambda x, y: x + y,
    ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y,
}


class ExpressionError(ValueError):
    pass


def parse_expression(text: str) -> ast.expr:
    """Parse and check an expression; raises ExpressionError naming what is not allowed."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ExpressionError(f"not an arithmetic expression: {text!r}") from None
    for node in ast.walk(tree.body):
        allowed = (
            isinstance(node, ast.BinOp | ast.Name | ast.Load)
            or type(node) in _BINARY
            or isinstance(node, ast.UnaryOp | ast.USub | ast.UAdd)
            or (isinstance(node, ast.Constant) and type(node.value) is int)
        )
        if not allowed:
            raise ExpressionError(
                f"only integers, names, parentheses and + - * are allowed, not {text!r}"
            )
    return tree.body


def names_in(expr: ast.expr) -> set[str]:
    return {node.id for node in ast.walk(expr) if isinstance(node, ast.Name)}


def evaluate(expr: ast.expr, values: Mapping[str, int]) -> int:
    """Evaluate a checked expression with the given variable values."""
    if isinstance(expr, ast.Constant):
        return int(cast(int, expr.value))  # `parse_expression` admits integer constants only
    if isinstance(expr, ast.Name):
        if expr.id not in values:
            raise ExpressionError(f"unknown name {expr.id!r} in expression")
        return values[expr.id]
    if isinstance(expr, ast.UnaryOp):
        inner = evaluate(expr.operand, values)
        return -inner if isinstance(expr.op, ast.USub) else inner
    if isinstance(expr, ast.BinOp) and type(expr.op) in _BINARY:
        return _BINARY[type(expr.op)](evaluate(expr.left, values), evaluate(expr.right, values))
    raise ExpressionError(f"unsupported expression node {type(expr).__name__}")

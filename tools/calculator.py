"""A safe calculator: parses arithmetic with `ast`, never `eval`, and bounds sizes."""

from __future__ import annotations

import ast
import math
import operator

from langchain_core.tools import StructuredTool, ToolException

MAX_DIGITS = 1000  # largest integer result, in decimal digits
MAX_EXPRESSION = 500

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
    "log": math.log,
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


class CalculatorError(ValueError):
    """The expression is invalid or its result would be too large."""


def _digits(value: float) -> float:
    """Approximate count of decimal digits of |value| (0 for |value| < 1)."""
    value = abs(value)
    return math.log10(value) if value >= 1 else 0.0


def _check_size(value):
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and math.isinf(value):
        raise CalculatorError("the result is too large")
    return value


def _power(base, exponent):
    if isinstance(base, complex) or isinstance(exponent, complex):
        raise CalculatorError("complex numbers are not supported")
    if abs(base) > 1 and exponent > 0 and exponent * _digits(base) > MAX_DIGITS:
        raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")
    try:
        result = operator.pow(base, exponent)
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    if isinstance(result, complex):
        raise CalculatorError("the result is not a real number")
    return result


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        if isinstance(node.op, ast.Mult) and _digits(left) + _digits(right) > MAX_DIGITS:
            raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(a) for a in node.args]
        try:
            return _check_size(_FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise CalculatorError(f"{node.func.id}: {exc}") from None
    raise CalculatorError("only numbers, + - * / // % **, parentheses and math functions are allowed")


def format_number(value) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}"
    return str(value)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the formatted result."""
    expression = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not expression:
        raise CalculatorError("the expression is empty")
    if len(expression) > MAX_EXPRESSION:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"{expression!r} is not a valid arithmetic expression") from None
    return format_number(_eval(tree))


def _run(expression: str) -> str:
    try:
        return f"{expression} = {calculate(expression)}"
    except CalculatorError as exc:
        raise ToolException(f"Calculator error: {exc}") from None


def make_tools(settings=None, store=None) -> list:
    tool = StructuredTool.from_function(
        func=_run,
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and "
            "parentheses, and sqrt, log, ln, exp, sin, cos, tan, abs, round, floor, ceil, "
            "min, max, pi, e. Input: the expression, e.g. '20000 / 33.3'."
        ),
        handle_tool_error=True,  # a CalculatorError comes back as a ToolMessage with status "error"
        metadata={"friendly": "Let's do the math together 🧮"},
    )
    return [tool]

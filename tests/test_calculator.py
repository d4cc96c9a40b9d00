"""The calculator's evaluator and its offline routing (pure functions)."""

import time

import pytest

from agent.offline.calculator import extract_expression
from tools.calculator import CalculatorError, calculate


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("20000 / 33.3", "600.6006006"),
        ("2 ** 10", "1024"),
        ("7 // 2", "3"),
        ("7 % 4", "3"),
        ("-(3 + 4) * 2", "-14"),
        ("sqrt(16) + 1", "5"),
        ("2^8", "256"),
        ("max(3, 9, 4)", "9"),
        ("round(pi, 2)", "3.14"),
    ],
)
def test_evaluates(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9**9", "digits"),
        ("10**100000", "digits"),
        ("1/0", "division by zero"),
        ("__import__('os')", "allowed"),
        ("(1).__class__", "allowed"),
        ("open('x')", "allowed"),
        ("2 +", "not a valid"),
        ("", "empty"),
        ("1" * 600, "longer"),
        ("sqrt(-1)", "sqrt"),
        ("(-8) ** 0.5", "real"),
    ],
)
def test_rejects_with_clear_message(expression, message):
    started = time.perf_counter()
    with pytest.raises(CalculatorError, match=message):
        calculate(expression)
    assert time.perf_counter() - started < 2  # refused, not computed (that would take minutes)


@pytest.mark.parametrize(
    ("question", "expression"),
    [
        ("What is 20000 divided by 33.3?", "20000 / 33.3"),
        ("what is 3 times (4 + 5)?", "3 * (4 + 5)"),
        ("How much is 1,000 plus 250", "1000 + 250"),
        ("square root of 81", "sqrt(81)"),
    ],
)
def test_extracts_expressions_from_words(question, expression):
    assert extract_expression(question) == expression


@pytest.mark.parametrize("question", ["hello", "How many DFI do I need to run a masternode?", "What is DFI?"])
def test_no_expression_in_plain_questions(question):
    assert extract_expression(question) is None

"""The offline model's calculator routing: a question in words becomes an expression.

First the phrasings people use for everyday sums (a table of rules, each a
small function from the normalised text to (expression, what it computes)),
then plain arithmetic written with symbols or operator words. The tool itself
(tools/calculator.py) only evaluates expressions.
"""

from __future__ import annotations

import re

from tools.calculator import _FUNCTIONS, CalculatorError, calculate, format_number

# --- offline routing: turn a question in words into an expression ---------------
#
# First the phrasings people use for everyday sums (a table of rules, each a
# small function from the normalised text to (expression, what it computes)),
# then plain arithmetic written with symbols or operator words.

NUM = r"[$€]?\s*(\d+(?:\.\d+)?)"
PCT = r"(\d+(?:\.\d+)?)\s*(?:%|percent\b|per cent\b|pct\b)"
_SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "bn": 1e9, "b": 1e9,
           "billion": 1e9}
_UNITS = r"dfi|btc|eth|dusd|usdt|usdc|doge|ltc|bch|tokens?|coins?|shares?|units?|d[a-z]{2,5}"


def normalise(text: str) -> str:
    """Lower case, thousands separators out, "5k" / "1.5 million" written out."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)

    def scale(match):
        value = float(match.group(1)) * _SCALES[match.group(2) or match.group(3)]
        return format_number(value)

    return re.sub(r"(\d+(?:\.\d+)?)(?:\s*(thousand|million|billion)\b|(k|mn|m|bn|b)\b)", scale, text)


def _percent_share(text):
    for pattern, order in ((rf"what\s+(?:percentage|percent|%)\s+of\s+{NUM}\s+is\s+{NUM}", (1, 0)),
                           (rf"{NUM}\s+is\s+what\s+(?:percentage|percent|%)\s+of\s+{NUM}", (0, 1))):
        match = re.search(pattern, text)
        if match:
            part, whole = match.group(order[0] + 1), match.group(order[1] + 1)
            return f"{part} / {whole} * 100", f"{part} as a percentage of {whole}"
    return None


def _percent_change(text):
    match = re.search(rf"\b(increase|raise|reduce|decrease|lower|cut)\s+{NUM}\s+by\s+{PCT}", text)
    if not match:
        return None
    verb, amount, pct = match.groups()
    sign = "+" if verb in ("increase", "raise") else "-"
    return f"{amount} * (1 {sign} {pct} / 100)", f"{amount} {'plus' if sign == '+' else 'minus'} {pct}%"


def _simple_interest(text):
    if not re.search(r"\binterest\b", text):
        return None
    pct = re.search(PCT, text)
    if not pct:
        return None
    years = re.search(r"(\d+(?:\.\d+)?)\s*(?:years?|yrs?)\b", text)
    rest = text[:pct.start()] + " " + text[pct.end():]
    if years:
        rest = rest.replace(years.group(0), " ")
    principal = re.search(NUM, rest)
    if not principal:
        return None
    n = years.group(1) if years else "1"
    return (f"{principal.group(1)} * {pct.group(1)} / 100 * {n}",
            f"simple interest on {principal.group(1)} at {pct.group(1)}% for {n} year(s)")


def _percent_of(text):
    match = re.search(rf"{PCT}\s+of\s+{NUM}", text)
    if not match:
        return None
    pct, amount = match.groups()
    return f"{amount} * {pct} / 100", f"{pct}% of {amount}"


def _price_times_amount(text):
    if not re.search(r"\b(worth|value|how much|what(?:'s| is| are)|whats|total|cost|in usd|in dollars)\b",
                     text):
        return None
    price = re.search(r"[$€]\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:usd\b|eur\b|dollars?\b|€|\$)"
                      r"|(\d+(?:\.\d+)?)\s+(?:per|each|apiece)\b", text)
    if not price:
        return None
    value = next(g for g in price.groups() if g)
    for amount in re.finditer(rf"(?<![\d.$€])(\d+(?:\.\d+)?)\s*(?:{_UNITS})\b", text):
        if amount.start() >= price.end() or amount.end() <= price.start():
            return f"{amount.group(1)} * {value}", f"{amount.group(1)} at {value} each"
    return None


def _collateral_ratio(text):
    if not re.search(r"\bratio\b", text):
        return None
    collateral = loan = None
    for clause in re.split(r"[,;:?]|\band\b|\bwith\b|\bbut\b", text):
        number = re.search(NUM, clause)
        if not number or "ratio" in clause:
            continue
        if re.search(r"\bcollateral", clause):
            collateral = collateral or number.group(1)
        elif re.search(r"\b(loans?|debt|borrowed|minted)\b", clause):
            loan = loan or number.group(1)
    if collateral and loan:
        return f"{collateral} / {loan} * 100", f"collateral ratio in %: collateral {collateral} / loan {loan}"
    return None


# tried in this order; the first that matches wins
PHRASE_RULES = [
    ("share", _percent_share),
    ("change", _percent_change),
    ("interest", _simple_interest),
    ("collateral ratio", _collateral_ratio),
    ("percent of", _percent_of),
    ("price times amount", _price_times_amount),
]


def phrase_expression(text: str) -> tuple[str, str] | None:
    """(expression, what it computes) for an everyday phrasing, or None."""
    normal = normalise(text)
    for _name, rule in PHRASE_RULES:
        found = rule(normal)
        if found:
            return found
    return None


_WORDS = [
    (r"\bdivided by\b|\bover\b", "/"),
    (r"\bmultiplied by\b|\btimes\b", "*"),
    (r"\bplus\b|\badded to\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bto the power of\b|\braised to\b", "**"),
    (r"\bmodulo\b|\bmod\b", "%"),
    (r"\bsquared\b", "**2"),
    (r"\b(?:square root|sqrt) of\b", "sqrt "),
]
_FUNC_NAMES = "|".join(sorted(_FUNCTIONS, key=len, reverse=True))
_EXPR = re.compile(
    rf"(?:(?:{_FUNC_NAMES}|pi)\b|[\d.]+|\*\*|//|[-+*/%^()×÷]|\s)+"
)
_OPERATOR = re.compile(r"\d\s*(\*\*|//|[-+*/%^×÷])\s*[\d(.]|(?:" + _FUNC_NAMES + r")\s*\(")
_PRONOUN = re.compile(r"\b(that|it|the result|this|the balance|the price|the amount|the total|its)\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


def _previous_result(history) -> str | None:
    """The number the conversation last produced, for "multiply that by 2": a
    calculator answer's result, or the figure a tool result leads with
    ("UTXO balance of df1…: 1,234.5 DFI", "Price of BTC: 43,210.50 USD")."""
    for message in reversed(history or []):
        content = str(getattr(message, "content", ""))
        kind = getattr(message, "type", "")
        if kind in ("ai", "tool") and " = " in content:
            numbers = _NUMBER.findall(content.rsplit(" = ", 1)[-1])
            if numbers:
                return numbers[0].replace(",", "")
        if kind == "tool":
            first = content.strip().splitlines()[0] if content.strip() else ""
            numbers = _NUMBER.findall(first.split(": ", 1)[-1])
            if numbers:
                return numbers[0].replace(",", "")
    return None


def extract_expression(text: str, history=None) -> str | None:
    """The arithmetic expression in a question, or None when there is none."""
    phrased = phrase_expression(text)
    if phrased:
        return phrased[0]
    lowered = normalise(text).replace(",", " ")
    for pattern, symbol in _WORDS:
        lowered = re.sub(pattern, f" {symbol} ", lowered)
    lowered = re.sub(r"sqrt\s+([\d.]+)", r"sqrt(\1)", lowered)
    if _PRONOUN.search(lowered):
        previous = _previous_result(history)
        if previous is not None:
            lowered = _PRONOUN.sub(f" {previous} ", lowered)
    lowered = re.sub(r"\bmultiply\s+([\d.]+)\s+by\b", r" \1 * ", lowered)
    lowered = re.sub(r"\bdivide\s+([\d.]+)\s+by\b", r" \1 / ", lowered)
    candidates = [m.group(0).strip() for m in _EXPR.finditer(lowered)]
    candidates = [c for c in candidates if _OPERATOR.search(c)]
    if not candidates:
        return None
    expression = " ".join(max(candidates, key=len).split())
    try:
        calculate(expression)
    except CalculatorError as exc:
        if "digits" not in str(exc) and "large" not in str(exc) and "zero" not in str(exc):
            return None
    return expression


def route(text: str, history) -> dict | None:
    expression = extract_expression(text, history)
    return {"expression": expression} if expression else None


def answer(question: str, message) -> str:
    result = message.text if hasattr(message, "text") else str(message.content)
    if getattr(message, "status", "success") == "error":
        return f"Hmm, I couldn't work that one out. {result}"
    expression, _, value = result.rpartition(" = ")
    phrased = phrase_expression(question)
    if phrased and phrased[0] == expression:
        return f"Let me crunch the numbers: {phrased[1]} is {expression} = {value} 🧮"
    return f"Let me crunch the numbers: {expression} = {value} 🧮"



"""Compact, readable tool results: units on numbers, short lists with counts, a length cap."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

MAX_RESULT_CHARS = 1500


def decimal(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def amount(value, unit: str = "DFI") -> str:
    """An on-chain amount. Ocean's decimal strings are kept exactly as sent ("12.50000000 DFI")."""
    if isinstance(value, str) and decimal(value) is not None:
        text = value.strip()
    else:
        number = decimal(value)
        if number is None:
            return "unknown"
        text = f"{number:,.8f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def usd(value) -> str:
    """Dollars: cents for large values, up to 4 decimals below 1,000, 6 digits below 1."""
    number = decimal(value)
    if number is None:
        return "unknown"
    if abs(number) >= 1000:
        return f"{number:,.2f} USD"
    if abs(number) >= 1:
        text = f"{number:.4f}".rstrip("0")
        return (text + "0" if len(text.split(".")[1]) < 2 else text) + " USD"
    return f"{number:.6g} USD"


def plural(value, word: str) -> str:
    """'1 transaction', '3 transactions', with thousands separators."""
    return f"{count(value)} {word}{'' if decimal(value) == 1 else 's'}"


def count(value) -> str:
    number = decimal(value)
    if number is None:
        return "unknown"
    return f"{int(number):,}" if number == number.to_integral_value() else f"{number:,}"


def plain(value) -> str:
    """A whole number without separators (block heights: 3512345)."""
    number = decimal(value)
    return str(int(number)) if number is not None else "unknown"


def percent(value, ratio: bool = False) -> str:
    """'12.34%'; with `ratio`, the value is a fraction (0.1234)."""
    number = decimal(value)
    if number is None:
        return "unknown"
    if ratio:
        number *= 100
    return f"{number:.2f}".rstrip("0").rstrip(".") + "%"


def when(timestamp) -> str:
    try:
        moment = datetime.fromtimestamp(int(timestamp), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "at an unknown time"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def listing(title: str, lines: list[str], total: int | None = None, more: bool = False) -> str:
    """A titled list with how much of it is shown: "(showing 5 of 120)"."""
    shown = len(lines)
    if not lines:
        return f"{title}: none found."
    if total is not None and total > shown:
        note = f"showing {shown} of {total:,}"
    elif more:
        note = f"showing {shown}, more exist"
    else:
        note = f"all {shown}"
    return f"{title} ({note}):\n" + "\n".join(f"- {line}" for line in lines)


def cap(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 20].rsplit("\n", 1)[0]
    return cut + "\n… (cut short)"


def get(data, *path, default=None):
    """data[path[0]][path[1]]... or `default` when any step is missing."""
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
        if data is None:
            return default
    return data

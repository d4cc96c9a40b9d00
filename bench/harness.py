"""What every scenario shares: one percentile, and the shape of a target in a result.

A scenario (a module registered in bench/__main__.py) exposes `add_arguments(parser)`
and `run(args) -> dict`; the dict is JSON-able and carries
`"targets": {name: target(...)}`, which decides the exit status of `python -m bench`.
Servers are launched by bench/relay.py (`start_stub`, `Project`, `Bare`,
`side_by_side`) and tests/helpers.py (`ServerProcess`).
"""

from __future__ import annotations

import math


def percentile(values, q: float) -> float:
    """The nearest-rank `q`th percentile (0-100) of `values`; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def target(value: float | None, limit: float, *, at_least: bool = False, unit: str = "") -> dict:
    """One target of a result: met when `value` is at most `limit` (`at_least`: at
    least); a missing or NaN value is not met."""
    measured = value is not None and not (isinstance(value, float) and math.isnan(value))
    met = measured and (value >= limit if at_least else value <= limit)
    return {"value": value if measured else None, "limit": limit,
            "op": ">=" if at_least else "<=", "unit": unit, "met": bool(met)}

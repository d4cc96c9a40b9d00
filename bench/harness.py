"""What every scenario shares: one percentile, and the shape of a target in a result.

A scenario (a module registered in bench/__main__.py) exposes `add_arguments(parser)`
and `run(args) -> dict`; the dict is JSON-able and carries
`"targets": {name: target(...)}`, which decides the exit status of `python -m bench`.
Servers are launched by bench/relay.py (`start_stub`, `Project`, `Bare`,
`side_by_side`) and tests/helpers.py (`ServerProcess`).
"""

from __future__ import annotations

import math

import requests


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


def hub_lag_buckets(server) -> dict[float, float]:
    """Cumulative counts of the server's hub-lag histogram, by upper bound."""
    buckets = {}
    for line in requests.get(server.url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("jellychat_hub_lag_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def lag_summary(before: dict, after: dict) -> dict:
    """p99 and max of hub lag during a window, as histogram bucket bounds."""
    delta = {b: after[b] - before.get(b, 0) for b in sorted(after)}
    total = delta[float("inf")]
    p99 = next(b for b, c in delta.items() if c >= 0.99 * total)
    worst = next(b for b, c in delta.items() if c >= total)
    return {"samples": total, "p99_le_s": p99, "max_le_s": worst}

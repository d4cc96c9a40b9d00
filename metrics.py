"""Prometheus metrics (prometheus_client), served at /metrics.

`hub_lag` is the measure of the rule "the eventlet hub never blocks on I/O":
a background task asks to wake every 100 ms and records how late it woke.
`gc_pause` times the garbage collector, which stops the whole process, hub
included, while it runs.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("jellychat_turns_total", "Chat turns by outcome", ["outcome"])
TURN_SECONDS = Histogram(
    "jellychat_turn_seconds", "Duration of a chat turn",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FIRST_TOKEN_SECONDS = Histogram(
    "jellychat_first_token_seconds", "From a turn's request to its first answer token",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
# where that time went, up to the first model reply: `agent` is LangGraph's step and
# LangChain's model call up to the run's model hook (agent/steps.py), `model` the request
# from there (built, sent, and the provider's wait for its first chunk)
TURN_PHASE_SECONDS = Histogram(
    "jellychat_turn_phase_seconds",
    "Time a turn spends before its first answer token, by phase "
    "(admit, store, queue, agent, model)",
    ["phase"], buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
)
TOOL_CALLS = Counter("jellychat_tool_calls_total", "Tool calls by tool", ["tool"])
HUB_LAG = Histogram(
    "jellychat_hub_lag_seconds", "How late the event loop woke a 100 ms timer",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
HUB_LAG_MAX = Gauge("jellychat_hub_lag_max_seconds", "Largest hub lag seen since start")
GC_PAUSE = Histogram(
    "jellychat_gc_pause_seconds", "Garbage-collector pauses by generation (the hub stops too)",
    ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
GC_PAUSE_MAX = Gauge("jellychat_gc_pause_max_seconds", "Longest garbage-collector pause since start")

LAG_INTERVAL = 0.1


def watch_hub_lag(sleep) -> None:
    """Forever: sleep LAG_INTERVAL with the server's own `sleep`, record the overshoot."""
    worst = 0.0
    while True:
        started = time.monotonic()
        sleep(LAG_INTERVAL)
        lag = max(0.0, time.monotonic() - started - LAG_INTERVAL)
        HUB_LAG.observe(lag)
        if lag > worst:
            worst = lag
            HUB_LAG_MAX.set(lag)


def watch_gc() -> None:
    """Time every collection from now on (gc.callbacks run around each one)."""
    started = 0.0
    worst = 0.0
    pauses = {generation: GC_PAUSE.labels(str(generation)) for generation in range(3)}

    def on_collection(phase: str, info: dict) -> None:
        nonlocal started, worst
        if phase == "start":
            started = time.perf_counter()
            return
        pause = time.perf_counter() - started
        pauses[info["generation"]].observe(pause)
        if pause > worst:
            worst = pause
            GC_PAUSE_MAX.set(pause)

    gc.callbacks.append(on_collection)

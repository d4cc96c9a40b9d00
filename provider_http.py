"""The HTTP connections to the model provider: one pool for the chat model, the
title writer and the OpenAI embedder.

The openai SDK and langchain-openai drop an idle connection after 5 s. A person
reads an answer and types the next question for longer than that, so each of
their turns used to open a new connection: a TCP and a TLS handshake, two round
trips to the provider, before the request could go out (docs/benchmarks.md, "A
conversation at a person's pace"). LLM_KEEPALIVE sets how long an idle
connection is kept instead (0: none is reused). One the provider closed in the
meantime is seen to be closed before it is reused, and replaced.

At most KEPT_IDLE connections are kept idle, not the SDK's 100: the pool asks
every idle connection whether the server closed it each time a request starts
and ends, and with the idle connections of a burst kept for a minute that made
each model step cost 0.5 ms more CPU with 100 of them, 0.1 ms with 20.

The client is the SDK's own (`openai.DefaultHttpxClient`: redirects, proxies
from the environment, its total limit); each request carries its client's
timeout. Two event hooks let a run's stop or deadline reach a request without
eventlet (threading mode, interrupts.py): within a run, a request's timeouts
are cut to what the run has left, and its response registers a closer that
shuts its socket down when the run is cancelled.
"""

from __future__ import annotations

import functools

from interrupts import interrupt_with, remaining, shut_down

KEPT_IDLE = 20  # idle connections kept for reuse (httpx's own default)
AFTER_DEADLINE = 0.1  # seconds a request's timeout runs past the run's deadline timer


@functools.cache
def provider_http_client(keepalive: float):
    """The process's pool for `keepalive` seconds of idle reuse (one per value)."""
    import httpx2
    import openai

    limits = openai.DEFAULT_CONNECTION_LIMITS
    return openai.DefaultHttpxClient(limits=httpx2.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=KEPT_IDLE,
        keepalive_expiry=keepalive,
    ), event_hooks={"request": [bound_by_the_run], "response": [interruptible_by_the_run]})


def bound_by_the_run(request) -> None:
    """Within a run with a deadline, no wait of this request outlasts it (a silent
    model: no headers to close). Just after the deadline timer, so the run has its
    reason when the timeout arrives."""
    left = remaining()
    timeout = request.extensions.get("timeout")
    if left is None or not isinstance(timeout, dict):
        return
    cap = max(0.0, left) + AFTER_DEADLINE
    request.extensions["timeout"] = {name: cap if value is None else min(value, cap)
                                     for name, value in timeout.items()}


def interruptible_by_the_run(response) -> None:
    """A stop of the run shuts this response's socket down (threading mode)."""
    stream = response.extensions.get("network_stream")
    if stream is not None:
        interrupt_with(lambda: shut_down(stream.get_extra_info("socket")))

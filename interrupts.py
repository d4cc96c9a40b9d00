"""How a blocking wait lets a run's stop or deadline reach it without eventlet.

A run's cancel handle (agent/cancel.py) marks the thread that runs each model
or tool step; code that blocks on the network in that thread (the provider's
HTTP client, provider_http.py; the Ocean client) registers a closer here, and
the cancel calls it from the stopping thread: a read blocked on a socket that
is shut down returns at once. Under eventlet the cancel throws into the green
thread instead, and registering is a no-op. It lives below agent/, tools/ and
knowledge/ so that each can use it without importing the agent.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextvars import ContextVar

# the step this thread works for: `add_closer(fn)` and `remaining()` (agent/cancel.py)
current_step: ContextVar[object | None] = ContextVar("jellychat_current_step", default=None)


def interrupt_with(closer: Callable[[], None]) -> None:
    """Call `closer` when the current step's run is cancelled (at once if it already
    is); nothing outside a run."""
    step = current_step.get()
    if step is not None:
        step.add_closer(closer)


def remaining() -> float | None:
    """Seconds left before the current run's deadline (None outside a run or without one)."""
    step = current_step.get()
    return None if step is None else step.remaining()


def shut_down(sock) -> None:
    """Shut a socket down both ways: a read blocked on it in another thread returns
    at once (closing the descriptor would not wake it), and the peer sees the end."""
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)

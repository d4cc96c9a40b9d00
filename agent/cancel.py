"""Stopping a run wherever it waits: on the model's HTTP stream, a tool, or a retry.

Under eventlet every wait is a green thread parked in the hub. The run's
steps (agent/steps.py) attach the green thread that runs each model or tool
step; `cancel`
throws `RunCancelled` into it, which unwinds the blocking read, so the HTTP
response is closed at once (the provider stops generating) and the agent graph
raises in the run. The deadline is a hub timer that cancels the same way, so it
holds however the model behaves (silent, slow, retrying after a 429).

Without eventlet (SOCKETIO_ASYNC_MODE=threading) a blocked thread cannot be
thrown into; instead whatever a step waits on registers a closer while it is
attached (`interrupts.interrupt_with`): the provider's HTTP client registers each response
(provider_http.py), and `cancel` shuts its socket down from the cancelling
thread, so the blocked read returns at once, the provider sees the client go,
and the step fails in the run, which ends with the cancel's reason. The same
client bounds each request's read timeout by the run's deadline, so a model
that sends nothing at all cannot outlive it either.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable

from interrupts import current_step

THROW_RETRY = 0.001  # seconds: how often a stop retries a green thread it must not cut short
_UNINTERRUPTIBLE: set = set()  # green threads inside `uninterruptible()`


def green() -> bool:
    """True when this process runs under eventlet's monkey patching (checked without
    importing eventlet: the agent layer must not pull in the server's stack)."""
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and patcher.is_monkey_patched("socket")


def _hub():
    from eventlet import hubs

    return hubs.get_hub()


def _current():
    import greenlet

    return greenlet.getcurrent()


class RunCancelled(BaseException):  # noqa: N818 - like GreenletExit: not to be caught by tools
    """Thrown into a run's waits. A BaseException so that `except Exception` in
    tools and clients does not swallow it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CancelHandle:
    """A run's cancel switch: a reason once cancelled, and the waits to interrupt."""

    def __init__(self) -> None:
        self.reason: str | None = None  # "stopped" | "timed_out"
        self._waits: dict[object, object] = {}  # step key -> its green thread
        self._closers: dict[object, list[Callable[[], None]]] = {}  # step key -> (threading)
        self._outer: dict[object, object] = {}  # step key -> the step attached before it
        self._timer = None
        self._lock = threading.Lock()
        self.deadline: float | None = None  # time.monotonic() when the run times out

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def attach(self, key: object) -> None:
        """The current green thread works for this run until `detach(key)`."""
        if green():
            self._waits[key] = _current()
        self._outer[key] = current_step.get()
        current_step.set(_Step(self, key))
        if self.reason:
            raise RunCancelled(self.reason)

    def detach(self, key: object) -> None:
        self._waits.pop(key, None)
        with self._lock:
            self._closers.pop(key, None)
        outer = self._outer.pop(key, None)
        step = current_step.get()
        if isinstance(step, _Step) and step.handle is self and step.key is key:
            current_step.set(outer)

    def _add_closer(self, key: object, closer: Callable[[], None]) -> None:
        with self._lock:
            if not self.reason:
                self._closers.setdefault(key, []).append(closer)
                return
        _call(closer)  # cancelled already: interrupt at once

    def cancel(self, reason: str) -> bool:
        """Cancel once; False if it was already cancelled."""
        with self._lock:
            if self.reason:
                return False
            self.reason = reason
            closers = [c for cs in self._closers.values() for c in cs]
            self._closers.clear()
        if green():
            hub = _hub()
            for key, glet in list(self._waits.items()):
                if glet is not _current():
                    hub.schedule_call_global(0, self._throw, key, glet)
        for closer in closers:
            _call(closer)
        return True

    def _throw(self, key: object, glet) -> None:
        # checked when the hub runs it: the green thread may have moved on to other work
        if self._waits.get(key) is glet and not glet.dead:
            if glet in _UNINTERRUPTIBLE:  # try again when it has left that section
                _hub().schedule_call_global(THROW_RETRY, self._throw, key, glet)
                return
            self._waits.pop(key, None)
            glet.throw(RunCancelled(self.reason or "stopped"))

    def start_deadline(self, seconds: float) -> None:
        """Cancel with "timed_out" after `seconds`."""
        self.deadline = time.monotonic() + seconds
        if green():
            self._timer = _hub().schedule_call_global(seconds, self.cancel, "timed_out")
        else:
            self._timer = threading.Timer(seconds, self.cancel, args=("timed_out",))
            self._timer.daemon = True
            self._timer.start()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one)."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def close(self) -> None:
        """The run ended: no deadline, nothing to interrupt."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waits.clear()
        with self._lock:
            self._closers.clear()


def _call(closer: Callable[[], None]) -> None:
    try:
        closer()
    except Exception:  # noqa: BLE001 - a socket already gone needs no interrupting
        pass


class _Step:
    """What `interrupts.current_step` holds while a step is attached."""

    __slots__ = ("handle", "key")

    def __init__(self, handle: CancelHandle, key: object):
        self.handle = handle
        self.key = key

    def add_closer(self, closer: Callable[[], None]) -> None:
        if not green():  # under eventlet the cancel throws into the step instead
            self.handle._add_closer(self.key, closer)

    def remaining(self) -> float | None:
        return self.handle.remaining()


@contextlib.contextmanager
def uninterruptible():
    """A section of a run's green thread that a stop or the deadline waits for, and
    interrupts the run after it.

    Closing an HTTP response is one: it waits for the client's pool lock, and a close
    cut short there cannot be repeated, so the request stayed in the pool for good,
    holding its connection (with enough of them, the model could no longer be asked).
    """
    me = _current() if green() else None
    if me is None or me in _UNINTERRUPTIBLE:
        yield
        return
    _UNINTERRUPTIBLE.add(me)
    try:
        yield
    finally:
        _UNINTERRUPTIBLE.discard(me)


def call_later(seconds: float, fn):
    """Run `fn` in its own (green) thread after `seconds`; returns an object with
    `cancel()`. Used to flush a run's buffered tokens while it waits for more.

    Under eventlet a hub timer that starts the green thread when it fires: cancelling
    it is cheap. (`eventlet.spawn_after` makes the green thread at once, and cancelling
    that one throws GreenletExit into it and yields to the hub, from the run's own
    thread, leaving a cycle of exception, traceback and frames for the collector.)
    """
    if green():
        import eventlet

        return _hub().schedule_call_global(seconds, eventlet.spawn_n, fn)
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()
    return timer

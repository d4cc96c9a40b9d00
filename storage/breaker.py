"""A circuit breaker that tells a busy database from a dead one, and the queue
of requests waiting for a database connection that it empties when it opens.

A request that waits for a pooled connection may wait long (DB_POOL_TIMEOUT):
under a burst the connections are all in use and the queue moves. It must not
wait at all while the database is down. The breaker is the difference: the
store trips it when a connection attempt fails or a probe (a fresh connection
and `select 1`) fails, and while it is open every request fails at once with a
StoreError (503 / an `error` event). While open, one caller at a time probes
again, at most every `retry_every` seconds; a probe that answers closes it.

No Flask, no driver: the store passes the probe in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("jellychat.storage.breaker")


class Breaker:
    """Open (down) or closed (up); `probe()` returns True when the database answers."""

    def __init__(self, probe: Callable[[], bool], retry_every: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 on_trip: Callable[[], None] | None = None):
        self._probe = probe
        self._on_trip = on_trip
        self.retry_every = retry_every
        self._clock = clock
        self._probing = threading.Lock()
        self.down_since: float | None = None
        self.reason = ""
        self._last_probe = float("-inf")

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def trip(self, reason: str) -> None:
        """Mark the database down (one log line per outage)."""
        self.reason = reason
        if self.down_since is None:
            self.down_since = self._clock()
            log.error("database marked down: %s", reason)
            if self._on_trip is not None:
                self._on_trip()

    def reset(self) -> None:
        """Mark the database up again."""
        if self.down_since is not None:
            log.warning("database is back after %.1f s", self._clock() - self.down_since)
            self.down_since = None
            self.reason = ""

    def probe(self, *, force: bool = False) -> bool:
        """Probe now (unless another caller is, or one did within `retry_every` and not
        `force`); True when the database is up afterwards."""
        now = self._clock()
        if not force and now - self._last_probe < self.retry_every:
            return not self.is_down
        if not self._probing.acquire(blocking=False):
            return not self.is_down  # someone else is finding out
        try:
            self._last_probe = now
            try:
                ok = self._probe()
            except Exception as exc:  # noqa: BLE001 - a probe that raises means "down"
                ok = False
                self.reason = str(exc)
            if ok:
                self.reset()
            else:
                self.trip(self.reason or "the health probe failed")
            return ok
        finally:
            self._probing.release()

    def allow(self) -> bool:
        """Whether a request may go on: always while up; while down, only when a probe
        (at most one per `retry_every`) finds the database back."""
        if self.down_since is None:
            return True
        return self.probe()


class Unavailable(Exception):
    """Raised by `WaitingLine.enter`: the breaker is open, or the wait timed out."""


class WaitingLine:
    """At most `size` requests use (or connect for) the pool at once; the others wait
    here, first come first served, until one leaves, their deadline passes, or the
    breaker opens (`wake_all`): a dead database empties the line at once.

    Kept in front of the pool rather than in it: psycopg_pool has no public way to
    fail the clients waiting inside it, and waits there cannot be cut short.
    """

    def __init__(self, size: int, breaker: Breaker, clock: Callable[[], float] = time.monotonic):
        self._free = size
        self._cond = threading.Condition()  # green under eventlet; wakes in FIFO order
        self._breaker = breaker
        self._clock = clock

    def enter(self, deadline: float) -> None:
        with self._cond:
            while self._free <= 0:
                if self._breaker.is_down:
                    raise Unavailable(f"the database is unavailable: {self._breaker.reason}")
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise Unavailable("no database connection became free in time")
                self._cond.wait(remaining)
            self._free -= 1

    def leave(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

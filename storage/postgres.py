"""Store on PostgreSQL + pgvector through a psycopg connection pool.

Used for the embedded server and for any `DATABASE_URL` (Supabase's direct
connection or its transaction pooler included). Under eventlet (and gevent) the
app calls storage.green_psycopg before importing psycopg: the C implementation
(psycopg-binary, pure Python without it) with PSYCOPG_WAIT_FUNC=wait_select, whose
select() is green, so queries and connects yield to the hub.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import compat
from storage.base import Store, StoreError, Transient
from storage.breaker import Breaker, Unavailable, WaitingLine
from storage.migrations import apply_migrations, original_upgrade_report

try:
    import psycopg
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - guarded driver import
    psycopg = None

WAIT_SLICE = 0.25  # seconds a request let through waits on the pool before it checks the breaker
PROBE_TIMEOUT = 2  # seconds a health probe may take to connect (libpq's least)
# a server that refuses a connection because it is full is busy, not down
SERVER_BUSY = {"53300", "53400"}  # too_many_connections, configuration_limit_exceeded


def is_transaction_pooler(dsn: str) -> bool:
    """True when `dsn` may go through a transaction-mode pooler, which cannot keep
    prepared statements (a later transaction may land on another server process).

    Supabase's transaction poolers listen on port 6543 (Supavisor on
    `*.pooler.supabase.com`, the dedicated PgBouncer on `db.<ref>.supabase.co`).
    Supavisor hosts count whatever the port: in session mode (5432) disabling
    prepared statements only costs a little speed. Parsed the way libpq does, so
    key=value strings, multiple hosts and `?port=` work as well as URLs.
    """
    if psycopg is None:
        return False
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return False
    ports = [p.strip() for p in str(params.get("port") or "").split(",")]
    hosts = [h.strip().lower().rstrip(".") for h in str(params.get("host") or "").split(",")]
    return "6543" in ports or any(h == "pooler.supabase.com" or h.endswith(".pooler.supabase.com")
                                  for h in hosts)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
                 request_timeout: float = 60.0, probe_every: float = 0.5):
        """`timeout`: connecting at startup; `request_timeout`: how long a request may
        queue for a pooled connection while the database is up (a burst). A database
        that is down answers at once instead: the breaker (storage/breaker.py), tripped
        by failed connection attempts or probes, re-probed every `probe_every` s."""
        super().__init__()
        if psycopg is None:
            raise StoreError("PostgreSQL support needs psycopg: pip install -r requirements.txt")
        self.dsn = dsn
        self.timeout = timeout
        self.request_timeout = request_timeout
        self._checking = threading.Lock()
        self.breaker = Breaker(self._probe, retry_every=probe_every,
                               on_trip=lambda: self.line.wake_all())
        self.line = WaitingLine(max_size, self.breaker)
        kwargs = {"autocommit": True}
        if is_transaction_pooler(dsn):
            kwargs["prepare_threshold"] = None
        self.pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            timeout=timeout,
            open=False,
            configure=self._configure,
            connection_class=_reporting_connection(self.breaker),
        )
        compat.most_recent_first(self.pool)  # the warm connection first; see there

    def _configure(self, conn) -> None:
        try:
            from pgvector.psycopg import register_vector

            register_vector(conn)
        except (ImportError, psycopg.ProgrammingError):
            pass  # the vector extension is created by the first migration

    def initialize(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.timeout)) as conn:
                conn.execute("create extension if not exists vector")
                applied = apply_migrations(conn)
                report = original_upgrade_report(conn, applied)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to PostgreSQL at {redact(self.dsn)}: {first}") from None
        if applied:
            self.logger.info("applied migrations: %s", ", ".join(applied))
        if report:
            self.logger.warning("%s", report)
        self.pool.open(wait=True, timeout=self.timeout)

    def close(self) -> None:
        self.pool.close()

    def ping(self, timeout: float = 0.8) -> bool:
        # /healthz answers 503 at once while the breaker is open; a pool busy with a
        # burst is asked through a probe of its own (busy is not down)
        if not self.breaker.allow():
            return False
        try:
            with self.pool.connection(timeout=timeout) as conn:
                return conn.execute("select 1").fetchone()[0] == 1
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return self.breaker.probe(force=True)

    def _probe(self) -> bool:
        """A fresh connection and `select 1`, outside the pool: True, or the reason raised."""
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=PROBE_TIMEOUT,
                                 prepare_threshold=None) as conn:
                conn.execute("select 1")
        except psycopg.OperationalError as exc:
            if exc.sqlstate in SERVER_BUSY:
                return True
            raise StoreError(_first_line(exc)) from None
        return True

    def _invoke(self, name, params):
        args = ", ".join(f"{key} => %({key})s" for key in params)
        values = {k: Jsonb(v) if isinstance(v, (dict, list)) else v for k, v in params.items()}
        with self._connection() as conn:
            try:
                return conn.execute(f"select public.{name}({args})", values).fetchone()[0]
            except psycopg.OperationalError as exc:
                # a connection the database dropped (it restarted): the pool checks the
                # idle ones, and an idempotent call goes once more (Store._retry)
                self._drop_dead_connections()
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise Transient(f"{name} failed: {first}", sent=True) from None
            except psycopg.Error as exc:
                code = exc.sqlstate or ""
                if code.startswith("JL"):
                    diag = exc.diag
                    raise self.function_error(code, diag.message_primary or str(exc),
                                              diag.message_detail) from None
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StoreError(f"{name} failed: {first}") from exc

    def _drop_dead_connections(self) -> None:
        """After a lost connection, probe the database (down: the breaker opens) and
        test the idle connections so that each request after a database restart does
        not find its own dead connection (one check at a time)."""
        self.breaker.probe(force=not self.breaker.is_down)
        if not self._checking.acquire(blocking=False):
            return
        try:
            self.pool.check()
        except Exception as exc:  # noqa: BLE001 - best effort; the next request reports
            self.logger.debug("pool check failed: %s", exc)
        finally:
            self._checking.release()

    @contextmanager
    def _connection(self):
        """A pooled connection; an open breaker, `request_timeout` spent waiting and lost
        connections become StoreError."""
        deadline = time.monotonic() + self.request_timeout
        if not self.breaker.allow():
            raise StoreError(f"the database is unavailable: {self.breaker.reason}")
        try:
            self.line.enter(deadline)
        except Unavailable as exc:
            raise StoreError(str(exc)) from None
        try:
            conn = self._getconn(deadline)
            try:
                with conn:
                    yield conn
            except psycopg.OperationalError as exc:
                self._drop_dead_connections()
                raise StoreError(f"the database connection failed: {_first_line(exc)}") from None
            finally:
                self.pool.putconn(conn)
        finally:
            self.line.leave()

    def _getconn(self, deadline: float):
        """A connection from the pool, for a request the waiting line let through: the
        pool has one idle or is connecting one. Waited for in slices, between which
        the breaker says whether the database is down (fail now)."""
        while True:
            try:
                return self.pool.getconn(timeout=min(WAIT_SLICE, deadline - time.monotonic()))
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise StoreError("no database connection became free in time") from None
                if not self.breaker.probe():  # at most one probe per `probe_every`
                    raise StoreError(f"the database is unavailable: {self.breaker.reason}") \
                        from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _reporting_connection(breaker: Breaker):
    """The pool's connection class: each attempt the pool makes tells the breaker
    whether the database answered (psycopg_pool's public `connection_class`)."""

    class ReportingConnection(psycopg.Connection):
        @classmethod
        def connect(cls, *args, **kwargs):
            try:
                conn = super().connect(*args, **kwargs)
            except psycopg.OperationalError as exc:
                if exc.sqlstate not in SERVER_BUSY:
                    breaker.trip(f"connecting failed: {_first_line(exc)}")
                raise
            breaker.reset()
            return conn

    return ReportingConnection


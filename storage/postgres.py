"""Store on PostgreSQL + pgvector through a psycopg connection pool.

Used for the embedded server and for any `DATABASE_URL` (Supabase's direct
connection or its transaction pooler included). Under eventlet the app sets
PSYCOPG_IMPL=python before importing psycopg, so queries yield to the hub.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlparse

from storage.base import QA, Message, Store, StoreError, User
from storage.migrations import apply_migrations

try:
    import psycopg
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - guarded driver import
    psycopg = None


def is_transaction_pooler(dsn: str) -> bool:
    """Supabase's transaction pooler (port 6543) cannot keep prepared statements."""
    parsed = urlparse(dsn)
    return parsed.port == 6543 or "pooler.supabase.com" in (parsed.hostname or "")


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0):
        super().__init__()
        if psycopg is None:
            raise StoreError("PostgreSQL support needs psycopg: pip install -r requirements.txt")
        self.dsn = dsn
        self.timeout = timeout
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
        )

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
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to PostgreSQL at {redact(self.dsn)}: {first}") from None
        if applied:
            self.logger.info("applied migrations: %s", ", ".join(applied))
        self.pool.open(wait=True, timeout=self.timeout)

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=5) as conn:
                return conn.execute("select 1").fetchone()[0] == 1
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return False

    # chat
    def get_or_create_user(self, token: str, greeting: str) -> User:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "insert into users (token) values (%s) on conflict (token) do nothing returning id",
                (token,),
            ).fetchone()
            if row is None:
                row = conn.execute("select id from users where token = %s", (token,)).fetchone()
                return User(id=row[0], token=token, created=False)
            conn.execute(
                "insert into chat_messages (user_id, type, content) values (%s, 'jelly', %s)",
                (row[0], greeting),
            )
            return User(id=row[0], token=token, created=True)

    def add_message(self, user_id, type, content, application=None) -> None:
        self.check_type(type)
        with self.pool.connection() as conn:
            conn.execute(
                "insert into chat_messages (user_id, type, content, application) values (%s, %s, %s, %s)",
                (user_id, type, content, application),
            )

    def add_answer(self, user_id, question, answer, application, sources, tool_messages=()) -> None:
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor() as cur:
                rows = [(user_id, "tool", t, application) for t in tool_messages]
                rows.append((user_id, "jelly", answer, application))
                cur.executemany(
                    "insert into chat_messages (user_id, type, content, application)"
                    " values (%s, %s, %s, %s)",
                    rows,
                )
            conn.execute(
                "insert into qa (user_id, question, answer, application, sources)"
                " values (%s, %s, %s, %s, %s)",
                (user_id, question, answer, application, Jsonb(list(sources))),
            )

    def recent_messages(self, user_id, limit) -> list[Message]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "select type, content, created_at, application from chat_messages"
                " where user_id = %s and type in ('human', 'jelly') order by id desc limit %s",
                (user_id, limit),
            ).fetchall()
        return [Message(*r) for r in reversed(rows)]

    def history(self, user_id) -> list[Message]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "select type, content, created_at, application from chat_messages"
                " where user_id = %s order by id",
                (user_id,),
            ).fetchall()
        return [Message(*r) for r in rows]

    def list_qa(self, limit, before: datetime | None = None) -> list[QA]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "select id, question, answer, application, created_at, sources from qa"
                " where (%(before)s::timestamptz is null or created_at < %(before)s)"
                " order by created_at desc, id desc limit %(limit)s",
                {"before": before, "limit": limit},
            ).fetchall()
        return [QA(*r) for r in rows]

    def count_human_messages(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute("select count(*) from chat_messages where type = 'human'").fetchone()[0]

"""Store on PostgreSQL + pgvector through a psycopg connection pool.

Used for the embedded server and for any `DATABASE_URL` (Supabase's direct
connection or its transaction pooler included). Under eventlet (and gevent) the
app calls storage.green_psycopg before importing psycopg: the C implementation
(psycopg-binary, pure Python without it) with PSYCOPG_WAIT_FUNC=wait_select, whose
select() is green, so queries and connects yield to the hub.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import urlparse

from storage.base import (
    QA,
    RRF_K,
    Chunk,
    EmbeddingSpace,
    KnowledgeBaseInfo,
    Store,
    StoreError,
)
from storage.migrations import apply_migrations, original_upgrade_report

try:
    import psycopg
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - guarded driver import
    psycopg = None

HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an HNSW index on `vector`
INDEX_LOCK_ID = 7_324_002  # pg_advisory_xact_lock key for creating vector indexes


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


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
                 request_timeout: float = 1.0):
        """`timeout`: connecting at startup; `request_timeout`: how long a request waits
        for a pooled connection before it answers "storage unavailable" (a database
        outage must answer 503 fast, not after the startup budget)."""
        super().__init__()
        if psycopg is None:
            raise StoreError("PostgreSQL support needs psycopg: pip install -r requirements.txt")
        self.dsn = dsn
        self.timeout = timeout
        self.request_timeout = request_timeout
        self._checking = threading.Lock()
        self._vector_indexes: set[int] = set()
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
        self.pool._pool = MostRecentFirst()  # psycopg_pool 3.3's idle connections; see there

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
        # short: /healthz must answer 503 within a second while the database is down
        try:
            with self.pool.connection(timeout=timeout) as conn:
                return conn.execute("select 1").fetchone()[0] == 1
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return False

    # chat
    def _fn(self, name, params, *, idempotent=True):
        args = ", ".join(f"{key} => %({key})s" for key in params)
        values = {k: Jsonb(v) if isinstance(v, (dict, list)) else v for k, v in params.items()}
        for attempt in (1, 2):
            with self._connection() as conn:
                try:
                    return conn.execute(f"select public.{name}({args})", values).fetchone()[0]
                except psycopg.OperationalError as exc:
                    # a connection the database dropped (it restarted): idempotent calls
                    # go once more, on a connection the pool has checked
                    self._drop_dead_connections()
                    if idempotent and attempt == 1:
                        continue
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise StoreError(f"{name} failed: {first}") from None
                except psycopg.Error as exc:
                    code = exc.sqlstate or ""
                    if code.startswith("JL"):
                        diag = exc.diag
                        raise self.function_error(code, diag.message_primary or str(exc),
                                                  diag.message_detail) from None
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise StoreError(f"{name} failed: {first}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_dead_connections(self) -> None:
        """After a lost connection, test the idle ones so that each request after a
        database restart does not find its own dead connection (one check at a time)."""
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
        """A pooled connection; pool exhaustion and lost connections become StoreError,
        within `request_timeout`."""
        try:
            with self.pool.connection(timeout=self.request_timeout) as conn:
                yield conn
        except PoolTimeout:
            raise StoreError("no database connection became free in time") from None
        except psycopg.OperationalError as exc:
            self._drop_dead_connections()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"the database connection failed: {first}") from None

    def list_qa(self, limit, before: datetime | None = None) -> list[QA]:
        with self._connection() as conn:
            rows = conn.execute(
                "select id, question, answer, application, created_at, sources, message_id from qa"
                " where (%(before)s::timestamptz is null or created_at < %(before)s)"
                " order by created_at desc, id desc limit %(limit)s",
                {"before": before, "limit": limit},
            ).fetchall()
        return [QA(*r) for r in rows]

    def count_human_messages(self) -> int:
        with self._connection() as conn:
            return conn.execute("select count(*) from chat_messages where type = 'human'").fetchone()[0]

    # knowledge
    def knowledge_bases(self) -> dict[str, KnowledgeBaseInfo]:
        with self._connection() as conn:
            rows = conn.execute(
                "select kb, embedder, dimension, count(*), sum(chunks) from kb_documents"
                " group by kb, embedder, dimension order by kb, count(*) desc"
            ).fetchall()
        bases: dict[str, KnowledgeBaseInfo] = {}
        for kb, embedder, dimension, documents, chunks in rows:
            info = bases.get(kb) or KnowledgeBaseInfo(kb, 0, 0)
            spaces = info.embedders
            if embedder:
                spaces = (*spaces, EmbeddingSpace(embedder, dimension))
            bases[kb] = KnowledgeBaseInfo(
                kb, info.documents + documents, info.chunks + int(chunks or 0), spaces
            )
        return bases

    def document_hashes(self, kb: str) -> dict[str, str]:
        with self._connection() as conn:
            rows = conn.execute(
                "select source, content_hash from kb_documents where kb = %s", (kb,)
            ).fetchall()
        return dict(rows)

    def replace_document(self, kb, document, chunks, embeddings=None, embedder=None) -> None:
        self.check_chunks(chunks, embeddings, embedder)
        if embeddings is not None:
            self._ensure_vector_index(embedder.dimension)
        with self._connection() as conn, conn.transaction():
            document_id = conn.execute(
                "insert into kb_documents"
                " (kb, source, title, content_hash, updated_at, embedder, dimension, chunks)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s)"
                " on conflict (kb, source) do update set title = excluded.title,"
                " content_hash = excluded.content_hash, updated_at = excluded.updated_at,"
                " embedder = excluded.embedder, dimension = excluded.dimension,"
                " chunks = excluded.chunks, ingested_at = now()"
                " returning id",
                (
                    kb, document.source, document.title, document.content_hash, document.updated_at,
                    embedder.name if embeddings is not None else None,
                    embedder.dimension if embeddings is not None else None,
                    len(chunks),
                ),
            ).fetchone()[0]
            conn.execute("delete from kb_chunks where document_id = %s", (document_id,))
            vectors = embeddings if embeddings is not None else [None] * len(chunks)
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into kb_chunks (kb, document_id, content, metadata, embedding)"
                    " values (%s, %s, %s, %s, %s::vector)",
                    [
                        (kb, document_id, c.content, Jsonb(c.metadata), _vector_text(v))
                        for c, v in zip(chunks, vectors, strict=True)
                    ],
                )

    def delete_documents(self, kb: str, sources: list[str]) -> int:
        if not sources:
            return 0
        with self._connection() as conn:
            cur = conn.execute(
                "delete from kb_documents where kb = %s and source = any(%s)", (kb, list(sources))
            )
            return cur.rowcount

    def search(self, kb, query, embedding=None, k=5) -> list[Chunk]:
        k = max(1, int(k))
        with self._connection() as conn:
            if embedding is None:
                rows = conn.execute(
                    "select id, content, metadata, score from kb_text_search(%s, %s, %s)",
                    (query, kb, k),
                ).fetchall()
            else:
                rows = conn.execute(
                    "select id, content, metadata, score from"
                    " kb_hybrid_search(%s, %s::vector, %s, %s, %s, %s)",
                    (query, _vector_text(embedding), kb, k, max(40, 4 * k), RRF_K),
                ).fetchall()
        return [Chunk(content=c, metadata=m, id=i, score=float(s)) for i, c, m, s in rows]

    def ingest_finished(self, kb: str) -> None:
        with self._connection() as conn:
            conn.execute("analyze kb_chunks, kb_words")

    def _ensure_vector_index(self, dimension: int) -> None:
        """A partial HNSW index for vectors of `dimension`, made once per database."""
        if dimension in self._vector_indexes:
            return
        if dimension > HNSW_MAX_DIMENSIONS:
            self.logger.warning(
                "no HNSW index for %d-dimensional vectors (pgvector indexes up to %d): "
                "vector search scans every chunk", dimension, HNSW_MAX_DIMENSIONS,
            )
        else:
            dim = int(dimension)
            with self._connection() as conn, conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (INDEX_LOCK_ID,))
                conn.execute(vector_index_sql(dim))
        self._vector_indexes.add(dimension)


def vector_index_sql(dimension: int) -> str:
    """The partial HNSW index for one dimension, as the knowledge migration makes it."""
    dim = int(dimension)
    return (
        f"create index if not exists kb_chunks_embedding_{dim}_idx on kb_chunks"
        f" using hnsw ((embedding::vector({dim})) vector_cosine_ops)"
        f" with (m = 24, ef_construction = 128) where vector_dims(embedding) = {dim}"
    )


def _vector_text(vector) -> str | None:
    """pgvector's text form, '[0.1,0.2,...]'; no type registration needed."""
    if vector is None:
        return None
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"

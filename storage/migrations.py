"""Apply the SQL files in supabase/migrations/ in order, once each.

The same files are what `supabase db push` applies to a Supabase project, so
there is one source of the schema for every backend. Two of them upgrade a
database of the original JellyChat in place (*_jellychat_original*.sql); what
they converted is read back by `original_upgrade_report` for the startup log
and the CLI.
"""

from __future__ import annotations

import logging
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
LOCK_ID = 7_324_001  # pg_advisory_xact_lock key: one migrator at a time

log = logging.getLogger("jellychat.storage.migrations")

# The migrations that convert an original JellyChat database (no-ops elsewhere).
ORIGINAL_UPGRADE = ("20261122000000", "20261122000250")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def version_of(path: Path) -> str:
    return path.name.split("_", 1)[0]


def all_sql(directory: Path = MIGRATIONS_DIR) -> str:
    """Every migration concatenated, for pasting into the Supabase SQL editor."""
    parts = [f"-- {p.name}\n{p.read_text()}" for p in migration_files(directory)]
    return "\n".join(parts)


def apply_migrations(conn, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations on a psycopg connection; return the versions applied."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute(
            "create table if not exists public.jelly_schema_migrations ("
            " version text primary key, name text not null,"
            " applied_at timestamptz not null default now())"
        )
        done = {r[0] for r in conn.execute("select version from public.jelly_schema_migrations")}
        for path in migration_files(directory):
            version = version_of(path)
            if version in done:
                continue
            log.info("applying migration %s", path.name)
            conn.execute(path.read_text())
            conn.execute(
                "insert into public.jelly_schema_migrations (version, name) values (%s, %s)",
                (version, path.name),
            )
            applied.append(version)
    return applied


def pending(conn, directory: Path = MIGRATIONS_DIR) -> list[str]:
    exists = conn.execute("select to_regclass('public.jelly_schema_migrations')").fetchone()[0]
    done = set()
    if exists:
        done = {r[0] for r in conn.execute("select version from public.jelly_schema_migrations")}
    return [p.name for p in migration_files(directory) if version_of(p) not in done]


def is_original_jellychat(conn) -> bool:
    """True for a database of the original JellyChat that has not been converted yet."""
    return conn.execute(
        "select exists (select 1 from information_schema.columns where table_schema = 'public'"
        " and ((table_name = 'users' and column_name = 'user_token')"
        " or (table_name = 'chat_messages' and column_name = 'message_type')))"
        " or to_regclass('public.embeddings') is not null"
    ).fetchone()[0]


def original_upgrade_report(conn, applied) -> str | None:
    """What the conversion of an original JellyChat database kept, if `applied` converted one."""
    if not set(ORIGINAL_UPGRADE) & set(applied):
        return None
    if conn.execute("select to_regclass('public.jelly_original_upgrade')").fetchone()[0] is None:
        return None
    steps = dict(conn.execute("select step, counts from public.jelly_original_upgrade"))
    return describe_original_upgrade(steps) if steps else None


def describe_original_upgrade(steps: dict) -> str:
    """One line: the rows of each table that were converted."""
    chat = steps.get("chat") or {}
    parts = []
    if "users" in chat:
        parts.append(f"{chat['users']} users")
    if "chat_messages" in chat:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted((chat.get("chat_messages_by_type") or {}).items()))
        parts.append(f"{chat['chat_messages']} chat_messages ({kinds or 'none'})")
    if "qa" in chat:
        linked = chat.get("qa_linked_to_users")
        note = f" ({linked} linked to their user)" if linked is not None else ""
        parts.append(f"{chat['qa']} qa pairs{note}")
    for kb, counts in sorted((steps.get("knowledge") or {}).items()):
        if not counts.get("rows"):
            continue
        parts.append(
            f"{counts.get('rows', 0)} embedding rows -> knowledge base '{kb}': {counts.get('documents', 0)}"
            f" documents, {counts.get('chunks', 0)} chunks (embedder {counts.get('embedder')})"
        )
    return "converted an original JellyChat database in place: " + "; ".join(parts)

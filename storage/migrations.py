"""Apply the SQL files in supabase/migrations/ in order, once each.

The same files are what `supabase db push` applies to a Supabase project, so
there is one source of the schema for every backend.
"""

from __future__ import annotations

import logging
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
LOCK_ID = 7_324_001  # pg_advisory_xact_lock key: one migrator at a time

log = logging.getLogger("jellychat.storage.migrations")


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

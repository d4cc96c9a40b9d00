"""How long the in-place upgrade of an original JellyChat database takes. Not a unit test.

Builds, on a throwaway embedded PostgreSQL, a database with the original's schema
(its migrations, read from ../shared/original-jellychat) holding USERS users with
TURNS turns each (human, tool every third turn, jelly rows and a Q&A pair per turn)
and EMBEDDINGS 1536-dimensional wiki embeddings, then times `apply_migrations` on it.
The baseline beside it: the same migrations on an empty database, in the same run.

Run: .venv/bin/python -m bench original_upgrade [--users 2000] [--turns 10] [--embeddings 2000]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.harness import target
from storage.embedded import start_embedded_postgres
from storage.migrations import apply_migrations, original_upgrade_report
from tests.helpers import SHARED

ORIGINAL = SHARED / "original-jellychat"


def fresh(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return make_conninfo(admin, dbname=name)


def fill_original(dsn: str, users: int, turns: int, embeddings: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create function uuid_generate_v4() returns uuid language sql"
                     " as 'select gen_random_uuid()'")
        for path in sorted((ORIGINAL / "migrations").glob("*.sql")):
            conn.execute(path.read_text())
        conn.execute("insert into users (user_token) select 'user-' || n"
                     " from generate_series(1, %s) n", (users,))
        # rows in the order the original wrote them: per turn human, (tool), jelly
        conn.execute("""
            insert into chat_messages (user_id, message_type, content, timestamp, application)
            select u, kind::messagetype,
                   case kind when 'human' then 'Question ' || t || ' of user ' || u
                             when 'tool' then 'Ill go look this up in the DeFiChainWiki for you 🔎'
                             else 'Answer ' || t || ' for user ' || u end,
                   now() - interval '30 days' + make_interval(secs => t * 60 + k),
                   case kind when 'human' then 'telegram' else '' end
            from generate_series(1, %s) t, generate_series(1, %s) u,
                 lateral (values (1, 'human'), (2, 'tool'), (3, 'jelly')) v(k, kind)
            where kind <> 'tool' or t %% 3 = 0
            order by t, u, k""", (turns, users))
        conn.execute("""
            insert into qa (question, answer)
            select 'Question ' || t || ' of user ' || u, 'Answer ' || t || ' for user ' || u
            from generate_series(1, %s) t, generate_series(1, %s) u order by t, u""", (turns, users))
        conn.execute("""
            insert into embeddings (id, content, metadata, embedding)
            select gen_random_uuid(), 'Passage ' || n || ' about masternodes and vaults.',
                   jsonb_build_object('title', 'Page ' || (n / 4),
                                      'source', 'https://www.defichainwiki.com/docs/p' || (n / 4),
                                      'last_updated', '2023-07-01'),
                   (select array_agg(random() - 0.5) from generate_series(1, 1536) where n > 0)::vector
            from generate_series(1, %s) n""", (embeddings,))


def timed_upgrade(dsn: str) -> tuple[float, list[str], str | None]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        applied = apply_migrations(conn)
        elapsed = time.perf_counter() - started
        return elapsed, applied, original_upgrade_report(conn, applied)


def add_arguments(parser) -> None:
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=10, help="turns per user")
    parser.add_argument("--embeddings", type=int, default=2000, help="1536-dimensional wiki embeddings")


def run(args) -> dict:
    if not (ORIGINAL / "migrations").is_dir():
        raise SystemExit(f"{ORIGINAL} is absent: the original JellyChat's schema is needed")
    with tempfile.TemporaryDirectory() as data:
        admin = start_embedded_postgres(Path(data))
        empty = fresh(admin, "bench_empty")
        original = fresh(admin, "bench_original")
        started = time.perf_counter()
        fill_original(original, args.users, args.turns, args.embeddings)
        print(f"original database filled in {time.perf_counter() - started:.1f} s")
        baseline, _, _ = timed_upgrade(empty)
        upgrade, applied, report = timed_upgrade(original)
        again, applied_again, _ = timed_upgrade(original)
    print(f"migrations on an empty database (baseline): {baseline:.2f} s")
    print(f"upgrade of the original database:           {upgrade:.2f} s ({len(applied)} migrations)")
    print(f"second upgrade (no-op):                     {again:.3f} s ({len(applied_again)} migrations)")
    print(report)
    return {"empty_s": round(baseline, 3), "upgrade_s": round(upgrade, 3), "again_s": round(again, 3),
            "migrations": len(applied), "report": report,
            "targets": {"second_upgrade_applies": target(len(applied_again), 0)}}

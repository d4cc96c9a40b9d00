"""Supabase deployment concerns: migrations, keys, row level security, startup
errors, retries, the transaction pooler and the `flask db` commands."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from settings import Settings
from storage import make_store
from storage.base import Chunk, EmbeddingSpace, KnowledgeDocument, StoreError
from storage.migrations import all_sql, apply_migrations, migration_files, pending, version_of
from storage.postgres import PostgresStore, is_transaction_pooler
from storage.supabase import SupabaseStore, key_role
from tests.fakes.postgrest_server import PostgrestServer, api_key
from tests.helpers import ROOT, ServerProcess, free_port
from tests.test_store_contract import create_database

SERVICE_KEY = api_key("service_role")
ANON_KEY = api_key("anon")
VERSIONS = [version_of(p) for p in migration_files()]


def fetch(dsn: str, query: str, params=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def migrated_dsn(pg_dsn):
    dsn = create_database(pg_dsn, "supabase_backend")
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_migrations(conn)
    return dsn


@pytest.fixture(scope="module")
def server(migrated_dsn):
    srv = PostgrestServer(migrated_dsn, SERVICE_KEY).start()
    yield srv
    srv.stop()


@pytest.fixture
def store(server):
    server.clear_log()
    st = SupabaseStore(server.url, SERVICE_KEY, backoff=0.01)
    yield st
    st.close()


# --- migrations --------------------------------------------------------------------


def schema_of(dsn: str) -> list:
    return fetch(dsn, "select 'table', tablename from pg_tables where schemaname = 'public'"
                      " union all select 'function', p.oid::regprocedure::text from pg_proc p"
                      " where p.pronamespace = 'public'::regnamespace order by 1, 2")


def test_migrations_apply_to_an_empty_database_twice(pg_dsn):
    dsn = create_database(pg_dsn, "migrate_twice")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert pending(conn) == [p.name for p in migration_files()]
        assert apply_migrations(conn) == VERSIONS
        assert apply_migrations(conn) == []
        assert pending(conn) == []
    # pasting the whole SQL into the editor, twice, must work as well (every file is idempotent)
    pasted = create_database(pg_dsn, "migrate_pasted")
    with psycopg.connect(pasted, autocommit=True) as conn:
        conn.execute(all_sql())
        conn.execute(all_sql())
    assert {"users", "chat_messages", "qa", "kb_documents", "kb_chunks"} <= {
        name for kind, name in schema_of(pasted) if kind == "table"}
    assert schema_of(pasted) == [row for row in schema_of(dsn) if row[1] != "jelly_schema_migrations"]


def test_every_table_has_row_level_security_and_no_policy(migrated_dsn):
    tables = fetch(migrated_dsn, "select relname, relrowsecurity from pg_class"
                                 " where relnamespace = 'public'::regnamespace and relkind in ('r', 'p')")
    assert {"users", "chat_messages", "qa", "kb_documents", "kb_chunks"} <= {t for t, _ in tables}
    assert [t for t, secured in tables if not secured] == []
    assert fetch(migrated_dsn, "select policyname from pg_policies where schemaname = 'public'") == []


def test_match_embeddings_answers_with_the_expected_shape(migrated_dsn, store):
    pg = PostgresStore(migrated_dsn)
    pg.initialize()
    try:
        space = EmbeddingSpace("shape-test", 3)
        pg.replace_document("wiki", KnowledgeDocument("a.md", "A", "h"), [
            Chunk("north", {"kb": "wiki", "title": "A"}), Chunk("east", {"kb": "wiki", "title": "A"}),
        ], [[1, 0, 0], [0, 1, 0]], space)
        pg.replace_document("docs", KnowledgeDocument("b.md", "B", "h"), [
            Chunk("north too", {"kb": "docs", "title": "B"}),
        ], [[1, 0, 0]], space)
        with psycopg.connect(migrated_dsn, autocommit=True) as conn:
            cursor = conn.execute("select * from match_embeddings('[1,0,0]'::vector, 5, %s::jsonb)",
                                  (json.dumps({"kb": "wiki"}),))
            rows = cursor.fetchall()
            columns = [(c.name, conn.adapters.types.get(c.type_code).name) for c in cursor.description]
        assert columns == [("id", "int8"), ("content", "text"), ("metadata", "jsonb"),
                           ("similarity", "float8")]
        assert [(r[1], r[2]["kb"], round(r[3], 6)) for r in rows] == [("north", "wiki", 1.0),
                                                                       ("east", "wiki", 0.0)]
        # the same function through supabase-py's rpc(), as the original service called it
        answer = store.client.rpc("match_embeddings", {"query_embedding": [1, 0, 0], "match_count": 1,
                                                       "filter": {"kb": "docs"}}).execute().data
        assert [sorted(a) for a in answer] == [["content", "id", "metadata", "similarity"]]
        assert answer[0]["content"] == "north too" and answer[0]["similarity"] == pytest.approx(1.0)
    finally:
        pg.delete_documents("wiki", ["a.md"])
        pg.delete_documents("docs", ["b.md"])
        pg.close()


# --- keys --------------------------------------------------------------------------


def test_key_roles_are_read_from_the_key():
    assert key_role(SERVICE_KEY) == "service_role"
    assert key_role(ANON_KEY) == "anon"
    assert key_role("sb_publishable_abc123") == "anon"
    assert key_role("sb_secret_abc123") == "service_role"
    assert key_role("not-a-jwt") is None
    assert key_role("a.%%%.c") is None


def test_anon_key_is_refused_unless_allowed():
    for key in (ANON_KEY, "sb_publishable_0123456789"):
        with pytest.raises(StoreError) as refused:
            SupabaseStore("https://project.supabase.co", key)
        message = str(refused.value)
        assert "anon" in message and "service-role" in message and "SUPABASE_ALLOW_ANON=1" in message
        assert key not in message and "\n" not in message
    assert SupabaseStore("https://project.supabase.co", ANON_KEY, allow_anon=True).role == "anon"
    assert SupabaseStore("https://project.supabase.co", "sb_secret_0123").role == "service_role"
    # the same through the settings, as the app builds it
    env = {"SUPABASE_URL": "https://project.supabase.co", "SUPABASE_KEY": ANON_KEY}
    with pytest.raises(StoreError):
        make_store(Settings.from_env(env))
    allowed = make_store(Settings.from_env({**env, "SUPABASE_ALLOW_ANON": "1"}))
    assert isinstance(allowed, SupabaseStore)


def test_anon_key_reads_no_chats_under_row_level_security(migrated_dsn, server, store):
    """Why the anon key must not be the server's: with Supabase's grants, RLS still shows it nothing."""
    run = store.create_run("rls-victim", "hello", None, "web", "enqueue", "test:1:x")
    store.begin_run(run["run_id"], "my secret question", 10, 60)
    store.finish_run(run["run_id"], "succeeded", question="my secret question", answer="answer")
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("do $$ begin create role anon nologin;"
                     " exception when duplicate_object then null; end $$")
        # what Supabase's default privileges grant the anon role on every new table
        conn.execute("grant usage on schema public to anon")
        conn.execute("grant select, insert, update, delete on all tables in schema public to anon")
    server.key = ANON_KEY  # the gateway now expects the anon key
    anon = SupabaseStore(server.url, ANON_KEY, allow_anon=True, backoff=0.01)
    try:
        for table in ("qa", "chat_messages", "kb_chunks"):  # the tables: RLS shows nothing
            assert anon._call("read", lambda t=table: anon.client.table(t).select("*"),
                              idempotent=True).data == []
        for read in (lambda: anon.list_qa(10), anon.count_human_messages, anon.knowledge_bases,
                     lambda: anon.get_conversation("rls-victim")):  # the functions: not callable
            with pytest.raises(StoreError) as denied:
                read()
            assert "permission denied" in str(denied.value)
        with pytest.raises(StoreError) as denied:
            anon.create_run("rls-intruder", "hello", None, None, "enqueue", "x:1:y")
        assert "permission denied" in str(denied.value)
        with pytest.raises(StoreError) as denied:
            anon._call("insert", lambda: anon.client.table("chat_messages").insert(
                {"user_id": run["user_id"], "type": "human", "content": "injected"}),
                idempotent=False)
        assert "row-level security" in str(denied.value)
    finally:
        anon.close()
        server.key = SERVICE_KEY
    assert [q.question for q in store.list_qa(10)][:1] == ["my secret question"]


# --- startup errors ----------------------------------------------------------------


def test_wrong_key_is_one_clear_line(server):
    other = api_key("service_role", ref="another-project")
    st = SupabaseStore(server.url, other, backoff=0.01)
    with pytest.raises(StoreError) as failed:
        st.initialize()
    message = str(failed.value)
    assert "key was rejected (HTTP 401: Invalid API key)" in message and "service-role" in message
    assert other not in message and "\n" not in message


def test_wrong_url_is_one_clear_line(server):
    st = SupabaseStore(server.url + "/not-the-api", SERVICE_KEY, backoff=0.01)
    with pytest.raises(StoreError) as failed:
        st.initialize()
    assert "no Supabase REST API at" in str(failed.value) and "check SUPABASE_URL" in str(failed.value)


def test_missing_schema_says_how_to_migrate(pg_dsn):
    empty = create_database(pg_dsn, "supabase_empty")
    with PostgrestServer(empty, SERVICE_KEY) as srv:
        st = SupabaseStore(srv.url, SERVICE_KEY, backoff=0.01)
        with pytest.raises(StoreError) as failed:
            st.initialize()
    message = str(failed.value)
    assert "lacks part of the schema" in message and "supabase db push" in message
    assert "flask --app app db sql" in message


def test_unreachable_supabase_fails_fast_with_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    st = SupabaseStore(url, SERVICE_KEY, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(StoreError) as failed:
        st.initialize()
    assert time.monotonic() - started < 5
    message = str(failed.value)
    assert message.startswith(f"cannot use Supabase at {url}: cannot reach {url}")
    assert "\n" not in message and SERVICE_KEY not in message


EVENTLET_NOISE = re.compile(
    r"An exception was thrown while monkey_patching for eventlet\..*?\n"
    r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*AttributeError: .*\n"
)


def _failed_start(tmp_path: Path, env: dict) -> tuple[int, str]:
    """Start the real server expecting it to give up; its exit code and output.

    eventlet 0.41's monkey_patch() logs a traceback of its own on every start on
    this Python (`_upgrade_instances`, harmless, also with nothing imported
    before it); that block is cut out so that any other traceback is seen.
    """
    srv = ServerProcess(tmp_path, env=env)  # for its environment (inherited SUPABASE_* etc. dropped)
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=srv.env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return done.returncode, EVENTLET_NOISE.sub("", done.stdout)


def test_server_with_unreachable_supabase_exits_with_one_line(tmp_path):
    port = free_port()
    code, output = _failed_start(tmp_path, {"SUPABASE_URL": f"http://127.0.0.1:{port}",
                                            "SUPABASE_KEY": SERVICE_KEY})
    assert code == 1
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and f"cannot reach http://127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in output and SERVICE_KEY not in output
    assert not (tmp_path / "postgres").exists()


def test_server_refuses_the_anon_key_at_startup(tmp_path):
    code, output = _failed_start(tmp_path, {"SUPABASE_URL": f"http://127.0.0.1:{free_port()}",
                                            "SUPABASE_KEY": ANON_KEY})
    assert code == 1
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "anon (publishable) key" in lines[0]
    assert "Traceback" not in output and ANON_KEY not in output


def test_server_runs_on_supabase(tmp_path, server, migrated_dsn):
    """The real server (eventlet, supabase-py over HTTP) chats with Supabase as its store."""
    env = {"SUPABASE_URL": server.url, "SUPABASE_KEY": SERVICE_KEY, "EMBEDDINGS": "none"}
    srv = ServerProcess(tmp_path, env=env).start()
    try:
        question = "What is 20000 divided by 33.3?"
        answer = srv.post("/user_message", {"user_token": "on-supabase", "message": question})
        assert answer.status_code == 200 and "600.6" in answer.json()["response"]
        history = srv.post("/history", {"user_token": "on-supabase"}).json()
        assert [m["type"] for m in history] == ["jelly", "human", "tool", "jelly"]
        assert srv.get("/healthz").json()["status"] == "ok"
    finally:
        srv.stop()
    assert "using Supabase at" in srv.log() and SERVICE_KEY not in srv.log()
    assert fetch(migrated_dsn, "select q.question from qa q join users u on u.id = q.user_id"
                               " where u.token = 'on-supabase'") == [("What is 20000 divided by 33.3?",)]
    assert not (tmp_path / "postgres").exists()


# --- retries -----------------------------------------------------------------------


def requests_to(server, path: str) -> int:
    return sum(1 for _, target in server.requests if target.split("?")[0].endswith(path))


def test_transient_errors_are_retried(server, store, caplog):
    caplog.set_level(logging.WARNING, logger="jellychat.storage")
    server.fail_next(2, 503)
    assert store.count_human_messages() >= 0
    assert requests_to(server, "/jelly_count_human_messages") == 3
    server.fail_next(1, 0)  # connection dropped without an answer
    assert store.list_qa(1) is not None
    assert requests_to(server, "/jelly_list_qa") == 2
    assert "retrying" in caplog.text and SERVICE_KEY not in caplog.text


def test_retries_are_bounded(server, store, caplog):
    server.fail_next(3, 502)
    started = time.monotonic()
    with pytest.raises(StoreError) as failed:
        store.count_human_messages()
    assert time.monotonic() - started < 5
    assert requests_to(server, "/jelly_count_human_messages") == 3  # attempts=3, then the error
    assert "HTTP 502" in str(failed.value) and SERVICE_KEY not in str(failed.value) + caplog.text


def test_silent_server_is_bounded_by_the_timeout():
    """A server that takes the connection but never answers: each try ends at `timeout`."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        st = SupabaseStore(url, SERVICE_KEY, timeout=0.5, attempts=2, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(StoreError) as failed:
            st.initialize()
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4, elapsed  # two tries of 0.5 s each, then the error
    assert f"no answer from {url} within 0.5 s" in str(failed.value)


def test_a_connection_to_supabase_outlives_a_pause_between_turns(server, migrated_dsn):
    """After a pause, the next call goes out on the same connection while the pause
    is shorter than `keepalive` (SUPABASE_KEEPALIVE, 60 s), on a new one once it is
    longer: httpx's 5 s made a turn after a person's pause open a new TLS connection
    for its run's first call. (The 0.6 s pause is the idle time being tested, not a
    wait for something to happen.) The pool is httpx's own, read through the
    client's private attributes."""
    def same_connection_after_a_pause(store):
        store.count_human_messages()
        held = store._http._transport._pool
        before = list(held.connections)
        time.sleep(0.6)
        store.count_human_messages()
        return len(before) == 1 and held.connections == before

    kept = make_store(Settings.from_env({"SUPABASE_URL": server.url, "SUPABASE_KEY": SERVICE_KEY}))
    short = SupabaseStore(server.url, SERVICE_KEY, keepalive=0.3)
    try:
        assert kept.keepalive == 60.0
        assert same_connection_after_a_pause(kept)
        assert not same_connection_after_a_pause(short)
    finally:
        kept.close()
        short.close()


def test_ping_tries_once(server, store):
    assert store.ping() is True
    server.clear_log()
    server.fail_next(1, 503)
    assert store.ping() is False
    assert requests_to(server, "/users") == 1
    assert store.ping() is True


def test_writes_are_repeated_only_when_they_cannot_have_run(server, store, migrated_dsn):
    count = "select count(*) from runs r join users u on u.id = r.user_id where u.token = %s"
    server.clear_log()
    server.fail_next(1, 503)  # the database never saw it: safe to send again
    store.create_run("retry-writer", "hello", None, None, "enqueue", "t:1:x")
    assert requests_to(server, "/jelly_create_run") == 2
    assert fetch(migrated_dsn, count, ("retry-writer",))[0][0] == 1
    for failure in (500, 0):  # may have run: not repeated, reported
        server.clear_log()
        server.fail_next(1, failure)
        with pytest.raises(StoreError):
            store.create_run("retry-writer", "hello", None, None, "enqueue", "t:1:x")
        assert requests_to(server, "/jelly_create_run") == 1


# --- transaction pooler --------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "expected"), [
    ("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", True),
    ("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", True),
    ("postgresql://postgres:pw@db.ref.supabase.co:6543/postgres", True),
    ("postgresql://postgres:pw@db.ref.supabase.co:5432/postgres", False),
    ("postgresql://postgres:pw@db.ref.supabase.co/postgres", False),
    ("host=aws-0-us-east-1.POOLER.supabase.com port=5432 dbname=postgres", True),
    ("host=10.0.0.5 port=6543 dbname=postgres", True),
    ("postgresql://h1:5432,h2:6543/postgres", True),
    ("postgresql:///postgres?host=/tmp&port=6543", True),
    ("postgresql://u@pooler.supabase.com.example.org/x", False),
    ("postgresql://u:p%40ss@localhost/x", False),
])
def test_is_transaction_pooler(dsn, expected):
    assert is_transaction_pooler(dsn) is expected


def test_no_prepared_statements_behind_a_transaction_pooler(pg_dsn, tmp_path):
    """Reach the embedded server through port 6543 (a socket link): the store then prepares nothing."""
    base = create_database(pg_dsn, "pooler_check")
    params = conninfo_to_dict(base)
    socket_dir = Path(params["host"])
    link_dir = tmp_path / "sock"
    link_dir.mkdir()
    (link_dir / ".s.PGSQL.6543").symlink_to(socket_dir / f".s.PGSQL.{params.get('port') or 5432}")
    pooled = make_conninfo(base, host=str(link_dir), port="6543")
    assert is_transaction_pooler(pooled) and not is_transaction_pooler(base)

    def prepared_after_repeats(dsn: str) -> int:
        store = PostgresStore(dsn)
        store.initialize()
        try:
            with store.pool.connection() as conn:
                for _ in range(8):
                    conn.execute("select count(*) from chat_messages where type = %s", ("human",))
                return conn.execute("select count(*) from pg_prepared_statements").fetchone()[0]
        finally:
            store.close()

    assert prepared_after_repeats(pooled) == 0
    assert prepared_after_repeats(base) > 0  # the check itself can see prepared statements


# --- flask db ----------------------------------------------------------------------


def flask_db(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "DATABASE_URL", "OPENAI_"))}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_flask_db_sql_prints_every_migration_without_a_database(tmp_path):
    result = flask_db("sql", env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == all_sql() + "\n"
    for path in migration_files():
        assert f"-- {path.name}" in result.stdout
    assert not (tmp_path / "postgres").exists()


def test_flask_db_upgrade_applies_pending_migrations(pg_dsn, tmp_path):
    dsn = create_database(pg_dsn, "cli_upgrade")
    env = {"DATABASE_URL": dsn, "DATA_DIR": str(tmp_path)}
    status = flask_db("status", env=env)
    assert status.returncode == 0 and all(p.name in status.stdout for p in migration_files())
    first = flask_db("upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {len(VERSIONS)} migration(s): {', '.join(VERSIONS)}"
    with psycopg.connect(dsn, autocommit=True) as conn:  # (a second run: see the test above)
        assert pending(conn) == []
    only_supabase = flask_db("upgrade", env={"SUPABASE_URL": "https://x.supabase.co",
                                             "SUPABASE_KEY": SERVICE_KEY, "DATA_DIR": str(tmp_path)})
    assert only_supabase.returncode != 0 and "supabase db push" in only_supabase.stderr
    assert not (tmp_path / "postgres").exists()


def test_storage_supabase_does_not_import_flask():
    code = ("import sys, json, storage.supabase\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'web'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []

"""A database of the original JellyChat, upgraded in place by the real server at startup
and by `flask --app app db upgrade`, then read back over HTTP.

The database is built the way the original built it: its own migrations and seed, read at
test time from ../shared/original-jellychat (skipped when absent), then rows written the
way its data layer wrote them: a user row per token (some made by /history alone, with no
messages), per turn a human message carrying the application, the tool sentences and
Jelly's answer with an empty application, a Q&A pair without its user, and LangChain-style
embedding rows (uuid ids, {title, source, last_updated} metadata, 1536-dimensional vectors).

The embedded PostgreSQL ships without the uuid-ossp extension one original migration
calls; `uuid_generate_v4()` is stood in by a SQL function over the built-in
gen_random_uuid(), which makes the same random v4 uuids.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.migrations import all_sql, apply_migrations, is_original_jellychat, migration_files
from tests.helpers import ROOT, SHARED, ServerProcess

ORIGINAL = SHARED / "original-jellychat"
ADMIN = {"Authorization": "Bearer upgrade-admin-key-0123456789abcdefg"}
DIMENSION = 1536

if not (ORIGINAL / "migrations").is_dir():
    print(f"skipping the JellyChat upgrade tests: {ORIGINAL} (the original's schema) is absent")
    pytestmark = pytest.mark.skip(reason=f"{ORIGINAL} is absent (the original JellyChat's schema)")


# ------------------------------------------------------------ the original database

def vector(seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [rng.gauss(0, 1) for _ in range(DIMENSION)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def vector_text(values) -> str:
    return "[" + ",".join(f"{v:.7f}" for v in values) + "]"


class OriginalJellyChat:
    """Writes rows the way the original's data layer (supabase-py inserts) did."""

    def __init__(self, conn):
        self.conn = conn
        self.clock = datetime.now(UTC) - timedelta(days=30)

    def tick(self, seconds: float = 2) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def create_user(self, token: str) -> int:
        return self.conn.execute(
            "insert into users (user_token) values (%s) returning user_id", (token,)).fetchone()[0]

    def add_chat_message(self, user_id: int, message_type: str, content: str,
                         application: str = "") -> int:
        return self.conn.execute(
            "insert into chat_messages (user_id, message_type, content, timestamp, application)"
            " values (%s, %s, %s, %s, %s) returning id",
            (user_id, message_type, content, self.tick(), application)).fetchone()[0]

    def turn(self, user_id: int, question: str, answer: str, application: str, tools=()) -> None:
        self.add_chat_message(user_id, "human", question, application)
        for sentence in tools:
            self.add_chat_message(user_id, "tool", sentence)
        self.add_chat_message(user_id, "jelly", answer)
        self.conn.execute("insert into qa (question, answer) values (%s, %s)", (question, answer))

    def add_embedding(self, table: str, content: str, metadata: dict, seed: int) -> None:
        self.conn.execute(
            sql.SQL("insert into {} (id, content, metadata, embedding) values (%s, %s, %s, %s)")
            .format(sql.Identifier(table)),
            (str(uuid.uuid4()), content, psycopg.types.json.Jsonb(metadata), vector_text(vector(seed))))


WIKI_PAGES = {
    "https://www.defichainwiki.com/docs/auto/Masternodes": (
        "Masternodes", ["A masternode needs 20,000 DFI as collateral.",
                        "Masternode rewards are paid per block to the owner address.",
                        "Resigning a masternode returns the collateral after some blocks."]),
    "https://www.defichainwiki.com/docs/auto/Vault_Maxi": (
        "Vault Maxi", ["Vault Maxi is an open source bot that manages vault ratios.",
                       "It repays loans when the collateral ratio falls."]),
    "https://www.defichainwiki.com/docs/auto/Governance": (
        "Governance", ["Community funding proposals are voted on by masternode owners."]),
}
PYTHON_PAGES = {
    "https://docs.defichain-python.de/build/html/api/node/blockchain.html": (
        "Blockchain", ["node.blockchain.getblockcount() returns the height of the chain."]),
}


def build_original(admin_dsn: str, name: str) -> str:
    """A fresh database holding the original JellyChat schema and rows; its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = make_conninfo(admin_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create function uuid_generate_v4() returns uuid language sql"
                     " as 'select gen_random_uuid()'")
        for path in sorted((ORIGINAL / "migrations").glob("*.sql")):
            conn.execute(path.read_text())
        if (ORIGINAL / "seed.sql").exists():
            conn.execute((ORIGINAL / "seed.sql").read_text())
        original = OriginalJellyChat(conn)
        with conn.transaction():
            regular = original.create_user("tg-regular")
            for n in range(1, 41):  # a long chat: more than any memory window
                tools = ["Let me gather the latest blockchain statistics for you 📊"] if n % 3 == 0 else []
                original.turn(regular, f"How many blocks after {n}?", f"About {n * 1000} blocks.",
                              "telegram", tools)
            emoji = original.create_user("402113377219264512")
            original.turn(emoji, "Grüße! Was ist DFI?\nZweite Zeile", "DFI ist der Coin 🪙 von DeFiChain.",
                          "discord", ["Ill go look this up in the DeFiChainWiki for you 🔎"])
            original.turn(emoji, "q" * 5000, "That was a long one.", "discord")
            original.create_user("web-visitor-no-messages")  # the original's /history made users
            for page, (url, (title, chunks)) in enumerate(WIKI_PAGES.items()):
                for i, text in enumerate(chunks):
                    original.add_embedding("embeddings", text, {
                        "title": title, "source": url, "last_updated": "2023-06-0" + str(i + 1)},
                        seed=100 * page + i)
            for url, (title, chunks) in PYTHON_PAGES.items():
                for i, text in enumerate(chunks):
                    original.add_embedding("embeddings_defichain_python", text,
                                           {"title": title, "source": url}, seed=7000 + i)
    return dsn


def snapshot(dsn: str) -> dict:
    """Everything the original database holds, read with the original's column names."""
    with psycopg.connect(dsn) as conn:
        users = dict(conn.execute("select user_token, user_id from users"))
        messages = {}
        for row in conn.execute("select u.user_token, m.id, m.user_id, m.message_type::text,"
                                " m.content, m.timestamp, m.application from chat_messages m"
                                " join users u using (user_id) order by m.timestamp, m.id"):
            messages.setdefault(row[0], []).append(row[1:])
        qa = conn.execute("select id, question, answer, date from qa order by id").fetchall()
        wiki = conn.execute("select id::text, content, metadata, embedding::text from embeddings").fetchall()
        python = conn.execute(
            "select id::text, content, metadata, embedding::text from embeddings_defichain_python").fetchall()
    return {"users": users, "messages": messages, "qa": qa, "wiki": wiki, "python": python}


def counts(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(t))).fetchone()[0]
                for t in ("users", "chat_messages", "qa", "kb_documents", "kb_chunks", "conversations")}


# ------------------------------------------------------------ checks

def check_histories(srv, before: dict) -> None:
    """Every user's /history and conversation read back complete, in order, ids kept."""
    for token, user_id in before["users"].items():
        rows = srv.post("/history", {"user_token": token}).json()
        expected = before["messages"].get(token, [])
        if not expected:  # made by the original's /history: nothing said yet
            assert len(rows) == 1 and rows[0]["message_type"] == "jelly"
            assert rows[0]["user_id"] == user_id and rows[0]["id"] is None
            continue
        assert [(r["id"], r["user_id"], r["message_type"], r["content"], r["application"])
                for r in rows] == [(m[0], m[1], m[2], m[3], m[5]) for m in expected]
        assert [datetime.fromisoformat(r["timestamp"]) for r in rows] == [m[4] for m in expected]
        assert all(r["type"] == r["message_type"] for r in rows)

        listed = srv.get("/conversations", headers={"X-User-Token": token}).json()["conversations"]
        assert len(listed) == 1
        assert listed[0]["message_count"] == sum(m[2] in ("human", "jelly") for m in expected)
        full = srv.get(f"/conversations/{listed[0]['id']}", headers={"X-User-Token": token}).json()
        assert [m["id"] for m in full["messages"]] == [m[0] for m in expected]


def check_match_embeddings(dsn: str, before: dict) -> None:
    """The original's RPCs, called the way LangChain's SupabaseVectorStore called them."""
    with psycopg.connect(dsn) as conn:
        for original_id, content, metadata, embedding in before["wiki"]:
            rows = conn.execute(
                "select id, content, metadata, similarity from match_embeddings("
                "query_embedding => %s::vector(1536), match_count => %s, filter => %s)",
                (embedding, 2, psycopg.types.json.Jsonb({}))).fetchall()
            assert len(rows) == 2 and rows[0][1] == content and rows[0][3] > 0.999
            assert rows[0][2]["jellychat_id"] == original_id
            assert {k: rows[0][2][k] for k in metadata} == metadata
        _, content, metadata, embedding = before["wiki"][0]
        positional = conn.execute("select content from match_embeddings(%s::vector(1536), 1)",
                                  (embedding,)).fetchall()
        assert positional == [(content,)]
        filtered = conn.execute(
            "select content, metadata from match_embeddings(%s::vector(1536), 10, %s)",
            (embedding, psycopg.types.json.Jsonb({"title": "Vault Maxi"}))).fetchall()
        assert filtered and all(m["title"] == "Vault Maxi" for _, m in filtered)
        for _, content, _, embedding in before["python"]:
            rows = conn.execute(
                "select content, metadata, similarity from match_embeddings_defichain_python("
                "query_embedding => %s::vector(1536), match_count => 5)", (embedding,)).fetchall()
            assert rows[0][0] == content and rows[0][2] > 0.999
            assert all(m["kb"] == "defichainpython" for _, m, _ in rows)
        kbs = dict(conn.execute(
            "select kb, jsonb_build_object('chunks', sum(chunks), 'embedders', array_agg(distinct embedder),"
            " 'dimensions', array_agg(distinct dimension)) from kb_documents group by kb").fetchall())
    assert kbs["wiki"]["chunks"] == len(before["wiki"])
    assert kbs["defichainpython"]["chunks"] == len(before["python"])
    assert kbs["wiki"]["embedders"] == ["openai:text-embedding-ada-002"]
    assert kbs["wiki"]["dimensions"] == [DIMENSION]


def cli(*args: str, dsn: str, data_dir) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "SUPABASE_", "DATABASE_URL", "OCEAN_", "ADMIN_"))}
    env.update({"DATABASE_URL": dsn, "DATA_DIR": str(data_dir)})
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------ tests

@pytest.fixture(scope="module")
def upgraded(pg_dsn, tmp_path_factory):
    """The real server, started on an original JellyChat database it upgrades at startup."""
    dsn = build_original(pg_dsn, "jellychat_original_startup")
    before = snapshot(dsn)
    srv = ServerProcess(tmp_path_factory.mktemp("upgrade-server"),
                        env={"DATABASE_URL": dsn, "ADMIN_API_KEY": ADMIN["Authorization"][7:]})
    srv.start()
    yield srv, dsn, before
    srv.stop()


def test_startup_converts_and_reports(upgraded):
    srv, dsn, before = upgraded
    log = srv.log()
    assert "UndefinedColumn" not in log
    human = sum(m[2] == "human" for rows in before["messages"].values() for m in rows)
    total = sum(len(rows) for rows in before["messages"].values())
    assert f"converted an original JellyChat database in place: {len(before['users'])} users;" in log
    assert f"{total} chat_messages (" in log and f"{human} human" in log
    assert f"{len(before['qa'])} qa pairs" in log
    assert f"{len(before['wiki'])} embedding rows -> knowledge base 'wiki'" in log
    with psycopg.connect(dsn) as conn:
        assert not is_original_jellychat(conn)
    assert srv.get("/human_message_count").json()["status"] == human


def test_histories_read_back_complete(upgraded):
    srv, _, before = upgraded
    check_histories(srv, before)


def test_qa_pairs_kept_with_their_dates(upgraded):
    srv, _, before = upgraded
    pairs = srv.get("/messages", params={"limit": 500}, headers=ADMIN).json()
    got = {p["id"]: (p["question"], p["answer"], datetime.fromisoformat(p["date"])) for p in pairs}
    for qa_id, question, answer, date in before["qa"]:
        assert got[qa_id][:2] == (question, answer)
        # stored without a zone by the original; the embedded server's zone is UTC
        assert got[qa_id][2].astimezone(UTC).replace(tzinfo=None) == date
    linked = next(p for p in pairs if p["question"] == "How many blocks after 7?")
    assert linked["application"] == "telegram"  # the pair found its asker's human message


def test_old_user_chats_on_and_new_rows_follow(upgraded):
    srv, _, before = upgraded
    last_question = before["messages"]["tg-regular"][-2][3]
    reply = srv.post("/user_message", {"user_token": "tg-regular", "message": "what did I just ask?",
                                       "application": "telegram"})
    assert reply.status_code == 200, reply.text
    assert last_question in reply.json()["response"]  # the memory is the converted chat
    rows = srv.post("/history", {"user_token": "tg-regular"}).json()
    old = before["messages"]["tg-regular"]
    assert [r["id"] for r in rows[:len(old)]] == [m[0] for m in old]
    new = rows[len(old):]
    assert [r["message_type"] for r in new] == ["human", "jelly"]
    assert min(r["id"] for r in new) > max(m[0] for rows in before["messages"].values() for m in rows)

    # a brand-new user: new ids continue after the original's (identity sequences set)
    fresh = f"new-{uuid.uuid4().hex[:8]}"
    greeting = srv.post("/history", {"user_token": fresh}).json()
    assert [(g["message_type"], g["id"], g["user_id"]) for g in greeting] == [("jelly", None, None)]
    assert srv.post("/user_message", {"user_token": fresh, "message": "what is 2 + 2"}).status_code == 200
    history = srv.post("/history", {"user_token": fresh}).json()
    assert [r["message_type"] for r in history][:2] == ["jelly", "human"]
    assert history[0]["user_id"] > max(before["users"].values())


def test_old_match_embeddings_callers_answered(upgraded):
    _, dsn, before = upgraded
    check_match_embeddings(dsn, before)


def test_imported_wiki_is_searchable(upgraded):
    srv, _, _ = upgraded
    found = srv.get("/kb/search", params={"q": "repays loans collateral ratio", "kb": "wiki"}).json()
    top = found["results"][0]
    assert top["title"] == "Vault Maxi"
    assert top["url"] == "https://www.defichainwiki.com/docs/auto/Vault_Maxi"


def test_second_startup_changes_nothing(upgraded):
    srv, dsn, before = upgraded
    counted = counts(dsn)
    srv.output.clear()
    srv.restart()
    assert "converted an original JellyChat database" not in srv.log()
    assert "applied migrations" not in srv.log()
    assert counts(dsn) == counted
    check_histories_prefix = srv.post("/history", {"user_token": "402113377219264512"}).json()
    assert [r["content"] for r in check_histories_prefix] == [
        m[3] for m in before["messages"]["402113377219264512"]]


def test_cli_upgrade_reports_then_is_a_no_op(pg_dsn, tmp_path):
    dsn = build_original(pg_dsn, "jellychat_original_cli")
    before = snapshot(dsn)
    status = cli("db", "status", dsn=dsn, data_dir=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "original JellyChat" in status.stdout and "pending" in status.stdout

    first = cli("db", "upgrade", dsn=dsn, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"converted an original JellyChat database in place: {len(before['users'])} users;" \
        in first.stdout
    assert f"{len(before['python'])} embedding rows -> knowledge base 'defichainpython'" in first.stdout
    assert f"applied {len(migration_files())} migration(s)" in first.stdout
    counted = counts(dsn)
    assert counted["users"] == len(before["users"])
    assert counted["chat_messages"] == sum(len(rows) for rows in before["messages"].values())
    assert counted["qa"] == len(before["qa"])
    assert counted["kb_chunks"] == len(before["wiki"]) + len(before["python"])
    assert counted["conversations"] == len(before["users"])

    second = cli("db", "upgrade", dsn=dsn, data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "converted" not in second.stdout and "up to date" in second.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert apply_migrations(conn) == []
        assert not is_original_jellychat(conn)
        indexes = {r[0] for r in conn.execute(
            "select indexname from pg_indexes where tablename = 'kb_chunks'")}
    # set aside for the bulk import and built again afterwards
    assert {"kb_chunks_embedding_384_idx", "kb_chunks_embedding_1536_idx"} <= indexes
    assert counts(dsn) == counted
    check_match_embeddings(dsn, before)


def test_our_own_database_is_left_alone(pg_dsn):
    """A database of this project gets no conversion and no report table."""
    name = "jellychat_not_original"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    with psycopg.connect(make_conninfo(pg_dsn, dbname=name), autocommit=True) as conn:
        apply_migrations(conn)
        assert conn.execute("select to_regclass('public.jelly_original_upgrade')").fetchone()[0] is None
        assert not is_original_jellychat(conn)


def test_pasted_sql_converts_too(pg_dsn):
    """`flask db sql` pasted into Supabase's SQL editor (no migration log): converts the
    same way, and pasting it again changes nothing."""
    dsn = build_original(pg_dsn, "jellychat_original_pasted")
    before = snapshot(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(all_sql())
    counted = counts(dsn)
    assert counted["chat_messages"] == sum(len(rows) for rows in before["messages"].values())
    assert counted["kb_chunks"] == len(before["wiki"]) + len(before["python"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(all_sql())
        steps = dict(conn.execute("select step, counts from jelly_original_upgrade"))
    assert counts(dsn) == counted
    assert steps["chat"]["users"] == len(before["users"])
    check_match_embeddings(dsn, before)

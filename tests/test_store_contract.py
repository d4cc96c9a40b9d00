"""The storage contract, run against every backend.

(a) PostgresStore on the embedded PostgreSQL; (b) SupabaseStore, whose
supabase-py client talks real HTTP to the PostgREST-compatible test server,
which runs its requests as SQL on the same PostgreSQL. Each backend has its own
database, emptied (identities restarted) before every case, so the two must
return the very same records, ids included: `test_contract` checks each backend
against the expectations, `test_backends_agree` checks they agree with each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.base import (
    Busy,
    Chunk,
    EmbeddingSpace,
    KnowledgeDocument,
    NotFound,
    RateLimited,
    StoreError,
)
from storage.migrations import apply_migrations
from storage.postgres import PostgresStore
from storage.supabase import SupabaseStore
from tests.fakes.postgrest_server import PostgrestServer, api_key

SERVICE_KEY = api_key("service_role")
BACKENDS = ("postgres", "supabase")
GREETING = "Hi, I am Jelly 🪼 – ask me about DeFiChain!"


def create_database(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return make_conninfo(admin_dsn, dbname=name)


def empty_tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
            " and tablename <> 'jelly_schema_migrations'")]
        conn.execute(sql.SQL("truncate {} restart identity cascade").format(
            sql.SQL(", ").join(sql.Identifier("public", t) for t in tables)))


class Backend:
    def __init__(self, name: str, store, dsn: str):
        self.name, self.store, self.dsn = name, store, dsn

    def execute(self, query: str, params=()):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


@contextmanager
def both_backends(admin_dsn: str, prefix: str) -> Iterator[dict[str, Backend]]:
    """PostgresStore and SupabaseStore (through the fake PostgREST), each on a new
    database `<prefix>_postgres` / `<prefix>_supabase`; closed on leaving."""
    pg_db = create_database(admin_dsn, f"{prefix}_postgres")
    sb_db = create_database(admin_dsn, f"{prefix}_supabase")
    postgres = PostgresStore(pg_db)
    postgres.initialize()
    with psycopg.connect(sb_db, autocommit=True) as conn:  # what `supabase db push` does
        apply_migrations(conn)
    server = PostgrestServer(sb_db, SERVICE_KEY).start()
    supabase = SupabaseStore(server.url, SERVICE_KEY, backoff=0.01)
    supabase.initialize()
    try:
        yield {"postgres": Backend("postgres", postgres, pg_db),
               "supabase": Backend("supabase", supabase, sb_db)}
    finally:
        supabase.close()
        server.stop()
        postgres.close()


@pytest.fixture(scope="module")
def backends(pg_dsn):
    with both_backends(pg_dsn, "contract") as made:
        yield made


@pytest.fixture
def both(backends):
    for backend in backends.values():
        empty_tables(backend.dsn)
    return backends


# --- contract cases: each checks its expectations and returns what it saw ----------


OWNER = "test-host:1:abcd1234"


def normal(value):
    """Records with uuids and timestamps replaced by placeholders: what both backends
    must agree on (uuids are random, clocks differ)."""
    if isinstance(value, dict):
        return {k: ("<ts>" if k in ("created", "updated") and v else normal(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return "<uuid>"
    return value


def ask(store, token, question, answer, conversation=None, application="web", sources=(),
        tool_calls=(), status="succeeded"):
    """One whole run through the store, as the chat turn does it."""
    run = store.create_run(token, GREETING, conversation, application, "enqueue", OWNER, "m")
    begun = store.begin_run(run["run_id"], question, 10, 60)
    assert begun["ready"], begun
    done = store.finish_run(run["run_id"], status, question=question, answer=answer,
                            sources=sources, tool_calls=tool_calls, input_tokens=3,
                            output_tokens=4, title=question[:20])
    return run, begun, done


def messages(store, token, conversation=None):
    conv = store.get_conversation(token, conversation)
    return [(m["type"], m["content"], m["application"]) for m in conv["messages"]]


CALL = {"sentence": "Let's do the math together 🧮", "call_id": "call_1", "tool": "calculator",
        "args": {"expression": "6 * 7"}, "status": "ok", "result": "6 * 7 = 42",
        "duration_ms": 3}


def case_run_stores_question_tools_answer_and_title(b: Backend):
    store = b.store
    run, begun, done = ask(store, 'tök,"en"(2)', "What is 6 * 7?", "It is 42.",
                           sources=[{"title": "Calc", "url": None}], tool_calls=[CALL])
    assert run["user_created"] is True and run["queued"] is False
    assert begun["memory"] == [{"type": "jelly", "content": GREETING}]
    assert done["status"] == "succeeded" and isinstance(done["message_id"], int)
    conv = store.get_conversation('tök,"en"(2)')
    assert conv["id"] == run["conversation_id"] and conv["title"] == "What is 6 * 7?"
    assert conv["message_count"] == 3 and conv["preview"] == "It is 42."
    rows = conv["messages"]
    assert [m["type"] for m in rows] == ["jelly", "human", "tool", "jelly"]
    assert rows[1]["id"] == begun["message_id"] and rows[3]["id"] == done["message_id"]
    assert rows[2]["content"] == CALL["sentence"]
    assert rows[2]["tool_call"] == {k: v for k, v in CALL.items() if k != "sentence"}
    assert rows[3]["sources"] == [{"title": "Calc", "url": None}]
    assert all(m["run_id"] == run["run_id"] and m["run_status"] == "succeeded" for m in rows[1:])
    assert store.get_conversation("nobody") is None  # reading creates no one
    again = store.finish_run(run["run_id"], "failed", answer="twice")  # idempotent
    assert again == {"message_id": done["message_id"], "status": "succeeded"}
    assert len(store.get_conversation('tök,"en"(2)')["messages"]) == 4
    return normal([run, begun, done, conv])


def case_runs_of_a_conversation_queue_in_order(b: Backend):
    store = b.store
    first = store.create_run("queuer", GREETING, None, "web", "enqueue", OWNER)
    second = store.create_run("queuer", GREETING, None, "web", "enqueue", OWNER)
    assert second["queued"] is True and second["conversation_id"] == first["conversation_id"]
    assert store.begin_run(second["run_id"], "second", 10, 60) == {"ready": False}
    assert store.begin_run(first["run_id"], "first", 10, 60)["ready"]
    assert store.begin_run(second["run_id"], "second", 10, 60) == {"ready": False}
    store.finish_run(first["run_id"], "succeeded", question="first", answer="one")
    begun = store.begin_run(second["run_id"], "second", 10, 60)
    assert begun["ready"] and begun["memory"][-2:] == [
        {"type": "human", "content": "first"}, {"type": "jelly", "content": "one"}]
    store.finish_run(second["run_id"], "stopped", question="second", answer="tw")
    assert messages(store, "queuer")[1:] == [("human", "first", "web"), ("jelly", "one", "web"),
                                            ("human", "second", "web"), ("jelly", "tw", "web")]
    return normal(begun)


def case_start_run_begins_an_idle_conversation_in_one_call(b: Backend):
    store = b.store
    first = store.start_run("starter", GREETING, None, "web", "enqueue", OWNER, "m", "one?", 10, 60)
    assert first["ready"] is True and first["queued"] is False and first["user_created"] is True
    assert first["memory"] == [{"type": "jelly", "content": GREETING}]
    second = store.start_run("starter", GREETING, None, "web", "enqueue", OWNER, "m", "two?", 10, 60)
    assert second["ready"] is False and second["queued"] is True  # behind the first: not begun
    assert messages(store, "starter") == [("jelly", GREETING, None), ("human", "one?", "web")]
    store.finish_run(first["run_id"], "succeeded", question="one?", answer="1")
    begun = store.begin_run(second["run_id"], "two?", 10, 60)
    assert begun["ready"] and begun["memory"][-2:] == [
        {"type": "human", "content": "one?"}, {"type": "jelly", "content": "1"}]
    with pytest.raises(Busy):
        store.start_run("starter", GREETING, None, "web", "reject", OWNER, "m", "three?", 10, 60)
    with pytest.raises(NotFound):
        store.start_run("other", GREETING, first["conversation_id"], None, "enqueue", OWNER, None,
                        "mine?", 10, 60)
    return normal([first, second, begun])


def case_multitask_reject_interrupt_and_stop(b: Backend):
    store = b.store
    first = store.create_run("multi", GREETING, None, None, "enqueue", OWNER)
    with pytest.raises(Busy) as busy:
        store.create_run("multi", GREETING, None, None, "reject", OWNER)
    assert busy.value.run_id == first["run_id"]
    assert store.stop_requested([first["run_id"]]) == set()
    store.create_run("multi", GREETING, None, None, "interrupt", OWNER)
    assert store.stop_requested([first["run_id"]]) == {first["run_id"]}
    assert store.begin_run(first["run_id"], "q", 10, 60) == {
        "ready": False, "stop": True, "status": "pending"}
    with pytest.raises(NotFound):
        store.request_stop("someone-else", first["run_id"])
    assert store.request_stop("multi", first["run_id"])["status"] == "pending"
    return normal(store.get_conversation("multi"))


def case_conversations(b: Backend):
    store = b.store
    ask(store, "lister", "in the default one", "ok")
    made = [store.create_conversation("lister", GREETING, t) for t in (None, "Named", None)]
    assert made[1]["title"] == "Named" and made[0]["message_count"] == 0
    ask(store, "lister", "newest activity", "sure", conversation=made[0]["id"])
    listed = store.list_conversations("lister", 10)
    assert [c["id"] for c in listed][:1] == [made[0]["id"]] and len(listed) == 4
    page = store.list_conversations("lister", 2)
    rest = store.list_conversations("lister", 10, page[-1]["updated"])
    assert [c["id"] for c in page + rest] == [c["id"] for c in listed]
    assert store.list_conversations("nobody") == []
    with pytest.raises(NotFound):
        store.create_run("intruder", GREETING, made[0]["id"], None, "enqueue", OWNER)
    with pytest.raises(NotFound):
        store.update_conversation("intruder", made[0]["id"], "mine")
    with pytest.raises(NotFound):
        store.delete_conversation("intruder", made[0]["id"])
    assert store.get_conversation("intruder", made[0]["id"]) is None
    renamed = store.update_conversation("lister", made[0]["id"], "Renamed")
    assert renamed["title"] == "Renamed"
    store.set_auto_title(made[0]["id"], "automatic")  # never over the user's title
    assert store.get_conversation("lister", made[0]["id"])["title"] == "Renamed"
    store.delete_conversation("lister", made[0]["id"])
    assert store.get_conversation("lister", made[0]["id"]) is None
    default = store.get_conversation("lister")["id"]
    store.delete_conversation("lister", default)  # emptied, kept
    assert store.get_conversation("lister")["messages"] == []
    return normal(store.list_conversations("lister", 10))


def case_recovery_answers_questions_of_dead_processes(b: Backend):
    store = b.store
    running = store.create_run("crashed", GREETING, None, "web", "enqueue", "gone:7:x")
    store.begin_run(running["run_id"], "unanswered?", 10, 60)
    pending = store.create_run("crashed", GREETING, None, "web", "enqueue", "gone:7:x")
    alive = store.create_run("alive", GREETING, None, "web", "enqueue", OWNER)
    assert set(store.active_owners()) == {"gone:7:x", OWNER}
    assert store.recover_runs(["gone:7:x"], "Sorry!") == 2
    assert messages(store, "crashed")[1:] == [("human", "unanswered?", "web"),
                                             ("jelly", "Sorry!", "web")]
    conv = store.get_conversation("crashed")
    assert conv["messages"][-1]["run_status"] == "failed"
    assert store.begin_run(pending["run_id"], "late", 10, 60)["stop"] is True
    assert store.active_owners() == [OWNER]
    assert store.begin_run(alive["run_id"], "fine", 10, 60)["ready"]
    return normal(conv)


def case_finish_is_atomic(b: Backend):
    store = b.store
    run = store.create_run("atomic", GREETING, None, "web", "enqueue", OWNER)
    store.begin_run(run["run_id"], "question", 10, 60)
    before = messages(store, "atomic")
    with pytest.raises(StoreError):
        store.finish_run(run["run_id"], "no-such-status", question="question", answer="a",
                         tool_calls=[CALL])
    assert messages(store, "atomic") == before
    return before


def case_qa_newest_first_with_paging(b: Backend):
    store = b.store
    sources = [{"title": "Masternodes", "url": "https://wiki/x?a=1&b=2", "score": 0.5,
                "nested": {"list": [1, "ü", None]}}]
    for i in range(5):
        ask(store, "alice" if i % 2 == 0 else "bob", f"question {i}", f"answer {i}",
            application=f"app{i % 2}", sources=sources if i == 3 else [])
    everything = store.list_qa(10)
    assert [q.question for q in everything] == [f"question {i}" for i in (4, 3, 2, 1, 0)]
    assert everything[1].sources == sources and everything[0].sources == []
    assert all(a.date > b.date for a, b in zip(everything, everything[1:], strict=False))
    pages, before = [], None
    while True:
        page = store.list_qa(2, before)
        if not page:
            break
        pages.append([q.question for q in page])
        before = page[-1].date
    assert pages == [["question 4", "question 3"], ["question 2", "question 1"], ["question 0"]]
    # `before` in another time zone means the same instant
    shifted = everything[2].date.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert [q.question for q in store.list_qa(10, shifted)] == ["question 1", "question 0"]
    assert store.list_qa(10, datetime(2000, 1, 1, tzinfo=UTC)) == []
    return [[(q.id, q.question, q.answer, q.application, q.sources) for q in everything], pages]


def case_counts(b: Backend):
    store = b.store
    assert store.count_human_messages() == 0
    for i in range(3):
        for j in range(i + 1):
            ask(store, f"counter-{i}", f"message {j}", "answer", tool_calls=[CALL])
    assert store.count_human_messages() == 6
    return store.count_human_messages()


def case_history_longer_than_one_page(b: Backend):
    """Supabase answers at most 1000 rows per request; a transcript must still be whole."""
    store = b.store
    ask(store, "chatty", "hello", "hi")
    conv = store.get_conversation("chatty")
    b.execute("insert into chat_messages (user_id, conversation_id, type, content)"
              " select %s, %s, 'human', 'message ' || n from generate_series(1, 1201) n",
              (conv["user_id"], conv["id"]))
    rows = messages(store, "chatty")
    assert len(rows) == 1204 and rows[-1] == ("human", "message 1201", None)
    assert len(store.get_conversation("chatty", limit=10)["messages"]) == 10
    return [len(rows), rows[-3:]]


SPACE = EmbeddingSpace("test-embedder", 4)
KB = 'wiki, "main" (en)'  # commas, quotes and parentheses travel in PostgREST filters


def chunk(text: str, source: str, title: str, **extra) -> Chunk:
    return Chunk(text, {"kb": KB, "source": source, "title": title, **extra})


def plain_chunks(chunks) -> list[tuple]:
    scores = [c.score for c in chunks]
    assert scores == sorted(scores, reverse=True), "best first"
    return [(c.id, c.content, c.metadata, round(c.score, 9)) for c in chunks]


def case_knowledge_documents(b: Backend):
    store = b.store
    masternodes = KnowledgeDocument("masternodes.md", "Masternodes", "hash-1",
                                    datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    store.replace_document(KB, masternodes, [
        chunk("A masternode needs 20000 DFI as collateral.", "masternodes.md", "Masternodes",
              section="Collateral"),
        chunk("Masternodes mint blocks and earn rewards.", "masternodes.md", "Masternodes"),
    ], [[1, 0, 0, 0], [0.9, 0.1, 0, 0]], SPACE)
    store.replace_document(KB, KnowledgeDocument("vaults.md", "Vaults", "hash-2"), [
        chunk("Vaults hold collateral for loans.", "vaults.md", "Vaults"),
    ], [[0, 1, 0, 0]], SPACE)
    store.replace_document("other", KnowledgeDocument("faq.md", "FAQ", "hash-3"), [
        Chunk("Collateral questions answered.", {"kb": "other", "source": "faq.md", "title": "FAQ"}),
    ])
    assert store.document_hashes(KB) == {"masternodes.md": "hash-1", "vaults.md": "hash-2"}
    bases = store.knowledge_bases()
    assert set(bases) == {KB, "other"}
    assert (bases[KB].documents, bases[KB].chunks, bases[KB].embedders) == (2, 3, (SPACE,))
    assert (bases["other"].documents, bases["other"].chunks, bases["other"].embedders) == (1, 1, ())
    # replacing a document drops its old chunks
    store.replace_document(KB, KnowledgeDocument("masternodes.md", "Masternodes", "hash-1b"), [
        chunk("Masternode collateral is 20000 DFI.", "masternodes.md", "Masternodes"),
    ], [[1, 0, 0, 0]], SPACE)
    assert store.document_hashes(KB)["masternodes.md"] == "hash-1b"
    assert store.knowledge_bases()[KB].chunks == 2
    assert b.execute("select count(*) from kb_chunks where content like 'Masternodes mint%%'")[0][0] == 0
    with pytest.raises(ValueError):
        store.replace_document(KB, masternodes, [chunk("x", "m", "M")], [[1, 0]], SPACE)
    with pytest.raises(ValueError):
        store.replace_document(KB, masternodes, [chunk("x", "m", "M")], [[1, 0, 0, 0]], None)
    deleted = store.delete_documents(KB, ["vaults.md", "never-there.md"])
    assert deleted == 1 and store.delete_documents(KB, []) == 0
    assert store.document_hashes(KB) == {"masternodes.md": "hash-1b"}
    assert b.execute("select count(*) from kb_chunks")[0][0] == 2
    return [sorted(store.knowledge_bases().items()), store.document_hashes("other"), deleted]


def case_knowledge_search(b: Backend):
    store = b.store
    store.replace_document(KB, KnowledgeDocument("masternodes.md", "Masternodes", "h1"), [
        chunk("A masternode needs 20000 DFI as collateral.", "masternodes.md", "Masternodes"),
        chunk("Masternodes mint blocks and earn rewards.", "masternodes.md", "Masternodes"),
    ], [[1, 0, 0, 0], [0.7, 0.7, 0, 0]], SPACE)
    store.replace_document(KB, KnowledgeDocument("vaults.md", "Vaults", "h2"), [
        chunk("Vaults hold collateral for decentralized loans.", "vaults.md", "Vaults"),
        chunk("Liquidation happens below the collateral ratio.", "vaults.md", "Vaults"),
    ], [[0, 1, 0, 0], [0, 0.8, 0.6, 0]], SPACE)
    store.replace_document("other", KnowledgeDocument("faq.md", "FAQ", "h3"), [
        Chunk("Collateral collateral collateral.", {"source": "faq.md", "title": "FAQ"}),
    ])
    text = plain_chunks(store.search(KB, "How much collateral does a masternode need?", k=3))
    assert text[0][1] == "A masternode needs 20000 DFI as collateral."
    assert all(c[2]["kb"] == KB for c in text), "another kb must not leak in"
    assert len(text) == 3
    assert store.search(KB, "zebra xylophone") == []
    hybrid = plain_chunks(store.search(KB, "loans", embedding=[0, 1, 0, 0], k=2))
    assert [c[1] for c in hybrid] == ["Vaults hold collateral for decentralized loans.",
                                      "Liquidation happens below the collateral ratio."]
    only_vector = plain_chunks(store.search(KB, "zebra", embedding=[1, 0, 0, 0], k=1))
    assert only_vector[0][1] == "A masternode needs 20000 DFI as collateral."
    assert store.search(KB, "collateral", k=0) != []  # k is at least 1
    return [text, hybrid, only_vector]


def case_knowledge_indexes_statistics_and_large_kbs(b: Backend):
    """The first vectors of a new dimension make its HNSW index (on Supabase too);
    ingest_finished refreshes the statistics; more documents than one PostgREST
    answer holds (1000 rows) still come back whole; replacing is idempotent."""
    store = b.store
    five = EmbeddingSpace("five", 5)
    document = KnowledgeDocument("five.md", "Five", "h5", datetime(2024, 1, 2, tzinfo=UTC))
    chunks = [chunk("Five dimensions, first.", "five.md", "Five"),
              chunk("Five dimensions, second.", "five.md", "Five")]
    for _ in range(2):  # the same call twice leaves the same rows
        store.replace_document(KB, document, chunks, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], five)
    assert b.execute("select count(*) from kb_chunks where vector_dims(embedding) = 5")[0][0] == 2
    index = b.execute("select indexdef from pg_indexes where indexname = 'kb_chunks_embedding_5_idx'")
    assert len(index) == 1 and "hnsw" in index[0][0] and "vector(5)" in index[0][0]
    hit = store.search(KB, "zebra", embedding=[0, 1, 0, 0, 0], k=1)
    assert [c.content for c in hit] == ["Five dimensions, second."]
    assert store.knowledge_bases()[KB].embedders == (five,)
    analyzed = "select analyze_count from pg_stat_user_tables where relname = 'kb_chunks'"
    before = b.execute(analyzed)[0][0]
    store.ingest_finished(KB)
    b.execute("select pg_stat_clear_snapshot()")
    assert b.execute(analyzed)[0][0] > before
    b.execute("insert into kb_documents (kb, source, title, content_hash)"
              " select %s, 'page-' || n || '.md', 'Page', 'hash-' || n"
              " from generate_series(1, 1200) n", (KB,))
    hashes = store.document_hashes(KB)
    assert len(hashes) == 1201 and hashes["page-1200.md"] == "hash-1200"
    pages = [f"page-{n}.md" for n in range(1, 1101)]
    assert store.delete_documents(KB, [*pages, "page-1.md", "five.md"]) == 1101
    assert store.document_hashes(KB) == {f"page-{n}.md": f"hash-{n}" for n in range(1101, 1201)}
    assert b.execute("select count(*) from kb_chunks")[0][0] == 0
    return [sorted(store.knowledge_bases().items()), index[0][0]]


def case_feedback(b: Backend):
    """A user rates their own answers only; null withdraws; ratings show in the
    transcript and the Q&A list; the summary counts per application and day."""
    store = b.store
    _, begun, first = ask(store, "rater", "What is DFI?", "A coin.", application="web")
    _, _, second = ask(store, "rater", "And DUSD?", "A stable token.", application="web")
    _, _, other = ask(store, "someone", "Hi?", "Hello.", application="telegram")
    rated = store.set_feedback("rater", first["message_id"], "down", "too short ✂️")
    assert rated["rating"] == "down" and rated["comment"] == "too short ✂️" and rated["updated"]
    again = store.set_feedback("rater", first["message_id"], "up", None)  # a change of mind
    assert again["rating"] == "up" and again["comment"] is None
    store.set_feedback("rater", second["message_id"], "down")
    store.set_feedback("someone", other["message_id"], "up")
    for token, message_id in (("someone", first["message_id"]),  # another user's answer
                              ("rater", begun["message_id"]),  # a question, not an answer
                              ("rater", 999_999), ("nobody", first["message_id"])):
        with pytest.raises(NotFound):
            store.set_feedback(token, message_id, "up")
    rows = store.get_conversation("rater")["messages"]
    answers = [m for m in rows if m["type"] == "jelly"]
    assert answers[0]["feedback"] is None  # the greeting
    assert answers[1]["feedback"]["rating"] == "up" and answers[2]["feedback"]["rating"] == "down"
    assert all(m["feedback"] is None for m in rows if m["type"] != "jelly")
    qa = store.list_qa(10)
    assert [q.message_id for q in qa] == [other["message_id"], second["message_id"],
                                          first["message_id"]]
    ratings = store.feedback_of([q.message_id for q in qa] + [None])
    assert {k: v["rating"] for k, v in ratings.items()} == {
        first["message_id"]: "up", second["message_id"]: "down", other["message_id"]: "up"}
    day = datetime.now(UTC).date().isoformat()
    summary = store.feedback_summary()
    assert summary == [
        {"application": "telegram", "day": day, "up": 1, "down": 0, "total": 1},
        {"application": "web", "day": day, "up": 1, "down": 1, "total": 2},
    ]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert store.feedback_summary(since=future) == []
    withdrawn = store.set_feedback("rater", second["message_id"], None)
    assert withdrawn["rating"] is None
    assert store.feedback_of([second["message_id"]]) == {}
    assert store.feedback_of([]) == {}
    return normal([rated, again, summary, [m["feedback"] for m in answers]])


def case_tool_rows_of_the_pre_run_format(b: Backend):
    store = b.store
    ask(store, "legacy", "What is 6 * 7?", "It is 42.")
    conv = store.get_conversation("legacy")
    for content in ("calculator: 6 * 7 = 42",  # how rows were stored before runs
                    "Let me gather the latest blockchain statistics for you 📊"):  # the original's
        b.execute("insert into chat_messages (user_id, conversation_id, type, content)"
                  " values (%s, %s, 'tool', %s)", (conv["user_id"], conv["id"], content))
    sentences = {"calculator": CALL["sentence"], "calc": "never this one"}
    assert store.convert_tool_rows(sentences) == 1
    assert store.convert_tool_rows(sentences) == 0  # converted once
    rows = [m for m in store.get_conversation("legacy")["messages"] if m["type"] == "tool"]
    assert [m["content"] for m in rows] == [
        CALL["sentence"], "Let me gather the latest blockchain statistics for you 📊"]
    assert rows[0]["tool_call"] == {"tool": "calculator", "result": "6 * 7 = 42", "legacy": True}
    assert rows[1]["tool_call"] is None
    return normal(rows)


def case_history_pages_back_and_reads_create_nothing(b: Backend):
    store = b.store
    assert store.history("nobody", 200) is None
    assert store.get_conversation("nobody") is None  # still nobody
    for i in range(3):
        ask(store, "pager", f"question {i}", f"answer {i}")
    whole = store.history("pager", 200)
    assert [m["type"] for m in whole["messages"]] == ["jelly"] + ["human", "jelly"] * 3
    assert whole["more"] is False and whole["user_id"] is not None
    page = store.history("pager", 4)
    assert page["messages"] == whole["messages"][-4:] and page["more"] is True
    older = store.history("pager", 4, page["messages"][0]["id"])
    assert older["messages"] == whole["messages"][:3] and older["more"] is False
    assert store.history("pager", 4, whole["messages"][0]["id"])["messages"] == []
    return normal([whole, page, older])


def case_active_runs_per_user_capped_by_the_database(b: Backend):
    from concurrent.futures import ThreadPoolExecutor

    store = b.store
    store.set_run_cap(3)
    try:
        def start(_):
            try:
                return store.create_run("capped", GREETING, None, None, "enqueue", OWNER)
            except RateLimited as exc:
                return exc

        with ThreadPoolExecutor(8) as pool:  # concurrent turns cannot all slip under the cap
            outcomes = list(pool.map(start, range(8)))
        refused = [o for o in outcomes if isinstance(o, RateLimited)]
        assert len(refused) == 5 and all(r.scope == "runs" and r.retry_after >= 1 for r in refused)
        runs = [o["run_id"] for o in outcomes if isinstance(o, dict)]
        store.create_run("someone else", GREETING, None, None, "enqueue", OWNER)  # per user
        store.request_stop("capped", runs[0])  # a run asked to stop no longer counts
        store.create_run("capped", GREETING, None, None, "enqueue", OWNER)
        store.set_run_cap(0)
        store.create_run("capped", GREETING, None, None, "enqueue", OWNER)  # no cap
    finally:
        store.set_run_cap(0)
    return [len(refused), str(refused[0])]


CASES = [case_run_stores_question_tools_answer_and_title, case_runs_of_a_conversation_queue_in_order,
         case_start_run_begins_an_idle_conversation_in_one_call,
         case_multitask_reject_interrupt_and_stop, case_conversations,
         case_recovery_answers_questions_of_dead_processes, case_finish_is_atomic,
         case_qa_newest_first_with_paging, case_counts, case_history_longer_than_one_page,
         case_knowledge_documents, case_knowledge_search,
         case_knowledge_indexes_statistics_and_large_kbs, case_tool_rows_of_the_pre_run_format,
         case_feedback, case_history_pages_back_and_reads_create_nothing,
         case_active_runs_per_user_capped_by_the_database]
CASE_IDS = [c.__name__.removeprefix("case_") for c in CASES]


def contract_tests(cases, of=lambda backend: backend.store):
    """A store feature's two contract tests, for its module to name `test_contract` and
    `test_backends_agree`: every case on each backend, and both backends answering alike.
    `of`: what a case receives of a Backend (its store by default)."""
    ids = [c.__name__[5:] for c in cases]

    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize("case", cases, ids=ids)
    def test_contract(both, backend, case):
        case(of(both[backend]))

    @pytest.mark.parametrize("case", cases, ids=ids)
    def test_backends_agree(both, case):
        seen = {name: case(of(both[name])) for name in BACKENDS}
        assert seen["postgres"] == seen["supabase"]

    return test_contract, test_backends_agree


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_contract(both, backend, case):
    case(both[backend])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_backends_agree(both, case):
    seen = {}
    for name in BACKENDS:
        seen[name] = case(both[name])
    assert seen["postgres"] == seen["supabase"]


def test_concurrent_first_contact_creates_one_user(both):
    """Racing first messages of one token make one user, one greeting, one queue."""
    from concurrent.futures import ThreadPoolExecutor

    def first_contact(store):
        return store.create_run("racer", GREETING, None, None, "enqueue", OWNER)

    for backend in both.values():
        with ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(first_contact, [backend.store] * 8))
        assert len({r["user_id"] for r in runs}) == 1, backend.name
        assert sum(r["user_created"] for r in runs) == 1, backend.name
        assert sum(not r["queued"] for r in runs) == 1, backend.name
        assert messages(backend.store, "racer") == [("jelly", GREETING, None)], backend.name


def test_after_a_burst_requests_alone_get_the_connection_returned_last(pg_store):
    """A burst opens several connections; one request at a time after it then keeps
    using the warm one instead of each in turn (psycopg_pool alone hands out the one
    idle the longest). Fails too if psycopg_pool stops using the deque it is given."""
    from contextlib import ExitStack

    def backend(conn) -> int:
        return conn.execute("select pg_backend_pid()").fetchone()[0]

    with ExitStack() as burst:
        held = [backend(burst.enter_context(pg_store.pool.connection(timeout=10)))
                for _ in range(4)]
    # the stack returns them last held first: held[0] is the one returned last
    assert len(set(held)) == 4
    alone = []
    for _ in range(6):
        with pg_store._connection() as conn:
            alone.append(backend(conn))
    assert alone == [held[0]] * 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_beyond_the_hnsw_limit_are_stored_with_one_warning(both, backend, caplog):
    store = both[backend].store
    wide = EmbeddingSpace("wide", 2001)  # pgvector's HNSW indexes stop at 2000 dimensions
    for n in range(2):
        store.replace_document("wide", KnowledgeDocument(f"w{n}.md", "W", "h"),
                               [Chunk(f"wide {n}", {"kb": "wide"})], [[1.0] + [0.0] * 2000], wide)
    assert store.knowledge_bases()["wide"].chunks == 2
    assert both[backend].execute(
        "select count(*) from pg_indexes where indexname = 'kb_chunks_embedding_2001_idx'") == [(0,)]
    warnings = [r for r in caplog.records if "no HNSW index for 2001-dimensional" in r.message]
    assert len(warnings) == 1, caplog.text  # once per store, not per document


def test_one_retry_policy_repeats_only_what_may_run_twice(pg_store, caplog):
    """A connection the database dropped (a restart): an idempotent call goes again on a
    checked connection; a write that may have run is reported, not repeated. (The
    Supabase side: test_supabase_backend.test_writes_are_repeated_only_when_they_cannot_have_run.)"""
    def drop_connections():
        with pg_store._connection():  # at least one pooled connection exists to be dropped
            pass
        with psycopg.connect(pg_store.dsn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                          " where datname = current_database() and pid <> pg_backend_pid()"
                          " and backend_type = 'client backend'")

    drop_connections()
    caplog.set_level("WARNING", logger="jellychat.storage")
    assert pg_store.count_human_messages() >= 0  # idempotent: tried again, answered
    assert "jelly_count_human_messages failed" in caplog.text and "retrying" in caplog.text
    drop_connections()
    with pytest.raises(StoreError) as failed:
        pg_store.create_conversation("retry-policy", GREETING)  # not idempotent
    assert "jelly_create_conversation failed" in str(failed.value)
    assert pg_store.list_conversations("retry-policy") == []

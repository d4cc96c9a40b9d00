"""The storage contract, run against every backend.

(a) PostgresStore on the embedded PostgreSQL; (b) SupabaseStore, whose
supabase-py client talks real HTTP to the PostgREST-compatible test server,
which runs its requests as SQL on the same PostgreSQL. Each backend has its own
database, emptied (identities restarted) before every case, so the two must
return the very same records, ids included: `test_contract` checks each backend
against the expectations, `test_backends_agree` checks they agree with each other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.base import Chunk, EmbeddingSpace, KnowledgeDocument, StoreError
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


@pytest.fixture(scope="module")
def backends(pg_dsn):
    pg_db = create_database(pg_dsn, "contract_postgres")
    sb_db = create_database(pg_dsn, "contract_supabase")
    postgres = PostgresStore(pg_db)
    postgres.initialize()
    with psycopg.connect(sb_db, autocommit=True) as conn:  # what `supabase db push` does
        apply_migrations(conn)
    server = PostgrestServer(sb_db, SERVICE_KEY).start()
    supabase = SupabaseStore(server.url, SERVICE_KEY, backoff=0.01)
    supabase.initialize()
    yield {"postgres": Backend("postgres", postgres, pg_db), "supabase": Backend("supabase", supabase, sb_db)}
    supabase.close()
    server.stop()
    postgres.close()


@pytest.fixture
def both(backends):
    for backend in backends.values():
        empty_tables(backend.dsn)
    return backends


# --- contract cases: each checks its expectations and returns what it saw ----------


def plain(messages) -> list[tuple]:
    stamps = [m.timestamp for m in messages]
    assert all(s.tzinfo is not None for s in stamps)
    assert stamps == sorted(stamps), "messages must come oldest first"
    return [(m.type, m.content, m.application) for m in messages]


def case_user_created_once_with_greeting(b: Backend):
    store = b.store
    first = store.get_or_create_user("token-1", GREETING)
    again = store.get_or_create_user("token-1", GREETING)
    other = store.get_or_create_user('tök,"en"(2)', GREETING)
    assert first.created and not again.created and other.created
    assert first.id == again.id != other.id
    assert plain(store.history(first.id)) == [("jelly", GREETING, None)]
    assert store.count_human_messages() == 0
    return [first, again, other, plain(store.history(other.id))]


def case_messages_order_and_recent(b: Backend):
    store = b.store
    user = store.get_or_create_user("talker", GREETING)
    bystander = store.get_or_create_user("bystander", GREETING)
    store.add_message(user.id, "human", "What is DFI?", "web")
    store.add_answer(user.id, "What is DFI?", "DFI is the coin.", "web", [{"title": "Wiki"}],
                     ["search: DFI", "search: coin"])
    store.add_message(bystander.id, "human", "unrelated", None)
    store.add_message(user.id, "human", "And masternodes?", "telegram")
    store.add_answer(user.id, "And masternodes?", "They need 20000 DFI.", "telegram", [])
    history = plain(store.history(user.id))
    assert history == [
        ("jelly", GREETING, None),
        ("human", "What is DFI?", "web"),
        ("tool", "search: DFI", "web"),
        ("tool", "search: coin", "web"),
        ("jelly", "DFI is the coin.", "web"),
        ("human", "And masternodes?", "telegram"),
        ("jelly", "They need 20000 DFI.", "telegram"),
    ]
    recent = {n: plain(store.recent_messages(user.id, n)) for n in (1, 3, 100)}
    assert recent[1] == [("jelly", "They need 20000 DFI.", "telegram")]
    assert recent[3] == [("jelly", "DFI is the coin.", "web"), ("human", "And masternodes?", "telegram"),
                         ("jelly", "They need 20000 DFI.", "telegram")]
    assert [t for t, _, _ in recent[100]] == ["jelly", "human", "jelly", "human", "jelly"]
    assert plain(store.recent_messages(bystander.id, 10)) == [("jelly", GREETING, None),
                                                               ("human", "unrelated", None)]
    with pytest.raises(ValueError):
        store.add_message(user.id, "robot", "not a type")
    assert store.count_human_messages() == 3
    return [history, recent]


def case_add_answer_is_atomic(b: Backend):
    store = b.store
    user = store.get_or_create_user("atomic", GREETING)
    store.add_message(user.id, "human", "question", "web")
    before = plain(store.history(user.id))
    # the Q&A insert (the last statement) fails: the tool and jelly messages must go too
    with pytest.raises((StoreError, psycopg.Error)):
        store.add_answer(user.id, None, "an answer", "web", [], ["tool output"])
    # an unknown user fails on the first insert
    with pytest.raises((StoreError, psycopg.Error)):
        store.add_answer(user.id + 1000, "q", "a", "web", [], ["tool output"])
    assert plain(store.history(user.id)) == before
    assert store.list_qa(10) == []
    assert b.execute("select count(*) from chat_messages")[0][0] == 2
    return before


def case_qa_newest_first_with_paging(b: Backend):
    store = b.store
    alice = store.get_or_create_user("alice", GREETING)
    bob = store.get_or_create_user("bob", GREETING)
    sources = [{"title": "Masternodes", "url": "https://wiki/x?a=1&b=2", "score": 0.5,
                "nested": {"list": [1, "ü", None]}}]
    for i in range(5):
        user = alice if i % 2 == 0 else bob
        store.add_answer(user.id, f"question {i}", f"answer {i}", f"app{i % 2}", sources if i == 3 else [])
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
    users = [store.get_or_create_user(f"counter-{i}", GREETING) for i in range(3)]
    for i, user in enumerate(users):
        for j in range(i + 1):
            store.add_message(user.id, "human", f"message {j}")
        store.add_message(user.id, "tool", "not counted")
    store.add_answer(users[0].id, "q", "a", None, [], ["tool"])
    assert store.count_human_messages() == 6
    return store.count_human_messages()


def case_history_longer_than_one_page(b: Backend):
    """Supabase answers at most 1000 rows per request; history must still be whole."""
    store = b.store
    user = store.get_or_create_user("chatty", GREETING)
    b.execute("insert into chat_messages (user_id, type, content)"
              " select %s, 'human', 'message ' || n from generate_series(1, 1204) n", (user.id,))
    history = plain(store.history(user.id))
    assert len(history) == 1205
    assert history[1] == ("human", "message 1", None) and history[-1] == ("human", "message 1204", None)
    assert len(store.recent_messages(user.id, 10)) == 10
    assert store.count_human_messages() == 1204
    return [len(history), history[-3:]]


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


CASES = [case_user_created_once_with_greeting, case_messages_order_and_recent, case_add_answer_is_atomic,
         case_qa_newest_first_with_paging, case_counts, case_history_longer_than_one_page,
         case_knowledge_documents, case_knowledge_search]
CASE_IDS = [c.__name__.removeprefix("case_") for c in CASES]


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
    """The get-or-create is atomic on both backends: racing requests make one user, one greeting."""
    from concurrent.futures import ThreadPoolExecutor

    for backend in both.values():
        with ThreadPoolExecutor(8) as pool:
            users = list(pool.map(backend.store.get_or_create_user, ["racer"] * 8, [GREETING] * 8))
        assert len({u.id for u in users}) == 1, backend.name
        assert sum(u.created for u in users) == 1, backend.name
        assert plain(backend.store.history(users[0].id)) == [("jelly", GREETING, None)], backend.name


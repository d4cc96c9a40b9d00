"""Issued user tokens and paging by (timestamp, id), on both backends (issue 32): the
same SQL functions (supabase/migrations/20261207000100_operations.sql) through
PostgresStore and through SupabaseStore against the fake PostgREST."""

from __future__ import annotations

import pytest

from tests.test_store_contract import GREETING, ask, both_backends, empty_tables


@pytest.fixture(scope="module")
def backends(pg_dsn):
    with both_backends(pg_dsn, "ops") as made:
        yield list(made.values())


@pytest.fixture(params=["postgres", "supabase"])
def backend(request, backends):
    chosen = next(b for b in backends if b.name == request.param)
    empty_tables(chosen.dsn)
    return chosen


def test_issued_tokens_are_known_and_made_up_ones_are_not(backend):
    store = backend.store
    made = store.issue_user("issued-" + "x" * 40, GREETING)
    assert made["created"] is True
    assert store.token_issued("issued-" + "x" * 40)
    assert not store.token_issued("made-up-token")
    ask(store, "made-up-token", "q", "a")  # a user the old clients create by chatting
    assert not store.token_issued("made-up-token")
    # the issued user starts like any new user: its default conversation and greeting
    history = store.history("issued-" + "x" * 40, 10)
    assert [m["content"] for m in history["messages"]] == [GREETING]
    again = store.issue_user("issued-" + "x" * 40, GREETING)  # idempotent
    assert again["created"] is False and again["user_id"] == made["user_id"]


def test_conversations_with_equal_timestamps_are_all_paged(backend):
    store = backend.store
    ids = {store.create_conversation("pager", GREETING, f"c{i}")["id"] for i in range(5)}
    backend.execute("update conversations set updated_at = '2026-01-01T00:00:00Z'")
    seen, before, before_id = [], None, None
    for _ in range(10):
        page = store.list_conversations("pager", 2, before, before_id)
        seen += [c["id"] for c in page]
        if len(page) < 2:
            break
        before, before_id = page[-1]["updated"], page[-1]["id"]
    assert len(seen) == len(set(seen)) and set(seen) >= ids, (seen, ids)
    # `before` alone (old clients) still pages as it did: strictly older
    assert store.list_conversations("pager", 10, "2026-01-01T00:00:00Z") == []


def test_history_pages_rows_with_equal_timestamps(backend):
    store = backend.store
    for i in range(4):
        ask(store, "same-time", f"q{i}", f"a{i}")
    backend.execute("update chat_messages set created_at = '2026-01-01T00:00:00Z'")
    seen, before = [], None
    while True:
        page = store.history("same-time", 3, before)
        seen = [m["content"] for m in page["messages"]] + seen
        if not page["more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == [GREETING] + [x for i in range(4) for x in (f"q{i}", f"a{i}")]

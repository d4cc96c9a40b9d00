"""The store contract of API keys and client-named conversations, on both backends
(PostgresStore, and SupabaseStore through the PostgREST-compatible test server)."""

from __future__ import annotations

import pytest

from storage.api_keys import key_hash
from storage.base import NotFound
from tests.test_store_contract import BACKENDS, GREETING, ask, backends, both, normal  # noqa: F401


def case_keys_are_shown_once_and_stored_hashed(b):
    store = b.store
    made = store.create_api_key("open webui", "webui", "asst-1")
    assert made["key"].startswith("jelly-") and len(made["key"]) > 40
    assert made["name"] == "open webui" and made["application"] == "webui"
    assert made["assistant_id"] == "asst-1"
    other = store.create_api_key("librechat")
    listed = store.list_api_keys()
    assert [k["name"] for k in listed] == ["librechat", "open webui"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    stored = b.execute("select key_hash from public.api_keys order by created_at")
    assert stored == [(key_hash(made["key"]),), (key_hash(other["key"]),)]
    assert made["key"] not in str(stored)
    found = store.api_key(made["key"])
    assert found["id"] == made["id"] and found["last_used"] is not None
    assert store.api_key(made["key"] + "x") is None
    assert store.api_key("") is None
    store.delete_api_key(made["id"])
    assert store.api_key(made["key"]) is None
    with pytest.raises(NotFound):
        store.delete_api_key(made["id"])
    return normal([{k: v for k, v in key.items() if k != "last_used"}
                   for key in store.list_api_keys()])


def case_history_finds_its_conversation(b):
    store = b.store
    first = store.client_conversation("client-user", GREETING)
    second = store.client_conversation("client-user", GREETING)
    assert first != second  # no history: a new chat
    ask(store, "client-user", "What is 6 * 7?", "It is 42.", conversation=first)
    ask(store, "client-user", "Hello", "Hi!", conversation=second)
    history = [{"type": "human", "content": "What is 6 * 7? "},
               {"type": "jelly", "content": "It is 42.\n"}]
    assert store.client_conversation("client-user", GREETING, history=history) == first
    assert store.client_conversation("client-user", GREETING,
                                     history=history[1:]) == first  # a tail is enough
    assert store.client_conversation("client-user", GREETING,
                                     history=[{"type": "human", "content": "Hello"},
                                              {"type": "jelly", "content": "Hi!"}]) == second
    other = store.client_conversation("client-user", GREETING,
                                      history=[{"type": "human", "content": "What is 6 * 7?"},
                                               {"type": "jelly", "content": "It is 43."}])
    assert other not in (first, second)
    # another user's identical chat is never found
    assert store.client_conversation("someone-else", GREETING, history=history) != first
    return normal(store.get_conversation("client-user", first)["messages"])


def case_aliases_name_one_conversation(b):
    store = b.store
    made = store.client_conversation("alias-user", GREETING, alias="chat-abc")
    assert store.client_conversation("alias-user", GREETING, alias="chat-abc") == made
    assert store.client_conversation("alias-user", GREETING, alias=made) == made  # our own id
    assert store.client_conversation("alias-user", GREETING, alias="chat-xyz") != made
    # another user's alias and conversation id are theirs only
    assert store.client_conversation("alias-other", GREETING, alias="chat-abc") != made
    assert store.client_conversation("alias-other", GREETING, alias=made) != made
    return len(store.list_conversations("alias-user"))


CASES = [case_keys_are_shown_once_and_stored_hashed, case_history_finds_its_conversation,
         case_aliases_name_one_conversation]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_backends_agree(both, case):  # noqa: F811
    seen = {name: case(both[name]) for name in BACKENDS}
    assert seen["postgres"] == seen["supabase"]

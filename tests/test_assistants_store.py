"""The assistants' storage contract (issue 26), on both backends: CRUD, versions,
the choice of a turn's assistant inside `start_run`, and deletion's fallback."""

from __future__ import annotations

import pytest

from storage.base import Busy, NotFound, UnknownAssistant
from tests import test_store_contract as contract
from tests.test_store_contract import GREETING, OWNER

backends = contract.backends  # the contract's databases and servers (a module fixture)
both = contract.both  # emptied before each case

DEFAULT = {"name": "Jelly", "instructions": "You are Jelly.", "greeting": "Hi from Jelly!",
           "suggested_questions": ["What is DFI?"]}


def without_clock(assistant: dict) -> dict:
    """What both backends must agree on: not the generated id, not the clock."""
    return {k: v for k, v in assistant.items() if k not in ("created_at", "updated_at")
            and not (k == "id" and v != "jelly")}


def start(store, token, *, conversation=None, application="web", assistant_id=None):
    return store.start_run(token, GREETING, conversation, application, "enqueue", OWNER, "m",
                           "hello?", 10, 60, assistant_id=assistant_id)


def finish(store, ticket):
    store.finish_run(ticket["run_id"], "succeeded", question="hello?", answer="hi")


def case_create_update_versions(store):
    jelly = store.seed_assistant("jelly", DEFAULT)
    assert jelly["id"] == "jelly" and jelly["default"] is True and jelly["version"] == 1
    # seeding again keeps the stored (possibly edited) row
    store.update_assistant("jelly", {"greeting": "Edited hello"})
    again = store.seed_assistant("jelly", {**DEFAULT, "name": "Other"})
    assert again["name"] == "Jelly" and again["greeting"] == "Edited hello"
    assert again["version"] == 2

    made = store.create_assistant({"name": "Docs", "instructions": "Only docs.",
                                   "tools": ["search_docs"], "applications": ["wiki"],
                                   "public": False, "max_answer_chars": 4000})
    assert made["version"] == 1 and made["tools"] == ["search_docs"]
    assert made["applications"] == ["wiki"] and made["public"] is False
    assert made["suggested_questions"] == [] and made["model"] is None
    assert made["suggestions"] is True and made["default"] is False
    assert made["created_at"] and made["updated_at"]

    changed = store.update_assistant(made["id"], {"instructions": "Docs, shortly.",
                                                  "tools": None, "model": "gpt-x"})
    assert changed["version"] == 2 and changed["tools"] is None and changed["model"] == "gpt-x"
    assert changed["name"] == "Docs" and changed["max_answer_chars"] == 4000
    assert store.get_assistant(made["id"])["instructions"] == "Docs, shortly."
    assert store.get_assistant(made["id"], 1)["instructions"] == "Only docs."
    versions = store.assistant_versions(made["id"])
    assert [v["version"] for v in versions] == [1, 2]
    assert [v["instructions"] for v in versions] == ["Only docs.", "Docs, shortly."]

    assert [a["id"] for a in store.list_assistants()] == ["jelly"]  # Docs is not public
    assert [a["id"] for a in store.list_assistants(everyone=True)] == ["jelly", made["id"]]
    assert store.get_assistant("nobody") is None
    with pytest.raises(NotFound):
        store.update_assistant("nobody", {"name": "x"})
    with pytest.raises(Busy):
        store.delete_assistant("jelly")
    store.delete_assistant(made["id"])
    with pytest.raises(NotFound):
        store.delete_assistant(made["id"])
    assert store.get_assistant(made["id"]) is None
    # the versions stay: runs can still name the version that answered
    assert store.get_assistant(made["id"], 2)["instructions"] == "Docs, shortly."
    return [without_clock(a) for a in (again, *versions)]


def case_choice_per_turn(store):
    store.seed_assistant("jelly", DEFAULT)
    wiki = store.create_assistant({"name": "Wiki", "instructions": "Wiki.",
                                   "applications": ["wiki"], "greeting": "Wiki hello"})
    bot = store.create_assistant({"name": "Bot", "instructions": "Bot."})

    # 4. the default
    first = start(store, "u1", application="web")
    assert first["assistant"] == {"id": "jelly", "version": 1}
    finish(store, first)
    # 3. the application's (and a new user is greeted by it)
    ticket = start(store, "u2", application="wiki")
    assert ticket["assistant"] == {"id": wiki["id"], "version": 1}
    assert ticket["memory"] == [{"type": "jelly", "content": "Wiki hello"}]
    finish(store, ticket)
    # 2. the conversation's, over the application's
    conversation = store.create_conversation("u2", GREETING)
    bound = store.set_conversation_assistant("u2", conversation["id"], bot["id"])
    assert bound["assistant_id"] == bot["id"]
    ticket = start(store, "u2", conversation=conversation["id"], application="wiki")
    assert ticket["assistant"]["id"] == bot["id"]
    finish(store, ticket)
    # 1. the message's, over the conversation's
    ticket = start(store, "u2", conversation=conversation["id"], assistant_id=wiki["id"])
    assert ticket["assistant"]["id"] == wiki["id"]
    finish(store, ticket)
    with pytest.raises(UnknownAssistant):
        start(store, "u2", conversation=conversation["id"], assistant_id="nobody")
    with pytest.raises(UnknownAssistant):
        store.set_conversation_assistant("u2", conversation["id"], "nobody")
    with pytest.raises(NotFound):
        store.set_conversation_assistant("u3", conversation["id"], bot["id"])
    # a new version answers from the next turn on
    store.update_assistant(bot["id"], {"instructions": "Bot 2."})
    ticket = start(store, "u2", conversation=conversation["id"])
    assert ticket["assistant"] == {"id": bot["id"], "version": 2}
    finish(store, ticket)
    # deleted: the conversation falls back (no application: the default)
    store.delete_assistant(bot["id"])
    assert store.get_conversation("u2", conversation["id"])["assistant_id"] is None
    ticket = start(store, "u2", conversation=conversation["id"], application=None)
    assert ticket["assistant"]["id"] == "jelly"
    finish(store, ticket)
    assert store.assistant_for("wiki")["greeting"] == "Wiki hello"
    assert store.assistant_for(None)["id"] == "jelly"
    return "ok"


CASES = [case_create_update_versions, case_choice_per_turn]


test_contract, test_backends_agree = contract.contract_tests(CASES)


def test_runs_store_the_assistant_version(both):
    for backend in both.values():
        backend.store.seed_assistant("jelly", DEFAULT)
        ticket = start(backend.store, "u1")
        finish(backend.store, ticket)
        rows = backend.execute("select assistant_id, assistant_version from public.runs")
        assert rows == [("jelly", 1)], backend.name


def test_an_agent_is_built_once_per_assistant_version(pg_store):
    """Turns reuse their assistant version's agent; a new version gets its own; the
    version's instructions (with the safety lines) and tools go into it."""
    from types import SimpleNamespace

    from agent.assistants import AssistantAgents
    from agent.persona import SAFETY

    tools = [SimpleNamespace(name=n) for n in ("calculator", "search_docs", "ocean_stats")]
    built = []

    def build(assistant, prompt, its_tools):
        built.append((assistant["version"], prompt, [t.name for t in its_tools]))
        return object()

    fallback = object()
    agents = AssistantAgents(pg_store, tools, build, fallback)
    made = pg_store.create_assistant({"name": "A", "instructions": "Be A.",
                                      "tools": ["ocean_stats", "calculator"]})
    ref = {"id": made["id"], "version": 1}
    first = agents.agent_for(ref)
    assert all(agents.agent_for(dict(ref)) is first for _ in range(50))
    assert built == [(1, "Be A.\n\n" + SAFETY, ["calculator", "ocean_stats"])]
    pg_store.update_assistant(made["id"], {"tools": None})
    second = agents.agent_for({"id": made["id"], "version": 2})
    assert second is not first and built[-1][2] == ["calculator", "search_docs", "ocean_stats"]
    assert agents.agent_for(ref) is first and agents.builds == 2
    assert agents.agent_for(None) is fallback
    assert agents.agent_for({"id": "gone", "version": 1}) is fallback


def test_suggestions_are_kept_with_their_answer(both):
    for backend in both.values():
        store = backend.store
        store.seed_assistant("jelly", DEFAULT)
        ticket = start(store, "u1")
        done = store.finish_run(ticket["run_id"], "succeeded", question="hello?", answer="hi")
        message_id = done["message_id"]
        assert store.suggestions_of("u1", message_id) == {"message_id": message_id,
                                                          "suggestions": []}
        store.set_suggestions(message_id, ["What is DFI?", "And a vault?"])
        assert store.suggestions_of("u1", message_id)["suggestions"] == ["What is DFI?",
                                                                        "And a vault?"]
        with pytest.raises(NotFound):
            store.suggestions_of("someone else", message_id)
        with pytest.raises(NotFound):
            store.suggestions_of("u1", ticket["message_id"])  # the question, not an answer

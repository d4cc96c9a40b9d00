"""The long-history summary's storage contract (issue 26), on both backends: the memory
comes after the summary, the summary comes back with it, refreshes are incremental and
a stale refresh is refused; GET /conversations/<id> carries it."""

from __future__ import annotations

from tests import test_store_contract as contract
from tests.test_store_contract import GREETING, OWNER

backends = contract.backends  # the contract's databases and servers (a module fixture)
both = contract.both  # emptied before each case


def turn(store, token, question, conversation=None):
    """One whole turn; returns (conversation id, what begin_run answered)."""
    ticket = store.start_run(token, GREETING, conversation, "web", "enqueue", OWNER, "m",
                             question, 10, 60)
    assert ticket["ready"], ticket
    store.finish_run(ticket["run_id"], "succeeded", question=question, answer=f"re: {question}")
    return ticket["conversation_id"], ticket


def case_summary_is_incremental(store):
    conv, first = turn(store, "hist", "q1")
    assert first["summary"] is None and first["summary_through"] is None
    for n in range(2, 5):
        turn(store, "hist", f"q{n}", conv)
    state = store.history_after_summary(conv)
    assert [m["content"] for m in state["messages"]][1:] == [
        "q1", "re: q1", "q2", "re: q2", "q3", "re: q3", "q4", "re: q4"]
    assert state["summary"] is None
    through = state["messages"][4]["id"]  # the greeting, q1 .. re: q2
    assert store.set_summary(conv, "asked q1 and q2", through, None) is True
    # a refresh that read the summary before this one moved it is refused
    assert store.set_summary(conv, "stale", through + 2, None) is False
    # not past what is summarised already: refused
    assert store.set_summary(conv, "backwards", through, through) is False
    _, ticket = turn(store, "hist", "q5", conv)
    assert ticket["summary"] == "asked q1 and q2" and ticket["summary_through"] == through
    assert [m["content"] for m in ticket["memory"]] == ["q3", "re: q3", "q4", "re: q4"]
    after = store.history_after_summary(conv)
    assert after["summary_through"] == through
    assert [m["content"] for m in after["messages"]][0] == "q3"
    shown = store.get_conversation("hist", conv)
    assert shown["summary"] == "asked q1 and q2"
    assert len(shown["messages"]) >= 10  # nothing stored was replaced
    return [m["content"] for m in ticket["memory"]], ticket["summary"]


def case_no_summary_without_one(store):
    conv, _ = turn(store, "plain", "hello")
    assert store.get_conversation("plain", conv)["summary"] is None
    assert store.history_after_summary("00000000-0000-0000-0000-000000000000") is None
    return "ok"


CASES = [case_summary_is_incremental, case_no_summary_without_one]


test_contract, test_backends_agree = contract.contract_tests(CASES)

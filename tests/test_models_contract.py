"""The model registry, access, reservation and settlement: the storage contract on
both backends (the same cases and fixtures as tests/test_store_contract.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from storage import files
from storage.base import BadValue, BudgetExceeded, ModelNotAllowed, NotFound
from tests.test_store_contract import (  # noqa: F401 - fixtures
    BACKENDS,
    GREETING,
    OWNER,
    Backend,
    backends,
    both,
    normal,
)


def start(store, token, *, model=None, default="m-small", conversation=None, estimate=(1000, 1000)):
    return store.start_run(token, GREETING, conversation, "web", "enqueue", OWNER, default,
                           "a question", 10, 60, requested_model=model, estimate=estimate)


def finish(store, run_id, usage, status="succeeded"):
    return store.finish_run(run_id, status, question="a question", answer="an answer",
                            usage=usage)


def user_id(store, token) -> int:
    return store.me(token)["user_id"]


def case_registry_prices_are_exact(b: Backend):
    store = b.store
    small = store.put_model("m-small", "Small", 0.15, "0.60", context_window=128000)
    assert small == {"id": "m-small", "name": "Small", "provider": "openai", "input_price": 0.15,
                     "output_price": 0.6, "context_window": 128000, "enabled": True,
                     "default": False}
    store.put_model("m-big", "Big", Decimal("2.5"), Decimal("10"))
    # registered at startup only when missing: the admin's prices stay
    kept = store.ensure_model("m-small", "Small", 9, 9, default=True)
    assert kept["input_price"] == 0.15 and kept["default"] is True
    store.ensure_model("m-free", "Free", default=False)
    assert [m["id"] for m in store.user_models("nobody", "m-small")] == ["m-big", "m-free", "m-small"]
    assert [m["id"] for m in store.user_models("nobody", "m-small") if m["default"]] == ["m-small"]
    store.put_model("m-free", "Free", 0, 0, enabled=False)
    assert "m-free" not in [m["id"] for m in store.user_models("nobody")]
    store.delete_model("m-free")
    with pytest.raises(NotFound):
        store.delete_model("m-free")
    # 1,000 input and 1,000 output tokens of m-small: (1000*0.15 + 1000*0.60) / 1e6
    run = start(store, "payer")
    assert run["model"] == "m-small" and run["reserved_usd"] is None  # unlimited: no reservation
    done = finish(store, run["run_id"], [
        {"kind": "answer", "input_tokens": 1000, "output_tokens": 1000},
        {"kind": "answer", "input_tokens": 3, "output_tokens": 7, "estimated": True}])
    assert done["input_tokens"] == 1003 and done["output_tokens"] == 1007
    assert Decimal(str(done["cost_usd"])) == Decimal("0.00075") + Decimal("0.00000465")
    assert store.me("payer")["spent_usd"] == done["cost_usd"]
    again = finish(store, run["run_id"], [{"kind": "answer", "input_tokens": 5}])  # idempotent
    assert again["cost_usd"] == done["cost_usd"] and store.me("payer")["spent_usd"] == done["cost_usd"]
    title = store.record_usage(run["run_id"], [{"kind": "title", "input_tokens": 100,
                                                 "output_tokens": 10}])
    assert Decimal(str(title["cost_usd"])) == Decimal("0.000021")
    rows = store.usage(token="payer")
    assert len(rows) == 1 and rows[0]["runs"] == 1 and rows[0]["model"] == "m-small"
    assert rows[0]["input_tokens"] == 1103 and rows[0]["output_tokens"] == 1017
    assert rows[0]["cost_usd"] == store.me("payer")["spent_usd"]
    assert store.usage(token="nobody") == [] and store.me("nobody") is None
    assert store.usage(application="elsewhere") == []
    return normal([small, done, rows[0]["cost_usd"]])


def case_access_limits_models_and_refuses_before_storing(b: Backend):
    store = b.store
    store.put_model("m-small", "Small", 1, 1)
    store.put_model("m-big", "Big", 1, 1)
    first = start(store, "limited")
    uid = user_id(store, "limited")
    access = store.set_user_access(uid, models=["m-big"])
    assert access["models"] == ["m-big"] and access["balance_usd"] is None
    with pytest.raises(ModelNotAllowed) as refused:
        start(store, "limited", model="m-small")
    assert refused.value.field == "model" and "m-small" in str(refused.value)
    with pytest.raises(ModelNotAllowed):
        start(store, "limited", model="no-such-model")
    # without a model: the default is not theirs, so the first they may use
    finish(store, first["run_id"], [])
    assert start(store, "limited")["model"] == "m-big"
    with pytest.raises(BadValue) as bad:
        store.set_user_access(uid, models=["m-big", "nope"])
    assert bad.value.field == "models"
    with pytest.raises(NotFound):
        store.set_user_access(999999, balance_usd=1)
    runs = b.execute("select count(*) from public.runs r join public.users u on u.id = r.user_id"
                     " where u.token = 'limited'")[0][0]
    assert runs == 2  # the refused ones stored nothing
    assert store.set_user_access(uid, models=None)["models"] is None
    return normal([access, str(refused.value)])


def case_budget_reserves_settles_and_refuses(b: Backend):
    store = b.store
    store.put_model("m-small", "Small", 1, 1)  # $1 per million tokens
    first = start(store, "budget", estimate=(0, 0))
    uid = user_id(store, "budget")
    finish(store, first["run_id"], [{"input_tokens": 500_000, "output_tokens": 500_000}])  # $1
    access = store.set_user_access(uid, balance_usd="2.5", budget_period="month")
    assert access["spent_usd"] == 1 and access["remaining_usd"] == 1.5 and access["period"] == "month"
    run = start(store, "budget", estimate=(0, 0))
    assert run["reserved_usd"] == 1  # the last run's cost
    second = start(store, "budget", estimate=(0, 0), conversation=store.create_conversation(
        "budget", GREETING)["id"])
    # $1 spent, $2 reserved: nothing left for a third
    with pytest.raises(BudgetExceeded) as spent:
        start(store, "budget")
    assert spent.value.code == "budget_exceeded" and spent.value.period == "month"
    assert "monthly budget" in str(spent.value)
    finish(store, run["run_id"], [{"input_tokens": 100_000, "output_tokens": 100_000}])  # $0.2
    finish(store, second["run_id"], [], status="stopped")
    me = store.me("budget")
    assert me["spent_usd"] == 1.2 and me["remaining_usd"] == 1.3
    store.set_user_access(uid, balance_usd=1)
    with pytest.raises(BudgetExceeded) as gone:
        start(store, "budget")
    assert gone.value.period == "month"
    store.set_user_access(uid, budget_period=None, balance_usd=None)
    assert store.me("budget")["spent_usd"] == 1.2  # all time
    start(store, "budget")  # unlimited again
    return normal([access, me, str(spent.value)])


def case_after_the_answer_one_call_stores_and_charges(b: Backend):
    """The run begins with its tools' context; the suggestions and the model's title are
    each stored with the usage of the call that wrote them, in one call."""
    store = b.store
    store.put_model("m-small", "Small", 1, 2)
    run = start(store, "after")
    assert run["context"] == {"files": [], "memory_enabled": True}
    done = finish(store, run["run_id"], [{"input_tokens": 10, "output_tokens": 10}])
    assert done["cost_usd"] == 0.00003
    charged = store.set_suggestions(done["message_id"], ["What is DFI?"], run_id=run["run_id"],
                                    usage=[{"kind": "suggestion", "input_tokens": 100,
                                            "output_tokens": 50}])
    assert Decimal(str(charged["cost_usd"])) == Decimal("0.0002")
    assert store.suggestions_of("after", done["message_id"])["suggestions"] == ["What is DFI?"]
    titled = store.set_auto_title(run["conversation_id"], "A title", run_id=run["run_id"],
                                  usage=[{"kind": "title", "input_tokens": 20, "output_tokens": 5}])
    assert titled["title"] == "A title" and Decimal(str(titled["usage"]["cost_usd"])) == Decimal("0.00003")
    assert store.set_suggestions(done["message_id"], []) is None  # nothing to charge
    # a title written by the suggestions' call is stored with them, never over the user's
    store.set_suggestions(done["message_id"], ["And DUSD?"], title="From the suggestions")
    assert store.get_conversation("after", run["conversation_id"])["title"] == "From the suggestions"
    store.update_conversation("after", run["conversation_id"], "Mine")
    store.set_suggestions(done["message_id"], ["And DUSD?"], title="Not this one")
    assert store.get_conversation("after", run["conversation_id"])["title"] == "Mine"
    assert store.me("after")["spent_usd"] == 0.00026
    kinds = sorted(r[0] for r in b.execute(
        "select s.kind from public.usage s where s.run_id = %s", (run["run_id"],)))
    assert kinds == ["answer", "suggestion", "title"]
    files.set_memory_enabled(store, "after", GREETING, False)
    assert start(store, "after", conversation=run["conversation_id"])["context"] == {
        "files": [], "memory_enabled": False}
    return normal([charged, titled["usage"]])


CASES = [case_registry_prices_are_exact, case_access_limits_models_and_refuses_before_storing,
         case_budget_reserves_settles_and_refuses, case_after_the_answer_one_call_stores_and_charges]
CASE_IDS = [c.__name__.removeprefix("case_") for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_contract(both, backend, case):  # noqa: F811
    case(both[backend])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_backends_agree(both, case):  # noqa: F811
    seen = {name: case(both[name]) for name in BACKENDS}
    assert seen["postgres"] == seen["supabase"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_runs_overspend_by_at_most_one_run(both, backend):  # noqa: F811
    """Eight runs racing against a balance for about one: the reservations take turns
    on the user, so at most one run more than the balance pays for gets through."""
    store = both[backend].store
    store.put_model("m-small", "Small", 1, 1)
    # a run of 1.5M tokens costs $1.50 (the estimate); the balance is $2
    store.set_user_access(user_id(store, "racer") if store.me("racer") else
                          start(store, "racer", estimate=(0, 0))["user_id"], balance_usd=2)
    for run_id in [r[0] for r in both[backend].execute(
            "select r.id::text from public.runs r where r.status in ('pending', 'running')")]:
        store.finish_run(run_id, "stopped", usage=[])
    conversations = [store.create_conversation("racer", GREETING)["id"] for _ in range(8)]

    def go(conversation):
        try:
            return start(store, "racer", conversation=conversation, estimate=(750_000, 750_000))
        except BudgetExceeded:
            return None

    with ThreadPoolExecutor(8) as pool:
        started = [t for t in pool.map(go, conversations) if t]
    assert len(started) == 2  # $2 - $1.50 > 0 lets exactly one more start
    for ticket in started:
        finish(store, ticket["run_id"], [{"input_tokens": 750_000, "output_tokens": 750_000}])
    me = store.me("racer")
    assert me["spent_usd"] == 3 and me["spent_usd"] - me["balance_usd"] <= 1.5

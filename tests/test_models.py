"""Models, access, usage and budgets through the real server, with the scripted LLM
server reporting usage (tests/fakes/openai_server.py): costs, the refusals on every
transport with nothing stored, and concurrent turns against a small balance."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from tests.helpers import ChatClient, ServerProcess

ADMIN = {"Authorization": "Bearer models-admin-key-0123456789abcdefghij"}
PRICES = (Decimal("0.5"), Decimal("1.5"))  # scripted-model, USD per million tokens


@pytest.fixture(scope="module")
def metered(tmp_path_factory, llm):
    srv = ServerProcess(
        tmp_path_factory.mktemp("models-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-models",
             "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0",
             "MODEL_PRICES": "scripted-model=0.5/1.5",
             "ADMIN_API_KEY": "models-admin-key-0123456789abcdefghij",
             "RATE_LIMIT_TURNS_PER_TOKEN": "0"},
    ).start()
    yield srv
    srv.stop()


def token() -> str:
    return f"mdl-{uuid.uuid4().hex[:10]}"


def cost(usages, prices=PRICES) -> Decimal:
    return sum((Decimal(u["prompt_tokens"]) * prices[0] + Decimal(u["completion_tokens"]) * prices[1])
               / Decimal(1_000_000) for u in usages)


def money(value) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def me(srv, user) -> dict:
    response = srv.get("/me", headers={"X-User-Token": user})
    assert response.status_code == 200, response.text
    return response.json()


def rows(srv, user) -> int:
    """How many messages the user has stored (all conversations)."""
    listed = srv.get("/conversations", headers={"X-User-Token": user}).json()["conversations"]
    return sum(c["message_count"] for c in listed)


def test_cost_is_tokens_times_price_for_every_call_title_included(metered, llm):
    user = token()
    assert metered.get("/me", headers={"X-User-Token": user}).status_code == 404  # nothing made
    assert metered.get("/conversations", headers={"X-User-Token": user}).json()["conversations"] == []
    before = len(llm.usages)
    answer = metered.post("/user_message", {"user_token": user, "message": "What is 6 * 7?"})
    assert answer.status_code == 200, answer.text
    calls = llm.usages[before:]
    # the tool call, the answer from its result (streamed), then the follow-up suggestions
    # with the new conversation's title (one small call, not streamed)
    assert [c["stream"] for c in calls] == [True, True, False]
    assert all(c["model"] == "scripted-model" for c in calls)
    usage = answer.json()["usage"]
    streamed = calls[:2]
    assert usage["model"] == "scripted-model" and usage["estimated"] is False
    assert usage["input_tokens"] == sum(c["prompt_tokens"] for c in streamed)
    assert usage["output_tokens"] == sum(c["completion_tokens"] for c in streamed)
    assert money(usage["cost_usd"]) == cost(streamed)
    mine = me(metered, user)
    assert money(mine["spent_usd"]) == cost(calls)  # the suggestions-and-title call too
    assert mine["balance_usd"] is None and mine["models"] is None and mine["period"] is None
    days = metered.get("/me/usage", headers={"X-User-Token": user}).json()["data"]
    assert len(days) == 1 and days[0]["model"] == "scripted-model" and days[0]["runs"] == 1
    assert sum(money(d["cost_usd"]) for d in days) == money(mine["spent_usd"])
    assert days[0]["input_tokens"] == sum(c["prompt_tokens"] for c in calls)
    # an admin reads the same, narrowed by user
    admin = metered.get(f"/usage?user_id={mine['user_id']}", headers=ADMIN).json()["data"]
    assert admin == days
    assert metered.get("/usage?from=2000-01-01&to=2000-01-02", headers=ADMIN).json() == {"data": []}
    assert metered.get("/usage").status_code == 401


def test_registry_and_the_users_models(metered, llm):
    user = token()
    listed = metered.get("/models", headers={"X-User-Token": user}).json()["data"]
    default = [m for m in listed if m["default"]]
    assert default == [{"id": "scripted-model", "name": "scripted-model", "provider": "openai",
                        "input_price": 0.5, "output_price": 1.5, "context_window": None,
                        "default": True}]
    put = requests.put(
        metered.url + "/models/other-model", headers=ADMIN, timeout=30,
        json={"name": "Other", "input_price": 0.1, "output_price": 0.2, "context_window": 8000})
    assert put.status_code == 200 and put.json()["input_price"] == 0.1
    bad = requests.put(metered.url + "/models/x", headers=ADMIN, timeout=30,
                       json={"name": "X", "input_price": -1, "output_price": 0})
    assert bad.status_code == 400 and bad.json()["field"] == "input_price"
    assert requests.put(metered.url + "/models/x", timeout=30,
                        json={"name": "X", "input_price": 1, "output_price": 0}).status_code == 401
    # the message's model is the one the provider is called with, priced at its prices
    before = len(llm.usages)
    answer = metered.post("/user_message", {"user_token": user, "message": "hello there",
                                            "model": "other-model"})
    assert answer.status_code == 200, answer.text
    assert llm.usages[before]["model"] == "other-model"
    assert money(answer.json()["usage"]["cost_usd"]) == cost(
        llm.usages[before:before + 1], (Decimal("0.1"), Decimal("0.2")))
    assert requests.delete(metered.url + "/models/other-model", headers=ADMIN,
                           timeout=30).status_code == 204
    assert requests.delete(metered.url + "/models/other-model", headers=ADMIN,
                           timeout=30).status_code == 404


def test_a_model_not_allowed_is_403_on_every_transport_and_nothing_is_stored(metered):
    user = token()
    assert metered.post("/user_message", {"user_token": user, "message": "hi"}).status_code == 200
    requests.put(metered.url + "/models/locked-model", headers=ADMIN, timeout=30,
                 json={"name": "Locked", "input_price": 1, "output_price": 1})
    user_id = me(metered, user)["user_id"]
    patched = requests.patch(f"{metered.url}/users/{user_id}", headers=ADMIN, timeout=30,
                             json={"models": ["scripted-model"]})
    assert patched.status_code == 200 and patched.json()["models"] == ["scripted-model"]
    assert [m["id"] for m in metered.get("/models", headers={"X-User-Token": user}).json()["data"]] \
        == ["scripted-model"]
    stored = rows(metered, user)
    for model in ("locked-model", "no-such-model"):
        plain = metered.post("/user_message", {"user_token": user, "message": "hi", "model": model})
        assert plain.status_code == 403 and plain.json()["field"] == "model", plain.text
        sse = metered.post("/user_message", {"user_token": user, "message": "hi", "model": model,
                                             "stream": True})
        assert sse.status_code == 403 and sse.json()["field"] == "model"
        client = ChatClient(metered.url)
        try:
            events = client.send({"user_token": user, "message": "hi", "model": model})
        finally:
            client.close()
        assert events.names() == ["error"] and events.of("error")[0]["field"] == "model"
        assert "not available to you" in events.of("error")[0]["error"]
    assert rows(metered, user) == stored
    unknown_user = requests.patch(f"{metered.url}/users/99999999", headers=ADMIN, timeout=30,
                                  json={"balance_usd": 1})
    assert unknown_user.status_code == 404
    bad = requests.patch(f"{metered.url}/users/{user_id}", headers=ADMIN, timeout=30,
                         json={"models": ["nope"]})
    assert bad.status_code == 400 and bad.json()["field"] == "models"


def test_an_exhausted_balance_is_402_or_an_error_event_and_nothing_is_stored(metered, llm):
    user = token()
    assert metered.post("/user_message", {"user_token": user, "message": "hi"}).status_code == 200
    mine = me(metered, user)
    patched = requests.patch(f"{metered.url}/users/{mine['user_id']}", headers=ADMIN, timeout=30,
                             json={"balance_usd": mine["spent_usd"], "budget_period": "month"})
    assert patched.json()["remaining_usd"] == 0 and patched.json()["period"] == "month"
    stored, calls = rows(metered, user), len(llm.usages)
    plain = metered.post("/user_message", {"user_token": user, "message": "hi"})
    assert plain.status_code == 402 and plain.json()["code"] == "budget_exceeded"
    assert "monthly budget" in plain.json()["error"]
    sse = metered.post("/user_message", {"user_token": user, "message": "hi", "stream": True})
    assert sse.status_code == 402 and sse.json()["code"] == "budget_exceeded"
    client = ChatClient(metered.url)
    try:
        events = client.ask(user, "hi")
    finally:
        client.close()
    assert events.names() == ["error"] and events.of("error")[0]["code"] == "budget_exceeded"
    assert rows(metered, user) == stored and len(llm.usages) == calls  # no model call either
    requests.patch(f"{metered.url}/users/{mine['user_id']}", headers=ADMIN, timeout=30,
                   json={"balance_usd": None})
    assert metered.post("/user_message", {"user_token": user, "message": "hi"}).status_code == 200


def test_five_concurrent_turns_overspend_by_at_most_one_turn(metered, llm):
    user = token()
    first = metered.post("/user_message", {"user_token": user, "message": "hello [slow 0.05]"})
    assert first.status_code == 200
    mine = me(metered, user)
    turn_cost = money(mine["spent_usd"])  # one turn, its title included
    balance = money(mine["spent_usd"]) + turn_cost  # about one more turn
    requests.patch(f"{metered.url}/users/{mine['user_id']}", headers=ADMIN, timeout=30,
                   json={"balance_usd": float(balance)})
    conversations = [metered.post("/conversations", {}, headers={"X-User-Token": user}).json()["id"]
                     for _ in range(5)]

    def turn(conversation):
        return metered.post("/user_message", {"user_token": user, "message": "hello [slow 0.05]",
                                              "conversation_id": conversation})

    with ThreadPoolExecutor(5) as pool:
        statuses = [r.status_code for r in pool.map(turn, conversations)]
    assert sorted(set(statuses)) <= [200, 402] and statuses.count(200) >= 1
    assert statuses.count(402) >= 3
    spent = money(me(metered, user)["spent_usd"])
    assert spent - balance <= turn_cost  # overspent by one turn at most


def test_a_conversation_default_model_and_a_stream_cut_short(metered, llm):
    user = token()
    conversation = metered.post("/conversations", {}, headers={"X-User-Token": user}).json()["id"]
    requests.put(metered.url + "/models/cheap-model", headers=ADMIN, timeout=30,
                 json={"name": "Cheap", "input_price": 0.25, "output_price": 0.5})
    set_model = requests.put(f"{metered.url}/conversations/{conversation}/model", timeout=30,
                             headers={"X-User-Token": user}, json={"model": "cheap-model"})
    assert set_model.status_code == 200 and set_model.json()["model"] == "cheap-model"
    assert requests.put(f"{metered.url}/conversations/{conversation}/model", timeout=30,
                        headers={"X-User-Token": user},
                        json={"model": "nope"}).status_code == 403
    assert requests.put(f"{metered.url}/conversations/{conversation}/model", timeout=30,
                        headers={"X-User-Token": token()},
                        json={"model": None}).status_code == 404
    before = len(llm.usages)
    # the provider drops the connection mid-answer: no usage chunk, so an estimate
    answer = metered.post("/user_message", {"user_token": user, "conversation_id": conversation,
                                            "message": "tell me [long 30] [truncate]"})
    assert answer.status_code == 200 and answer.json()["status"] == "failed"
    assert len(llm.usages) == before  # the stub reported nothing
    assert llm.requests[-1]["model"] == "cheap-model"
    usage = answer.json()["usage"]
    assert usage["model"] == "cheap-model" and usage["estimated"] is True
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    expected = (Decimal(usage["input_tokens"]) * Decimal("0.25")
                + Decimal(usage["output_tokens"]) * Decimal("0.5")) / Decimal(1_000_000)
    assert money(usage["cost_usd"]) == expected
    assert money(me(metered, user)["spent_usd"]) == expected

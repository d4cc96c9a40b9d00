"""The REST endpoints of the real server process, over real HTTP."""

import uuid
from datetime import datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdefghij"}


def token() -> str:
    return f"rest-{uuid.uuid4().hex[:10]}"


def ask(server, user, message, application="pytest"):
    return server.post("/user_message", {"user_token": user, "message": message, "application": application})


def test_user_message_answers(server):
    response = ask(server, token(), "What is 20000 divided by 33.3?")
    assert response.status_code == 200
    body = response.json()
    assert "600.6" in body["response"]
    assert body["sources"] == []


def test_history_lists_greeting_then_exchange(server):
    user = token()
    ask(server, user, "what is 3 * 4")
    history = server.post("/history", {"user_token": user}).json()
    assert [m["type"] for m in history] == ["jelly", "human", "tool", "jelly"]
    assert history[1]["content"] == "what is 3 * 4"
    assert "12" in history[3]["content"]
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in history]
    assert stamps == sorted(stamps)
    # the original JellyChat page renders rows by message_type; `type` stays for our clients
    for row in history:
        assert set(row) >= {"id", "user_id", "message_type", "type", "content", "timestamp",
                            "application"}
        assert row["message_type"] == row["type"]
    assert len({m["user_id"] for m in history}) == 1 and isinstance(history[0]["user_id"], int)
    ids = [m["id"] for m in history]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert history[2]["content"] == "Let's do the math together 🧮"  # the tool_start sentence


def test_history_of_unknown_user_creates_greeting(server):
    history = server.post("/history", {"user_token": token()}).json()
    assert len(history) == 1 and history[0]["type"] == "jelly" and "Jelly" in history[0]["content"]
    assert history[0]["message_type"] == "jelly"
    assert history[0]["id"] is None and history[0]["user_id"] is None  # nobody was created
    assert datetime.fromisoformat(history[0]["timestamp"])


def test_two_users_are_isolated(server):
    alice, bob = token(), token()
    ask(server, alice, "what is 100 + 1")
    ask(server, bob, "what is 200 + 2")
    alice_text = " ".join(m["content"] for m in server.post("/history", {"user_token": alice}).json())
    bob_text = " ".join(m["content"] for m in server.post("/history", {"user_token": bob}).json())
    assert "100 + 1" in alice_text and "200 + 2" not in alice_text
    assert "200 + 2" in bob_text and "100 + 1" not in bob_text
    follow = ask(server, bob, "what did I just ask?").json()["response"]
    assert "200 + 2" in follow and "100 + 1" not in follow


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "hi"}, "user_token"),
        ({"user_token": "u"}, "message"),
        ({"user_token": "u", "message": ""}, "message"),
        ({"user_token": 5, "message": "hi"}, "user_token"),
        ({"user_token": "u", "message": {"a": 1}}, "message"),
        ({"user_token": "u", "message": "y" * 10001}, "message"),
        ({"user_token": "u" * 201, "message": "hi"}, "user_token"),
        ({"user_token": "u", "message": "hi", "application": ["x"]}, "application"),
        ({"user_token": "u", "message": "a\x00b"}, "message"),
    ],
)
def test_user_message_rejects_bad_fields(server, body, field):
    before = server.get("/human_message_count").json()["status"]
    response = server.post("/user_message", body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert field in response.json()["error"]
    assert server.get("/human_message_count").json()["status"] == before


def test_non_json_bodies(server):
    url = server.url + "/user_message"
    plain = requests.post(url, data="hello", headers={"Content-Type": "text/plain"}, timeout=10)
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]
    broken = requests.post(url, data="{bad", headers={"Content-Type": "application/json"}, timeout=10)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    array = requests.post(url, json=[1, 2], timeout=10)
    assert array.status_code == 400 and "JSON object" in array.json()["error"]
    assert server.post("/history", {"user_token": ""}).status_code == 400


def test_unknown_route_and_method_are_json_4xx(server):
    assert server.get("/nope").status_code == 404
    assert server.get("/nope").json()["error"]
    wrong = server.get("/user_message")
    assert wrong.status_code == 405 and wrong.json()["error"]


def test_messages_require_admin_key(server):
    assert server.get("/messages").status_code == 401
    bad = server.get("/messages", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "ADMIN_API_KEY" in bad.json()["error"]


def test_messages_newest_first_and_paginated(server):
    user = token()
    for n in (1, 2, 3):
        ask(server, user, f"what is {n} + 1000", application="pager")
    page = server.get("/messages", params={"limit": 2}, headers=ADMIN)
    assert page.status_code == 200
    first = page.json()
    assert [p["question"] for p in first] == ["what is 3 + 1000", "what is 2 + 1000"]
    assert set(first[0]) >= {"date", "question", "answer", "application"}
    assert first[0]["application"] == "pager" and "1003" in first[0]["answer"]
    older = server.get("/messages_answers", params={"limit": 1, "before": page.headers["X-Next-Before"]},
                       headers=ADMIN).json()
    assert older[0]["question"] == "what is 1 + 1000"
    for params in ({"limit": 0}, {"limit": "x"}, {"limit": 501}, {"before": "yesterday"}):
        assert server.get("/messages", params=params, headers=ADMIN).status_code == 400


def test_human_message_count_badge(server):
    before = server.get("/human_message_count").json()
    ask(server, token(), "hello")
    after = server.get("/human_message_count").json()
    assert set(after) == {"subject", "status", "color"}
    assert after["status"] == before["status"] + 1


def test_healthz(server):
    response = server.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_metrics_time_the_garbage_collector(server):
    """/metrics has every collection's pause by generation and the longest one: the
    collector stops the whole process, hub included, so its pauses are hub lag too."""
    answer = server.post("/user_message", json={"user_token": f"gc-{uuid.uuid4().hex[:8]}",
                                                 "message": "hello", "application": "pytest"})
    assert answer.status_code == 200
    samples = {(s.name, s.labels.get("generation")): s.value
               for family in text_string_to_metric_families(server.get("/metrics").text)
               for s in family.samples}
    assert samples[("jellychat_gc_pause_seconds_count", "0")] > 0
    assert 0 < samples[("jellychat_gc_pause_max_seconds", None)] < 5

"""Operations (issue 32), against a real `python app.py`: a rate limit on every endpoint
that writes or costs (429 with Retry-After), issued user tokens and
REQUIRE_SERVER_TOKENS on every transport, METRICS_TOKEN, the Socket.IO origin check
without PROXY_HOPS, and ADMIN_API_KEY's minimum length."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import requests

from tests.helpers import ROOT, RunClient, ServerProcess

METRICS_TOKEN = "metrics-secret-for-tests"
LIMITED = {
    "KNOWLEDGE_STARTER": "0", "METRICS_TOKEN": METRICS_TOKEN,
    "CORS_ORIGINS": "https://allowed.example",
    "RATE_LIMIT_CONVERSATIONS_PER_TOKEN": "3/minute",
    "RATE_LIMIT_CONVERSATIONS_PER_ADDRESS": "5/minute",
    "RATE_LIMIT_KB_SEARCH_PER_ADDRESS": "3/minute",
    "RATE_LIMIT_FEEDBACK_PER_TOKEN": "3/minute",
    "RATE_LIMIT_USERS_PER_ADDRESS": "3/minute",
}


def token() -> str:
    return f"ops-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("ops-data"), env=LIMITED).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("ops-strict"),
                           env={"KNOWLEDGE_STARTER": "0", "REQUIRE_SERVER_TOKENS": "1"}).start()
    yield server
    server.stop()


def assert_429(response, scope: str) -> None:
    assert response.status_code == 429, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["limit"] == scope and body["retry_after"] >= 1, body


def test_new_conversations_are_limited_per_token_then_per_address(srv):
    first, second = token(), token()
    for _ in range(3):
        assert srv.post("/conversations", {}, headers={"X-User-Token": first}).status_code == 201
    assert_429(srv.post("/conversations", {}, headers={"X-User-Token": first}), "user_token")
    # the refused one was not counted: 3 of the address's 5 are spent
    for _ in range(2):
        assert srv.post("/conversations", {"user_token": second}).status_code == 201
    assert_429(srv.post("/conversations", {"user_token": second}), "address")


def test_knowledge_searches_are_limited_per_address(srv):
    for _ in range(3):
        assert srv.get("/kb/search", params={"q": "masternode"}).status_code in (200, 404)
    assert_429(srv.get("/kb/search", params={"q": "masternode"}), "address")


def test_feedback_is_limited_per_token(srv):
    user = token()
    for _ in range(3):  # not the user's answer: 404, and counted all the same
        r = srv.post("/messages/1/feedback", {"rating": "up"}, headers={"X-User-Token": user})
        assert r.status_code == 404
    assert_429(srv.post("/messages/1/feedback", {"rating": "up"},
                        headers={"X-User-Token": user}), "user_token")
    r = srv.post("/messages/1/feedback", {"rating": "up"}, headers={"X-User-Token": token()})
    assert r.status_code == 404  # another user's bucket


def test_new_users_are_limited_per_address_and_get_256_bit_tokens(srv):
    made = [srv.post("/users") for _ in range(3)]
    assert [r.status_code for r in made] == [201] * 3
    tokens = [r.json()["user_token"] for r in made]
    assert len(set(tokens)) == 3 and all(len(t) == 43 for t in tokens)  # 32 bytes, base64url
    assert made[0].headers["Cache-Control"] == "no-store"
    assert_429(srv.post("/users"), "address")


def test_metrics_need_the_metrics_token_when_set(srv):
    assert srv.get("/metrics").status_code == 401
    assert srv.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    good = srv.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert good.status_code == 200 and "jellychat" in good.text


def test_the_socket_origin_check_ignores_forwarded_headers_without_proxy_hops(srv):
    url = srv.url + "/socket.io/?EIO=4&transport=polling"
    spoofed = {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example",
               "X-Forwarded-Proto": "https"}
    assert requests.get(url, headers=spoofed, timeout=10).status_code == 400
    allowed = requests.get(url, headers={"Origin": "https://allowed.example"}, timeout=10)
    assert allowed.status_code == 200
    own = requests.get(url, headers={"Origin": srv.url}, timeout=10)  # the chat page itself
    assert own.status_code == 200


def test_server_tokens_are_required_on_every_transport(strict):
    made_up = token()
    issued = strict.post("/users").json()["user_token"]
    # REST
    r = strict.post("/history", {"user_token": made_up})
    assert r.status_code == 401 and r.json()["field"] == "user_token"
    assert strict.get("/conversations", headers={"X-User-Token": made_up}).status_code == 401
    assert strict.post("/history", {"user_token": issued}).status_code == 200
    # SSE: refused before any stream starts
    r = strict.post("/user_message", {"user_token": made_up, "message": "hi"},
                    headers={"Accept": "text/event-stream"})
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/json")
    # Socket.IO
    client = RunClient(strict.url)
    try:
        client.start({"user_token": made_up, "message": "hi"})
        got = client.until("final_message", timeout=30)
        assert got.names()[-1] == "error" and got.events[-1][1]["status"] == 401
        client.start({"user_token": issued, "message": "hi"})
        got = client.until("final_message", timeout=60)
        assert got.names()[-1] == "final_message" and got.final["status"] == "succeeded"
    finally:
        client.close()
    # the made-up token created nothing
    assert strict.post("/history", {"user_token": made_up}).status_code == 401


def test_a_short_admin_key_refuses_to_start_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "OPENAI_"))}
    env.update({"ADMIN_API_KEY": "too-short", "DATA_DIR": str(tmp_path), "PORT": "9"})
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ADMIN_API_KEY" in lines[0] and "32" in lines[0], done.stderr
    assert "too-short" not in done.stderr

"""Runs and conversations against the real server, the real langchain-openai client
and a local OpenAI-compatible server that misbehaves like real models do
(text before a tool call, silence, slow tokens) and records closed streams."""

import concurrent.futures
import time
import uuid

import pytest
import requests

from tests.helpers import ChatClient, RunClient, ServerProcess, first_token_figures

TIMEOUT = 2  # TURN_TIMEOUT of the main test server, seconds


def token() -> str:
    return f"runs-{uuid.uuid4().hex[:10]}"


def llm_server(tmp_path_factory, llm, **env) -> ServerProcess:
    return ServerProcess(
        tmp_path_factory.mktemp("runs-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-runs",
             "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0",
             "TURN_TIMEOUT": str(TIMEOUT), "KNOWLEDGE_STARTER": "0", **env},
    ).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    server = llm_server(tmp_path_factory, llm)
    yield server
    server.stop()


@pytest.fixture
def client(srv):
    c = RunClient(srv.url)
    yield c
    c.close()


def headers(user: str) -> dict:
    return {"X-User-Token": user}


def test_stop_closes_the_llm_stream_and_stores_the_partial_answer(srv, llm, client):
    user = token()
    client.start({"user_token": user, "message": "[long 80] [slow 0.1] tell me a story"})
    started = client.until("run_started").of("run_started")[0]
    seen = client.until("final_answer_token")
    seen = client.until("final_answer_token", into=seen)
    seen = client.until("final_answer_token", into=seen)
    closed_before = len(llm.closed)
    stop_at = time.monotonic()
    client.sio.emit("stop", {"run_id": started["run_id"]})
    rest = client.until("final_message", into=seen)
    final_at = time.monotonic()
    final = rest.final
    assert final["status"] == "stopped"
    assert final_at - stop_at < 1.0
    assert rest.tokens == final["message"] and final["message"].startswith("word0 word1")
    assert llm.wait_closed(closed_before + 1, timeout=5)
    record = llm.closed[-1]
    assert record["at"] - stop_at < 1.0 and record["unsent_chunks"] > 10
    # the partial answer is stored with the run's status
    transcript = srv.get(f"/conversations/{started['conversation_id']}", headers=headers(user)).json()
    answer = transcript["messages"][-1]
    assert answer["type"] == "jelly" and answer["run_status"] == "stopped"
    assert answer["content"] == final["message"] and answer["id"] == final["message_id"]


def test_finished_answers_leave_their_connection_to_the_model_open_for_the_next(llm, client):
    """openai's sync stream closed each response at `data: [DONE]`, before the
    chunked body's last chunk, so every model step opened a new connection (a TLS
    handshake with a real provider)."""
    before = llm.connections
    user = token()
    for n in range(4):
        client.start({"user_token": user, "message": f"[long 5] question {n}"})
        assert client.until("final_message").final["status"] == "succeeded"
    # four answers and a title (which may overlap the first answer): two at most
    assert llm.connections - before <= 2


def test_a_reply_kept_open_after_done_is_left_after_a_tenth_of_a_second(llm, client):
    """A model (or proxy) that sends [DONE] but ends the body 5 s later: the answer
    is complete, so the run must not wait for it (the TURN_TIMEOUT is 2 s)."""
    started = time.monotonic()
    client.start({"user_token": token(), "message": "[long 5] [linger 5] hi"})
    final = client.until("final_message").final
    assert final["status"] == "succeeded" and final["message"] == "word0 word1 word2 word3 word4"
    assert time.monotonic() - started < 3.0  # not the 5 s linger (nor TURN_TIMEOUT); loaded-machine margin


def test_text_before_a_tool_call_is_part_of_the_answer(client):
    client.start({"user_token": token(), "message": "[preamble] what is 6 * 7"})
    result = client.until("final_message")
    names = result.names()
    assert names[0] == "run_started"
    assert names.index("tool_start") < names.index("tool_end")
    final = result.final
    assert result.tokens == final["message"]
    assert final["message"].startswith("Let me work that out.")
    assert "The result is 42" in final["message"]
    assert final["status"] == "succeeded"
    call = final["tool_calls"][0]
    assert call["tool"] == "calculator" and call["status"] == "ok"
    assert call["args"] == {"expression": "6 * 7"} and "42" in call["result"]
    end = result.of("tool_end")[0]
    assert end["call_id"] == call["call_id"] == result.of("tool_start")[0]["call_id"]
    assert end["duration_ms"] >= 0 and "42" in end["summary"]


def test_deadline_holds_against_a_silent_model(srv, client):
    client.start({"user_token": token(), "message": "[silent 6] are you there?"})
    began = time.monotonic()
    result = client.until("final_message", timeout=20)
    elapsed = time.monotonic() - began
    assert result.final["status"] == "timed_out"
    assert elapsed < TIMEOUT + 1.0, elapsed
    assert "sorry" in result.final["message"].lower()
    assert result.tokens == result.final["message"]


def test_slow_tokens_cannot_outlive_the_deadline(client):
    client.start({"user_token": token(), "message": "[long 100] [slow 0.1] go on"})
    began = time.monotonic()
    result = client.until("final_message", timeout=20)
    assert result.final["status"] == "timed_out"
    assert time.monotonic() - began < TIMEOUT + 1.0
    assert result.final["message"].startswith("word0") and result.tokens == result.final["message"]


def test_conversations_list_read_rename_delete(srv, client):
    user = token()
    created = requests.post(f"{srv.url}/conversations", json={}, headers=headers(user), timeout=10)
    assert created.status_code == 201
    conv = created.json()
    assert conv["title"] is None and conv["message_count"] == 0
    # over REST the answer comes once the run, its model title included, is done
    final = srv.post("/user_message", {"user_token": user, "message": "what is 2 + 3",
                                       "conversation_id": conv["id"]}).json()
    assert final["conversation_id"] == conv["id"]
    listed = srv.get("/conversations", headers=headers(user)).json()["conversations"]
    assert listed[0]["id"] == conv["id"]  # newest first
    assert listed[0]["title"] == "Scripted title" and listed[0]["message_count"] == 2
    assert {c["id"] for c in listed} >= {conv["id"]}
    full = srv.get(f"/conversations/{conv['id']}", headers=headers(user)).json()
    types = [m["type"] for m in full["messages"]]
    assert types == ["human", "tool", "jelly"]
    tool = full["messages"][1]
    assert tool["content"] == "Let's do the math together 🧮"  # the tool_start sentence
    assert tool["tool_call"]["tool"] == "calculator" and tool["tool_call"]["status"] == "ok"
    assert tool["tool_call"]["args"] == {"expression": "2 + 3"} and "5" in tool["tool_call"]["result"]
    assert all(m["run_id"] == final["run_id"] and m["run_status"] == "succeeded"
               for m in full["messages"])
    # another user sees nothing of it
    other = headers(token())
    assert srv.get(f"/conversations/{conv['id']}", headers=other).status_code == 404
    assert requests.patch(f"{srv.url}/conversations/{conv['id']}", json={"title": "x"},
                          headers=other, timeout=10).status_code == 404
    client.start({"user_token": "someone-else", "message": "hi", "conversation_id": conv["id"]})
    assert client.until("error").names() == ["error"]
    # rename: the user's title is kept over later automatic ones
    renamed = requests.patch(f"{srv.url}/conversations/{conv['id']}", json={"title": "Sums"},
                             headers=headers(user), timeout=10)
    assert renamed.status_code == 200 and renamed.json()["title"] == "Sums"
    assert requests.delete(f"{srv.url}/conversations/{conv['id']}", headers=headers(user),
                           timeout=10).status_code == 204
    assert srv.get(f"/conversations/{conv['id']}", headers=headers(user)).status_code == 404
    ids = [c["id"] for c in srv.get("/conversations", headers=headers(user)).json()["conversations"]]
    assert conv["id"] not in ids


def test_rest_answer_carries_the_run(srv):
    user = token()
    body = srv.post("/user_message", {"user_token": user, "message": "what is 10 / 4"}).json()
    assert "2.5" in body["response"]
    for key in ("sources", "conversation_id", "run_id", "message_id", "status", "tool_calls",
                "usage"):
        assert key in body
    assert body["status"] == "succeeded" and body["tool_calls"][0]["tool"] == "calculator"
    # the JellyChat protocol reads the same default conversation
    history = srv.post("/history", {"user_token": user}).json()
    assert [h["type"] for h in history] == ["jelly", "human", "tool", "jelly"]
    assert history[-1]["content"] == body["response"]


def test_bad_ids_and_other_users_runs(srv):
    user = token()
    assert srv.get("/conversations/not-a-uuid", headers=headers(user)).status_code == 404
    r = srv.post("/user_message", {"user_token": user, "message": "hi", "conversation_id": "nope"})
    assert r.status_code == 400 and r.json()["field"] == "conversation_id"
    r = srv.post("/user_message", {"user_token": user, "message": "hi",
                                   "conversation_id": str(uuid.uuid4())})
    assert r.status_code == 404
    r = srv.post(f"/runs/{uuid.uuid4()}/stop", {}, headers=headers(user))
    assert r.status_code == 404
    assert srv.get("/conversations").status_code == 400  # no token
    assert srv.get("/conversations", headers=headers(user)).json()["conversations"] == []


def test_rest_stop_by_the_owner_only(srv, llm, client):
    user = token()
    client.start({"user_token": user, "message": "[long 80] [slow 0.1] a long one"})
    run_id = client.until("run_started").of("run_started")[0]["run_id"]
    assert srv.post(f"/runs/{run_id}/stop", {}, headers=headers(token())).status_code == 404
    r = srv.post(f"/runs/{run_id}/stop", {}, headers=headers(user))
    assert r.status_code == 202
    assert client.until("final_message").final["status"] == "stopped"


def test_disconnect_stops_the_run(srv, llm):
    user = token()
    c = RunClient(srv.url)
    c.start({"user_token": user, "message": "[long 80] [slow 0.1] keep talking"})
    started = c.until("run_started").of("run_started")[0]
    c.until("final_answer_token")
    closed_before = len(llm.closed)
    c.close()
    assert llm.wait_closed(closed_before + 1, timeout=5)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:  # polling the stored outcome, bounded
        messages = srv.get(f"/conversations/{started['conversation_id']}",
                           headers=headers(user)).json()["messages"]
        status = messages[-1].get("run_status") if messages[-1]["type"] == "jelly" else None
        if status:
            break
        time.sleep(0.05)
    assert status == "stopped"


def test_five_messages_at_once_are_answered_in_order(srv):
    """Three over REST, two over Socket.IO, all at once, in one conversation."""
    user = token()
    conv = requests.post(f"{srv.url}/conversations", json={}, headers=headers(user),
                         timeout=10).json()["id"]
    texts = [f"what did I ask? #{i} [slow 0.01]" for i in range(5)]
    clients = [RunClient(srv.url) for _ in range(2)]

    def over_rest(text):
        return srv.post("/user_message", {"user_token": user, "message": text,
                                          "conversation_id": conv}, timeout=60).json()["status"]

    def over_socket(c, text):
        c.start({"user_token": user, "message": text, "conversation_id": conv})
        return c.until("final_message", timeout=60).final["status"]

    try:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(over_rest, texts[i]) for i in (0, 2, 4)]
            futures += [pool.submit(over_socket, clients[n], texts[i]) for n, i in enumerate((1, 3))]
            statuses = [f.result(timeout=90) for f in futures]
    finally:
        for c in clients:
            c.close()
    assert statuses == ["succeeded"] * 5
    messages = srv.get(f"/conversations/{conv}", headers=headers(user)).json()["messages"]
    pairs = [(m["type"], m["content"]) for m in messages if m["type"] in ("human", "jelly")]
    assert [t for t, _ in pairs] == ["human", "jelly"] * 5
    asked = [c for t, c in pairs if t == "human"]
    answers = [c for t, c in pairs if t == "jelly"]
    assert sorted(asked) == sorted(texts)
    assert answers[0] == "You asked: nothing yet"
    for previous, answer in zip(asked, answers[1:], strict=False):
        assert answer == f"You asked: {previous}"  # each run saw the exchange before it


def test_metrics_say_where_the_time_to_first_token_went(srv):
    """A model silent for 0.3 s: the time to the first token and its phases in /metrics.
    The phases follow each other, so they add up to less than the whole; a second
    message in the same conversation waits behind the first, and that is its queue."""
    user = token()
    before = first_token_figures(srv.url)
    first = RunClient(srv.url)
    try:
        first.start({"user_token": user, "message": "[silent 0.3] [long 3] [slow 0.1] hi"})
        first.until("run_started")
        second = srv.post("/user_message", {"user_token": user, "message": "[long 2] again"},
                          timeout=30).json()
        assert first.until("final_message").final["status"] == "succeeded"
    finally:
        first.close()
    assert second["status"] == "succeeded"
    after = first_token_figures(srv.url)

    def delta(name, phase=None):
        return after.get((name, phase), 0) - before.get((name, phase), 0)

    assert delta("jellychat_first_token_seconds_count") == 2
    assert 0.3 <= delta("jellychat_first_token_seconds_sum") < 10
    for phase in ("admit", "store", "agent", "model"):
        assert delta("jellychat_turn_phase_seconds_count", phase) == 2, phase
    assert delta("jellychat_turn_phase_seconds_count", "queue") == 1  # the second one
    assert delta("jellychat_turn_phase_seconds_sum", "queue") > 0.2  # the first's slow tokens
    assert 0.3 <= delta("jellychat_turn_phase_seconds_sum", "model") < 5  # the silence
    assert 0 < delta("jellychat_turn_phase_seconds_sum", "store") < 2
    phases = sum(delta("jellychat_turn_phase_seconds_sum", p)
                 for p in ("admit", "store", "queue", "agent", "model"))
    assert phases <= delta("jellychat_first_token_seconds_sum")


def test_multitask_reject_and_interrupt(tmp_path_factory, llm):
    for mode in ("reject", "interrupt"):
        server = llm_server(tmp_path_factory, llm, MULTITASK=mode)
        try:
            user = token()
            first = RunClient(server.url)
            first.start({"user_token": user, "message": "[long 80] [slow 0.1] first"})
            run_id = first.until("run_started").of("run_started")[0]["run_id"]
            second = server.post("/user_message", {"user_token": user, "message": "what is 1 + 1"})
            if mode == "reject":
                assert second.status_code == 409 and second.json()["run_id"] == run_id
                server.post(f"/runs/{run_id}/stop", {}, headers=headers(user))
                assert first.until("final_message").final["status"] == "stopped"
            else:
                assert second.status_code == 200 and second.json()["status"] == "succeeded"
                assert first.until("final_message").final["status"] == "stopped"
            first.close()
        finally:
            server.stop()


def test_old_client_sees_only_todays_events(srv):
    """An original JellyChat client registers four events and ignores the rest."""
    old = ChatClient(srv.url)
    try:
        result = old.ask(token(), "what is 3 * 3")
    finally:
        old.close()
    assert set(result.names()) <= {"tool_start", "final_answer_token", "final_message"}
    assert result.of("tool_start")[0]["tool_name"] == "Let's do the math together 🧮"
    assert result.tokens == result.final["message"] and "9" in result.final["message"]

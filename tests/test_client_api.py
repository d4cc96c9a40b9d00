"""The client API against the real server process: SSE streaming of runs,
feedback on answers, references-only answers. The LLM is the local
OpenAI-compatible server (tests/fakes/openai_server.py), reached by the real
langchain-openai client; the knowledge base is the bundled starter kb."""

import json
import time
import uuid

import pytest
import requests

from tests.helpers import RunClient, ServerProcess, scripted_env

ADMIN = {"Authorization": "Bearer client-api-admin-0123456789abcdefgh"}
KEEPALIVE = 0.3  # SSE_KEEPALIVE of this module's server, seconds


def token() -> str:
    return f"capi-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    server = ServerProcess(
        tmp_path_factory.mktemp("client-api"),
        env=scripted_env(llm, TURN_TIMEOUT="4", SSE_KEEPALIVE=str(KEEPALIVE),
                         ADMIN_API_KEY=ADMIN["Authorization"][7:], KNOWLEDGE_STARTER="1"),
    ).start()
    yield server
    server.stop()


def sse(srv, body: dict, accept: str | None = "text/event-stream", timeout: float = 30):
    headers = {"Accept": accept} if accept else {}
    return requests.post(srv.url + "/user_message", json=body, headers=headers, stream=True,
                         timeout=timeout)


def read_events(response, until=("final_message", "error")):
    """Yield (event, data, arrival time) as they arrive; comments as ("comment", text, t)."""
    event = None
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):
        if line.startswith(":"):
            yield "comment", line[1:].strip(), time.monotonic()
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:]), time.monotonic()
            if event in until:
                return


def test_sse_streams_the_run_as_it_happens(srv):
    user = token()
    began = time.monotonic()
    with sse(srv, {"user_token": user, "message": "[long 12] [slow 0.1] tell me"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in read_events(response) if e[0] != "comment"]
    names = [e[0] for e in events]
    assert names[0] == "run_started" and names[-1] == "final_message"
    assert set(names[1:-1]) == {"final_answer_token"}
    tokens = "".join(d["token"] for n, d, _ in events if n == "final_answer_token")
    final = events[-1][1]
    assert tokens == final["message"] and final["message"].startswith("word0 word1")
    assert final["status"] == "succeeded" and final["run_id"] == events[0][1]["run_id"]
    # tokens arrived while the model was still writing (11 gaps of 0.1 s), not all at the end
    first_token = next(t for n, _, t in events if n == "final_answer_token")
    assert events[-1][2] - first_token > 0.6
    assert first_token - began < events[-1][2] - began - 0.6
    stored = srv.get(f"/conversations/{final['conversation_id']}",
                     headers={"X-User-Token": user}).json()["messages"]
    assert stored[-1]["content"] == final["message"] and stored[-1]["id"] == final["message_id"]


def test_sse_by_body_flag_with_tool_events(srv):
    with sse(srv, {"user_token": token(), "message": "what is 6 * 7", "stream": True},
             accept=None) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        names = [e[0] for e in read_events(response) if e[0] != "comment"]
    assert names[0] == "run_started"
    assert names.index("tool_start") < names.index("tool_end") < names.index("final_message")


def test_sse_refusals_are_plain_json_before_any_stream(srv):
    user = token()
    bad = sse(srv, {"user_token": user, "message": ""})
    assert bad.status_code == 400 and bad.headers["Content-Type"] == "application/json"
    assert bad.json()["field"] == "message"
    missing = sse(srv, {"user_token": user, "message": "hi", "conversation_id": str(uuid.uuid4())})
    assert missing.status_code == 404 and "error" in missing.json()
    typed = sse(srv, {"user_token": user, "message": "hi", "stream": "yes"}, accept=None)
    assert typed.status_code == 400 and typed.json()["field"] == "stream"


def test_sse_keep_alive_comments_while_the_model_is_silent(srv):
    with sse(srv, {"user_token": token(), "message": "[silent 1.2] anyone?"}) as response:
        events = list(read_events(response))
    names = [e[0] for e in events]
    assert names[0] == "run_started"
    first_token = names.index("final_answer_token")
    comments = [e for e in events[:first_token] if e[0] == "comment"]
    assert len(comments) >= 2 and comments[0][1] == "keep-alive"
    assert events[-1][1]["status"] == "succeeded"


def test_dropping_the_sse_connection_stops_the_run(srv, llm):
    user = token()
    response = sse(srv, {"user_token": user, "message": "[long 80] [slow 0.1] keep going"})
    stream = read_events(response)
    started = next(stream)[1]
    assert next(e for e in stream if e[0] == "final_answer_token")
    closed_before = len(llm.closed)
    response.close()  # the client goes away mid-answer
    assert llm.wait_closed(closed_before + 1, timeout=5), "the model stream was not closed"
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status is None:  # bounded poll of the stored outcome
        last = srv.get(f"/conversations/{started['conversation_id']}",
                       headers={"X-User-Token": user}).json()["messages"][-1]
        status = last["run_status"] if last["type"] == "jelly" else None
        time.sleep(0.05)
    assert status == "stopped"
    assert llm.closed[-1]["unsent_chunks"] > 10


def test_feedback_round_trip(srv):
    user, other = token(), token()
    answer = srv.post("/user_message", {"user_token": user, "message": "what is 2 + 2",
                                        "application": "fb-test"}).json()
    message_id = answer["message_id"]
    url = f"/messages/{message_id}/feedback"
    rated = srv.post(url, {"user_token": user, "rating": "down", "comment": " wrong sum "})
    assert rated.status_code == 200
    assert rated.json() == {**rated.json(), "message_id": message_id, "rating": "down",
                            "comment": "wrong sum"}
    assert srv.post(url, {"rating": "up"}, headers={"X-User-Token": user}).json()["rating"] == "up"
    # the transcript and the admin Q&A list show it
    messages = srv.get(f"/conversations/{answer['conversation_id']}",
                       headers={"X-User-Token": user}).json()["messages"]
    rated_row = next(m for m in messages if m["id"] == message_id)
    assert rated_row["feedback"]["rating"] == "up" and rated_row["feedback"]["comment"] is None
    assert all(m["feedback"] is None for m in messages if m["id"] != message_id)
    qa = srv.get("/messages", params={"limit": 50}, headers=ADMIN).json()
    pair = next(p for p in qa if p["message_id"] == message_id)
    assert pair["feedback"]["rating"] == "up" and pair["question"] == "what is 2 + 2"
    summary = srv.get("/feedback/summary", headers=ADMIN).json()["days"]
    today = next(d for d in summary if d["application"] == "fb-test")
    assert (today["up"], today["down"], today["total"]) == (1, 0, 1)
    assert srv.get("/feedback/summary").status_code == 401
    # only the user's own answers: others, questions and unknown ids are 404
    assert srv.post(url, {"user_token": other, "rating": "up"}).status_code == 404
    question_id = messages[[m["id"] for m in messages].index(message_id) - 2]["id"]
    assert srv.post(f"/messages/{question_id}/feedback",
                    {"user_token": user, "rating": "up"}).status_code == 404
    assert srv.post("/messages/987654321/feedback",
                    {"user_token": user, "rating": "up"}).status_code == 404
    for body, field in (({"user_token": user, "rating": "meh"}, "rating"),
                        ({"user_token": user}, "rating"),
                        ({"user_token": user, "rating": "up", "comment": "x" * 2001}, "comment"),
                        ({"rating": "up"}, "user_token")):
        bad = srv.post(url, body)
        assert bad.status_code == 400 and bad.json()["field"] == field, (body, bad.text)
    # null withdraws the rating
    withdrawn = srv.post(url, {"user_token": user, "rating": None})
    assert withdrawn.status_code == 200 and withdrawn.json()["rating"] is None
    qa = srv.get("/messages", params={"limit": 50}, headers=ADMIN).json()
    assert next(p for p in qa if p["message_id"] == message_id)["feedback"] is None
    summary = srv.get("/feedback/summary", headers=ADMIN).json()["days"]
    assert all(d["application"] != "fb-test" for d in summary)


def test_references_only_answers_without_the_model(srv, llm):
    asked_before = len(llm.requests)
    user = token()
    body = srv.post("/user_message", {"user_token": user, "references_only": True,
                                      "message": "How much DFI does a masternode need?"}).json()
    assert body["response"] == "" and body["references_only"] is True
    sources = body["sources"]
    assert sources and all(set(s) == {"title", "url", "snippet", "score"} for s in sources)
    assert "masternode" in (sources[0]["title"] + sources[0]["snippet"]).lower()
    assert [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)
    off_topic = srv.post("/user_message", {"user_token": user, "references_only": True,
                                           "message": "zebra xylophone quux"}).json()
    assert off_topic["sources"] == []
    client = RunClient(srv.url)
    try:
        client.start({"user_token": user, "message": "How much DFI does a masternode need?",
                      "references_only": True})
        events = client.until("final_message")
    finally:
        client.close()
    assert events.names() == ["final_message"]
    assert events.final["message"] == "" and events.final["sources"] == sources
    assert len(llm.requests) == asked_before, "references-only must not call the model"
    # nothing was stored: the user still has only the greeting
    history = srv.post("/history", {"user_token": user}).json()
    assert [h["type"] for h in history] == ["jelly"]
    with sse(srv, {"user_token": user, "references_only": True,
                   "message": "How much DFI does a masternode need?"}) as streamed:
        assert [(n, d["sources"]) for n, d, _ in read_events(streamed)] == [("final_message", sources)]
    bad = srv.post("/user_message", {"user_token": user, "references_only": True, "message": ""})
    assert bad.status_code == 400 and bad.json()["field"] == "message"

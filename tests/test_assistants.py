"""Assistants through the real server and the scripted model (issue 26): the REST
CRUD and versions, and for each selection rule, on every transport, that the
model's request carries exactly the chosen assistant's instructions and tools."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from agent.persona import INSTRUCTIONS, SAFETY
from tests.helpers import ChatClient, ServerProcess

ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdefghij"}
EVERY_TOOL = None  # filled from GET /tools


@pytest.fixture(scope="module")
def server(tmp_path_factory, llm):
    srv = ServerProcess(
        tmp_path_factory.mktemp("assistants-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-secret-value",
             "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0",
             "ADMIN_API_KEY": "test-admin-key-0123456789abcdefghij"},
    ).start()
    yield srv
    srv.stop()


def patch(url: str, **kwargs) -> requests.Response:
    return requests.patch(url, timeout=30, **kwargs)


def create(server, **fields) -> dict:
    body = {"name": "Helper", "instructions": f"You are helper {uuid.uuid4().hex[:6]}.",
            **fields}
    response = server.post("/assistants", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def request_for(llm, question: str) -> dict:
    """The model request of the turn that asked `question` (not the title's)."""
    asked = [r for r in llm.requests
             if r["messages"] and r["messages"][-1].get("role") == "user"
             and r["messages"][-1].get("content") == question]
    assert asked, f"no model request asked {question!r}"
    return asked[-1]


def seen_by_model(llm, question: str) -> tuple[str, list[str] | None]:
    body = request_for(llm, question)
    system = [m["content"] for m in body["messages"] if m["role"] == "system"]
    assert len(system) == 1
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    return system[0], tools


def ask(server, question: str, **fields) -> dict:
    response = server.post("/user_message", json={"user_token": fields.pop("token", "asker"),
                                                  "message": question, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_tools_and_crud_with_versions(server):
    tools = server.get("/tools")
    assert tools.status_code == 200
    names = [t["name"] for t in tools.json()]
    assert "calculator" in names and all(t["description"] for t in tools.json())

    body = {"name": "Docs", "instructions": "Only the docs."}
    assert server.post("/assistants", json=body).status_code == 401
    assert server.post("/assistants", json=body,
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    bad = server.post("/assistants", json={**body, "tools": ["calculator", "nope"]}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["field"] == "tools"
    assert "nope" in bad.json()["error"]
    missing = server.post("/assistants", json={"name": "x"}, headers=ADMIN)
    assert missing.status_code == 400 and missing.json()["field"] == "instructions"

    made = create(server, name="Docs", tools=["calculator"], public=False,
                  suggested_questions=["What is DFI?"], model="gpt-4.1-mini")
    assert made["version"] == 1 and made["tools"] == ["calculator"]
    assert made["model"] == "gpt-4.1-mini" and made["default"] is False
    patched = patch(f"{server.url}/assistants/{made['id']}",
                           json={"instructions": "Docs v2."}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["version"] == 2
    assert patched.json()["tools"] == ["calculator"]  # what was not sent is kept
    assert patch(f"{server.url}/assistants/{made['id']}", json={"name": None},
                        headers=ADMIN).json()["field"] == "name"
    versions = server.get(f"/assistants/{made['id']}/versions").json()
    assert [(v["version"], v["instructions"]) for v in versions] == [
        (1, made["instructions"]), (2, "Docs v2.")]

    public = [a["id"] for a in server.get("/assistants").json()]
    everyone = [a["id"] for a in server.get("/assistants", headers=ADMIN).json()]
    assert public[0] == "jelly" and made["id"] not in public and made["id"] in everyone
    assert server.get(f"/assistants/{made['id']}").json()["version"] == 2
    jelly = server.get("/assistants/jelly").json()
    assert jelly["default"] is True and jelly["instructions"] == INSTRUCTIONS

    assert requests.delete(f"{server.url}/assistants/jelly", headers=ADMIN).status_code == 409
    assert requests.delete(f"{server.url}/assistants/{made['id']}").status_code == 401
    assert requests.delete(f"{server.url}/assistants/{made['id']}",
                           headers=ADMIN).status_code == 204
    assert server.get(f"/assistants/{made['id']}").status_code == 404
    assert len(server.get(f"/assistants/{made['id']}/versions").json()) == 2  # kept


def test_each_selection_rule_reaches_the_model(server, llm):
    every = [t["name"] for t in server.get("/tools").json()]
    app = f"app-{uuid.uuid4().hex[:6]}"
    by_app = create(server, applications=[app], tools=["calculator"])
    by_conv = create(server, tools=[])
    by_message = create(server, tools=["calculator", every[-1]])

    # 4. the default: Jelly's instructions, every tool
    final = ask(server, "default rule?", application="web")
    system, tools = seen_by_model(llm, "default rule?")
    assert system == INSTRUCTIONS.rstrip() + "\n\n" + SAFETY
    assert tools == [t for t in every if t != "conversation_files"]  # that one needs ready files
    assert final["assistant"] == {"id": "jelly", "version": 1}

    # 3. the application's
    final = ask(server, "application rule?", application=app)
    system, tools = seen_by_model(llm, "application rule?")
    assert system.startswith(by_app["instructions"]) and system.endswith(SAFETY)
    assert INSTRUCTIONS not in system
    assert tools == ["calculator"]
    assert final["assistant"] == {"id": by_app["id"], "version": 1}

    # 2. the conversation's, over the application's
    conversation = server.post("/conversations", json={"assistant_id": by_conv["id"]},
                               headers={"X-User-Token": "asker"})
    assert conversation.status_code == 201 and conversation.json()["assistant_id"] == by_conv["id"]
    conv_id = conversation.json()["id"]
    final = ask(server, "conversation rule?", application=app, conversation_id=conv_id)
    system, tools = seen_by_model(llm, "conversation rule?")
    assert system.startswith(by_conv["instructions"]) and tools == []
    assert final["assistant"]["id"] == by_conv["id"]

    # 1. the message's, over the conversation's: REST, SSE and Socket.IO alike
    final = ask(server, "message rule rest?", application=app, conversation_id=conv_id,
                assistant_id=by_message["id"])
    assert final["assistant"]["id"] == by_message["id"]
    stream = requests.post(f"{server.url}/user_message", stream=True, timeout=60, json={
        "user_token": "asker", "message": "message rule sse?", "conversation_id": conv_id,
        "assistant_id": by_message["id"], "stream": True})
    finals = [json.loads(line[6:]) for line in stream.iter_lines(decode_unicode=True)
              if line.startswith("data: ") and '"assistant"' in line]
    assert finals[-1]["assistant"]["id"] == by_message["id"]
    client = ChatClient(server.url)
    try:
        events = client.send({"user_token": "asker", "message": "message rule socket?",
                              "conversation_id": conv_id, "assistant_id": by_message["id"]})
        assert events.final["assistant"]["id"] == by_message["id"]
        refused = client.send({"user_token": "asker", "message": "unknown?",
                               "assistant_id": "nobody"})
        assert refused.of("error")[0]["field"] == "assistant_id"
    finally:
        client.close()
    for question in ("message rule rest?", "message rule sse?", "message rule socket?"):
        system, tools = seen_by_model(llm, question)
        assert system.startswith(by_message["instructions"]), question
        assert tools == ["calculator", every[-1]], question
    unknown = server.post("/user_message", json={"user_token": "asker", "message": "x?",
                                                 "assistant_id": "nobody"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "assistant_id"

    # a new version answers the next turn; the run says which
    patch(f"{server.url}/assistants/{by_conv['id']}",
                 json={"instructions": "Second version."}, headers=ADMIN)
    final = ask(server, "second version?", conversation_id=conv_id)
    assert seen_by_model(llm, "second version?")[0].startswith("Second version.")
    assert final["assistant"] == {"id": by_conv["id"], "version": 2}

    # deleted: the conversation falls back to the application's assistant
    requests.delete(f"{server.url}/assistants/{by_conv['id']}", headers=ADMIN)
    final = ask(server, "after delete?", conversation_id=conv_id, application=app)
    assert final["status"] == "succeeded" and final["assistant"]["id"] == by_app["id"]
    assert seen_by_model(llm, "after delete?")[1] == ["calculator"]

    # PATCH binds (and "" unbinds) a conversation
    bound = patch(f"{server.url}/conversations/{conv_id}",
                         json={"assistant_id": by_message["id"]}, headers={"X-User-Token": "asker"})
    assert bound.status_code == 200 and bound.json()["assistant_id"] == by_message["id"]
    assert ask(server, "patched binding?", conversation_id=conv_id)["assistant"]["id"] == \
        by_message["id"]
    bad = patch(f"{server.url}/conversations/{conv_id}", json={"assistant_id": "nobody"},
                       headers={"X-User-Token": "asker"})
    assert bad.status_code == 400 and bad.json()["field"] == "assistant_id"


def test_a_new_visitor_is_greeted_by_the_applications_assistant(server):
    app = f"greet-{uuid.uuid4().hex[:6]}"
    create(server, applications=[app], greeting="Welcome to the docs desk!")
    row = server.post("/history", json={"user_token": f"new-{uuid.uuid4().hex}",
                                        "application": app}).json()
    assert row[0]["content"] == "Welcome to the docs desk!" and row[0]["id"] is None
    default = server.post("/history", json={"user_token": f"new-{uuid.uuid4().hex}"}).json()
    assert default[0]["content"].startswith("Hi, I'm Jelly")
    # the first turn stores the same greeting
    token = f"new-{uuid.uuid4().hex}"
    ask(server, "hello there?", token=token, application=app)
    rows = server.post("/history", json={"user_token": token}).json()
    assert rows[0]["content"] == "Welcome to the docs desk!"


def sse_events(server, **body) -> list[tuple[str, dict]]:
    response = requests.post(f"{server.url}/user_message", stream=True, timeout=60,
                             json={"stream": True, **body})
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events  # the stream ended by itself


def test_follow_up_suggestions_after_each_answer(server, llm):
    final = ask(server, "suggest after this?", token="suggested")
    expected = ["What is DFI?", "How do masternodes work?", "What is a vault?"]
    got = server.get(f"/messages/{final['message_id']}/suggestions",
                     headers={"X-User-Token": "suggested"})
    assert got.status_code == 200 and got.json() == {"message_id": final["message_id"],
                                                     "suggestions": expected}
    asked = [r for r in llm.requests
             if r["messages"][-1]["content"].startswith("Suggest up to three")]
    assert asked and asked[-1]["max_tokens"] <= 100 and "stream" not in asked[-1]
    assert "suggest after this?" in asked[-1]["messages"][-1]["content"]
    assert server.get(f"/messages/{final['message_id']}/suggestions",
                      headers={"X-User-Token": "someone else"}).status_code == 404

    events = sse_events(server, user_token="suggested", message="and over SSE?")
    names = [name for name, _ in events]
    assert names[-2:] == ["final_message", "suggestions"]
    assert events[-1][1]["suggestions"] == expected
    assert events[-1][1]["message_id"] == events[-2][1]["message_id"]

    # an assistant that turned them off: an empty event, nothing asked of the model
    quiet = create(server, suggestions=False)
    before = len([r for r in llm.requests if r["messages"][-1]["content"].startswith("Suggest")])
    events = sse_events(server, user_token="suggested", message="quiet please?",
                        assistant_id=quiet["id"])
    assert events[-1] == ("suggestions", {"run_id": events[-2][1]["run_id"],
                                          "message_id": events[-2][1]["message_id"],
                                          "suggestions": []})
    after = len([r for r in llm.requests if r["messages"][-1]["content"].startswith("Suggest")])
    assert after == before

    # a new conversation's title comes with the suggestions, in the same call; with them
    # off, from a call of its own (REST answers once the title is stored)
    titled = ask(server, "title me with suggestions?", token="titled-1")
    asked = [r["messages"][-1]["content"] for r in llm.requests
             if "title me with suggestions?" in r["messages"][-1]["content"]]
    assert len(asked) == 2 and asked[1].startswith("Suggest up to three") and "'Title: '" in asked[1]
    quiet_titled = ask(server, "title me quietly?", token="titled-2", assistant_id=quiet["id"])
    asked = [r["messages"][-1]["content"] for r in llm.requests
             if "title me quietly?" in r["messages"][-1]["content"]]
    assert len(asked) == 2 and asked[1].startswith("Give a title")
    for final, user in ((titled, "titled-1"), (quiet_titled, "titled-2")):
        listed = server.get("/conversations", headers={"X-User-Token": user}).json()
        assert [c["title"] for c in listed["conversations"]
                if c["id"] == final["conversation_id"]] == ["Scripted title"]

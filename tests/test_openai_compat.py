"""Jelly as an OpenAI-compatible model and an AI SDK chat backend, against the real
server (its model: the scripted OpenAI-compatible server), with the official
`openai` Python SDK and plain HTTP; API keys through the admin endpoints."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzzing
from tests.helpers import ServerProcess, scripted_env
from web.openai_compat import Completion, read_messages

ADMIN_KEY = "compat-admin-0123456789abcdefghijklmno"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEEPALIVE = 0.3


def user() -> str:
    return f"compat-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    server = ServerProcess(tmp_path_factory.mktemp("openai-compat"), env=scripted_env(
        llm, TURN_TIMEOUT="6", SSE_KEEPALIVE=str(KEEPALIVE), ADMIN_API_KEY=ADMIN_KEY,
        RATE_LIMIT_TURNS_PER_TOKEN="4/minute")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(srv) -> str:
    made = srv.post("/api-keys", {"name": "pytest", "application": "compat-tests"},
                    headers=ADMIN)
    assert made.status_code == 201
    return made.json()["key"]


@pytest.fixture
def client(srv, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=30)


def stored(srv, token: str, conversation_id: str) -> list[tuple[str, str]]:
    conversation = srv.get(f"/conversations/{conversation_id}",
                           headers={"X-User-Token": token}).json()
    return [(m["type"], m["content"]) for m in conversation["messages"] if m["type"] != "tool"]


# ---------------------------------------------------------------- API keys

def test_api_keys_are_admin_only_shown_once_and_revocable(srv):
    assert srv.post("/api-keys", {"name": "x"}).status_code == 401
    assert srv.get("/api-keys", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert srv.post("/api-keys", {"name": "  "}, headers=ADMIN).status_code == 400
    made = srv.post("/api-keys", {"name": "revoke me", "assistant_id": "asst-7"}, headers=ADMIN)
    assert made.status_code == 201
    body = made.json()
    assert set(body) >= {"id", "name", "key"} and body["assistant_id"] == "asst-7"
    listed = srv.get("/api-keys", headers=ADMIN).json()
    assert body["id"] in [k["id"] for k in listed]
    assert body["key"] not in json.dumps(listed)
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=body["key"], max_retries=0)
    assert [m.id for m in client.models.list()][0] == "jelly"
    assert requests.delete(f"{srv.url}/api-keys/{body['id']}", headers=ADMIN, timeout=10).status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert requests.delete(f"{srv.url}/api-keys/{body['id']}", headers=ADMIN, timeout=10).status_code == 404
    assert requests.delete(srv.url + "/api-keys/not-a-uuid", headers=ADMIN, timeout=10).status_code == 404


# ---------------------------------------------------------------- the openai SDK

def test_models_list(client):
    models = client.models.list()
    assert "jelly" in [m.id for m in models]
    assert all(m.object == "model" for m in models)


def test_streaming_with_usage_shows_tools_as_reasoning(client):
    chunks = list(client.chat.completions.create(
        model="jelly", stream=True, stream_options={"include_usage": True}, temperature=0.2,
        messages=[{"role": "system", "content": "be nice"},
                  {"role": "user", "content": "what is 20000 / 33.3"}], user=user()))
    choices = [c.choices[0] for c in chunks if c.choices]
    assert choices[0].delta.role == "assistant"
    content = "".join(c.delta.content or "" for c in choices)
    reasoning = "".join(getattr(c.delta, "reasoning_content", None) or "" for c in choices)
    assert "600.6" in content
    assert "calculator: 20000 / 33.3 = 600.6" in reasoning
    assert all(not c.delta.tool_calls for c in choices)  # the server ran the tool
    assert [c.finish_reason for c in choices if c.finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == (chunks[-1].usage.prompt_tokens
                                             + chunks[-1].usage.completion_tokens)
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_not_streaming(client):
    done = client.chat.completions.create(
        model="jelly", messages=[{"role": "user", "content": [{"type": "text", "text": "6 * 7?"}]}],
        user=user(), top_p=0.5, tools=[{"type": "function", "function": {"name": "x"}}])
    assert done.object == "chat.completion"
    message = done.choices[0].message
    assert "42" in message.content and not message.tool_calls
    assert "calculator" in message.reasoning_content
    assert done.choices[0].finish_reason == "stop" and done.usage.total_tokens >= 0


def test_wrong_key_and_unknown_model_raise_the_sdks_errors(srv, client):
    wrong = openai.OpenAI(base_url=srv.url + "/v1", api_key="jelly-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.chat.completions.create(model="jelly", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 401 and denied.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="jelly", messages=[{"role": "system", "content": "x"}])


def system_prompt_of(llm, question: str) -> str:
    """The system prompt of the model request that asked `question`."""
    asked = [r for r in llm.requests if r["messages"][-1].get("content") == question]
    assert asked, f"no model request asked {question!r}"
    return next(m["content"] for m in asked[-1]["messages"] if m["role"] == "system")


def test_a_public_assistant_is_a_model(srv, client, llm):
    made = srv.post("/assistants", {"name": "Pirate", "public": True,
                                    "instructions": "You are a pirate, arr."}, headers=ADMIN)
    assert made.status_code == 201, made.text
    pirate = made.json()["id"]
    hidden = srv.post("/assistants", {"name": "Hidden", "public": False,
                                      "instructions": "You are hidden."}, headers=ADMIN).json()
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "jelly" and pirate in ids and hidden["id"] not in ids
    assert ids.count("jelly") == 1

    question = f"ahoy {uuid.uuid4().hex[:6]}"
    done = client.chat.completions.create(model=pirate, user=user(),
                                          messages=[{"role": "user", "content": question}])
    assert done.model == pirate and done.choices[0].message.content
    assert "You are a pirate, arr." in system_prompt_of(llm, question)
    plain = f"plain {uuid.uuid4().hex[:6]}"
    client.chat.completions.create(model="jelly", user=user(),
                                   messages=[{"role": "user", "content": plain}])
    assert "pirate" not in system_prompt_of(llm, plain)
    # a private assistant is no model, unless the key is bound to it
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model=hidden["id"],
                                       messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.status_code == 404
    bound = srv.post("/api-keys", {"name": "bound", "assistant_id": hidden["id"]},
                     headers=ADMIN).json()["key"]
    as_bound = openai.OpenAI(base_url=srv.url + "/v1", api_key=bound, max_retries=0, timeout=30)
    for model in ("jelly", hidden["id"]):
        asked = f"bound {model} {uuid.uuid4().hex[:6]}"
        as_bound.chat.completions.create(model=model, user=user(),
                                         messages=[{"role": "user", "content": asked}])
        assert "You are hidden." in system_prompt_of(llm, asked)


def test_two_requests_of_one_chat_land_in_one_conversation(srv, client):
    token = user()
    first = client.chat.completions.with_raw_response.create(
        model="jelly", user=token, messages=[{"role": "user", "content": "hello there"}])
    answer = first.parse().choices[0].message.content
    conversation = first.headers["X-Conversation-Id"]
    history = [{"role": "user", "content": "hello there"},
               {"role": "assistant", "content": answer}]
    second = client.chat.completions.with_raw_response.create(
        model="jelly", user=token, messages=[*history, {"role": "user", "content": "what is 6 * 7"}])
    assert second.headers["X-Conversation-Id"] == conversation
    again = second.parse().choices[0].message.content
    assert stored(srv, token, conversation) == [
        ("human", "hello there"), ("jelly", answer), ("human", "what is 6 * 7"), ("jelly", again)]
    # a new chat (no history) is a new conversation
    third = client.chat.completions.with_raw_response.create(
        model="jelly", user=token, messages=[{"role": "user", "content": "hello there"}])
    assert third.headers["X-Conversation-Id"] != conversation


def test_conversation_header_and_the_key_as_user(srv, client):
    chat_id = f"librechat-{uuid.uuid4().hex}"
    ids = {client.chat.completions.with_raw_response.create(
        model="jelly", messages=[{"role": "user", "content": f"hi {n}"}],
        extra_headers={"X-Conversation-Id": chat_id}).headers["X-Conversation-Id"]
        for n in range(2)}
    assert len(ids) == 1
    listed = srv.get("/api-keys", headers=ADMIN).json()
    key_id = next(k["id"] for k in listed if k["name"] == "pytest")
    assert [h for h, _ in stored(srv, f"api-key:{key_id}", ids.pop())] == ["human", "jelly"] * 2


def test_open_webui_user_header_names_the_end_user(srv, client):
    webui_user = str(uuid.uuid4())
    done = client.chat.completions.with_raw_response.create(
        model="jelly", messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-OpenWebUI-User-Id": webui_user})
    assert stored(srv, webui_user, done.headers["X-Conversation-Id"])[0] == ("human", "hello")


def test_rate_limit_is_429_with_retry_after(client):
    token = user()
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(6):
            client.chat.completions.create(model="jelly", user=token,
                                           messages=[{"role": "user", "content": "hi"}])
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    assert limited.value.code == "rate_limit_exceeded"


def test_keep_alive_comments_and_disconnect_stops_the_run(srv, key, llm):
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "jelly", "stream": True, "user": user(),
            "messages": [{"role": "user", "content": "[silent 1] [long 80] [slow 0.1] go"}]}
    with requests.post(srv.url + "/v1/chat/completions", json=body, headers=headers,
                       stream=True, timeout=30) as response:
        lines = response.iter_lines(chunk_size=None, decode_unicode=True)
        seen = []
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and '"content": "word' in line:
                break
        assert any(line == ": keep-alive" for line in seen)
        closed_before = len(llm.closed)
        conversation = response.headers["X-Conversation-Id"]
    assert llm.wait_closed(closed_before + 1, timeout=5), "the model stream was not closed"
    deadline, status = time.monotonic() + 10, None
    while time.monotonic() < deadline and status is None:  # bounded poll of the stored outcome
        last = srv.get(f"/conversations/{conversation}",
                       headers={"X-User-Token": body["user"]}).json()["messages"][-1]
        status = last["run_status"] if last["type"] == "jelly" else None
        time.sleep(0.05)
    assert status == "stopped"


# ---------------------------------------------------------------- Open WebUI's blocks

def test_openwebui_blocks_are_written_and_stripped_from_history():
    completion = Completion(str(uuid.uuid4()), "jelly", openwebui=True)
    completion.add("tool_start", {"call_id": "c1", "tool": "calculator", "tool_name": "Math",
                                  "args": {"expression": "6 * 7"}})
    block = completion.add("tool_end", {"call_id": "c1", "tool": "calculator", "status": "ok",
                                        "summary": "6 * 7 = 42 <b>"})["content"]
    assert block.startswith('<details type="tool_calls" done="true" id="c1" name="calculator" ')
    assert 'arguments="{&quot;expression&quot;: &quot;6 * 7&quot;}"' in block
    assert "&lt;b&gt;" in block and "<summary>Tool Executed</summary>" in block
    answer = block + "It is 42."
    question, history = read_messages([
        {"role": "user", "content": "6 * 7?"}, {"role": "assistant", "content": answer},
        {"role": "user", "content": "and 6 * 8?"}])
    assert question == "and 6 * 8?"
    assert history == [{"type": "human", "content": "6 * 7?"},
                       {"type": "jelly", "content": "It is 42."}]


# ---------------------------------------------------------------- the AI SDK stream

def ui_parts(response) -> list:
    parts = []
    for line in response.iter_lines(chunk_size=None, decode_unicode=True):
        if line.startswith("data: "):
            parts.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return parts


def test_ai_sdk_stream_parts_and_one_conversation_per_chat_id(srv):
    token, chat_id = user(), f"chat-{uuid.uuid4().hex[:12]}"
    body = {"id": chat_id, "trigger": "submit-message", "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "what is 6 * 7"}]}]}
    with requests.post(srv.url + "/api/chat", json=body, headers={"X-User-Token": token},
                       stream=True, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        parts = ui_parts(response)
        conversation = response.headers["X-Conversation-Id"]
    types = [p["type"] if isinstance(p, dict) else p for p in parts]
    assert types[0] == "start" and types[-2:] == ["finish", "[DONE]"]
    assert types.index("tool-input-available") < types.index("tool-output-available")
    assert types.index("text-start") < types.index("text-delta") < types.index("text-end")
    tool = next(p for p in parts if p != "[DONE]" and p["type"] == "tool-input-available")
    assert tool["toolName"] == "calculator" and tool["input"] and tool["dynamic"] is True
    text = "".join(p["delta"] for p in parts if p != "[DONE]" and p["type"] == "text-delta")
    assert "42" in text
    body["messages"] += [{"id": "m2", "role": "assistant", "parts": [{"type": "text", "text": text}]},
                         {"id": "m3", "role": "user", "parts": [{"type": "text", "text": "thanks"}]}]
    with requests.post(srv.url + "/api/chat", json=body, headers={"X-User-Token": token},
                       stream=True, timeout=30) as response:
        assert response.headers["X-Conversation-Id"] == conversation
        ui_parts(response)
    assert [t for t, _ in stored(srv, token, conversation)] == ["human", "jelly"] * 2


def test_ai_sdk_refusals_are_json(srv, key):
    assert requests.post(srv.url + "/api/chat", json={"id": "x", "messages": []},
                         timeout=10).status_code == 401
    bad = requests.post(srv.url + "/api/chat", json={"id": "x", "messages": []},
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert bad.status_code == 400 and "messages" in bad.json()["error"]
    wrong = requests.post(srv.url + "/api/chat", headers={"Authorization": "Bearer jelly-no"},
                          json={"id": "x", "messages": [{"role": "user", "parts": []}]}, timeout=10)
    assert wrong.status_code == 401


# ---------------------------------------------------------------- endpoint limits, issued tokens

@pytest.fixture(scope="module")
def tight(tmp_path_factory, llm):
    """Small endpoint limits, client addresses from X-Forwarded-For, REQUIRE_SERVER_TOKENS."""
    server = ServerProcess(tmp_path_factory.mktemp("openai-tight"), env=scripted_env(
        llm, TURN_TIMEOUT="6", ADMIN_API_KEY=ADMIN_KEY, PROXY_HOPS="1", REQUIRE_SERVER_TOKENS="1",
        RATE_LIMIT_CHAT_COMPLETIONS_PER_TOKEN="2/minute",
        RATE_LIMIT_CHAT_COMPLETIONS_PER_ADDRESS="4/minute", RATE_LIMIT_UI_CHAT_PER_TOKEN="2/minute",
        RATE_LIMIT_MODELS_PER_ADDRESS="3/minute", RATE_LIMIT_API_KEYS_PER_ADDRESS="2/minute",
    )).start()
    yield server
    server.stop()


def address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def tight_key(srv) -> str:
    made = srv.post("/api-keys", {"name": "tight"}, headers={**ADMIN, "X-Forwarded-For": address()})
    assert made.status_code == 201, made.text
    return made.json()["key"]


def sdk(srv, key: str, addr: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=30,
                         default_headers={"X-Forwarded-For": addr})


def issued(srv) -> str:
    return srv.post("/users", headers={"X-Forwarded-For": address()}).json()["user_token"]


def test_v1_endpoint_limits_answer_429_in_openai_shape(tight):
    key, addr = tight_key(tight), address()
    client = sdk(tight, key, addr)
    for _ in range(3):
        assert "jelly" in [m.id for m in client.models.list()]
    with pytest.raises(openai.RateLimitError) as models:
        client.models.list()
    assert models.value.code == "rate_limit_exceeded" and models.value.body["type"] == "requests"
    assert int(models.value.response.headers["Retry-After"]) >= 1
    # chat completions: per key and end user (refused requests count: 404 for the model)
    alice, bob, carol = issued(tight), issued(tight), issued(tight)
    ask = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}

    def refused(error, sender, user):
        with pytest.raises(error) as caught:
            sender.chat.completions.create(user=user, **ask)
        return caught.value

    for _ in range(2):
        refused(openai.NotFoundError, client, alice)
    per_user = refused(openai.RateLimitError, client, alice)
    assert "per user token" in per_user.message
    assert int(per_user.response.headers["Retry-After"]) >= 1
    # another key naming the same end user has its own count (from another address)
    refused(openai.NotFoundError, sdk(tight, tight_key(tight), address()), alice)
    # then per address: alice's 2 and bob's 2 spent the address's 4
    for _ in range(2):
        refused(openai.NotFoundError, client, bob)
    per_address = refused(openai.RateLimitError, client, carol)
    assert "per address" in per_address.message


def test_ui_chat_and_api_key_limits(tight):
    token, addr = issued(tight), address()
    headers = {"X-User-Token": token, "X-Forwarded-For": addr}
    for _ in range(2):
        assert tight.post("/api/chat", {"messages": []}, headers=headers).status_code == 400
    refused = tight.post("/api/chat", {"messages": []}, headers=headers)
    assert refused.status_code == 429 and isinstance(refused.json()["error"], str)
    assert int(refused.headers["Retry-After"]) >= 1
    admin_from = {**ADMIN, "X-Forwarded-For": address()}
    assert tight.post("/api-keys", {"name": "a"}, headers=admin_from).status_code == 201
    assert tight.post("/api-keys", {"name": "b"},  # a wrong admin key counts too
                      headers={**admin_from, "Authorization": "Bearer wrong"}).status_code == 401
    third = tight.post("/api-keys", {"name": "c"}, headers=admin_from)
    assert third.status_code == 429 and third.json()["limit"] == "address"


def test_required_server_tokens_on_v1_and_ai_sdk(tight):
    key = tight_key(tight)
    ask = {"model": "jelly", "messages": [{"role": "user", "content": "hello"}]}
    for extra in ({"user": user()}, {"extra_headers": {"X-User-Token": user()}},
                  {"extra_headers": {"X-OpenWebUI-User-Id": user()}}):
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk(tight, key, address()).chat.completions.create(**ask, **extra)
        assert denied.value.code == "unknown_user_token" and "POST /users" in denied.value.message
    ui = {"id": "chat-1", "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    refused = tight.post("/api/chat", ui, headers={"X-User-Token": user(),
                                                   "X-Forwarded-For": address()})
    assert refused.status_code == 401 and "POST /users" in refused.json()["error"]
    # the key's own user is the server's, and a user it issued is accepted
    own = sdk(tight, key, address()).chat.completions.create(**ask)
    assert own.choices[0].message.content
    named = sdk(tight, key, address()).chat.completions.create(user=issued(tight), **ask)
    assert named.choices[0].message.content
    with requests.post(tight.url + "/api/chat", json=ui, stream=True, timeout=30,
                       headers={"X-User-Token": issued(tight), "X-Forwarded-For": address()}) as ok:
        assert ok.status_code == 200 and ui_parts(ok)[-1] == "[DONE]"


# ---------------------------------------------------------------- fuzzing

@st.composite
def chat_requests(draw) -> tuple[str, bytes | None, dict]:
    """(path, body, headers): OpenAI and UI message requests, well formed or not."""
    path = draw(st.sampled_from(["/v1/chat/completions", "/api/chat", "/v1/models"]))
    role = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), fuzzing.text)
    content = st.one_of(fuzzing.messages, st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url"]), "text": fuzzing.messages}), max_size=3))
    message = st.one_of(
        st.fixed_dictionaries({"role": role, "content": content}),
        st.fixed_dictionaries({"role": role, "parts": st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "file"]), "text": fuzzing.messages}), max_size=2)}),
        fuzzing.json_values)
    body = draw(st.fixed_dictionaries({}, optional={
        "model": st.one_of(st.just("jelly"), fuzzing.json_values),
        "messages": st.one_of(st.lists(message, max_size=4), fuzzing.json_values),
        "stream": st.one_of(st.booleans(), fuzzing.json_values),
        "stream_options": st.one_of(st.just({"include_usage": True}), fuzzing.json_values),
        "user": st.one_of(fuzzing.text, fuzzing.json_values),
        "id": st.one_of(fuzzing.ids, fuzzing.json_values),
        "temperature": fuzzing.json_values,
    }))
    data, _ = draw(st.one_of(st.just((fuzzing.encode(body, draw(st.booleans())), None)),
                             fuzzing.bodies()))
    headers = {"Content-Type": "application/json"}
    if draw(st.integers(0, 3)):
        headers["Authorization"] = "Bearer {key}"
    for name, values in (("Authorization", st.sampled_from(["Bearer {key}", "Bearer x", "x"])),
                         ("X-User-Token", fuzzing.header_text),
                         ("X-Conversation-Id", st.one_of(fuzzing.header_text,
                                                         st.uuids().map(str)))):
        if draw(st.integers(0, 3)) == 0:
            headers[name] = draw(values)
    return path, data, headers


def test_fuzz_both_endpoints_no_server_error(srv, key):
    statuses: dict = {}

    @settings(max_examples=250, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(chat_requests())
    def case(request):
        path, data, headers = request
        if "Authorization" in headers:
            headers["Authorization"] = headers["Authorization"].format(key=key)
        method = "GET" if path == "/v1/models" else "POST"
        with requests.request(method, srv.url + path, data=data, headers=headers, stream=True,
                              timeout=30) as response:
            body = response.content  # the whole stream: every turn ends
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, body[:500]
        if response.status_code >= 400:
            error = json.loads(body)["error"]
            if path.startswith("/v1"):
                assert isinstance(error["message"], str) and isinstance(error["type"], str)
            else:
                assert isinstance(error, str)
        elif response.headers["Content-Type"].startswith("text/event-stream"):
            assert body.rstrip().endswith(b"data: [DONE]") or b'"error"' in body

    case()
    print("statuses:", dict(sorted(statuses.items())))
    assert statuses.get(200, 0) > 10  # valid turns were among them, and answered
    assert srv.get("/healthz").status_code == 200

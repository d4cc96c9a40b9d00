"""The OpenAI path: the real langchain-openai client in the real server, talking
over HTTP to a local OpenAI-compatible server that streams scripted tool calls."""

import uuid

import pytest

from tests.helpers import ChatClient, ServerProcess, under_eventlet


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory, llm):
    srv = ServerProcess(
        tmp_path_factory.mktemp("openai-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-secret-value",
             "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0"},
    ).start()
    yield srv
    srv.stop()


def test_tool_call_then_streamed_answer(openai_server, llm):
    client = ChatClient(openai_server.url)
    try:
        result = client.ask(f"oa-{uuid.uuid4().hex[:8]}", "What is 20000 divided by 33.3?")
    finally:
        client.close()
    names = result.names()
    assert names[0] == "tool_start"
    assert names.index("tool_start") < names.index("final_answer_token")
    assert names[-1] == "final_message"
    assert len(result.of("final_answer_token")) > 1  # streamed (tokens that arrive together go as one)
    assert result.tokens == result.final["message"]
    assert "600.6" in result.final["message"]
    # the model was called twice: the tool call, then the answer from the tool result
    last = [r for r in llm.requests if r.get("tools")][-1]  # not the title request
    assert last["stream"] is True and last["model"] == "scripted-model"
    assert last["messages"][-1]["role"] == "tool" and "600.6" in last["messages"][-1]["content"]
    assert any(t["function"]["name"] == "calculator" for t in last["tools"])
    assert "Jelly" in last["messages"][0]["content"]  # the persona system prompt


def test_memory_reaches_the_model(openai_server, llm):
    user = f"oa-{uuid.uuid4().hex[:8]}"
    first = openai_server.post("/user_message", {"user_token": user, "message": "Tell me about DFI"})
    assert first.status_code == 200
    follow = openai_server.post("/user_message", {"user_token": user, "message": "What did I just ask?"})
    assert follow.json()["response"] == "You asked: Tell me about DFI"


def memory_with_answers(chars: int) -> list:
    """Ten messages of memory whose five answers are `chars` long, and a question."""
    from langchain_core.messages import AIMessage, HumanMessage

    memory = []
    for n in range(5):
        memory += [HumanMessage(f"question {n}"), AIMessage(f"answer {n} " + "x" * chars)]
    return [*memory, HumanMessage("and now?")]


def unsent_model():
    """The project's chat model for a provider nobody listens at (nothing is sent)."""
    from agent.models import make_chat_model
    from settings import Settings

    return make_chat_model(Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                                              "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "m"}))


def test_the_request_body_is_langchains_own():
    """The project's model builds the same chat completions body as langchain-openai's
    ChatOpenAI for every kind of message an agent sends, including earlier answers.
    Both are the real classes; no request is sent."""
    from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    ours = unsent_model()
    stock = ChatOpenAI(model="m", api_key="sk-test", base_url="http://127.0.0.1:9/v1",
                       stream_usage=True, temperature=0.2)
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "call_1", "type": "tool_call"}
    messages = [
        SystemMessage("You are Jelly."), *memory_with_answers(40),
        AIMessage("Let me work that out.", tool_calls=[call]),
        ToolMessage("4", tool_call_id="call_1"),
        AIMessage("named", name="jelly"),
        AIMessage([{"type": "text", "text": "blocks"}]),
        AIMessage("", additional_kwargs={"refusal": "no"}),
        AIMessage("It is 4."),
    ]
    assert ours._get_request_payload(messages, stream=True) == \
        stock._get_request_payload(messages, stream=True)


def test_llm_failure_gives_streamed_apology(openai_server):
    client = ChatClient(openai_server.url)
    user = f"oa-{uuid.uuid4().hex[:8]}"
    try:
        result = client.ask(user, "please explode")
    finally:
        client.close()
    assert "sorry" in result.final["message"].lower()
    assert result.tokens == result.final["message"]
    history = openai_server.post("/history", {"user_token": user}).json()
    assert [m["type"] for m in history] == ["jelly", "human", "jelly"]
    assert history[-1]["content"] == result.final["message"]
    log = openai_server.log()
    assert "failed: " in log and "answered HTTP 500" in log  # one line, the cause
    assert "sk-test-secret-value" not in log


def test_streamed_replies_give_their_connections_back_under_load():
    """Under eventlet, 300 streamed replies at once, half from a model that keeps
    the body open after [DONE]: the finished ones leave their connection in the
    pool for the next request, and no request stays in the pool. (Reading the rest
    of the body through the response's own iterator closed it inside the time
    limit; a limit that expired while the close waited for the pool's lock left the
    request there for good, about 180 in a burst of 300, until the pool was full.)
    The pool is httpx's own, read through the client's private attributes: no
    public API tells what it holds."""
    answers, requests_left, connections = map(int, under_eventlet("""
        def ask(n):
            linger = "[linger 0.5]" if n % 2 else ""
            return "".join(c.text for c in model.stream(f"[long 10] [slow 0.01] {linger} hi"))
        pile = eventlet.GreenPile(300)
        for n in range(300):
            pile.spawn(ask, n)
        answers = set(pile)
        print(len(answers), len(pool._requests), len(pool.connections))
    """))
    assert answers == 1  # every reply was read whole: the same ten words
    assert requests_left == 0
    assert 0 < connections <= 100  # kept for reuse, up to the client's keep-alive limit


def test_a_request_does_not_go_round_the_hub_once_per_idle_connection():
    """Under eventlet, after 50 replies at once the model client's pool keeps 20 idle
    connections (provider_http.KEPT_IDLE), and one more streamed reply switches green
    threads a handful of times: the pool's check of its idle connections (a
    zero-timeout poll per connection, at each request's start and end) went through
    eventlet's green select before, 202 switches with 50 idle. The switches are
    counted with greenlet's trace hook; the pool is httpx's own."""
    idle, switches, words = map(int, under_eventlet("""
        ask = lambda text: "".join(c.text for c in model.stream(text))
        switches, answer = switches_of_one_more(ask, "[silent 0.5] [long 3] hi", 50, "[long 3] hi")
        print(len(pool.connections), switches, len(answer.split()))
    """))
    assert 15 <= idle <= 20 and words == 3  # fewer if the machine is slow to start them
    assert switches < 20  # 2 x idle and more through the green select


def test_replies_over_https_share_one_connection(tmp_path):
    """Under eventlet, three streamed replies in a row from the stub over HTTPS (a
    certificate of its own, trusted through SSL_CERT_FILE) leave one kept-alive
    connection in the pool: one TLS handshake, not one per model step. The pool is
    httpx's own, read through the client's private attributes."""
    out = under_eventlet("""
        words = [len("".join(c.text for c in model.stream("[long 4] hi")).split())
                 for _ in range(3)]
        print(url.split(":")[0], *words, len(pool.connections))
    """, tls_dir=tmp_path)
    assert out == ["https", "4", "4", "4", "1"]


def test_a_connection_to_the_provider_outlives_a_pause_between_turns(tmp_path):
    """Under eventlet, over HTTPS: a reply, then a pause, then the next reply goes out
    on the same connection (no new TLS handshake) while the pause is shorter than
    LLM_KEEPALIVE, and on a new one once it is longer. The SDK's 5 s dropped the
    connection of every turn that came after a person's pause. (The 0.6 s pause is
    the idle time being tested, not a wait for something to happen.) The chat model,
    the title writer and the OpenAI embedder share the one pool. The pool is httpx's
    own, read through the client's private attributes."""
    out = under_eventlet("""
        import time
        from agent.models import make_title_writer
        from knowledge.embeddings import make_embedder

        def same_connection_after_a_pause(chat_model):
            held = chat_model.root_client._client._transport._pool
            ask = lambda: "".join(c.text for c in chat_model.stream("[long 3] hi"))
            ask()
            before = list(held.connections)
            time.sleep(0.6)
            ask()
            return int(len(before) == 1 and held.connections == before)

        settings = Settings.from_env(embeddings="openai")
        short = make_chat_model(Settings.from_env(llm_keepalive=0.3))
        shared = {id(model.root_client._client),
                  id(make_title_writer(settings).client._client),
                  id(make_embedder(settings)._client.client._client._client)}
        print(same_connection_after_a_pause(model), same_connection_after_a_pause(short),
              len(shared), settings.llm_keepalive)
    """, tls_dir=tmp_path)
    assert out == ["1", "0", "1", "60.0"]


def test_a_connection_the_provider_closed_while_idle_is_replaced_without_an_error(tmp_path):
    """Under eventlet, over HTTPS, with a provider that closes a connection after
    0.2 s idle (as servers and proxies do, sooner than LLM_KEEPALIVE's 60 s): after
    0.5 s the pool sees the connection was closed, and the next reply comes on a new
    one, without an error (the model client retries nothing). (The pause is the idle
    time being tested, not a wait for something to happen.) The pool is httpx's
    own, read through the client's private attributes."""
    out = under_eventlet("""
        import time
        ask = lambda: len("".join(c.text for c in model.stream("[long 3] hi")).split())
        first = ask()
        before = list(pool.connections)
        time.sleep(0.5)
        second = ask()
        print(first, second, len(before), int(pool.connections != before),
              model.max_retries, Settings.from_env().llm_keepalive)
    """, tls_dir=tmp_path, stub_args=("--idle-timeout", "0.2"))
    assert out == ["3", "3", "1", "1", "0", "60.0"]


def test_a_stop_while_a_reply_closes_leaves_nothing_in_the_pool():
    """Under eventlet, a stop that arrives while a finished reply's close waits for
    the HTTP client's pool lock (another green thread holds it) waits for the close:
    the request leaves the pool and its connection stays for the next one. Thrown
    into that wait, the stop cut the close short, which cannot be repeated: the
    request stayed in the pool for good, holding its connection. The pool and its
    lock are httpx's own, reached through the client's private attributes."""
    reason, requests_left, connections, *answer = under_eventlet("""
        import compat
        from agent.cancel import CancelHandle, RunCancelled
        from agent.steps import RunSteps, current_run
        cancel = CancelHandle()

        def hold_the_pool():
            with pool._optional_thread_lock:
                cancel.cancel("stopped")  # arrives while the reply's close waits
                eventlet.sleep(0.05)

        drain = compat._drain

        def drain_then_let_the_holder_in(response):  # the body is read: the close comes next
            drain(response)
            eventlet.spawn(hold_the_pool)
            eventlet.sleep(0)

        compat._drain = drain_then_let_the_holder_in
        current_run.set(RunSteps(cancel, lambda step, words: None))
        try:
            outcome = model.invoke("[long 3] hi").text
        except RunCancelled:
            outcome = "cut short"
        eventlet.sleep(0.1)
        print(cancel.reason, len(pool._requests), len(pool.connections), outcome)
    """)
    assert reason == "stopped"
    assert (requests_left, connections) == ("0", "1")
    assert answer == ["word0", "word1", "word2"]  # the reply had been read whole

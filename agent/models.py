"""The chat-model factory: OpenAI-compatible when configured, else the offline model."""

from __future__ import annotations

import functools
import json

from langchain_core.messages import AIMessage, ChatMessage

from agent.cancel import green, uninterruptible
from agent.steps import model_step_in_run
from provider_http import provider_http_client

DRAIN_SECONDS = 0.1  # what the SDK's async stream allows for the same read


class RawStreamingCompletions:
    """`chat.completions` for ChatOpenAI's streaming requests: the body goes out
    as LangChain built it and the chunks come back as the JSON dicts they arrive as.

    The `openai` SDK walks every request parameter through its typed-dict
    transform (for each message and tool schema it tries every member of a
    union type) and builds a pydantic model per streamed chunk, which LangChain
    then dumps back to a dict. On plain JSON that LangChain already built in
    the API's format, both are work with no effect, and together they were the
    largest CPU cost of a turn (13 tool schemas, 8 KB per request; 50 chunks
    per answer). Everything else (auth, retries, timeouts, errors) is the SDK's
    own request path. Other calls go to the SDK unchanged.
    """

    def __init__(self, completions):
        self._completions = completions
        self._tools_json: dict[int, tuple[list, bytes]] = {}  # id -> (the list, its JSON)

    def _body(self, params: dict):
        """The request body as JSON bytes, the tool schemas serialized once per list.

        The agent sends the same bound tool list (13 schemas, 8 KB) on every
        model step; encoding it each time was most of the request's JSON work.
        Anything json cannot encode goes to the SDK as a dict, as before.
        """
        tools = params.get("tools")
        try:
            if not tools:
                return json.dumps(params).encode()
            hit = self._tools_json.get(id(tools))
            if hit is None or hit[0] is not tools:
                hit = (tools, json.dumps(tools).encode())
                if len(self._tools_json) < 16:
                    self._tools_json[id(tools)] = hit
            rest = json.dumps({k: v for k, v in params.items() if k != "tools"}).encode()
        except (TypeError, ValueError):
            return params
        if rest == b"{}":
            return b'{"tools": ' + hit[1] + b"}"
        return rest[:-1] + b', "tools": ' + hit[1] + b"}"

    def create(self, **params):
        if not params.get("stream") or "response_format" in params:
            return self._completions.create(**params)
        from openai._base_client import make_request_options

        options = {key: params.pop(key) for key in
                   ("extra_headers", "extra_query", "extra_body", "timeout") if key in params}
        return self._completions._post(
            "/chat/completions", body=self._body(params),
            options=make_request_options(**options, security={"bearer_auth": True}),
            cast_to=object, stream=True, stream_cls=_keep_alive_stream_class(),
        )

    def __getattr__(self, name):
        return getattr(self._completions, name)


@functools.cache
def _keep_alive_stream_class():
    """openai's `Stream` that reads a finished reply to its end, so that its
    connection goes back to the pool.

    The SDK's sync stream stops at `data: [DONE]` and closes the response before
    the chunked body's last (empty) chunk is read; httpx then cannot reuse the
    connection and drops it, so every streamed model step opened a new one (with a
    real provider, a TLS handshake before the first token). The SDK's async
    stream reads the rest for HTTP/1.1, within 0.1 s; this does the same, where a
    wait can be bounded (under eventlet, which is how the server runs). Its close
    is `uninterruptible`: a stop thrown into it left the request in the pool.
    """
    from openai import Stream

    class KeepAliveStream(Stream[object]):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            close = self.response.close

            def close_whole():  # the SDK closes at [DONE], inside the run's interruptible read
                with uninterruptible():
                    close()

            self.response.close = close_whole

        def _iter_events(self):
            for sse in super()._iter_events():
                if sse.data.startswith("[DONE]") and self.response.http_version == "HTTP/1.1":
                    _drain(self.response)
                yield sse

    return KeepAliveStream


def _drain(response) -> None:
    """Read what is left of a finished reply's body for at most DRAIN_SECONDS.

    It reads the raw body, which does not close the response when it ends: the SDK
    closes it afterwards, outside the time limit. (Closing waits for the
    connection pool's lock; a time limit that expired there left the request in
    the pool for good, and the pool filled up after two bursts of 400 turns.)
    Whatever happens, the answer is complete: at worst the connection is dropped.
    """
    if not green():
        return  # a blocked thread's read could not be bounded
    import eventlet

    try:
        with eventlet.Timeout(DRAIN_SECONDS, False):
            for _ in response.stream:
                pass
    except Exception:  # noqa: BLE001 - a broken connection after [DONE] loses nothing
        pass


def _chat_openai_class():
    """ChatOpenAI that converts the agent's tool schemas once, not on every model call.

    The agent binds its tools before each model step; converting 13 tools to the
    API's JSON schemas (pydantic schema generation, reference resolution) cost
    about a millisecond of CPU per turn. The tools are built once per process, so
    the binding is kept per tool list and options (a few entries at most).
    """
    from langchain_openai import ChatOpenAI
    from pydantic import PrivateAttr

    class ChatOpenAIBoundOnce(ChatOpenAI):
        _bound: dict = PrivateAttr(default_factory=dict)

        def bind_tools(self, tools, **kwargs):
            key = (tuple(id(t) for t in tools), repr(sorted(kwargs.items())))
            hit = self._bound.get(key)
            if hit is None:
                # the tools are kept with the binding, so their ids stay theirs
                hit = (list(tools), super().bind_tools(tools, **kwargs))
                if len(self._bound) < 16:
                    self._bound[key] = hit
            return hit[1]

        def _get_request_payload(self, input_, *, stop=None, **kwargs):
            """Earlier answers go to LangChain's conversion as assistant ChatMessages.

            The JSON is the same, but langchain-openai converts an AIMessage by looping
            over its content looking for audio blocks, which for text is every
            character: 27 µs per 1,000 characters of every answer in the memory, on
            every model step, before the request goes out. Only plain text answers
            are swapped (no tool calls, name or extra fields), and never for the
            Responses API, whose conversion differs.
            """
            if isinstance(input_, list) and not self._use_responses_api(
                    {**kwargs, **self.model_kwargs}):
                input_ = [as_plain_assistant(m) for m in input_]
            return super()._get_request_payload(input_, stop=stop, **kwargs)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            """Within a run, the reply is streamed into it (agent/steps.py); the model
            is built with `streaming` unset, so that LangChain calls this rather than
            streaming through its callbacks."""
            streamed = model_step_in_run(lambda: self._stream(messages, stop=stop, **kwargs))
            if streamed is not None:
                return streamed
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    return ChatOpenAIBoundOnce


def as_plain_assistant(message):
    """A plain text answer (an AIMessage with string content and nothing else) as
    ChatMessage(role="assistant"); any other message as it is."""
    if (type(message) is AIMessage and type(message.content) is str and not message.tool_calls
            and not message.invalid_tool_calls and not message.additional_kwargs
            and message.name is None):
        return ChatMessage(role="assistant", content=message.content)
    return message


def make_chat_model(settings):
    """ChatOpenAI (streaming) with OPENAI_API_KEY or OPENAI_BASE_URL; otherwise offline."""
    if not settings.uses_openai:
        from agent.offline import OfflineChatModel  # the LLM path never loads the offline model

        return OfflineChatModel()

    model = _chat_openai_class()(
        model=settings.openai_model,
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url or None,
        # streamed within a run by `_generate` (see above); `streaming=True` would make
        # LangChain stream through callbacks instead
        stream_usage=True,
        timeout=settings.llm_timeout,
        # retried by the agent within the turn's budget (agent/retry.py), not by the client,
        # which would sleep out any Retry-After whatever time the turn has left
        max_retries=0,
        temperature=0.2,
        http_client=provider_http_client(settings.llm_keepalive),
    )
    model.client = RawStreamingCompletions(model.client)
    return model


class TitleWriter:
    """Asks the model for a conversation title: one small request, not streamed.

    It goes through the openai client's public `post` (auth, timeout and errors
    as for any call) with a JSON body and reads the JSON reply as a dict: a
    LangChain model call around it (messages and results as objects, callbacks)
    cost more CPU than the request itself, and every new conversation makes one.
    """

    def __init__(self, client, model: str, max_tokens: int = 20):
        self.client = client
        self.model = model
        self.max_tokens = max_tokens

    def __call__(self, prompt: str) -> str:
        reply = self.client.post("/chat/completions", cast_to=object, body={
            "model": self.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens, "temperature": 0.2,
        })
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            return ""  # a reply without a message: no title


def make_title_writer(settings) -> TitleWriter | None:
    """Titles from the model with OPENAI_API_KEY or OPENAI_BASE_URL; None offline (the
    question's words stay the title)."""
    if not settings.uses_openai:
        return None
    import openai

    client = openai.OpenAI(api_key=settings.openai_api_key or "not-needed",
                           base_url=settings.openai_base_url or None,
                           timeout=min(10.0, settings.llm_timeout), max_retries=0,
                           http_client=provider_http_client(settings.llm_keepalive))
    return TitleWriter(client, settings.openai_model)


def describe_model(settings) -> str:
    """A log-safe description of the configured model (never the key)."""
    if not settings.uses_openai:
        return "offline model (no OPENAI_API_KEY / OPENAI_BASE_URL)"
    where = settings.openai_base_url or "api.openai.com"
    return f"{settings.openai_model} via {where}"

"""The chat-model factory: OpenAI-compatible when configured, else the offline model."""

from __future__ import annotations

import json

import compat
from agent.steps import bound_once, model_step_in_run, run_model
from provider_http import provider_http_client


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
    own request path (compat.post_raw_stream). Other calls go to the SDK unchanged.
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
        options = {key: params.pop(key) for key in
                   ("extra_headers", "extra_query", "extra_body", "timeout") if key in params}
        stream = compat.post_raw_stream(self._completions, self._body(params), options)
        if stream is None:  # the SDK has another shape: its own typed path
            return self._completions.create(**params, **options)
        return stream

    def __getattr__(self, name):
        return getattr(self._completions, name)


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
            return bound_once(self._bound, tools, kwargs, super().bind_tools)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            """Within a run, the reply is streamed into it (agent/steps.py); the model
            is built with `streaming` unset, so that LangChain calls this rather than
            streaming through its callbacks."""
            model = run_model()
            if model and model != self.model_name:
                kwargs = {**kwargs, "model": model}  # the run's model from the registry
            streamed = model_step_in_run(lambda: self._stream(messages, stop=stop, **kwargs),
                                         messages)
            if streamed is not None:
                return streamed
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    return ChatOpenAIBoundOnce


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
        return self.write(prompt)[0]

    def write(self, prompt: str, model: str | None = None) -> tuple[str, dict | None]:
        """The title and the call's usage record (None when the reply has no usage)."""
        reply = self.client.post("/chat/completions", cast_to=object, body={
            "model": model or self.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens, "temperature": 0.2,
        })
        usage = reply.get("usage") if isinstance(reply, dict) else None
        record = None
        if isinstance(usage, dict):
            record = {"kind": "title", "input_tokens": int(usage.get("prompt_tokens") or 0),
                      "output_tokens": int(usage.get("completion_tokens") or 0),
                      "estimated": False}
        try:
            return str(reply["choices"][0]["message"]["content"] or ""), record
        except (KeyError, IndexError, TypeError):
            return "", record  # a reply without a message: no title


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

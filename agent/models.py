"""The chat-model factory: OpenAI-compatible when configured, else the offline model."""

from __future__ import annotations

from agent.offline import OfflineChatModel


def _lean_chat_openai():
    """ChatOpenAI that hands messages and tool schemas to the SDK as they are.

    The `openai` SDK walks every request parameter through its typed-dict
    transform (aliases, dates, file inputs) before sending: for each message
    and each tool schema it tries every member of the parameter's union type.
    LangChain has already built both as plain JSON in the API's format, on
    which the transform changes nothing, and walking them was the largest CPU
    cost of a turn (13 tool schemas, 8 KB). Passed as `extra_body` they go out
    unchanged in the same JSON body (the SDK merges `extra_body` over the
    transformed parameters, so `messages` there replaces the empty list).
    """
    from langchain_openai import ChatOpenAI

    class LeanChatOpenAI(ChatOpenAI):
        def _get_request_payload(self, input_, *, stop=None, **kwargs):
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "messages" in payload and "response_format" not in payload:
                raw = {"messages": payload["messages"]}
                payload["messages"] = []
                if payload.get("tools"):
                    raw["tools"] = payload.pop("tools")
                payload["extra_body"] = {**(payload.get("extra_body") or {}), **raw}
            return payload

    return LeanChatOpenAI


def make_chat_model(settings):
    """ChatOpenAI (streaming) with OPENAI_API_KEY or OPENAI_BASE_URL; otherwise offline."""
    if not settings.uses_openai:
        return OfflineChatModel()

    return _lean_chat_openai()(
        model=settings.openai_model,
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url or None,
        streaming=True,
        stream_usage=True,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        temperature=0.2,
    )


def make_title_model(settings):
    """A small-budget model for conversation titles; None offline (titles from the question)."""
    if not settings.uses_openai:
        return None
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.openai_model,
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url or None,
        timeout=min(10.0, settings.llm_timeout),
        max_retries=0,
        max_tokens=20,
        temperature=0.2,
    )


def describe_model(settings) -> str:
    """A log-safe description of the configured model (never the key)."""
    if not settings.uses_openai:
        return "offline model (no OPENAI_API_KEY / OPENAI_BASE_URL)"
    where = settings.openai_base_url or "api.openai.com"
    return f"{settings.openai_model} via {where}"

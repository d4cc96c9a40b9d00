"""The chat-model factory: OpenAI-compatible when configured, else the offline model."""

from __future__ import annotations

from agent.offline import OfflineChatModel


def make_chat_model(settings):
    """ChatOpenAI (streaming) with OPENAI_API_KEY or OPENAI_BASE_URL; otherwise offline."""
    if not settings.uses_openai:
        return OfflineChatModel()
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.openai_model,
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url or None,
        streaming=True,
        stream_usage=True,
        timeout=settings.llm_timeout,
        # retried by the agent within the turn's budget (agent/retry.py), not by the client,
        # which would sleep out any Retry-After whatever time the turn has left
        max_retries=0,
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

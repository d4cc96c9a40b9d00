"""Builds the chat service (store, tools, agent) once per app, on first use.

Lazy so that CLI commands that need no database (`flask db sql`) start none.
"""

from __future__ import annotations

import gc
import logging
import threading

from flask import Flask, current_app

from agent.assistants import DEFAULT_ID, AssistantAgents, default_fields
from agent.history import History
from agent.models import TitleWriter, describe_model, make_chat_model, make_title_writer
from agent.persona import SYSTEM_PROMPT
from agent.runner import ChatAgent
from agent.suggestions import Suggester
from agent.turn import Chat
from agent.usage import register_models
from knowledge import prepare_knowledge
from knowledge.retrieval import get_retriever
from storage import StoreError, make_store
from tools import build_tools, tool_sentences
from tools.knowledge import WIKI_KBS, above_threshold

log = logging.getLogger("jellychat")
_lock = threading.Lock()
SUGGESTION_TOKENS = 100  # the small budget of the follow-up suggestions' (and title's) call


def build_chat(settings, store=None, limits=None) -> Chat:
    store = store or make_store(settings)
    store.initialize()
    store.set_run_cap(settings.max_active_runs_per_user)  # enforced by the database
    register_models(settings, store)  # the configured model (and MODEL_PRICES') when missing
    prepare_knowledge(settings, store)  # starter kb, embedder checks
    tools = build_tools(settings, store)
    try:
        converted = store.convert_tool_rows(tool_sentences(tools))
    except StoreError as exc:  # e.g. a Supabase project without the newest migration yet
        log.warning("old tool rows keep their raw text for now: %s", exc)
    else:
        if converted:
            log.info("gave %d tool rows of the pre-run format their tool_start sentence", converted)
    model = make_chat_model(settings)

    def build_agent(assistant: dict, prompt: str, its_tools: list) -> ChatAgent:
        """An assistant's agent: its prompt and tools over the one shared model."""
        return ChatAgent(
            model,
            its_tools,
            prompt,
            max_tool_iterations=settings.max_tool_iterations,
            model_name=settings.openai_model if settings.uses_openai else "offline",
            max_retries=settings.llm_max_retries,
            max_answer_chars=assistant.get("max_answer_chars") or settings.max_answer_chars,
            expects_finish_reason=settings.uses_openai,
        )

    agent = build_agent({}, SYSTEM_PROMPT, tools)
    assistants = AssistantAgents(store, tools, build_agent, agent)
    try:
        default = store.seed_assistant(DEFAULT_ID, default_fields())
    except StoreError as exc:  # a Supabase project without the assistants migration yet
        log.warning("no assistants until the database has the newest migration: %s", exc)
    else:
        assistants.agent_for(default)  # built now: the first turn builds nothing
    log.info(
        "chat ready: store=%s, model=%s, tools=%s",
        store.name, describe_model(settings), ", ".join(t.name for t in tools),
    )
    title_writer = make_title_writer(settings)
    chat = Chat(
        store,
        agent,
        memory_messages=settings.memory_messages,
        max_message_chars=settings.max_message_chars,
        turn_timeout=settings.turn_timeout,
        multitask=settings.multitask,
        title_writer=title_writer,
        retriever=get_retriever(settings, store),
        reference_kbs=WIKI_KBS,
        reference_k=settings.knowledge_top_k,
        reference_filter=lambda _question, chunk: above_threshold(chunk, settings.knowledge_min_score),
        limits=limits,
        assistants=assistants,
        suggester=Suggester(_suggestion_writer(title_writer)),
        history=_history(settings, title_writer),
    )
    chat.usage_estimate = (settings.budget_estimate_input_tokens,
                           settings.budget_estimate_output_tokens)
    chat.recover()
    # What startup built (modules, tools, the compiled graph) lives as long as the process:
    # moved out of the collector's reach, a full collection scans only what turns create.
    # Without it, one collection during a fast stream held the hub for 170 to 300 ms.
    gc.freeze()
    return chat


def _suggestion_writer(title_writer):
    """The title writer's client and model with room for three short questions."""
    if title_writer is None:
        return None
    return TitleWriter(title_writer.client, title_writer.model, max_tokens=SUGGESTION_TOKENS)


def _history(settings, title_writer) -> History:
    """Long histories: the summary's model call shares the title writer's client, with
    the summary's small budget (offline: an extractive summary)."""
    history = History(settings.max_history_tokens, settings.memory_messages)
    if title_writer is not None:
        history.writer = TitleWriter(title_writer.client, title_writer.model,
                                     max_tokens=max(history.summary_tokens, 1))
    return history


def get_chat(app: Flask | None = None) -> Chat:
    app = app or current_app
    chat = app.extensions.get("jellychat.chat")
    if chat is None:
        with _lock:
            chat = app.extensions.get("jellychat.chat")
            if chat is None:
                settings = app.extensions["jellychat.settings"]
                chat = build_chat(settings, app.extensions.get("jellychat.store"),
                                  app.extensions.get("jellychat.limits"))
                app.extensions["jellychat.chat"] = chat
    return chat


def get_settings(app: Flask | None = None):
    return (app or current_app).extensions["jellychat.settings"]


class Draining(RuntimeError):
    """The server is shutting down: no new runs (running ones finish)."""


def refuse_if_draining(app: Flask | None = None) -> None:
    drain = (app or current_app).extensions.get("jellychat.shutdown")
    if drain is not None and drain.is_draining:
        raise Draining("the server is restarting, please try again in a moment")

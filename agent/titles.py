"""A conversation's title: the question's opening words at once, the model's words after."""

from __future__ import annotations

import logging

from agent.retry import describe
from agent.text import storable
from agent.usage import metered_write

log = logging.getLogger("jellychat.turn")

MAX_TITLE_CHARS = 80


def title_from(question: str) -> str:
    """A first title: the question's opening words."""
    words = " ".join(question.split())
    if len(words) <= 60:
        return words
    return words[:59].rsplit(" ", 1)[0] + "…"


def better_title(title_writer, store, conversation_id: str, question: str, answer: str,
                 run_id: str | None = None, model: str | None = None) -> None:
    """A short title from the model (small budget); the question's words stay on failure.

    `title_writer`: prompt -> title (agent/models.py's TitleWriter). With the run's
    registry `model`, the title is asked of it and its usage recorded with the run
    (priced and added to the user's spending)."""
    try:
        prompt = ("Give a title of at most six words for this conversation. "
                  f"Reply with the title only.\n\nQuestion: {question[:500]}\n"
                  f"Answer: {answer[:500]}")
        reply, usage = metered_write(title_writer, prompt, run_id, model, "title")
        title = clean(reply)
        if title:  # stored with the call's usage, in one call
            store.set_auto_title(conversation_id, title, run_id=run_id, usage=usage)
        elif usage:
            store.record_usage(run_id, usage)
    except Exception as exc:  # noqa: BLE001 - a title is a nicety
        log.info("no model title for conversation %s: %s", conversation_id, describe(exc))


def clean(reply: str) -> str:
    """A model's title as stored: one line of words, no quotes, at most MAX_TITLE_CHARS."""
    return storable(" ".join((reply or "").strip().strip('"').split())[:MAX_TITLE_CHARS])


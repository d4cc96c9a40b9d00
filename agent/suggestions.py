"""Follow-up questions after an answer (issue 26): up to three, as a `suggestions` event
and kept with the answer (GET /messages/<id>/suggestions).

With an LLM they come from one small, unstreamed request in the answer's language;
without one (or when that request fails) from the answer's sources: the related
pages the knowledge tools found.
"""

from __future__ import annotations

import logging
import re

from agent.retry import describe
from agent.titles import clean as clean_title
from agent.usage import metered_write

log = logging.getLogger("jellychat.suggestions")

SUGGESTIONS = "suggestions"  # the event, after final_message
MAX_SUGGESTIONS = 3
MAX_CHARS = 150  # one suggestion
PROMPT = (
    "Suggest up to three short follow-up questions the user might ask next. Write them in "
    "the language of the answer, one per line, without numbering or any other text.\n\n"
    "Question: {question}\nAnswer: {answer}"
)
# a conversation's first answer: the title in the same small call (one request, not two)
PROMPT_WITH_TITLE = (
    "Suggest up to three short follow-up questions the user might ask next, and give a "
    "title of at most six words for this conversation. Write them in the language of the "
    "answer: first a line 'Title: ' and the title, then one question per line, without "
    "numbering or any other text.\n\nQuestion: {question}\nAnswer: {answer}"
)
_TITLE_LINE = re.compile(r"^\s*[*_]*\s*title\s*[*_]*\s*:\s*[*_]*\s*(.*?)\s*$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s*")


def parse(text: str) -> list[str]:
    """The questions of a model's reply: one a line, bullets and numbers and quotes
    removed, duplicates and overlong lines dropped, at most three."""
    found: list[str] = []
    for line in (text or "").splitlines():
        line = _BULLET.sub("", line).strip().strip('"“”').strip()
        if line and len(line) <= MAX_CHARS and line not in found:
            found.append(line)
    return found[:MAX_SUGGESTIONS]


def parse_with_title(text: str) -> tuple[str, list[str]]:
    """The title line ('' without one) and the questions of a reply to PROMPT_WITH_TITLE."""
    title, rest = "", []
    for line in (text or "").splitlines():
        found = _TITLE_LINE.match(line)
        if found and not title:
            title = clean_title(found.group(1))
        else:
            rest.append(line)
    return title, parse("\n".join(rest))


def from_sources(sources: list[dict]) -> list[str]:
    """Related pages as questions: the titles of the sources the answer used."""
    found: list[str] = []
    for source in sources or []:
        title = " ".join(str(source.get("title") or "").split())
        if title and len(title) <= MAX_CHARS - 20:
            question = f"Tell me more about {title}"
            if question not in found:
                found.append(question)
    return found[:MAX_SUGGESTIONS]


class Suggester:
    """`writer(prompt) -> text`: a small-budget model call (None offline)."""

    def __init__(self, writer=None):
        self.writer = writer

    def __call__(self, question: str, answer: str, sources: list[dict], *,
                 run_id: str | None = None, model: str | None = None, with_title: bool = False
                 ) -> tuple[list[str], list[dict] | None, str]:
        """Up to three follow-ups, for a metered run's `model` the usage rows of the call
        that wrote them (recorded with the suggestions, in the same call), and with
        `with_title` the conversation's title from the same call ('' when it gave none)."""
        if self.writer is not None:
            try:
                prompt = (PROMPT_WITH_TITLE if with_title else PROMPT).format(
                    question=question[:500], answer=answer[:1500])
                text, usage = metered_write(self.writer, prompt, run_id, model, "suggestion")
                title, found = parse_with_title(text) if with_title else ("", parse(text))
                return found or from_sources(sources), usage, title
            except Exception as exc:  # noqa: BLE001 - suggestions are a nicety
                log.info("no model suggestions: %s", describe(exc))
        return from_sources(sources), None, ""


def suggest_after(chat, run, question: str, result, final: dict, sink, *,
                  title_due: bool = False) -> bool:
    """After a succeeded answer: the `suggestions` event (empty when the assistant turned
    them off or none were found, so a stream knows it may end) and the stored list, kept
    with the usage of the call that wrote it in one database call. With `title_due` (a
    new conversation, an LLM), the same model call writes the conversation's title;
    True when it was asked for (stored when the model gave one), so no title call follows."""
    suggester = getattr(chat, "suggester", None)
    message_id = final.get("message_id")
    if suggester is None or final.get("status") != "succeeded" or not message_id:
        return False
    found: list[str] = []
    asked = False
    assistant = chat.assistants.record(run.assistant) if chat.assistants else None
    if assistant is None or assistant.get("suggestions", True):
        asked = title_due and suggester.writer is not None
        found, usage, title = suggester(question, result.answer, result.sources,
                                        run_id=run.run_id, model=getattr(run, "model", None),
                                        with_title=asked)
        if found or usage or title:
            try:  # the suggestions, the title and the call's usage: one database call
                chat.store.set_suggestions(message_id, found, run_id=run.run_id, usage=usage,
                                           title=title)
            except Exception as exc:  # noqa: BLE001 - the event still goes out
                log.warning("suggestions of message %s not stored: %s", message_id, exc)
    sink.emit(SUGGESTIONS, {"run_id": run.run_id, "message_id": message_id,
                            "suggestions": found})
    return asked

"""Long histories (issue 26): what of a conversation the model sees, and its running summary.

Past MAX_HISTORY_TOKENS, a conversation's older messages reach the model as a summary
stored on the conversation (`summary`, covering the messages up to `summary_through`);
the stored messages are never replaced. LangChain v1's `SummarizationMiddleware` does
the same inside the agent graph, but it asks the model for the summary before the
model call of the turn (on the path to the first token), keeps it in the graph's state
only, and our graph is built once per assistant version and shared by every
conversation. So the split is the middleware's, done per run:

- `model_input` (before the model call, no model and no database call): the stored
  summary, then the newest messages after it that fit the budget, trimmed with
  LangChain's `trim_messages` (whole messages, starting at a question, so a question
  and its answer, or a tool call and its result, are never split). The summary and
  the messages come back from the call that begins the run.
- `refresh` (after the answer): when the messages after the summary exceed the
  budget, or were more than the memory holds, the oldest of them are folded into the
  summary (only those: incremental) by one small model request, or offline by an
  extractive summary (each question and the first sentence of its answer).

The memory holds human and jelly messages only (no tool rows), so there is no tool
pair to split today; the trimming would keep them whole if there were.
"""

from __future__ import annotations

import logging
import re

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from agent.retry import describe
from agent.text import storable
from agent.usage import metered_call

log = logging.getLogger("jellychat.history")

SUMMARY_INTRO = "Here is a summary of the earlier conversation:\n\n"
MAX_SUMMARY_TOKENS = 400  # the summary's own budget, at most (a quarter of the history's)
MAX_FOLD_CHARS = 1000  # characters of one message given to the summary request
MAX_FOLD_INPUT = 16_000  # characters of new messages one summary request reads
REFRESH_READ = 200  # messages after the summary a refresh reads, at most
PROMPT = (
    "Update the running summary of a conversation between a user and Jelly, an assistant. "
    "Keep the user's goals, facts, names and numbers; drop pleasantries. Write at most "
    "{words} words, in the conversation's language, as plain text.\n\n"
    "Summary so far:\n{summary}\n\nNew messages:\n{messages}"
)
_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)", re.S)


def tokens(text: str) -> int:
    """The approximate tokens of a text (LangChain's estimate: about four characters each)."""
    return count_tokens_approximately([HumanMessage(text)]) if text else 0


def to_langchain(memory: list[dict]) -> list:
    """Stored human/jelly messages as LangChain messages."""
    mapped = []
    for m in memory:
        if m["type"] == "human":
            mapped.append(HumanMessage(m["content"]))
        elif m["type"] == "jelly":
            mapped.append(AIMessage(m["content"]))
    return mapped


class History:
    """The model's view of a conversation's past, and the summary that keeps it in budget.

    `max_tokens`: MAX_HISTORY_TOKENS (0: no summary, the memory as it comes);
    `memory_messages`: how many messages `begin_run` returns at most;
    `writer(prompt) -> text`: a small-budget model call (None offline).
    """

    def __init__(self, max_tokens: int, memory_messages: int, writer=None):
        self.max_tokens = max_tokens
        self.memory_messages = memory_messages
        self.writer = writer
        self.summary_tokens = min(MAX_SUMMARY_TOKENS, max_tokens // 4)
        self.refreshes = 0  # summaries stored by this process

    # ------------------------------------------------------------------ before the model
    def model_input(self, begun: dict) -> list:
        """The summary (if any) and the newest messages after it, within the budget."""
        messages = to_langchain(begun.get("memory") or [])
        if not self.max_tokens:
            return messages
        summary = begun.get("summary")
        head = [HumanMessage(SUMMARY_INTRO + summary)] if summary else []
        budget = self.max_tokens - (count_tokens_approximately(head) if head else 0)
        if count_tokens_approximately(messages) > budget:
            messages = trim_messages(messages, max_tokens=max(budget, 0), strategy="last",
                                     token_counter=count_tokens_approximately,
                                     start_on="human", allow_partial=False)
        return [*head, *messages]

    # ------------------------------------------------------------------ after the answer
    def due(self, begun: dict, question: str, answer: str) -> bool:
        """Whether the messages after the summary, this turn's included, outgrew the
        budget or the memory (decided from what the run has: no database call)."""
        if not self.max_tokens or not begun:
            return False
        memory = begun.get("memory") or []
        if self.memory_messages and len(memory) + 2 > self.memory_messages:
            return True
        used = sum(tokens(m["content"]) for m in memory) + tokens(question) + tokens(answer)
        return used + tokens(begun.get("summary") or "") > self.max_tokens

    def refresh(self, store, conversation_id: str, run_id: str | None = None,
                model: str | None = None) -> bool:
        """Fold the oldest messages after the summary into it, keeping the newest within
        half the budget (and half the memory); True when a new summary was stored."""
        state = store.history_after_summary(conversation_id, REFRESH_READ)
        if not state:
            return False
        messages = state.get("messages") or []
        keep = self._keep(messages)
        fold = messages[: len(messages) - keep]
        if not fold:
            return False
        summary = self.summarise(state.get("summary") or "", fold,
                                 lambda prompt: metered_call(self.writer, prompt, store, run_id,
                                                             model, "summary"))
        stored = store.set_summary(conversation_id, summary, fold[-1]["id"],
                                   state.get("summary_through"))
        if stored:
            self.refreshes += 1
        return stored

    def _keep(self, messages: list[dict]) -> int:
        """How many of the newest messages stay verbatim: within half the budget and half
        the memory, starting at a question (a question and its answer stay together)."""
        budget, most = self.max_tokens // 2, max(self.memory_messages // 2, 2)
        keep, used = 0, 0
        for m in reversed(messages):
            used += tokens(m["content"])
            if used > budget or keep >= most:
                break
            keep += 1
        while keep and messages[len(messages) - keep]["type"] != "human":
            keep -= 1
        return keep

    def summarise(self, summary: str, fold: list[dict], call=None) -> str:
        """The summary with `fold` added: by the model within its budget, else extractive.
        `call(prompt) -> text`: the model call (default: the writer itself)."""
        if self.writer is not None:
            lines, size = [], 0
            for m in fold:
                line = f"{'User' if m['type'] == 'human' else 'Jelly'}: {m['content'][:MAX_FOLD_CHARS]}"
                size += len(line)
                if size > MAX_FOLD_INPUT:
                    break
                lines.append(line)
            try:
                reply = (call or self.writer)(PROMPT.format(words=max(self.summary_tokens * 3 // 4, 20),
                                                  summary=summary or "(none yet)",
                                                  messages="\n".join(lines)))
                reply = storable(" ".join(reply.split()))
                if reply:
                    return self._cap(reply)
            except Exception as exc:  # noqa: BLE001 - the extractive summary stands in
                log.info("no model summary: %s", describe(exc))
        return self.extractive(summary, fold)

    def extractive(self, summary: str, fold: list[dict]) -> str:
        """Each question, and the first sentence of its answer, after the summary so far;
        the oldest lines go first when it outgrows its budget."""
        lines = [line for line in summary.split("\n") if line.strip()]
        for m in fold:
            text = " ".join(m["content"].split())
            if m["type"] == "jelly":
                found = _SENTENCE.match(text)
                text = found.group(1) if found else text
            lines.append(f"{'User asked' if m['type'] == 'human' else 'Jelly said'}: {text[:200]}")
        return self._cap("\n".join(lines), from_start=True)

    def _cap(self, text: str, from_start: bool = False) -> str:
        """The text within the summary's budget (about four characters a token)."""
        limit = max(self.summary_tokens - 8, 1) * 4  # the estimate adds a few per message
        if len(text) <= limit:
            return text
        if from_start:  # drop the oldest lines
            text = text[-limit:]
            return text.split("\n", 1)[1] if "\n" in text else text
        return text[:limit].rsplit(" ", 1)[0]

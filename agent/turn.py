"""The one path of a chat turn, shared by every transport.

validate -> user -> store human message -> load memory -> run agent (events)
-> store answer + Q&A -> final event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from langchain_core.messages import AIMessage, HumanMessage

from agent.events import TurnEvents
from agent.offline import tokens_of
from agent.persona import APOLOGY, GREETING
from agent.runner import AgentResult, ChatAgent
from metrics import TURN_SECONDS, TURNS

log = logging.getLogger("jellychat.turn")

MAX_TOKEN_CHARS = 200
MAX_APPLICATION_CHARS = 100


class InvalidInput(ValueError):
    """Bad client input; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TurnInput:
    user_token: str
    message: str
    application: str


def _required_text(name: str, value, limit: int) -> str:
    if value is None:
        raise InvalidInput(name, f"'{name}' is required")
    if not isinstance(value, str):
        raise InvalidInput(name, f"'{name}' must be a string, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidInput(name, f"'{name}' must not be empty")
    if len(value) > limit:
        raise InvalidInput(name, f"'{name}' is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(name, f"'{name}' must not contain NUL characters")
    return value


def validate_token(user_token) -> str:
    return _required_text("user_token", user_token, MAX_TOKEN_CHARS)


def validate(user_token, message, application, max_message_chars: int) -> TurnInput:
    """The same rules and messages for every transport."""
    token = validate_token(user_token)
    text = _required_text("message", message, max_message_chars)
    if application is None or application == "":
        app_name = "unknown"
    else:
        app_name = _required_text("application", application, MAX_APPLICATION_CHARS)
    return TurnInput(token, text, app_name)


def to_langchain(messages) -> list:
    """Stored human/jelly messages as LangChain messages."""
    mapped = []
    for m in messages:
        if m.type == "human":
            mapped.append(HumanMessage(m.content))
        elif m.type == "jelly":
            mapped.append(AIMessage(m.content))
    return mapped


class Chat:
    """Holds what a turn needs: the store, the agent and the limits."""

    def __init__(self, store, agent: ChatAgent, *, memory_messages: int = 10,
                 max_message_chars: int = 4000):
        self.store = store
        self.agent = agent
        self.memory_messages = memory_messages
        self.max_message_chars = max_message_chars

    def turn(self, user_token, message, application, events: TurnEvents) -> AgentResult:
        """Run one chat turn. Raises InvalidInput before anything is written."""
        data = validate(user_token, message, application, self.max_message_chars)
        user = self.store.get_or_create_user(data.user_token, GREETING)
        memory = self.store.recent_messages(user.id, self.memory_messages)
        self.store.add_message(user.id, "human", data.message, data.application)
        result = AgentResult(answer="")
        started = time.monotonic()
        outcome = "answered"
        try:
            self.agent.run([*to_langchain(memory), HumanMessage(data.message)], events, result)
        except Exception:
            log.exception("agent failed for a turn (application=%s)", data.application)
            result.answer = ""
        if not result.answer:
            outcome = "apologized"
            self._apologize(result, events)
        TURNS.labels(outcome).inc()
        TURN_SECONDS.observe(time.monotonic() - started)
        self.store.add_answer(
            user.id, data.message, result.answer, data.application, result.sources,
            result.tool_messages,
        )
        events.final(result.answer, result.sources)
        return result

    @staticmethod
    def _apologize(result: AgentResult, events: TurnEvents) -> None:
        """Stream the apology after whatever was already streamed."""
        text = ("\n\n" if result.streamed else "") + APOLOGY
        for token in tokens_of(text):
            events.token(token)
        result.streamed += text
        result.answer = result.streamed

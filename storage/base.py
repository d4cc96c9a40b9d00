"""The Store interface every backend implements, and the records it returns.

Backends (Postgres, Supabase) implement the abstract methods; shared rules
(message types, limits) live here so that both behave the same way.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

MESSAGE_TYPES = ("human", "jelly", "tool")


class StoreError(RuntimeError):
    """The storage backend failed or is misconfigured; the message is user-facing."""


@dataclass(frozen=True)
class Message:
    type: str
    content: str
    timestamp: datetime
    application: str | None = None

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "content": self.content,
            "timestamp": self.timestamp.isoformat(),
            "application": self.application,
        }


@dataclass(frozen=True)
class QA:
    id: int
    question: str
    answer: str
    application: str | None
    date: datetime
    sources: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "date": self.date.isoformat(),
            "question": self.question,
            "answer": self.answer,
            "application": self.application,
            "sources": self.sources,
        }


@dataclass(frozen=True)
class User:
    id: int
    token: str
    created: bool = False


class Store(ABC):
    """Persistence for users, chat messages, Q&A pairs (and knowledge chunks)."""

    name = "store"

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"jellychat.storage.{self.name}")

    # lifecycle
    def initialize(self) -> None:
        """Connect and make the schema current. Raise StoreError with a clear message."""

    def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the database answers."""

    # chat
    @abstractmethod
    def get_or_create_user(self, token: str, greeting: str) -> User:
        """Return the user for `token`; a new user gets `greeting` as first jelly message."""

    @abstractmethod
    def add_message(
        self, user_id: int, type: str, content: str, application: str | None = None
    ) -> None: ...

    @abstractmethod
    def add_answer(
        self,
        user_id: int,
        question: str,
        answer: str,
        application: str | None,
        sources: list[dict],
        tool_messages: list[str] = (),
    ) -> None:
        """Store tool messages, the jelly answer and the Q&A pair in one transaction."""

    @abstractmethod
    def recent_messages(self, user_id: int, limit: int) -> list[Message]:
        """The last `limit` human/jelly messages of a user, oldest first."""

    @abstractmethod
    def history(self, user_id: int) -> list[Message]:
        """All messages of a user (human, jelly, tool), oldest first."""

    @abstractmethod
    def list_qa(self, limit: int, before: datetime | None = None) -> list[QA]:
        """Question/answer pairs of all users, newest first, strictly older than `before`."""

    @abstractmethod
    def count_human_messages(self) -> int: ...

    @staticmethod
    def check_type(type: str) -> None:
        if type not in MESSAGE_TYPES:
            raise ValueError(f"message type must be one of {MESSAGE_TYPES}, not {type!r}")

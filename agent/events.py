"""What a transport supplies to a chat turn: where the turn's events go."""

from __future__ import annotations

from typing import Protocol


class TurnEvents(Protocol):
    def tool_start(self, tool_name: str) -> None:
        """A tool starts; `tool_name` is a friendly sentence naming it."""

    def token(self, token: str) -> None:
        """One token of the final answer."""

    def final(self, message: str, sources: list[dict]) -> None:
        """The whole answer, once, at the end."""


class CollectingEvents:
    """Keeps everything in memory: what REST (and tests) use."""

    def __init__(self) -> None:
        self.tools: list[str] = []
        self.tokens: list[str] = []
        self.message: str | None = None
        self.sources: list[dict] = []

    def tool_start(self, tool_name: str) -> None:
        self.tools.append(tool_name)

    def token(self, token: str) -> None:
        self.tokens.append(token)

    def final(self, message: str, sources: list[dict]) -> None:
        self.message = message
        self.sources = sources

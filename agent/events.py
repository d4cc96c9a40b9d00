"""What a transport supplies to a run: one sink for its typed events.

Every transport implements `EventSink.emit(event, data)`; the names and
payloads are the Socket.IO protocol (run_started, tool_start, tool_end,
final_answer_token, final_message, error), used unchanged by SSE and REST.
"""

from __future__ import annotations

from typing import Protocol

RUN_STARTED = "run_started"
TOOL_START = "tool_start"
TOOL_END = "tool_end"
TOKEN = "final_answer_token"
FINAL = "final_message"
ERROR = "error"


class EventSink(Protocol):
    def emit(self, event: str, data: dict) -> None:
        """Deliver one event of a run to its client."""


class CollectingSink:
    """Keeps every event in memory: what REST (and tests) use."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def emit(self, event: str, data: dict) -> None:
        self.events.append((event, data))

    def of(self, event: str) -> list[dict]:
        return [data for name, data in self.events if name == event]

    @property
    def final(self) -> dict | None:
        finals = self.of(FINAL)
        return finals[-1] if finals else None

    @property
    def tokens(self) -> str:
        return "".join(d["token"] for d in self.of(TOKEN))

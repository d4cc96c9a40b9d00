"""Runs the LangChain v1 tool-calling agent and turns its stream into turn events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage

from agent.events import TurnEvents
from metrics import TOOL_CALLS
from tools import friendly_name

MAX_TOOL_MESSAGE = 2000  # characters of a tool result kept in history


class TurnTimeout(TimeoutError):
    pass


@dataclass
class AgentResult:
    answer: str
    sources: list[dict] = field(default_factory=list)
    tool_messages: list[str] = field(default_factory=list)
    streamed: str = ""


def merge_sources(sources: list[dict], new: list[dict]) -> None:
    """Append `new` sources that are not already listed (by url, else title)."""
    seen = {s.get("url") or s.get("title") for s in sources}
    for source in new or []:
        key = source.get("url") or source.get("title")
        if key and key not in seen:
            seen.add(key)
            sources.append({"title": source.get("title") or key, "url": source.get("url")})


class ChatAgent:
    """A compiled agent graph plus what is needed to report its progress."""

    def __init__(self, model, tools, system_prompt: str, max_tool_iterations: int = 6,
                 timeout: float = 120.0):
        self.tools = {t.name: t for t in tools}
        self.graph = create_agent(model, tools, system_prompt=system_prompt)
        # each tool iteration is a model step plus a tools step; +1 for the final answer
        self.recursion_limit = 2 * max_tool_iterations + 1
        self.timeout = timeout

    def run(self, messages, events: TurnEvents, result: AgentResult) -> AgentResult:
        """Stream the agent over `messages`, filling `result` as it goes.

        Tokens are forwarded only for model steps that carry no tool call, so
        clients see the final answer, not the reasoning between tool calls.
        """
        deadline = time.monotonic() + self.timeout
        tool_steps: set[int] = set()
        final = None
        stream = self.graph.stream(
            {"messages": messages},
            {"recursion_limit": self.recursion_limit},
            stream_mode=["messages", "updates"],
        )
        for mode, data in stream:
            if time.monotonic() > deadline:
                raise TurnTimeout(f"the turn took longer than {self.timeout:.0f} s")
            if mode == "messages":
                chunk, meta = data
                if not isinstance(chunk, AIMessageChunk):
                    continue
                step = meta.get("langgraph_step", 0)
                if chunk.tool_call_chunks:
                    tool_steps.add(step)
                text = chunk.text
                if text and step not in tool_steps:
                    events.token(text)
                    result.streamed += text
                continue
            for update in (data or {}).values():
                for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                    if isinstance(message, AIMessage) and message.tool_calls:
                        for call in message.tool_calls:
                            TOOL_CALLS.labels(call["name"]).inc()
                            tool = self.tools.get(call["name"])
                            label = friendly_name(tool, call.get("args")) if tool else call["name"]
                            events.tool_start(label)
                    elif isinstance(message, AIMessage):
                        final = message
                    elif isinstance(message, ToolMessage):
                        text = message.text
                        result.tool_messages.append(f"{message.name}: {text[:MAX_TOOL_MESSAGE]}")
                        artifact = message.artifact if isinstance(message.artifact, dict) else {}
                        merge_sources(result.sources, artifact.get("sources", []))
        answer = final.text if final else ""
        if answer and not result.streamed.endswith(answer):
            # a model that did not stream: send the answer as one token
            events.token(answer)
            result.streamed += answer
        result.answer = answer
        return result

"""Runs the LangChain v1 tool-calling agent and turns its stream into run events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage

from agent import events as ev
from agent.cancel import CancelCallbacks, CancelHandle, RunCancelled
from metrics import TOOL_CALLS
from tools import friendly_name

MAX_TOOL_RESULT = 2000  # characters of a tool result kept with the call
SUMMARY_CHARS = 200  # characters of a tool result in `tool_end`
STEP_SEPARATOR = "\n\n"  # between the texts of two model steps


@dataclass
class AgentResult:
    """What a run produced so far; `answer` is exactly the text streamed as tokens."""

    answer: str = ""
    sources: list[dict] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def usage(self) -> dict | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input_tokens": self.input_tokens or 0, "output_tokens": self.output_tokens or 0}


def merge_sources(sources: list[dict], new: list[dict]) -> None:
    """Append `new` sources that are not already listed (by url, else title)."""
    seen = {s.get("url") or s.get("title") for s in sources}
    for source in new or []:
        key = source.get("url") or source.get("title")
        if key and key not in seen:
            seen.add(key)
            sources.append({"title": source.get("title") or key, "url": source.get("url")})


class _Stream:
    """Forwards answer text as tokens, keeping `result.answer` equal to what was sent.

    Text a model writes before a tool call is part of the answer: every model
    step's text is forwarded, steps separated by a blank line.
    """

    def __init__(self, emit, result: AgentResult, run_id: str):
        self.emit = emit
        self.result = result
        self.run_id = run_id
        self.streamed_steps: set = set()
        self.current_step = None

    def text(self, step, text: str) -> None:
        if not text:
            return
        if step != self.current_step:
            self.current_step = step
            if self.result.answer and not self.result.answer.endswith(("\n", " ")):
                text = STEP_SEPARATOR + text
        self.streamed_steps.add(step)
        self.result.answer += text
        self.emit(ev.TOKEN, {"token": text, "run_id": self.run_id})


class ChatAgent:
    """A compiled agent graph plus what is needed to report its progress."""

    def __init__(self, model, tools, system_prompt: str, max_tool_iterations: int = 6,
                 model_name: str | None = None):
        self.tools = {t.name: t for t in tools}
        self.graph = create_agent(model, tools, system_prompt=system_prompt)
        # each tool iteration is a model step plus a tools step; +1 for the final answer
        self.recursion_limit = 2 * max_tool_iterations + 1
        self.model_name = model_name

    def run(self, messages, emit, result: AgentResult, cancel: CancelHandle,
            run_id: str) -> AgentResult:
        """Stream the agent over `messages`, emitting events and filling `result`.

        Raises RunCancelled when `cancel` fires (stop or deadline), wherever the
        agent was waiting.
        """
        stream_out = _Stream(emit, result, run_id)
        started: dict[str, float] = {}
        by_id: dict[str, dict] = {}
        stream = self.graph.stream(
            {"messages": messages},
            {"recursion_limit": self.recursion_limit, "callbacks": [CancelCallbacks(cancel)]},
            stream_mode=["messages", "updates"],
        )
        try:
            for mode, data in stream:
                if cancel.cancelled:
                    raise RunCancelled(cancel.reason)
                if mode == "messages":
                    chunk, meta = data
                    if isinstance(chunk, AIMessageChunk):
                        stream_out.text(meta.get("langgraph_step", 0), chunk.text)
                    continue
                for node, update in (data or {}).items():
                    messages_out = update.get("messages", []) if isinstance(update, dict) else []
                    for message in messages_out:
                        if isinstance(message, AIMessage):
                            self._model_step(message, node, stream_out, emit, run_id,
                                             started, by_id)
                        elif isinstance(message, ToolMessage):
                            self._tool_result(message, emit, run_id, started, by_id, result)
        finally:
            stream.close()
        return result

    def _model_step(self, message: AIMessage, node, stream_out, emit, run_id, started, by_id):
        result = stream_out.result
        step = stream_out.current_step
        if message.text and step not in stream_out.streamed_steps:
            # a model that did not stream this step: its text as one token
            stream_out.text(("whole", id(message)), message.text)
        usage = message.usage_metadata
        if usage:
            result.input_tokens = (result.input_tokens or 0) + usage.get("input_tokens", 0)
            result.output_tokens = (result.output_tokens or 0) + usage.get("output_tokens", 0)
        stream_out.current_step = None
        for call in message.tool_calls:
            TOOL_CALLS.labels(call["name"]).inc()
            tool = self.tools.get(call["name"])
            call_id = call.get("id") or f"call_{len(result.tool_calls) + 1}"
            args = call.get("args") or {}
            sentence = friendly_name(tool, args) if tool else call["name"]
            record = {"sentence": sentence, "call_id": call_id, "tool": call["name"],
                      "args": args, "status": "running", "result": None, "duration_ms": None}
            result.tool_calls.append(record)
            by_id[call_id] = record
            started[call_id] = time.monotonic()
            emit(ev.TOOL_START, {"tool_name": sentence, "tool": call["name"], "call_id": call_id,
                                 "args": args, "run_id": run_id})

    @staticmethod
    def _tool_result(message: ToolMessage, emit, run_id, started, by_id, result):
        record = by_id.get(message.tool_call_id)
        if record is None:
            return
        text = message.text
        record["status"] = "error" if message.status == "error" else "ok"
        record["result"] = text[:MAX_TOOL_RESULT]
        record["duration_ms"] = round((time.monotonic() - started.get(message.tool_call_id,
                                                                      time.monotonic())) * 1000)
        artifact = message.artifact if isinstance(message.artifact, dict) else {}
        merge_sources(result.sources, artifact.get("sources", []))
        summary = " ".join(text.split())
        if len(summary) > SUMMARY_CHARS:
            summary = summary[: SUMMARY_CHARS - 1] + "…"
        emit(ev.TOOL_END, {"call_id": record["call_id"], "tool": record["tool"],
                           "status": record["status"], "duration_ms": record["duration_ms"],
                           "summary": summary, "run_id": run_id})

"""Runs the LangChain v1 tool-calling agent and turns its stream into run events."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage

from agent import events as ev
from agent.cancel import CancelHandle, RunCancelled, call_later
from agent.files import ScopedTools
from agent.steps import STEP_SEPARATOR, YIELD_EVERY, AnswerTooLong, RunSteps, ToolSteps, current_run
from agent.text import storable
from metrics import TOOL_CALLS
from tools import friendly_name

MAX_TOOL_RESULT = 2000  # characters of a tool result kept with the call
SUMMARY_CHARS = 200  # characters of a tool result in `tool_end`
FLUSH_EVERY = 0.02  # seconds: tokens piling up within this are sent as one event
QUIET = 0.004  # seconds: a token this long after the last event is sent at once


@dataclass
class AgentResult:
    """What a run produced so far; `answer` is exactly the text streamed as tokens.

    The answer is kept as a list of the emitted pieces and joined on demand, so
    a long answer costs no repeated string concatenation.
    """

    parts: list[str] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    truncated: bool = False  # cut at MAX_ANSWER_CHARS
    incomplete: bool = False  # the model's stream ended without a finish_reason
    # monotonic times of the first model request, its first chunk and the first token
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @answer.setter
    def answer(self, text: str) -> None:
        self.parts[:] = [text] if text else []

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
    step's text is forwarded, steps separated by a blank line. A token that
    arrives alone (nothing sent in the last QUIET seconds, nothing waiting) is
    sent at once, so a model's usual pace costs no delay; tokens that pile up
    faster are sent together by a timer, at most one event per FLUSH_EVERY (a
    huge fast answer costs few emits, not one per token); the text is made
    storable before it is sent, so the stored answer equals the joined tokens;
    past `max_chars` the rest is dropped.
    """

    def __init__(self, emit, result: AgentResult, run_id: str, max_chars: int = 0):
        self.emit = emit
        self.result = result
        self.run_id = run_id
        self.max_chars = max_chars
        self.streamed_steps: set = set()
        self.current_step = None
        self.length = 0  # characters accepted so far (before making them storable)
        self.last_char = ""
        self.pending: list[str] = []
        self.last_flush = 0.0
        self.timer = None
        self.lock = threading.Lock()
        self.emits = 0

    def text(self, step, text: str) -> None:
        if not text or self.result.truncated:
            return
        if step != self.current_step:
            self.current_step = step
            if self.last_char and self.last_char not in ("\n", " "):
                text = STEP_SEPARATOR + text
        self.streamed_steps.add(step)
        if self.max_chars and self.length + len(text) >= self.max_chars:
            text = text[: self.max_chars - self.length]
            self.result.truncated = True
        if not text:
            return
        self.length += len(text)
        self.last_char = text[-1]
        with self.lock:
            self.pending.append(text)
            waiting = self.timer is not None
        since = time.monotonic() - self.last_flush
        if self.result.truncated or since >= FLUSH_EVERY or (not waiting and since >= QUIET):
            self.flush()
        elif not waiting:
            self.timer = call_later(FLUSH_EVERY - since, self.flush)

    def flush(self, final: bool = False) -> None:
        """Send what is pending as one token (a trailing high surrogate waits for its
        pair unless `final`)."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            text = "".join(self.pending)
            self.pending.clear()
            if not final and text and "\ud800" <= text[-1] <= "\udbff":
                self.pending.append(text[-1])
                text = text[:-1]
            if not text:
                return
            text = storable(text)
            self.last_flush = time.monotonic()
            self.result.parts.append(text)
            self.emits += 1
            if self.emits == 1:
                self.result.marks["first_token"] = self.last_flush
            self.emit(ev.TOKEN, {"token": text, "run_id": self.run_id})


class ChatAgent:
    """A compiled agent graph plus what is needed to report its progress."""

    def __init__(self, model, tools, system_prompt: str, max_tool_iterations: int = 6,
                 model_name: str | None = None, *, max_retries: int = 0,
                 max_answer_chars: int = 0, expects_finish_reason: bool = False):
        """`max_retries`: model calls retried within the run's budget (agent/retry.py);
        `max_answer_chars`: the answer is cut there (0: no cap);
        `expects_finish_reason`: the model reports why it stopped (OpenAI protocol), so
        a stream that ends without saying is an incomplete answer."""
        self.tools = {t.name: t for t in tools}
        # the model and the tools report to the run through agent/steps.py, not callbacks
        self.graph = create_agent(model, tools, system_prompt=system_prompt,
                                  middleware=[ToolSteps(), ScopedTools()])
        self.max_retries = max_retries
        # each tool iteration is a model step plus a tools step; +1 for the final answer
        self.recursion_limit = 2 * max_tool_iterations + 1
        self.model_name = model_name
        self.max_answer_chars = max_answer_chars
        self.expects_finish_reason = expects_finish_reason

    def run(self, messages, emit, result: AgentResult, cancel: CancelHandle,
            run_id: str) -> AgentResult:
        """Stream the agent over `messages`, emitting events and filling `result`.

        Raises RunCancelled when `cancel` fires (stop or deadline), wherever the
        agent was waiting. An answer past `max_answer_chars` ends the run early
        with `result.truncated` set.
        """
        stream_out = _Stream(emit, result, run_id, self.max_answer_chars)
        started: dict[str, float] = {}
        by_id: dict[str, dict] = {}
        steps = current_run.set(RunSteps(cancel, stream_out.text, max_chars=self.max_answer_chars,
                                          max_retries=self.max_retries, marks=result.marks))
        # "updates" only: with "messages", LangGraph runs each model step on a thread-pool
        # worker and hands every chunk back through a queue; tokens come from agent/steps.py
        stream = self.graph.stream({"messages": messages},
                                   {"recursion_limit": self.recursion_limit},
                                   stream_mode="updates")
        last_yield = time.monotonic()
        try:
            for data in stream:
                if cancel.cancelled:
                    raise RunCancelled(cancel.reason)
                if time.monotonic() - last_yield >= YIELD_EVERY:
                    time.sleep(0)  # green under eventlet: a fast stream must not hold the hub
                    last_yield = time.monotonic()
                for node, update in (data or {}).items():
                    messages_out = update.get("messages", []) if isinstance(update, dict) else []
                    for message in messages_out:
                        if isinstance(message, AIMessage):
                            self._model_step(message, node, stream_out, emit, run_id,
                                             started, by_id)
                        elif isinstance(message, ToolMessage):
                            self._tool_result(message, emit, run_id, started, by_id, result)
        except AnswerTooLong:
            result.truncated = True
        finally:
            stream.close()
            current_run.reset(steps)
            stream_out.flush(final=True)
        return result

    def _model_step(self, message: AIMessage, node, stream_out, emit, run_id, started, by_id):
        result = stream_out.result
        step = stream_out.current_step
        if message.text and step not in stream_out.streamed_steps:
            # a model without agent/steps.py's hook (both of ours have it) did not stream
            # this step: its text as one token, so the tokens still join to the answer
            stream_out.text(("whole", id(message)), message.text)
        if self.expects_finish_reason and not message.response_metadata.get("finish_reason"):
            result.incomplete = True  # the stream ended without saying why: cut off
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

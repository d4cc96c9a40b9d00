"""A run: one chat turn, from its creation to its final message. Read it top to bottom.

`Chat.start` (agent/turn.py) validated the request, admitted it (rate limits,
proof of work), created the run in the database with one call
(`store.start_run`: the run, pending, under the MULTITASK rule; when the
conversation was idle it began at once, its question stored, the memory loaded
and its tools' context read: the conversation's ready files, the user's memory
switch) and put it in the registry, where stop, disconnect and shutdown find
it. `Run.serve(sink)` then lives the rest of it:

1. `begin`    wait for the earlier runs of the conversation to end (`begin_run`),
              unless it began as it was created; a run stopped while it waited
              ends `stopped` without asking the model
2. `run_started` to the sink; the deadline starts
3. `execute`  the agent graph runs (agent/runner.py: compiled without the tools the
              run cannot use): each tool call becomes `tool_start` and
              `tool_end`, the answer text becomes `final_answer_token`s
4. `judge`    succeeded, stopped, timed_out or failed; the cut note or the
              apology is streamed as part of the answer
5. `finish`   answer, sources, tool calls, usage and status stored in one call
              (`finish_run`); kept in memory for `Chat.retry_unfinished` if the
              database is down
6. `final_message` to the sink
7. a better title from the model for a new conversation (agent/titles.py)
8. past MAX_HISTORY_TOKENS, the older messages folded into the conversation's summary
   (agent/history.py), which the next turn reads with its memory

Where the tokens come from. Not from `graph.stream`: it runs with
`stream_mode="updates"`, which gives the run whole messages after each model and
tool step (tool calls, tool results, usage). The answer text is streamed by the
model step itself: `execute` puts the run's `RunSteps` (agent/steps.py) in the
context variable `current_run`; the chat models (agent/models.py,
agent/offline.py) find it in their `_generate` and read their reply chunk by
chunk into `RunSteps.model_step`, which hands each chunk's text to
`TokenStream.text` below, attaches the reading thread to the cancel handle and
stops at the answer cap. LangGraph's public token streaming costs more CPU than
the 1 ms a turn it was allowed (issue 31). In-process, 50 tokens
(`python -m bench token_path`, loaded machine): `stream_mode=["updates",
"messages"]` +1.7 to +4.6 ms a turn (LangChain callbacks on every runnable, a
message merged per chunk), a `get_stream_writer` writer (`stream_mode="custom"`)
+0.7 to +2.5 ms. In the server, side by side with A (`python -m bench relay
--project-root` a copy whose tokens went through `get_stream_writer`): +10.7 ms
per streamed turn (37.8 against 27.1 ms) and +4.4 ms per 5-token turn, because
with "custom" or "messages" LangGraph runs every step on a pool thread and
hands each token back through a queue (a switch of green threads per token).

Where stop and the deadline act: the run's `CancelHandle` (agent/cancel.py)
interrupts whatever the run waits on (the model's HTTP stream, a tool, a retry
pause, its place in the queue); `execute` then raises `RunCancelled`, and the
run ends with the handle's reason.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from agent import events as ev
from agent import titles
from agent.cancel import CancelHandle, RunCancelled, call_later
from agent.files import run_scope
from agent.history import to_langchain
from agent.persona import APOLOGY
from agent.retry import describe
from agent.steps import STEP_SEPARATOR, YIELD_EVERY, AnswerTooLong, RunSteps, current_run
from agent.suggestions import suggest_after
from agent.text import storable, tokens_of
from agent.usage import totals
from logs import bind_run_id
from metrics import FIRST_TOKEN_SECONDS, TOOL_CALLS, TURN_PHASE_SECONDS, TURN_SECONDS, TURNS
from storage.base import NotFound, StoreError
from tools import friendly_name

if TYPE_CHECKING:
    from agent.turn import Chat, TurnInput

log = logging.getLogger("jellychat.turn")

QUEUE_POLL = (0.02, 0.25)  # first and longest wait between checks while queued
FINISH_RETRIES = (0.2,)  # pauses before storing a run's outcome again, seconds (then the watcher)
CUT_NOTE = "\n\n[The answer was cut here: it reached the length limit.]"
MAX_TOOL_RESULT = 2000  # characters of a tool result kept with the call
SUMMARY_CHARS = 200  # characters of a tool result in `tool_end`
FLUSH_EVERY = 0.02  # seconds: tokens piling up within this are sent as one event
QUIET = 0.004  # seconds: a token this long after the last event is sent at once


class Run:
    """One chat turn: its identity, its deadline and cancel switch, its sink and its result.

    Made by `Chat.start`; `serve` takes it to its end. It is also what the
    registry holds while it runs (stop and disconnect reach its `cancel`).
    """

    def __init__(self, chat: Chat, ticket: dict, data: TurnInput, *, origin: str | None = None,
                 assistant=None, marks: dict[str, float] | None = None):
        self.chat = chat  # the services: store, agent, limits, registry
        self.run_id: str = ticket["run_id"]
        self.conversation_id: str = ticket["conversation_id"]
        self.user_token = data.user_token
        self.data = data  # the validated request: question, application
        self.origin = origin  # the client connection that started it (Socket.IO sid)
        self.assistant = assistant  # which assistant answers (None: the default agent)
        # the registry's model the run calls and its input/output price, USD per million
        # tokens (agent/usage.py); None when the run is not metered
        self.model: str | None = ticket.get("model")
        self.prices = (ticket.get("input_price"), ticket.get("output_price"))
        # begin_run's answer when the run began as it was created (question stored,
        # memory loaded); None while it waits for its turn
        self.begun: dict | None = ticket if ticket.get("ready") else None
        # monotonic times: the request came in, passed the limits, its run was stored, ...
        self.marks: dict[str, float] = marks if marks is not None else {}
        self.cancel = CancelHandle()  # stop and the deadline (agent/cancel.py)
        self.sink: ev.EventSink | None = None
        self.result = RunResult()
        self.status = "succeeded"
        self.error: str | None = None
        self.finished = False  # its outcome was stored, or handed to `Chat.retry_unfinished`
        self._agent = None

    @property
    def agent(self):
        """The agent of the run's assistant version (built once per version, agent/assistants.py)."""
        if self._agent is None:
            chat = self.chat
            self._agent = chat.assistants.agent_for(self.assistant) if chat.assistants else chat.agent
        return self._agent

    @property
    def deadline(self) -> float | None:
        """time.monotonic() when the run times out (None before it began)."""
        return self.cancel.deadline

    @property
    def run(self) -> Run:
        """The run itself (callers written for the former `StartedRun.run`)."""
        return self

    # ------------------------------------------------------------------ its life
    def serve(self, sink: ev.EventSink) -> dict:
        """Serve the run to its end through `sink`; returns the final_message payload."""
        self.sink = sink
        try:
            with bind_run_id(self.run_id):
                try:
                    return self._live()
                except Exception as exc:
                    if not self.finished:
                        # the database (or a bug) failed before the outcome was stored: close
                        # the run so its question, if stored, is answered and its
                        # conversation moves on
                        log.error("run %s failed before it ended: %s", self.run_id, _reason(exc))
                        self.finish("failed", question=self.data.message, answer=APOLOGY,
                                    error="the chat storage failed during the run",
                                    raise_error=False, retries=())
                    raise
        finally:
            self.cancel.close()
            self.chat.registry.remove(self.run_id)

    def _live(self) -> dict:
        if not self.begin():
            # stopped while it waited behind another run: nothing was asked yet
            self.status = "stopped"
            return self.emit_final(self.finish("stopped"))
        self.emit(ev.RUN_STARTED, {"run_id": self.run_id, "conversation_id": self.conversation_id,
                                   "message_id": self.begun["message_id"]})
        self.cancel.start_deadline(self.chat.turn_timeout)
        started = time.monotonic()
        self.execute()
        self.judge()
        TURNS.labels(self.status).inc()
        TURN_SECONDS.observe(time.monotonic() - started)
        observe_first_token({**self.marks, **self.result.marks})
        result, titled = self.result, self.begun.get("titled")
        outcome = self.finish(
            self.status, question=self.data.message, answer=result.answer,
            sources=result.sources, tool_calls=result.tool_calls,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            error=self.error, title=None if titled else titles.title_from(self.data.message),
            usage=result.calls if self.model else None,
        )
        final = self.emit_final(outcome)
        # a new conversation's first answer: its title comes with the suggestions (one
        # model call), or from its own call when the assistant has suggestions off
        title_due = (not titled and self.chat.title_writer is not None
                     and self.status == "succeeded")
        if suggest_after(self.chat, self, self.data.message, result, final, self.sink,
                         title_due=title_due):
            title_due = False
        self.refresh_summary()
        if title_due:
            titles.better_title(self.chat.title_writer, self.chat.store, self.conversation_id,
                                self.data.message, result.answer, self.run_id, self.model)
        return final

    def refresh_summary(self) -> None:
        """8. after the answer: fold older messages into the conversation's summary when
        they outgrew the budget (agent/history.py); the next turn reads it with its memory."""
        history = self.chat.history
        if history is None or self.status != "succeeded" or not history.due(
                self.begun, self.data.message, self.result.answer):
            return
        try:
            history.refresh(self.chat.store, self.conversation_id, self.run_id, self.model)
        except Exception as exc:  # noqa: BLE001 - the next turn trims to the budget anyway
            log.warning("summary of conversation %s not refreshed: %s", self.conversation_id,
                        _reason(exc))

    def emit(self, event: str, payload: dict) -> None:
        self.sink.emit(event, payload)

    # 1. ---------------------------------------------------------------- begin
    def begin(self) -> bool:
        """Wait for the runs before it in its conversation to end, then begin (question
        stored, memory loaded); False when it was stopped or gave up meanwhile."""
        if self.begun is None:
            self.begun = self._wait_turn()
            self.marks["begun"] = time.monotonic()
        return bool(self.begun.get("ready"))

    def _wait_turn(self) -> dict:
        chat = self.chat
        pause = QUEUE_POLL[0]
        give_up = time.monotonic() + 2 * chat.turn_timeout + 10
        while True:
            if self.cancel.cancelled:
                return {"ready": False, "stop": True}
            begun = chat.store.begin_run(self.run_id, self.data.message, chat.memory_messages,
                                         chat.turn_timeout)
            if begun.get("ready") or begun.get("stop"):
                return begun
            if time.monotonic() > give_up:
                return {"ready": False, "stop": True}
            time.sleep(pause)  # green under eventlet: waits for another run, not a test sync
            pause = min(pause * 2, QUEUE_POLL[1])

    # 3. ---------------------------------------------------------------- execute
    def execute(self) -> None:
        """Run the agent over the memory and the question, streaming its events and
        filling `result`; sets `status`/`error` when it is cancelled or fails."""
        history = self.chat.history
        past = (history.model_input(self.begun) if history is not None
                else to_langchain(self.begun.get("memory") or []))
        messages = [*past, HumanMessage(self.data.message)]
        try:
            # whose files and memories the run's tools may reach
            with run_scope(self.chat.store, self.user_token, self.conversation_id, self.run_id,
                           self.emit, self.begun.get("context")):
                self._stream_agent(messages)
        except RunCancelled as exc:
            self.status = self.cancel.reason or exc.reason
        except Exception as exc:  # noqa: BLE001 - any agent failure ends as an apology
            if self.cancel.cancelled:
                self.status = self.cancel.reason
            else:
                # one short, generic line: provider error text may echo a key or the prompt
                self.status, self.error = "failed", describe(exc)
                log.error("run %s failed: %s", self.run_id, self.error)
        finally:
            self.cancel.close()

    def _stream_agent(self, messages: list) -> None:
        """Stream the agent graph; raises RunCancelled when stop or the deadline fires.

        Tokens do not come from this loop (see the module's docstring): they reach
        `TokenStream` from the model step through `current_run`. This loop sees each
        step's whole messages: the model's (tool calls, usage, finish reason) and the
        tools' results. An answer past the cap ends the run early, `truncated` set.
        """
        agent, result, cancel = self.agent, self.result, self.cancel
        tokens = TokenStream(self.emit, result, self.run_id, agent.max_answer_chars)
        calls: dict[str, tuple] = {}  # call id -> (its record in result.tool_calls, start)
        steps = current_run.set(RunSteps(cancel, tokens.text, max_chars=agent.max_answer_chars,
                                          max_retries=agent.max_retries, marks=result.marks,
                                          model=self.model, calls=result.calls))
        # "updates" only: with "messages" or "custom", LangGraph runs each step on a pool
        # thread and hands every token back through a queue (measured above: too costly)
        graph = agent.graph_for(self.begun.get("context"))  # without tools it cannot use
        stream = graph.stream({"messages": messages}, {"recursion_limit": agent.recursion_limit},
                              stream_mode="updates")
        last_yield = time.monotonic()
        try:
            for data in stream:
                if cancel.cancelled:
                    raise RunCancelled(cancel.reason)
                if time.monotonic() - last_yield >= YIELD_EVERY:
                    time.sleep(0)  # green under eventlet: a fast stream must not hold the hub
                    last_yield = time.monotonic()
                for update in (data or {}).values():
                    for message in update.get("messages", []) if isinstance(update, dict) else []:
                        if isinstance(message, AIMessage):
                            self._model_step(message, tokens, calls)
                        elif isinstance(message, ToolMessage):
                            self._tool_result(message, calls)
        except AnswerTooLong:
            result.truncated = True
        finally:
            stream.close()
            current_run.reset(steps)
            tokens.flush(final=True)

    def _model_step(self, message: AIMessage, tokens: TokenStream, calls: dict) -> None:
        """A model step ended: its usage, and a `tool_start` for each tool it calls."""
        agent, result = self.agent, self.result
        if message.text and tokens.current_step not in tokens.streamed_steps:
            # a model without agent/steps.py's hook (both of ours have it) did not stream
            # this step: its text as one token, so the tokens still join to the answer
            tokens.text(("whole", id(message)), message.text)
        used = message.response_metadata.get("sources_used")
        if isinstance(used, list):  # a model that says which sources its answer used (offline)
            result.sources.clear()
            merge_sources(result.sources, used)
        if agent.expects_finish_reason and not message.response_metadata.get("finish_reason"):
            result.incomplete = True  # the stream ended without saying why: cut off
        usage = message.usage_metadata
        if usage:
            result.input_tokens = (result.input_tokens or 0) + usage.get("input_tokens", 0)
            result.output_tokens = (result.output_tokens or 0) + usage.get("output_tokens", 0)
        tokens.current_step = None
        for call in message.tool_calls:
            TOOL_CALLS.labels(call["name"]).inc()
            tool = agent.tools.get(call["name"])
            call_id = call.get("id") or f"call_{len(result.tool_calls) + 1}"
            args = call.get("args") or {}
            sentence = friendly_name(tool, args) if tool else call["name"]
            record = {"sentence": sentence, "call_id": call_id, "tool": call["name"],
                      "args": args, "status": "running", "result": None, "duration_ms": None}
            result.tool_calls.append(record)
            calls[call_id] = (record, time.monotonic())
            self.emit(ev.TOOL_START, {"tool_name": sentence, "tool": call["name"],
                                      "call_id": call_id, "args": args, "run_id": self.run_id})

    def _tool_result(self, message: ToolMessage, calls: dict) -> None:
        """A tool returned: its record, its sources, and a `tool_end`."""
        if message.tool_call_id not in calls:
            return
        record, started = calls[message.tool_call_id]
        text = message.text
        record["status"] = "error" if message.status == "error" else "ok"
        record["result"] = text[:MAX_TOOL_RESULT]
        record["duration_ms"] = round((time.monotonic() - started) * 1000)
        artifact = message.artifact if isinstance(message.artifact, dict) else {}
        merge_sources(self.result.sources, artifact.get("sources", []))
        summary = " ".join(text.split())
        if len(summary) > SUMMARY_CHARS:
            summary = summary[: SUMMARY_CHARS - 1] + "…"
        self.emit(ev.TOOL_END, {"call_id": record["call_id"], "tool": record["tool"],
                                "status": record["status"], "duration_ms": record["duration_ms"],
                                "summary": summary, "run_id": self.run_id})

    # 4. ---------------------------------------------------------------- judge
    def judge(self) -> None:
        """The run's status from what the agent produced; the cut note or the apology
        streamed after the answer when it ended badly."""
        result = self.result
        if self.status == "succeeded" and result.incomplete and not result.truncated:
            # the stream ended without a finish_reason: not a complete answer
            self.status = "failed"
            self.error = "the model's answer was cut off (the stream ended early)"
            log.error("run %s failed: %s", self.run_id, self.error)
        if self.status == "succeeded" and not result.answer.strip():
            self.status, self.error = "failed", "the model returned no answer"
        if result.truncated:
            self.error = self.error or (f"the answer reached {self.agent.max_answer_chars} "
                                        "characters and was cut")
            self.say(CUT_NOTE)
        if self.status in ("failed", "timed_out"):
            if self.status == "timed_out":
                self.error = f"the run took longer than {self.chat.turn_timeout:g} s"
            self.say(("\n\n" if result.answer else "") + APOLOGY)  # after what was streamed

    def say(self, text: str) -> None:
        """Stream `text` as part of the answer."""
        for token in tokens_of(text):
            self.emit(ev.TOKEN, {"token": token, "run_id": self.run_id})
        self.result.parts.append(text)

    # 5. ---------------------------------------------------------------- finish
    def finish(self, status: str, raise_error: bool = True, retries: tuple = FINISH_RETRIES,
               **outcome) -> dict:
        """Store the run's outcome, retrying a moment; if the database still fails, keep it
        for `Chat.retry_unfinished` and raise StoreError (the client is told)."""
        self.finished = True
        store = self.chat.store
        for pause in (*retries, None):
            try:
                return store.finish_run(self.run_id, status, **outcome)
            except NotFound:
                return {}  # the conversation was deleted meanwhile: nothing to answer
            except StoreError as exc:
                failure = exc
                if pause is None:
                    break
                time.sleep(pause)  # green under eventlet: a database blip, not a test sync
        self.chat.keep_unfinished(self.run_id, {"status": status, **outcome})
        log.warning("run %s: its outcome is kept until the database is back (%s)",
                    self.run_id, failure)
        if raise_error:
            raise failure
        return {}

    # 6. ---------------------------------------------------------------- final
    def emit_final(self, outcome: dict) -> dict:
        """The final_message: the answer as streamed, and where it was stored."""
        result = self.result
        payload = {
            "message": result.answer,
            "truncated": result.truncated,
            "sources": result.sources,
            "run_id": self.run_id,
            "conversation_id": self.conversation_id,
            "message_id": (outcome or {}).get("message_id"),
            "status": self.status,
            "usage": (totals(result.calls, self.model, outcome, self.prices) if self.model
                      else result.usage),
            "tool_calls": [{k: v for k, v in call.items() if k != "sentence"}
                           for call in result.tool_calls],
            "assistant": self.assistant,
        }
        self.emit(ev.FINAL, payload)
        return payload


# ---------------------------------------------------------------------- what a run produces

@dataclass
class RunResult:
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
    calls: list[dict] = field(default_factory=list)  # each model call's usage (agent/usage.py)

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


class TokenStream:
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

    def __init__(self, emit, result: RunResult, run_id: str, max_chars: int = 0):
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
        """Text of model step `step`, as it streams (called by agent/steps.py)."""
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


def merge_sources(sources: list[dict], new: list[dict]) -> None:
    """Append `new` sources that are not already listed (by url, else title)."""
    seen = {s.get("url") or s.get("title") for s in sources}
    for source in new or []:
        key = source.get("url") or source.get("title")
        if key and key not in seen:
            seen.add(key)
            sources.append({"title": source.get("title") or key, "url": source.get("url")})


# the phases before a run's first token: (name, the mark it starts at, the mark it ends at)
PHASES = (("admit", "received", "admitted"), ("store", "admitted", "stored"),
          ("queue", "stored", "begun"), ("agent", "begun", "model_request"),
          ("model", "model_request", "model_reply"))


def observe_first_token(marks: dict[str, float]) -> None:
    """Record the time to a run's first token and where it went, from its marks (a run
    that never got that far has fewer)."""
    if "received" in marks and "first_token" in marks:
        FIRST_TOKEN_SECONDS.observe(marks["first_token"] - marks["received"])
    for phase, begin, end in PHASES:
        if phase == "agent" and "begun" not in marks:
            begin = "stored"  # began as it was created: no queue
        if begin in marks and end in marks:
            TURN_PHASE_SECONDS.labels(phase).observe(marks[end] - marks[begin])


def _reason(exc: BaseException) -> str:
    """One line about a failure of ours (storage, a bug), for the log."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]

"""The one path of a chat turn, shared by every transport: a run in a conversation.

validate -> create the run (pending; multitask rule) -> wait for its turn ->
store the question, load memory -> run_started -> agent (events; deadline and
stop enforced wherever it waits) -> store answer, tool calls, Q&A, status in
one transaction -> final_message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, HumanMessage

from agent import events as ev
from agent.cancel import CancelHandle, RunCancelled
from agent.files import run_scope
from agent.offline import tokens_of
from agent.persona import APOLOGY, GREETING
from agent.retry import describe
from agent.runner import AgentResult, ChatAgent
from agent.text import UNSTORABLE, storable
from logs import bind_run_id
from metrics import FIRST_TOKEN_SECONDS, TURN_PHASE_SECONDS, TURN_SECONDS, TURNS
from storage.base import NotFound, StoreError

log = logging.getLogger("jellychat.turn")

MAX_TOKEN_CHARS = 200
MAX_APPLICATION_CHARS = 100
MAX_TITLE_CHARS = 80
QUEUE_POLL = (0.02, 0.25)  # first and longest wait between checks while queued
FINISH_RETRIES = (0.2,)  # pauses before storing a run's outcome again, seconds (then the watcher)
CUT_NOTE = "\n\n[The answer was cut here: it reached the length limit.]"


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
    conversation_id: str | None = None


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
    if UNSTORABLE.search(value):
        raise InvalidInput(name, f"'{name}' must not contain NUL characters or lone surrogates")
    return value


def validate_token(user_token) -> str:
    return _required_text("user_token", user_token, MAX_TOKEN_CHARS)


def validate_id(value, name: str = "conversation_id") -> str:
    """A uuid given by a client, normalised; InvalidInput otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(name, f"'{name}' must be a string (a uuid)")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(name, f"'{name}' is not a valid id") from None


def validate_optional_text(name: str, value, limit: int) -> str | None:
    """An optional text field: None when absent or blank, else `_required_text`'s rules."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _required_text(name, value, limit)


def validate_title(title) -> str:
    return _required_text("title", title, MAX_TITLE_CHARS)


def validate(user_token, message, application, max_message_chars: int,
             conversation_id=None) -> TurnInput:
    """The same rules and messages for every transport."""
    token = validate_token(user_token)
    text = _required_text("message", message, max_message_chars)
    if application is None or application == "":
        app_name = "unknown"
    else:
        app_name = _required_text("application", application, MAX_APPLICATION_CHARS)
    conversation = None if conversation_id in (None, "") else validate_id(conversation_id)
    return TurnInput(token, text, app_name, conversation)


def to_langchain(memory: list[dict]) -> list:
    """Stored human/jelly messages as LangChain messages."""
    mapped = []
    for m in memory:
        if m["type"] == "human":
            mapped.append(HumanMessage(m["content"]))
        elif m["type"] == "jelly":
            mapped.append(AIMessage(m["content"]))
    return mapped


def title_from(question: str) -> str:
    """A first title: the question's opening words."""
    words = " ".join(question.split())
    if len(words) <= 60:
        return words
    return words[:59].rsplit(" ", 1)[0] + "…"


@dataclass
class ActiveRun:
    run_id: str
    user_token: str
    conversation_id: str
    origin: str | None
    cancel: CancelHandle
    finished: bool = False  # its outcome was stored, or handed to `retry_unfinished`


@dataclass
class StartedRun:
    """A run created and registered by `Chat.start`, waiting for `Chat.serve`."""

    run: ActiveRun
    data: TurnInput
    begun: dict | None = None  # begin_run's answer when the run began as it was created
    # monotonic times: the request came in, passed the limits, its run was stored
    marks: dict[str, float] = field(default_factory=dict)


class RunRegistry:
    """The runs this process is serving, by id: what stop, disconnect and
    shutdown act on. Stops asked of another process reach it through the
    database (`stop_requested`), which `poll_stops` reads."""

    def __init__(self) -> None:
        self._runs: dict[str, ActiveRun] = {}
        self._lock = threading.Lock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def add(self, run: ActiveRun) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def get(self, run_id: str) -> ActiveRun | None:
        return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        return list(self._runs)

    def of_origin(self, origin: str) -> list[ActiveRun]:
        return [r for r in list(self._runs.values()) if r.origin == origin]

    def of_conversation(self, conversation_id: str) -> list[ActiveRun]:
        return [r for r in list(self._runs.values()) if r.conversation_id == conversation_id]

    def cancel(self, run_ids, reason: str = "stopped") -> int:
        count = 0
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run and run.cancel.cancel(reason):
                count += 1
        return count


class Chat:
    """Holds what a run needs: the store, the agent, the registry and the limits."""

    def __init__(self, store, agent: ChatAgent, *, memory_messages: int = 10,
                 max_message_chars: int = 10_000, turn_timeout: float = 120.0,
                 multitask: str = "enqueue", title_writer=None, registry: RunRegistry | None = None,
                 retriever=None, reference_kbs: tuple[str, ...] = (), reference_k: int = 4,
                 reference_filter=None, limits=None):
        self.store = store
        self.agent = agent
        self.memory_messages = memory_messages
        self.max_message_chars = max_message_chars
        self.turn_timeout = turn_timeout
        self.multitask = multitask
        self.title_writer = title_writer  # prompt -> title, or None
        self.registry = registry or RunRegistry()
        self.limits = limits  # admit(token, address, conversation_id, proof): rate limits, PoW
        # references-only answers: the knowledge retriever, the kbs it tries in
        # order, how many chunks, and which chunks count as relevant
        self.retriever = retriever
        self.reference_kbs = reference_kbs
        self.reference_k = reference_k
        self.reference_filter = reference_filter
        # outcomes the database did not take when the run ended: {run_id: finish_run kwargs},
        # stored by `retry_unfinished` (the run watcher) once it is back
        self.unfinished: dict[str, dict] = {}
        self._unfinished_lock = threading.Lock()

    # ------------------------------------------------------------------ runs
    def turn(self, user_token, message, application, sink: ev.EventSink, *,
             conversation_id=None, origin: str | None = None, client_address: str | None = None,
             proof=None) -> dict:
        """Run one chat turn; returns the final_message payload.

        Raises InvalidInput before anything is written, RateLimited past a limit,
        NotFound for another user's conversation and Busy under MULTITASK=reject,
        before any event. `proof`: the solved proof of work, when one is required.
        """
        started = self.start(user_token, message, application, conversation_id=conversation_id,
                             origin=origin, client_address=client_address, proof=proof)
        return self.serve(started, sink)

    def start(self, user_token, message, application, *, conversation_id=None,
              origin: str | None = None, client_address: str | None = None,
              proof=None) -> StartedRun:
        """The part of a turn that can refuse it: validate and create the run (begun at
        once, its question stored, when its conversation is idle).

        A transport that must answer refusals before it streams (SSE: a 4xx
        status) calls this first and then `serve`; `turn` does both.
        """
        received = time.monotonic()
        data = validate(user_token, message, application, self.max_message_chars,
                        conversation_id)
        if self.limits is not None:
            self.limits.admit(data.user_token, client_address, data.conversation_id, proof)
        admitted = time.monotonic()
        # one database call when the conversation is idle (the usual case)
        ticket = self.store.start_run(
            data.user_token, GREETING, data.conversation_id, data.application, self.multitask,
            self.registry.owner, self.agent.model_name, data.message, self.memory_messages,
            self.turn_timeout,
        )
        marks = {"received": received, "admitted": admitted, "stored": time.monotonic()}
        run = ActiveRun(ticket["run_id"], data.user_token, ticket["conversation_id"], origin,
                        CancelHandle())
        self.registry.add(run)
        if self.multitask == "interrupt":
            others = [r.run_id for r in self.registry.of_conversation(run.conversation_id)
                      if r.run_id != run.run_id]
            self.registry.cancel(others, "stopped")
        return StartedRun(run, data, ticket if ticket.get("ready") else None, marks)

    def serve(self, started: StartedRun, sink: ev.EventSink) -> dict:
        """Serve a started run to its end; returns the final_message payload."""
        run = started.run
        try:
            with bind_run_id(run.run_id):
                try:
                    return self._serve(run, started.data, sink, started.begun, started.marks)
                except Exception as exc:
                    if not run.finished:
                        # the database (or a bug) failed before the outcome was stored: close
                        # the run so its question, if stored, is answered and its
                        # conversation moves on
                        log.error("run %s failed before it ended: %s", run.run_id, _reason(exc))
                        self._finish_or_keep(run, "failed", question=started.data.message,
                                             answer=APOLOGY,
                                             error="the chat storage failed during the run",
                                             raise_error=False, retries=())
                    raise
        finally:
            run.cancel.close()
            self.registry.remove(run.run_id)

    def references(self, user_token, message, application, sink: ev.EventSink, *,
                   client_address: str | None = None) -> dict:
        """A references-only answer: the knowledge sources for the question, no model
        call and nothing stored. Same validation, rate limits and final_message as a
        run (no proof of work: it opens no conversation)."""
        data = validate(user_token, message, application, self.max_message_chars)
        if self.limits is not None:
            self.limits.admit(data.user_token, client_address, None, check_pow=False)
        sources = []
        kb = self.retriever.first_available(self.reference_kbs) if self.retriever else None
        if kb is not None:
            for chunk in self.retriever.search(kb, data.message, self.reference_k):
                if self.reference_filter is None or self.reference_filter(data.message, chunk):
                    sources.append({"title": chunk.title, "url": chunk.url,
                                    "snippet": chunk.snippet(), "score": round(chunk.score, 6)})
        payload = {"message": "", "sources": sources, "run_id": None, "conversation_id": None,
                   "message_id": None, "status": "succeeded", "usage": None, "tool_calls": [],
                   "references_only": True}
        sink.emit(ev.FINAL, payload)
        return payload

    def _serve(self, run: ActiveRun, data: TurnInput, sink: ev.EventSink, begun: dict | None,
               marks: dict[str, float]) -> dict:
        if begun is None:
            begun = self._wait_turn(run, data.message)
            marks["begun"] = time.monotonic()
        if not begun.get("ready"):
            # stopped while it waited behind another run: nothing was asked yet
            outcome = self._finish_or_keep(run, "stopped")
            return self._final(sink, run, AgentResult(), outcome, "stopped")
        sink.emit(ev.RUN_STARTED, {"run_id": run.run_id, "conversation_id": run.conversation_id,
                                   "message_id": begun["message_id"]})
        run.cancel.start_deadline(self.turn_timeout)
        result = AgentResult()
        started = time.monotonic()
        status, error = "succeeded", None
        history = [*to_langchain(begun.get("memory") or []), HumanMessage(data.message)]
        try:
            with run_scope(self.store, data.user_token, run.conversation_id, run.run_id, sink.emit):
                self.agent.run(history, sink.emit, result, run.cancel, run.run_id)
        except RunCancelled as exc:
            status = run.cancel.reason or exc.reason
        except Exception as exc:  # noqa: BLE001 - any agent failure ends as an apology
            if run.cancel.cancelled:
                status = run.cancel.reason
            else:
                # one short, generic line: provider error text may echo a key or the prompt
                status, error = "failed", describe(exc)
                log.error("run %s failed: %s", run.run_id, error)
        finally:
            run.cancel.close()
        if status == "succeeded" and result.incomplete and not result.truncated:
            # the stream ended without a finish_reason: not a complete answer
            status, error = "failed", "the model's answer was cut off (the stream ended early)"
            log.error("run %s failed: %s", run.run_id, error)
        if status == "succeeded" and not result.answer.strip():
            status, error = "failed", "the model returned no answer"
        if result.truncated:
            error = error or f"the answer reached {self.agent.max_answer_chars} characters and was cut"
            self._say(result, sink, run.run_id, CUT_NOTE)
        if status in ("failed", "timed_out"):
            if status == "timed_out":
                error = f"the run took longer than {self.turn_timeout:g} s"
            self._apologize(result, sink, run.run_id)
        TURNS.labels(status).inc()
        TURN_SECONDS.observe(time.monotonic() - started)
        observe_first_token({**marks, **result.marks})
        outcome = self._finish_or_keep(
            run, status, question=data.message, answer=result.answer,
            sources=result.sources, tool_calls=result.tool_calls,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens, error=error,
            title=None if begun.get("titled") else title_from(data.message),
        )
        final = self._final(sink, run, result, outcome, status)
        if not begun.get("titled") and self.title_writer is not None and status == "succeeded":
            self._better_title(run.conversation_id, data.message, result.answer)
        return final

    def _wait_turn(self, run: ActiveRun, message: str) -> dict:
        """Begin the run once the runs before it in its conversation have ended."""
        pause = QUEUE_POLL[0]
        give_up = time.monotonic() + 2 * self.turn_timeout + 10
        while True:
            if run.cancel.cancelled:
                return {"ready": False, "stop": True}
            begun = self.store.begin_run(run.run_id, message, self.memory_messages,
                                         self.turn_timeout)
            if begun.get("ready") or begun.get("stop"):
                return begun
            if time.monotonic() > give_up:
                return {"ready": False, "stop": True}
            time.sleep(pause)  # green under eventlet: waits for another run, not a test sync
            pause = min(pause * 2, QUEUE_POLL[1])

    def _finish_or_keep(self, run: ActiveRun, status: str, raise_error: bool = True,
                        retries: tuple = FINISH_RETRIES, **outcome) -> dict:
        """Store the run's outcome, retrying a moment; if the database still fails, keep it
        for `retry_unfinished` and raise StoreError (the client is told)."""
        run.finished = True
        for pause in (*retries, None):
            try:
                return self.store.finish_run(run.run_id, status, **outcome)
            except NotFound:
                return {}  # the conversation was deleted meanwhile: nothing to answer
            except StoreError as exc:
                failure = exc
                if pause is None:
                    break
                time.sleep(pause)  # green under eventlet: a database blip, not a test sync
        with self._unfinished_lock:
            self.unfinished[run.run_id] = {"status": status, **outcome}
        log.warning("run %s: its outcome is kept until the database is back (%s)",
                    run.run_id, failure)
        if raise_error:
            raise failure
        return {}

    def retry_unfinished(self) -> int:
        """Store the outcomes the database refused when their runs ended; how many went."""
        done = 0
        for run_id, outcome in list(self.unfinished.items()):
            args = dict(outcome)
            status = args.pop("status")
            try:
                self.store.finish_run(run_id, status, **args)
            except NotFound:
                pass  # deleted meanwhile
            except StoreError:
                break  # still down: the watcher tries again later
            with self._unfinished_lock:
                self.unfinished.pop(run_id, None)
            done += 1
        if done:
            log.info("stored %d run outcome(s) kept during a database outage", done)
        return done

    @staticmethod
    def _final(sink, run: ActiveRun, result: AgentResult, outcome: dict, status: str) -> dict:
        payload = {
            "message": result.answer,
            "truncated": result.truncated,
            "sources": result.sources,
            "run_id": run.run_id,
            "conversation_id": run.conversation_id,
            "message_id": (outcome or {}).get("message_id"),
            "status": status,
            "usage": result.usage,
            "tool_calls": [{k: v for k, v in call.items() if k != "sentence"}
                           for call in result.tool_calls],
        }
        sink.emit(ev.FINAL, payload)
        return payload

    @classmethod
    def _apologize(cls, result: AgentResult, sink, run_id: str) -> None:
        """Stream the apology after whatever was already streamed."""
        cls._say(result, sink, run_id, ("\n\n" if result.answer else "") + APOLOGY)

    @staticmethod
    def _say(result: AgentResult, sink, run_id: str, text: str) -> None:
        """Stream `text` as part of the answer."""
        for token in tokens_of(text):
            sink.emit(ev.TOKEN, {"token": token, "run_id": run_id})
        result.parts.append(text)

    def _better_title(self, conversation_id: str, question: str, answer: str) -> None:
        """A short title from the model (small budget); the question's words stay on failure."""
        try:
            reply = self.title_writer(
                "Give a title of at most six words for this conversation. "
                f"Reply with the title only.\n\nQuestion: {question[:500]}\n"
                f"Answer: {answer[:500]}"
            )
            title = " ".join(reply.strip().strip('"').split())[:MAX_TITLE_CHARS]
            if title:
                self.store.set_auto_title(conversation_id, storable(title))
        except Exception as exc:  # noqa: BLE001 - a title is a nicety
            log.info("no model title for conversation %s: %s", conversation_id, describe(exc))

    # ------------------------------------------------------------------ stop
    def stop(self, user_token, run_id) -> dict:
        """Stop a run of this user, served here or by another process; NotFound otherwise."""
        token = validate_token(user_token)
        run_id = validate_id(run_id, "run_id")
        outcome = self.store.request_stop(token, run_id)
        local = self.registry.get(run_id)
        if local and local.user_token == token:
            local.cancel.cancel("stopped")
        return outcome

    def stop_origin(self, origin: str, run_id=None) -> list[str]:
        """Stop the runs started from one client connection (all, or one by id)."""
        runs = self.registry.of_origin(origin)
        if run_id is not None:
            wanted = validate_id(run_id, "run_id")
            runs = [r for r in runs if r.run_id == wanted]
        self.registry.cancel([r.run_id for r in runs], "stopped")
        return [r.run_id for r in runs]

    def poll_stops(self) -> int:
        """Cancel local runs that another process (or an interrupt) asked to stop."""
        ids = self.registry.ids()
        if not ids:
            return 0
        return self.registry.cancel(self.store.stop_requested(ids), "stopped")

    def recover(self, grace: float = 30.0) -> int:
        """Close runs that a dead process left active, answering their questions.

        Owners on this host whose process is gone (or whose pid is now ours, in a
        new process) are dead; anyone's run past its deadline by `grace` is too.
        """
        host = socket.gethostname()
        dead = []
        for owner in self.store.active_owners():
            parts = str(owner).rsplit(":", 2)
            if len(parts) != 3 or parts[0] != host or owner == self.registry.owner:
                continue
            if not _alive(int(parts[1])) or int(parts[1]) == os.getpid():
                dead.append(owner)
        count = self.store.recover_runs(dead, APOLOGY, grace)
        if count:
            log.warning("closed %d run(s) left unfinished by a stopped server", count)
        return count


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reason(exc: BaseException) -> str:
    """One line about a failure of ours (storage, a bug), for the log."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]

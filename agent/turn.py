"""Starting runs, the one path of a chat turn that every transport shares.

validate -> admit (rate limits, proof of work) -> create the run in the database
(pending; the MULTITASK rule; begun at once when its conversation is idle) ->
register it. The run then lives its own life in agent/run.py, which reads top
to bottom: wait for its turn, run_started, the agent, store the outcome,
final_message. Here too: the registry of the runs this process serves, and
stop, recovery and the outcomes kept during a database outage.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from agent import events as ev
from agent import references
from agent.persona import APOLOGY, GREETING
from agent.run import PHASES, Run, observe_first_token  # noqa: F401 - re-exported
from agent.runner import ChatAgent
from agent.text import UNSTORABLE
from agent.titles import MAX_TITLE_CHARS, title_from  # noqa: F401 - re-exported
from agent.usage import estimate_tokens, validate_model
from storage.base import NotFound, StoreError, UnknownAssistant

log = logging.getLogger("jellychat.turn")

MAX_TOKEN_CHARS = 200
MAX_APPLICATION_CHARS = 100
MAX_ASSISTANT_ID_CHARS = 100

StartedRun = Run  # the former name of what `Chat.start` returns, for the transports


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


class RunRegistry:
    """The runs this process is serving, by id: what stop, disconnect and
    shutdown act on. Stops asked of another process reach it through the
    database (`stop_requested`), which `poll_stops` reads."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def add(self, run: Run) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        return list(self._runs)

    def of_origin(self, origin: str) -> list[Run]:
        return [r for r in list(self._runs.values()) if r.origin == origin]

    def of_conversation(self, conversation_id: str) -> list[Run]:
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

    # tokens a usual run uses beyond its question (prompt, tools, memory; the answer):
    # what a user's first run reserves against their balance (later runs: the last cost)
    usage_estimate: tuple[int, int] = (3000, 500)

    def __init__(self, store, agent: ChatAgent, *, memory_messages: int = 10,
                 max_message_chars: int = 10_000, turn_timeout: float = 120.0,
                 multitask: str = "enqueue", title_writer=None, registry: RunRegistry | None = None,
                 retriever=None, reference_kbs: tuple[str, ...] = (), reference_k: int = 4,
                 reference_filter=None, limits=None, assistants=None, suggester=None,
                 history=None):
        self.store = store
        self.agent = agent
        self.memory_messages = memory_messages
        self.max_message_chars = max_message_chars
        self.turn_timeout = turn_timeout
        self.multitask = multitask
        self.title_writer = title_writer  # prompt -> title, or None
        self.registry = registry or RunRegistry()
        self.limits = limits  # admit(token, address, conversation_id, proof): rate limits, PoW
        self.assistants = assistants  # agent/assistants.py: each assistant version's agent
        self.suggester = suggester  # agent/suggestions.py: follow-ups after an answer
        self.history = history  # agent/history.py: the model's view of long histories
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
             proof=None, assistant_id=None, model=None) -> dict:
        """Run one chat turn; returns the final_message payload.

        Raises InvalidInput before anything is written, RateLimited past a limit,
        NotFound for another user's conversation and Busy under MULTITASK=reject,
        before any event. `proof`: the solved proof of work, when one is required.
        """
        started = self.start(user_token, message, application, conversation_id=conversation_id,
                             origin=origin, client_address=client_address, proof=proof,
                             assistant_id=assistant_id, model=model)
        return self.serve(started, sink)

    def start(self, user_token, message, application, *, conversation_id=None,
              origin: str | None = None, client_address: str | None = None,
              proof=None, assistant_id=None, model=None) -> Run:
        """The part of a turn that can refuse it: validate, admit and create the run (begun
        at once, its question stored, when its conversation is idle), registered here.

        A transport that must answer refusals before it streams (SSE: a 4xx
        status) calls this first and then `serve`; `turn` does both.
        """
        received = time.monotonic()
        data = validate(user_token, message, application, self.max_message_chars,
                        conversation_id)
        assistant_id = validate_optional_text("assistant_id", assistant_id, MAX_ASSISTANT_ID_CHARS)
        model = validate_model(model)
        if self.limits is not None:
            self.limits.admit(data.user_token, client_address, data.conversation_id, proof)
        admitted = time.monotonic()
        # one database call when the conversation is idle (the usual case)
        try:
            ticket = self.store.start_run(
                data.user_token, GREETING, data.conversation_id, data.application, self.multitask,
                self.registry.owner, self.agent.model_name, data.message, self.memory_messages,
                self.turn_timeout, assistant_id=assistant_id, requested_model=model,
                estimate=(self.usage_estimate[0] + estimate_tokens(len(data.message)),
                          self.usage_estimate[1]),
            )
        except UnknownAssistant:
            raise InvalidInput("assistant_id", "'assistant_id' names no assistant") from None
        marks = {"received": received, "admitted": admitted, "stored": time.monotonic()}
        run = Run(self, ticket, data, origin=origin, marks=marks,
                  assistant=ticket.get("assistant"))
        self.registry.add(run)
        if self.multitask == "interrupt":
            others = [r.run_id for r in self.registry.of_conversation(run.conversation_id)
                      if r.run_id != run.run_id]
            self.registry.cancel(others, "stopped")
        return run

    def serve(self, started: Run, sink: ev.EventSink) -> dict:
        """Serve a started run to its end (agent/run.py); returns the final_message payload."""
        return started.serve(sink)

    def references(self, user_token, message, application, sink: ev.EventSink, *,
                   client_address: str | None = None) -> dict:
        """A references-only answer (agent/references.py): the knowledge sources for the
        question, no model call and nothing stored. Same validation, rate limits and
        final_message as a run (no proof of work: it opens no conversation)."""
        data = validate(user_token, message, application, self.max_message_chars)
        if self.limits is not None:
            self.limits.admit(data.user_token, client_address, None, check_pow=False)
        sources = references.find_sources(data.message, self.retriever, self.reference_kbs,
                                          self.reference_k, self.reference_filter)
        return references.answer(sources, sink)

    def keep_unfinished(self, run_id: str, outcome: dict) -> None:
        """Keep the outcome of a run that the database refused, for `retry_unfinished`."""
        with self._unfinished_lock:
            self.unfinished[run_id] = outcome

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

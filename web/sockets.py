"""Socket.IO transport: `user_message` and `stop` in; the run's events out, to the
calling client only (run_started, tool_start, tool_end, final_answer_token,
final_message, error)."""

from __future__ import annotations

import logging
import warnings

from flask import current_app, request
from flask_socketio import SocketIO, emit, join_room

from agent.events import ERROR, FINAL
from agent.turn import InvalidInput, validate_id
from compat import drop_unnamed_events
from storage import BudgetExceeded, Busy, ModelNotAllowed, NotFound, RateLimited, StoreError
from web.input import check_payload
from web.limits import UnknownToken
from web.page import socket_origins
from web.services import Draining, get_chat, get_settings, refuse_if_draining

log = logging.getLogger("jellychat.sockets")

socketio = SocketIO()


def run_room(run_id: str) -> str:
    """The room of clients that stopped a run from elsewhere: they get its final_message."""
    return f"run:{run_id}"


class SocketSink:
    """A run's events emitted to one client (its sid).

    The client is connected to this process, so its events skip the message
    queue (one Redis publish per token, read by every other process, for
    nothing). The run's final_message also goes to its room, through the queue:
    clients that stopped the run from another connection, maybe of another
    process, learn that it ended.
    """

    def __init__(self, sid: str):
        self.sid = sid

    def emit(self, event: str, data: dict) -> None:
        socketio.emit(event, data, to=self.sid, ignore_queue=True)
        if event == FINAL and data.get("run_id"):
            socketio.emit(event, data, to=run_room(data["run_id"]), skip_sid=self.sid)


def _arguments(args) -> dict:
    """Accept `{user_token, message, application, conversation_id, references_only}` or the first three
    positionally (the original JellyChat clients)."""
    if len(args) == 1 and isinstance(args[0], dict):
        return args[0]
    if 2 <= len(args) <= 3 and not any(isinstance(a, (dict, list)) for a in args):
        token, message, application = (*args, None)[:3]
        return {"user_token": token, "message": message, "application": application}
    raise InvalidInput(
        "payload",
        "user_message expects {user_token, message, application, conversation_id?} "
        "or the first three as arguments",
    )


def error_payload(exc: Exception) -> dict:
    """The `error` event for an exception a run raised before it started streaming."""
    if isinstance(exc, InvalidInput):
        return {"error": exc.message, "field": exc.field}
    if isinstance(exc, NotFound):
        return {"error": "conversation not found", "field": "conversation_id"}
    if isinstance(exc, RateLimited):
        return {"error": str(exc), "retry_after": exc.retry_after, "limit": exc.scope}
    if isinstance(exc, Busy):
        return {"error": f"the conversation is busy with run {exc.run_id}; wait for it or stop it",
                "run_id": exc.run_id}
    if isinstance(exc, Draining):
        return {"error": str(exc)}
    if isinstance(exc, UnknownToken):
        return {"error": str(exc), "field": "user_token", "status": 401}
    if isinstance(exc, BudgetExceeded):
        return {"error": str(exc), "code": exc.code, "period": exc.period}
    if isinstance(exc, ModelNotAllowed):
        return {"error": str(exc), "field": exc.field}
    log.error("storage unavailable: %s", exc)
    return {"error": "the chat storage is unavailable, please try again later"}


@socketio.on("user_message")
def on_user_message(*args):
    try:
        # lone surrogates and absurd nesting: refused before anything is written
        check_payload(args[0] if len(args) == 1 else list(args))
        data = _arguments(args)
        refuse_if_draining()
        _require_issued(data.get("user_token"))
        if data.get("references_only") is True:  # the knowledge sources only, no model
            get_chat().references(data.get("user_token"), data.get("message"),
                                  data.get("application"), SocketSink(request.sid),
                                  client_address=request.remote_addr)
            return
        get_chat().turn(
            data.get("user_token"), data.get("message"), data.get("application"),
            SocketSink(request.sid), conversation_id=data.get("conversation_id"),
            origin=request.sid, client_address=request.remote_addr, proof=data.get("pow"),
            assistant_id=data.get("assistant_id"), model=data.get("model"),
        )
    except (InvalidInput, NotFound, Busy, RateLimited, StoreError, Draining, UnknownToken,
            BudgetExceeded, ModelNotAllowed) as exc:
        emit(ERROR, error_payload(exc))


def _require_issued(token) -> None:
    """REQUIRE_SERVER_TOKENS=1: UnknownToken for a token the server did not issue."""
    limits = current_app.extensions.get("jellychat.limits")
    if limits is not None:
        limits.require_issued(get_chat().store, token)


@socketio.on("stop")
def on_stop(data=None, *_extra):
    """Stop a run started from this connection (`{run_id}`), or all of them."""
    run_id = data.get("run_id") if isinstance(data, dict) else None
    try:
        stopped = get_chat().stop_origin(request.sid, run_id)
        if run_id and not stopped:
            # a run of this user served elsewhere (another tab, process or transport)
            token = data.get("user_token") if isinstance(data, dict) else None
            if token:
                _require_issued(token)
                _stop_elsewhere(token, validate_id(run_id, "run_id"))
            else:
                emit(ERROR, {"error": "no running run with this id on this connection",
                             "field": "run_id", "run_id": run_id})
    except (InvalidInput, NotFound, StoreError, UnknownToken) as exc:
        emit(ERROR, {**error_payload(exc), "field": "run_id"} if isinstance(exc, NotFound)
             else error_payload(exc))


def _stop_elsewhere(token: str, run_id: str) -> None:
    """Ask the process serving the run to stop it; its final_message comes back here.

    The room is joined only once the stop succeeded: the database call is what says
    the run is this user's, and another user's final_message must not arrive meanwhile.
    """
    outcome = get_chat().stop(token, run_id)
    if outcome.get("status") not in ("pending", "running"):
        emit(ERROR, {"error": "the run has already ended", "field": "run_id",
                     "run_id": run_id, "status": outcome.get("status")})
        return
    join_room(run_room(run_id))


@socketio.on("disconnect")
def on_disconnect(*args):
    if get_settings().stop_on_disconnect:
        chat = current_app.extensions.get("jellychat.chat")
        if chat is not None:
            chat.stop_origin(request.sid)


@socketio.on("*")
def on_unknown_event(event, *args):
    emit(ERROR, {"error": f"unknown event '{event}'; send 'user_message' or 'stop'"})


@socketio.on_error_default
def on_error(exc):
    log.exception("socket handler failed: %s", exc)
    emit(ERROR, {"error": "internal error, please try again"})


def watch_runs(app, sleep, interval: float = 0.25, sweep_every: float = 30.0,
               retry_every: float = 1.0) -> None:
    """Forever: apply stops asked through the database; store run outcomes the database
    refused during an outage; close runs of dead processes and runs past their deadline."""
    import time

    next_sweep = time.monotonic() + sweep_every
    next_retry = 0.0
    warned = 0.0  # one log line per 30 s of an outage, not four a second
    while True:
        sleep(interval)
        chat = app.extensions.get("jellychat.chat")
        if chat is None:
            continue
        try:
            chat.poll_stops()
            now = time.monotonic()
            if chat.unfinished and now > next_retry:
                next_retry = now + retry_every
                chat.retry_unfinished()
            if now > next_sweep:
                next_sweep = now + sweep_every
                chat.recover()
        except StoreError as exc:
            if time.monotonic() - warned > 30:
                warned = time.monotonic()
                log.warning("run watcher: %s", exc)
        except Exception:  # noqa: BLE001 - the watcher must keep running
            log.exception("run watcher failed")


class _MalformedFrames(logging.Filter):
    """A frame python-socketio cannot decode or dispatch (binary garbage, an event name
    that is not a string) is the client's fault: one warning line, not a traceback
    per frame that a client could use to flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.msg == "message handler error":
            exc = record.exc_info[1]
            record.msg, record.args = "malformed Socket.IO message dropped: %s: %.200s", (
                type(exc).__name__, exc)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def init_app(app, settings) -> None:
    logging.getLogger("engineio.server").addFilter(_MalformedFrames())
    with warnings.catch_warnings():
        # importing eventlet warns that it is in maintenance mode: a known, accepted
        # choice (see README, Concurrency), and noise on every `flask` CLI command
        warnings.filterwarnings("ignore", message=r"(?s)\s*Eventlet is deprecated")
        socketio.init_app(
            app,
            async_mode=settings.socketio_async_mode,
            cors_allowed_origins=socket_origins(settings),
            max_http_buffer_size=256 * 1024,
            message_queue=settings.socketio_message_queue or None,
        )
    drop_unnamed_events(socketio.server)  # compat.py

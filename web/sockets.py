"""Socket.IO transport: `user_message` in; `tool_start`, `final_answer_token`,
`final_message` and `error` out, to the calling client only."""

from __future__ import annotations

import logging
import warnings

from flask import request
from flask_socketio import SocketIO, emit

from agent.turn import InvalidInput
from storage import StoreError
from web.services import get_chat

log = logging.getLogger("jellychat.sockets")

socketio = SocketIO()


class SocketEvents:
    """Turn events emitted to one client (its sid)."""

    def __init__(self, sid: str):
        self.sid = sid

    def tool_start(self, tool_name: str) -> None:
        socketio.emit("tool_start", {"tool_name": tool_name}, to=self.sid)

    def token(self, token: str) -> None:
        socketio.emit("final_answer_token", {"token": token}, to=self.sid)

    def final(self, message: str, sources: list[dict]) -> None:
        socketio.emit("final_message", {"message": message, "sources": sources}, to=self.sid)


def _arguments(args) -> tuple:
    """Accept `{user_token, message, application}` or the three positionally."""
    if len(args) == 1 and isinstance(args[0], dict):
        data = args[0]
        return data.get("user_token"), data.get("message"), data.get("application")
    if 2 <= len(args) <= 3 and not any(isinstance(a, (dict, list)) for a in args):
        return (*args, None)[:3]
    raise InvalidInput(
        "payload",
        "user_message expects {user_token, message, application} or the three as arguments",
    )


@socketio.on("user_message")
def on_user_message(*args):
    try:
        user_token, message, application = _arguments(args)
        get_chat().turn(user_token, message, application, SocketEvents(request.sid))
    except InvalidInput as exc:
        emit("error", {"error": exc.message, "field": exc.field})
    except StoreError as exc:
        log.error("storage unavailable: %s", exc)
        emit("error", {"error": "the chat storage is unavailable, please try again later"})


@socketio.on("*")
def on_unknown_event(event, *args):
    emit("error", {"error": f"unknown event '{event}'; send 'user_message'"})


@socketio.on_error_default
def on_error(exc):
    log.exception("socket handler failed: %s", exc)
    emit("error", {"error": "internal error, please try again"})


def init_app(app, settings) -> None:
    with warnings.catch_warnings():
        # importing eventlet warns that it is in maintenance mode: a known, accepted
        # choice (see README, Concurrency), and noise on every `flask` CLI command
        warnings.filterwarnings("ignore", message=r"(?s)\s*Eventlet is deprecated")
        socketio.init_app(
            app,
            async_mode=settings.socketio_async_mode,
            cors_allowed_origins=settings.cors_origin_list,
            max_http_buffer_size=256 * 1024,
        )

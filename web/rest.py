"""REST transport: the chat turn over HTTP, history, Q&A pairs, counts, health."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from agent.events import CollectingSink
from agent.persona import GREETING
from agent.turn import InvalidInput, validate_id, validate_title, validate_token
from storage import Busy, NotFound, StoreError
from version import __version__
from web.input import parse_json_body
from web.services import Draining, get_chat, get_settings, refuse_if_draining

log = logging.getLogger("jellychat.rest")

bp = Blueprint("rest", __name__)

MAX_PAGE = 500
HISTORY_PAGE = 200  # /history rows without `limit`: the recent chat (the whole chat was 12.8 MB
MAX_HISTORY_PAGE = 1000  # after 3,000 turns); older rows page back with `before`


def _error(message: str, status: int, **extra):
    return jsonify({"error": message, **extra}), status


def _json_body() -> dict:
    return parse_json_body()  # 415 / 413 / 400 (bad JSON, too deep, lone surrogates)


def user_token(data: dict | None = None) -> str:
    """The caller's token: the X-User-Token header, else `user_token` in the JSON body."""
    token = request.headers.get("X-User-Token")
    if token is None and data is not None:
        token = data.get("user_token")
    if token is None:
        raise InvalidInput("user_token", "'user_token' is required: send the 'X-User-Token' header")
    return validate_token(token)


@bp.post("/user_message")
def user_message():
    data = _json_body()
    refuse_if_draining()
    sink = CollectingSink()
    final = get_chat().turn(
        user_token(data), data.get("message"), data.get("application"), sink,
        conversation_id=data.get("conversation_id"), client_address=request.remote_addr,
        proof=data.get("pow"),
    )
    return jsonify({"response": final["message"], **{k: v for k, v in final.items() if k != "message"}})


def history_row(message: dict, user_id) -> dict:
    """A message as the original JellyChat's `/history` returned it (its web page renders
    rows by `message_type`), with `type` kept for this project's clients."""
    return {"id": message["id"], "user_id": user_id, "message_type": message["type"],
            "type": message["type"], "content": message["content"],
            "timestamp": message["created"], "application": message["application"]}


@bp.post("/history")
def history():
    """The default conversation's rows, as the JellyChat clients read them: the newest
    `limit` (default HISTORY_PAGE), oldest first; `before` (a row id, from the
    X-Next-Before header) pages back. Query parameters or body fields."""
    data = _json_body()
    token = user_token(data)
    limit = int_arg("limit", HISTORY_PAGE, 1, MAX_HISTORY_PAGE, data)
    before = int_arg("before", 0, 1, 2**63 - 1, data) if _given("before", data) else None
    conversation = get_chat().store.history(token, limit, before)
    if conversation is None or (not conversation["messages"] and before is None):
        # a new visitor (not created by reading), or one whose chat is empty (an original
        # JellyChat user made by /history alone, a cleared chat): the greeting, not stored
        greeting = {"id": None, "type": "jelly", "content": GREETING,
                    "created": datetime.now(UTC).isoformat(), "application": None}
        return jsonify([history_row(greeting, conversation and conversation["user_id"])])
    response = jsonify([history_row(m, conversation["user_id"]) for m in conversation["messages"]])
    if conversation["more"] and conversation["messages"]:
        response.headers["X-Next-Before"] = str(conversation["messages"][0]["id"])
    return response


def _given(name: str, data: dict | None = None) -> bool:
    return name in request.args or (data is not None and data.get(name) is not None)


@bp.get("/conversations")
def list_conversations():
    limit = int_arg("limit", 20, 1, 100)
    before = _timestamp_arg("before")
    items = get_chat().store.list_conversations(user_token(), limit, before)
    return jsonify({"conversations": items,
                    "next_before": items[-1]["updated"] if len(items) == limit else None})


@bp.post("/conversations")
def create_conversation():
    data = _json_body() if request.content_length else {}
    title = data.get("title")
    title = validate_title(title) if title is not None else None
    conversation = get_chat().store.create_conversation(user_token(data), GREETING, title)
    return jsonify(conversation), 201


@bp.get("/conversations/<conversation_id>")
def get_conversation(conversation_id):
    conversation = get_chat().store.get_conversation(user_token(), _conversation(conversation_id))
    if conversation is None:
        raise NotFound("conversation not found")
    conversation.pop("user_id", None)
    return jsonify(conversation)


@bp.patch("/conversations/<conversation_id>")
def rename_conversation(conversation_id):
    data = _json_body()
    title = validate_title(data.get("title"))
    return jsonify(get_chat().store.update_conversation(
        user_token(data), _conversation(conversation_id), title))


@bp.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id):
    get_chat().store.delete_conversation(user_token(), _conversation(conversation_id))
    return "", 204


@bp.post("/runs/<run_id>/stop")
def stop_run(run_id):
    data = _json_body() if request.content_length else {}
    try:
        run_id = validate_id(run_id, "run_id")
    except InvalidInput:
        raise NotFound("run not found") from None
    return jsonify(get_chat().stop(user_token(data), run_id)), 202


def _conversation(conversation_id: str) -> str:
    """A conversation id from the URL; a malformed one is simply not found."""
    try:
        return validate_id(conversation_id)
    except InvalidInput:
        raise NotFound("conversation not found") from None


def _timestamp_arg(name: str) -> str | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput(name, f"'{name}' must be an ISO 8601 timestamp") from None


def int_arg(name: str, default: int, low: int, high: int, data: dict | None = None) -> int:
    """An integer query parameter (or field of `data`) within [low, high], or
    InvalidInput naming it."""
    value = request.args.get(name)
    if value is None and data is not None:
        value = data.get(name)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(name, f"'{name}' must be an integer")
    try:
        value = int(value)
    except ValueError:
        raise InvalidInput(name, f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(name, f"'{name}' must be between {low} and {high}")
    return value


def _require_admin():
    key = get_settings().admin_api_key
    if not key:
        return _error(
            "this endpoint lists every user's conversations and is disabled: "
            "set ADMIN_API_KEY and send 'Authorization: Bearer <ADMIN_API_KEY>'",
            403,
        )
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), key.encode()):
        return _error("missing or wrong 'Authorization: Bearer <ADMIN_API_KEY>' header", 401)
    return None


@bp.get("/messages")
@bp.get("/messages_answers")
def messages():
    denied = _require_admin()
    if denied:
        return denied
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    before = request.args.get("before")
    if before:
        try:
            before = datetime.fromisoformat(before)
        except ValueError:
            raise InvalidInput("before", "'before' must be an ISO 8601 timestamp") from None
    pairs = get_chat().store.list_qa(limit, before or None)
    response = jsonify([qa.to_json() for qa in pairs])
    if len(pairs) == limit:
        response.headers["X-Next-Before"] = pairs[-1].date.isoformat()
    return response


@bp.get("/human_message_count")
def human_message_count():
    count = get_chat().store.count_human_messages()
    return jsonify({"subject": "Human messages", "status": count, "color": "purple"})


@bp.get("/healthz")
def healthz():
    if get_chat().store.ping():
        return jsonify({"status": "ok", "version": __version__})
    return _error("the database does not answer", 503, version=__version__)


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


@bp.app_errorhandler(InvalidInput)
def invalid_input(exc: InvalidInput):
    return _error(exc.message, 400, field=exc.field)


@bp.app_errorhandler(NotFound)
def not_found(exc: NotFound):
    return _error(str(exc) or "not found", 404)


@bp.app_errorhandler(Busy)
def busy(exc: Busy):
    return _error(f"the conversation is busy with run {exc.run_id}; wait for it or stop it", 409,
                  run_id=exc.run_id)


@bp.app_errorhandler(Draining)
def draining(exc: Draining):
    response, status = _error(str(exc), 503)
    response.headers["Retry-After"] = "5"
    return response, status


@bp.app_errorhandler(StoreError)
def store_error(exc: StoreError):
    log.error("storage unavailable: %s", exc)
    return _error("the chat storage is unavailable, please try again later", 503)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return _error(exc.description or exc.name, exc.code or 500)


@bp.app_errorhandler(Exception)
def unexpected_error(exc: Exception):
    log.exception("request failed: %s", exc)
    return _error("internal error, please try again", 500)

"""REST transport: the chat turn over HTTP, history, Q&A pairs, counts, health."""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from agent.events import CollectingEvents
from agent.persona import GREETING
from agent.turn import InvalidInput, validate_token
from storage import StoreError
from version import __version__
from web.services import get_chat, get_settings

log = logging.getLogger("jellychat.rest")

bp = Blueprint("rest", __name__)

MAX_PAGE = 500


def _error(message: str, status: int, **extra):
    return jsonify({"error": message, **extra}), status


def _json_body() -> dict:
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON object with Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput("body", "the request body is not valid JSON")
    if not isinstance(data, dict):
        raise InvalidInput("body", "the request body must be a JSON object")
    return data


@bp.post("/user_message")
def user_message():
    data = _json_body()
    events = CollectingEvents()
    get_chat().turn(data.get("user_token"), data.get("message"), data.get("application"), events)
    return jsonify({"response": events.message, "sources": events.sources})


@bp.post("/history")
def history():
    token = validate_token(_json_body().get("user_token"))
    store = get_chat().store
    user = store.get_or_create_user(token, GREETING)
    return jsonify([m.to_json() for m in store.history(user.id)])


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or InvalidInput naming it."""
    try:
        value = int(request.args.get(name, default))
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

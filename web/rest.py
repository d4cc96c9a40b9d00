"""REST transport: the chat turn over HTTP (JSON or Server-Sent Events), history,
conversations, feedback, Q&A pairs, counts, health.

Routes are declared with flask-openapi3: the pydantic models of web/schemas.py
validate each request and make up /openapi.json.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta

from flask import Response, current_app, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from agent.events import CollectingSink
from agent.persona import GREETING
from agent.turn import (
    InvalidInput,
    validate_id,
    validate_optional_text,
    validate_title,
    validate_token,
)
from storage import Busy, NotFound, StoreError
from version import __version__
from web import schemas as s
from web.input import parse_json_body
from web.limits import limit
from web.services import Draining, get_chat, get_settings, refuse_if_draining

log = logging.getLogger("jellychat.rest")

CHAT = Tag(name="chat", description="Ask Jelly; history in the JellyChat protocol")
CONVERSATIONS = Tag(name="conversations", description="A user's conversations and runs")
FEEDBACK = Tag(name="feedback", description="Ratings of Jelly's answers")
USERS = Tag(name="users", description="User tokens the server issues")
ADMIN = Tag(name="admin", description="Every user's data: `Authorization: Bearer ADMIN_API_KEY`")
SERVICE = Tag(name="service", description="Health, metrics and counts")
ADMIN_AUTH = [{"admin": []}]

# every route may answer these; routes add their own (404, 409, 401, 403, 429)
# 401 also: with REQUIRE_SERVER_TOKENS=1, a user token the server did not issue
COMMON = {400: s.ErrorOut, 401: s.ErrorOut, 415: s.ErrorOut, 503: s.ErrorOut}
LIMITED = {429: s.ErrorOut}  # a route with a rate limit (web/limits.py `limit`)
NOT_FOUND = {404: s.ErrorOut}
ADMIN_ERRORS = {401: s.ErrorOut, 403: s.ErrorOut}

bp = APIBlueprint("rest", __name__, abp_responses=COMMON)

MAX_PAGE = 500
MAX_COMMENT_CHARS = 2000
HISTORY_PAGE = 200  # /history rows without `limit`: the recent chat (the whole chat was 12.8 MB
# after 3,000 turns); older rows page back with `before` (web/schemas.py caps `limit`)


def _error(message: str, status: int, **extra):
    return jsonify({"error": message, **extra}), status


def validation_error(exc: ValidationError):
    """flask-openapi3's answer to a request its models reject: our 400 `{error, field}`."""
    first = exc.errors(include_url=False)[0] if exc.error_count() else {}
    loc = [str(p) for p in first.get("loc", ())]
    if not loc or first.get("type") == "model_type":
        if request.get_data() and request.get_json(silent=True) is None:
            body = jsonify({"error": "the request body is not valid JSON", "field": "body"})
        else:
            body = jsonify({"error": "the request body must be a JSON object", "field": "body"})
    else:
        field = loc[0]
        kind = first.get("type", "")
        if kind == "missing":
            text = f"'{field}' is required"
        elif kind in ("string_too_short", "string_pattern_mismatch") and field != "before":
            text = f"'{field}' must not be empty"
        else:
            text = f"'{field}': {first.get('msg', 'is not valid')}"
        body = jsonify({"error": text, "field": field})
    body.status_code = 400
    return body


@bp.before_request
def _json_bodies_only():
    """A body that is sent must be a JSON object: 415 / 413 / 400 (bad JSON, too deep,
    lone surrogates) before the models read it."""
    if request.method in ("POST", "PATCH", "PUT") and request.get_data(cache=True):
        parse_json_body()


def user_token(data=None) -> str:
    """The caller's token: the X-User-Token header, else `user_token` in the JSON body."""
    token = request.headers.get("X-User-Token")
    if token is None and data is not None:
        token = data.get("user_token") if isinstance(data, dict) else data.user_token
    if token is None:
        raise InvalidInput("user_token", "'user_token' is required: send the 'X-User-Token' header")
    token = validate_token(token)
    limits = current_app.extensions.get("jellychat.limits")
    if limits is not None:  # REQUIRE_SERVER_TOKENS=1: 401 for tokens it did not issue
        limits.require_issued(get_chat().store, token)
    return token


@bp.post("/users", tags=[USERS], responses={201: s.UserOut, **LIMITED})
@limit("users")
def create_user():
    """A new user: its `user_token` (256 random bits), to send as `X-User-Token` (or
    `user_token`) from now on. The token is a bearer secret: whoever holds it reads
    and writes the user's chats. With REQUIRE_SERVER_TOKENS=1 only such tokens work."""
    refuse_if_draining()
    token = secrets.token_urlsafe(32)
    get_chat().store.issue_user(token, GREETING)
    response = jsonify({"user_token": token})
    response.headers["Cache-Control"] = "no-store"
    return response, 201


def _wants_stream(body: s.UserMessageIn) -> bool:
    return body.stream or request.accept_mimetypes.best == "text/event-stream"


@bp.post("/user_message", tags=[CHAT], responses={200: s.UserMessageOut, 402: s.ErrorOut,
                                                  403: s.ErrorOut, 404: s.ErrorOut,
                                                  409: s.ErrorOut, 429: s.ErrorOut})
def user_message(body: s.UserMessageIn, header: s.TokenHeader):
    """Ask Jelly: the whole answer as JSON, or the run's events as Server-Sent Events.

    Send `Accept: text/event-stream` (or `"stream": true`) to stream; refusals
    (400, 404, 409) still come as plain JSON before any stream starts.
    `"references_only": true` answers with the knowledge sources only, no model.
    """
    refuse_if_draining()
    chat = get_chat()
    token = user_token(body)
    admission = {"client_address": request.remote_addr, "proof": body.pow, "model": body.model}
    if body.references_only:
        final = chat.references(token, body.message, body.application, CollectingSink(),
                                client_address=request.remote_addr)
        if _wants_stream(body):  # the one event a references-only answer has
            from web.sse import frame

            return Response(frame("final_message", final), mimetype="text/event-stream")
    elif _wants_stream(body):
        from web.sse import stream_run  # the transport of the streaming answer

        started = chat.start(token, body.message, body.application,
                             conversation_id=body.conversation_id,
                             assistant_id=body.assistant_id, **admission)
        return stream_run(chat, started, get_settings())
    else:
        final = chat.turn(token, body.message, body.application, CollectingSink(),
                          conversation_id=body.conversation_id,
                          assistant_id=body.assistant_id, **admission)
    return jsonify({"response": final["message"], **{k: v for k, v in final.items() if k != "message"}})


def history_row(message: dict, user_id) -> dict:
    """A message as the original JellyChat's `/history` returned it (its web page renders
    rows by `message_type`), with `type` kept for this project's clients."""
    return {"id": message["id"], "user_id": user_id, "message_type": message["type"],
            "type": message["type"], "content": message["content"],
            "timestamp": message["created"], "application": message["application"]}


@bp.post("/history", tags=[CHAT], responses={200: s.HistoryOut})
def history(body: s.HistoryIn, query: s.HistoryQuery, header: s.TokenHeader):
    """The default conversation's rows, as the JellyChat clients read them: the newest
    `limit` (default 200, at most 1,000), oldest first. Header `X-Next-Before`, when
    older rows exist, is the `before` (a row id) of the page before. `limit` and
    `before` may come in the body or the query."""
    token = user_token(body)
    limit = body.limit or query.limit or HISTORY_PAGE
    before = body.before or query.before
    conversation = get_chat().store.history(token, limit, before)
    if conversation is None or (not conversation["messages"] and before is None):
        # a new visitor (not created by reading), or one whose chat is empty (an original
        # JellyChat user made by /history alone, a cleared chat): the greeting, not stored
        greeting = {"id": None, "type": "jelly",
                    "content": _greeting(body.application or query.application),
                    "created": datetime.now(UTC).isoformat(), "application": None}
        return jsonify([history_row(greeting, conversation and conversation["user_id"])])
    response = jsonify([history_row(m, conversation["user_id"]) for m in conversation["messages"]])
    if conversation["more"] and conversation["messages"]:
        response.headers["X-Next-Before"] = str(conversation["messages"][0]["id"])
    return response


def _greeting(application: str | None) -> str:
    """The greeting of the assistant serving `application` (Jelly's when it has none)."""
    try:
        assistant = get_chat().store.assistant_for(application or None)
    except StoreError as exc:  # a database without the assistants migration yet
        log.warning("greeting without assistants: %s", exc)
        return GREETING
    return (assistant or {}).get("greeting") or GREETING


@bp.get("/conversations", tags=[CONVERSATIONS], responses={200: s.ConversationListOut})
def list_conversations(query: s.ConversationListQuery, header: s.TokenHeader):
    """The user's conversations, most recently updated first. The next page: `before` =
    `next_before` and `before_id` = `next_before_id` (both, so that conversations
    updated at the same instant are not skipped)."""
    before = query.before.isoformat() if query.before else None  # a datetime once validated
    before_id = None
    if query.before_id is not None:
        try:
            before_id = validate_id(query.before_id, "before_id")
        except InvalidInput:
            raise InvalidInput("before_id", "'before_id' must be a conversation id") from None
    items = get_chat().store.list_conversations(user_token(), query.limit, before, before_id)
    more = len(items) == query.limit
    return jsonify({"conversations": items,
                    "next_before": items[-1]["updated"] if more else None,
                    "next_before_id": items[-1]["id"] if more else None})


@bp.post("/conversations", tags=[CONVERSATIONS], responses={201: s.ConversationOut, **LIMITED})
@limit("conversations")
def create_conversation(body: s.NewConversationIn, header: s.TokenHeader):
    """A new, empty conversation (optionally titled)."""
    title = validate_title(body.title) if body.title is not None else None
    store = get_chat().store
    token = user_token(body)
    if body.assistant_id is not None and store.get_assistant(body.assistant_id) is None:
        raise InvalidInput("assistant_id", "'assistant_id' names no assistant")
    conversation = store.create_conversation(token, GREETING, title)
    if body.assistant_id is not None:
        conversation = store.set_conversation_assistant(token, conversation["id"],
                                                        body.assistant_id)
    return jsonify(conversation), 201


@bp.get("/conversations/<conversation_id>", tags=[CONVERSATIONS],
        responses={200: s.ConversationFullOut, **NOT_FOUND})
def get_conversation(path: s.ConversationPath, header: s.TokenHeader):
    """A conversation with its messages; answers carry the user's feedback."""
    conversation = get_chat().store.get_conversation(user_token(),
                                                     _conversation(path.conversation_id))
    if conversation is None:
        raise NotFound("conversation not found")
    conversation.pop("user_id", None)
    return jsonify(conversation)


@bp.patch("/conversations/<conversation_id>", tags=[CONVERSATIONS],
          responses={200: s.ConversationOut, **NOT_FOUND})
def rename_conversation(path: s.ConversationPath, body: s.RenameIn, header: s.TokenHeader):
    """Rename a conversation (the user's title is kept over automatic ones) and/or bind it
    to an assistant (`assistant_id`; "" unbinds)."""
    if body.title is None and body.assistant_id is None:
        raise InvalidInput("title", "'title' or 'assistant_id' is required")
    store = get_chat().store
    token = user_token(body)
    conversation_id = _conversation(path.conversation_id)
    title = validate_title(body.title) if body.title is not None else None
    if body.assistant_id is not None:
        conversation = store.set_conversation_assistant(token, conversation_id,
                                                        body.assistant_id or None)
    if title is not None:
        conversation = store.update_conversation(token, conversation_id, title)
    return jsonify(conversation)


@bp.delete("/conversations/<conversation_id>", tags=[CONVERSATIONS],
           responses={204: None, **NOT_FOUND})
def delete_conversation(path: s.ConversationPath, header: s.TokenHeader):
    """Delete a conversation (the default one is emptied)."""
    get_chat().store.delete_conversation(user_token(), _conversation(path.conversation_id))
    return "", 204


@bp.post("/runs/<run_id>/stop", tags=[CONVERSATIONS], responses={202: s.StopOut, **NOT_FOUND})
def stop_run(path: s.RunPath, body: s.StopIn, header: s.TokenHeader):
    """Stop a run of the user, wherever it is served."""
    try:
        run_id = validate_id(path.run_id, "run_id")
    except InvalidInput:
        raise NotFound("run not found") from None
    return jsonify(get_chat().stop(user_token(body), run_id)), 202


@bp.post("/messages/<int:message_id>/feedback", tags=[FEEDBACK],
         responses={200: s.FeedbackOut, **NOT_FOUND, **LIMITED})
@limit("feedback")
def set_feedback(path: s.MessagePath, body: s.FeedbackIn, header: s.TokenHeader):
    """Rate one of the user's answers `up` or `down` (with a comment); null withdraws it.

    Anything but the user's own answer is 404.
    """
    comment = validate_optional_text("comment", body.comment, MAX_COMMENT_CHARS)
    token = user_token(body)
    return jsonify(get_chat().store.set_feedback(token, path.message_id, body.rating, comment))


def _conversation(conversation_id: str) -> str:
    """A conversation id from the URL; a malformed one is simply not found."""
    try:
        return validate_id(conversation_id)
    except InvalidInput:
        raise NotFound("conversation not found") from None


def _require_admin():
    key = get_settings().admin_api_key
    if not key:
        return _error(
            "this endpoint lists every user's conversations and is disabled: "
            "set ADMIN_API_KEY and send 'Authorization: Bearer <ADMIN_API_KEY>'",
            403,
        )
    if not _bearer_is(key):
        return _error("missing or wrong 'Authorization: Bearer <ADMIN_API_KEY>' header", 401)
    return None


def _bearer_is(secret: str) -> bool:
    """Whether the request carries `Authorization: Bearer <secret>` (constant-time)."""
    given = request.headers.get("Authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), secret.encode())


def _qa_page(query: s.QAQuery):
    denied = _require_admin()
    if denied:
        return denied
    store = get_chat().store
    pairs = store.list_qa(query.limit, query.before)
    ratings = store.feedback_of([qa.message_id for qa in pairs])
    response = jsonify([{**qa.to_json(), "feedback": ratings.get(qa.message_id)} for qa in pairs])
    if len(pairs) == query.limit:
        response.headers["X-Next-Before"] = pairs[-1].date.isoformat()
    return response


QA_RESPONSES = {200: s.QAListOut, **ADMIN_ERRORS}


@bp.get("/messages", tags=[ADMIN], responses=QA_RESPONSES, security=ADMIN_AUTH)
def messages(query: s.QAQuery, header: s.AdminHeader):
    """Question/answer pairs of all users, newest first, with their ratings.

    The next page: `before` = the X-Next-Before header.
    """
    return _qa_page(query)


@bp.get("/messages_answers", tags=[ADMIN], responses=QA_RESPONSES, security=ADMIN_AUTH)
def messages_answers(query: s.QAQuery, header: s.AdminHeader):
    """The same as /messages (the original JellyChat name)."""
    return _qa_page(query)


@bp.get("/feedback/summary", tags=[ADMIN, FEEDBACK],
        responses={200: s.FeedbackSummaryOut, **ADMIN_ERRORS}, security=ADMIN_AUTH)
def feedback_summary(query: s.FeedbackSummaryQuery, header: s.AdminHeader):
    """Ratings counted per application and UTC day, newest day first."""
    denied = _require_admin()
    if denied:
        return denied
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=query.days - 1)
    return jsonify({"days": get_chat().store.feedback_summary(since.isoformat())})


@bp.get("/human_message_count", tags=[SERVICE], responses={200: s.CountOut})
def human_message_count():
    """How many questions were asked (a README badge)."""
    count = get_chat().store.count_human_messages()
    return jsonify({"subject": "Human messages", "status": count, "color": "purple"})


@bp.get("/healthz", tags=[SERVICE], responses={200: s.HealthOut})
def healthz():
    """200 while the database answers, else 503."""
    if get_chat().store.ping():
        return jsonify({"status": "ok", "version": __version__})
    return _error("the database does not answer", 503, version=__version__)


@bp.get("/metrics", tags=[SERVICE], responses={200: {
    "description": "Prometheus metrics",
    "content": {"text/plain": {"schema": {"type": "string"}}}}, 401: s.ErrorOut})
def metrics():
    """Prometheus metrics (text exposition format). With METRICS_TOKEN set, only for
    `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise)."""
    token = get_settings().metrics_token
    if token and not _bearer_is(token):
        return _error("missing or wrong 'Authorization: Bearer <METRICS_TOKEN>' header", 401)
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
    if exc.response is not None:  # a response made on purpose (a validation error)
        return exc.response
    response, status = _error(exc.description or exc.name, exc.code or 500)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value  # Allow on 405, for instance
    return response, status


@bp.app_errorhandler(Exception)
def unexpected_error(exc: Exception):
    log.exception("request failed: %s", exc)
    return _error("internal error, please try again", 500)

"""What the OpenAI-compatible and AI SDK endpoints share: who is calling (an API key
and the end user it names), which stored conversation a turn lands in, and one
mapping from the run path's refusals to an HTTP status.

Both endpoints start turns with `Chat.start` and follow them with `web.sse.follow`,
like every other transport; only the wire format is theirs. So every turn passes
the chat-turn admission of `Chat.start` (web/limits.py); limits of their own, per
endpoint, attach to their blueprints (`openai_compat.bp`, `ai_sdk.bp`), and a
`RateLimited` raised anywhere before the stream becomes 429 with Retry-After here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from agent.persona import GREETING
from agent.text import UNSTORABLE, storable
from agent.turn import InvalidInput, validate_token
from storage import Busy, NotFound, RateLimited, StoreError
from web.input import parse_json_body
from web.limits import UnknownToken
from web.services import Draining, get_settings

log = logging.getLogger("jellychat.clients")

MAX_ALIAS_CHARS = 200
ADMIN_AS_KEY = {"id": "admin", "name": "ADMIN_API_KEY", "application": None}


class ClientError(Exception):
    """A refusal to answer with `status`: `kind` and `code` as OpenAI names them."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None,
                 param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.param, self.retry_after = param, retry_after


def classify(exc: BaseException) -> ClientError:
    """The HTTP refusal for an error of the run path (or of the request itself)."""
    if isinstance(exc, ClientError):
        return exc
    if getattr(exc, "code", None) == "budget_exceeded":  # budgets: whoever raises it names it
        return ClientError(402, str(exc) or "the budget is spent", "insufficient_quota",
                           "budget_exceeded")
    if isinstance(exc, UnknownToken):  # REQUIRE_SERVER_TOKENS=1
        return ClientError(401, str(exc), "invalid_request_error", "unknown_user_token", "user")
    if isinstance(exc, InvalidInput):
        return ClientError(400, exc.message, "invalid_request_error", "invalid_value", exc.field)
    if isinstance(exc, NotFound):
        return ClientError(404, str(exc) or "not found", "invalid_request_error", "not_found")
    if isinstance(exc, Busy):
        return ClientError(409, f"the conversation is busy with run {exc.run_id}; wait for it",
                           "invalid_request_error", "conversation_busy")
    if isinstance(exc, RateLimited):
        return ClientError(429, str(exc), "requests", "rate_limit_exceeded",
                           retry_after=exc.retry_after)
    if isinstance(exc, Draining):
        return ClientError(503, str(exc), "server_error", "restarting", retry_after=5)
    if isinstance(exc, StoreError):
        log.error("storage unavailable: %s", exc)
        return ClientError(503, "the chat storage is unavailable, please try again later",
                           "server_error", "storage_unavailable", retry_after=5)
    if isinstance(exc, HTTPException):  # 413 and the like, raised while reading the body
        return ClientError(exc.code or 400, exc.description or exc.name,
                           "invalid_request_error", None)
    log.exception("request failed: %s", exc)
    return ClientError(500, "internal error, please try again", "server_error", None)


@dataclass(frozen=True)
class Caller:
    key: dict | None  # the API key's record, when one was sent
    user_token: str  # the end user: named by the client, else the key itself

    @property
    def application(self) -> str | None:
        return (self.key or {}).get("application")


def bearer() -> str | None:
    given = request.headers.get("Authorization", "")
    return given[7:].strip() if given[:7].lower() == "bearer " else None


def authenticate(store, named_user=None, *, key_required: bool = True) -> Caller:
    """The caller of this request: 401 without a live key (unless `key_required` is
    off and `named_user` or X-User-Token names a user)."""
    key, secret = None, bearer()
    admin = get_settings().admin_api_key
    if secret and admin and hmac.compare_digest(secret.encode(), admin.encode()):
        key = ADMIN_AS_KEY  # the admin may make keys, so may also be one
    elif secret:
        key = store.api_key(secret)
        if key is None:
            raise ClientError(401, "Incorrect API key provided", "invalid_request_error",
                              "invalid_api_key")
    named = request.headers.get("X-User-Token")
    if named is None and named_user not in (None, ""):
        named = named_user
    if named is None and key is not None:  # Open WebUI, ENABLE_FORWARD_USER_INFO_HEADERS=true
        named = request.headers.get("X-OpenWebUI-User-Id")
    if key is None and (key_required or named is None):
        raise ClientError(401, "send 'Authorization: Bearer <API key>' (an admin makes keys "
                               "with POST /api-keys)", "invalid_request_error", "invalid_api_key")
    if named is None:  # the key's own user: made by the server, so always issued
        return Caller(key, f"api-key:{key['id']}")
    if not isinstance(named, str):
        raise InvalidInput("user", "'user' must be a string")
    token = validate_token(named)
    limits = current_app.extensions.get("jellychat.limits")
    if limits is not None:  # REQUIRE_SERVER_TOKENS=1: 401 for users the server did not issue
        limits.require_issued(store, token)
    return Caller(key, token)


def limit_key() -> str | None:
    """Whom the per-token limit of /v1/chat/completions and /api/chat counts, read
    before authentication: the API key (as a hash: a secret is never a storage key)
    and the end user it names, so that nobody without the key spends its users'
    requests."""
    secret, named = bearer(), request.headers.get("X-User-Token")
    if named is None and secret:
        try:
            body = parse_json_body()
        except (InvalidInput, HTTPException):  # the view answers these in its own shape
            body = None
        named = body.get("user") if isinstance(body, dict) else None
        if named is None:
            named = request.headers.get("X-OpenWebUI-User-Id")
    if not isinstance(named, str):
        named = ""
    if not secret:
        return named or None
    return f"key:{hashlib.sha256(secret.encode()).hexdigest()[:32]}/{named[:200]}"


def conversation_for(store, caller: Caller, alias=None, history=None) -> str:
    """The stored conversation of the caller's turn (see jelly_client_conversation)."""
    if alias is not None:
        if (not isinstance(alias, str) or not alias.strip() or len(alias) > MAX_ALIAS_CHARS
                or UNSTORABLE.search(alias)):
            raise InvalidInput("conversation_id", "the conversation id must be a string of 1 to "
                                                  f"{MAX_ALIAS_CHARS} characters")
        alias = alias.strip()
    # a stored message never holds what the database cannot store: such history just
    # does not match
    history = [{**m, "content": storable(m["content"])} for m in history or []]
    return store.client_conversation(caller.user_token, GREETING, alias, history)


def json_object() -> dict:
    """The request's JSON object body, checked as every body is (web/input.py): 415,
    413 or 400 otherwise."""
    return parse_json_body()

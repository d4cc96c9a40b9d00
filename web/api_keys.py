"""Admin endpoints for API keys: POST/GET /api-keys, DELETE /api-keys/<id>.

A key lets a server (Open WebUI, LibreChat, a backend using an OpenAI SDK or the
AI SDK) call /v1/* and /api/chat; it is shown once, when made, and stored as its
sha256 only (storage/api_keys.py).
"""

from __future__ import annotations

from flask import jsonify
from flask_openapi3 import APIBlueprint

from agent.turn import InvalidInput, validate_id, validate_optional_text
from storage import NotFound
from web import schemas as s
from web.limits import limit
from web.rest import ADMIN, ADMIN_AUTH, ADMIN_ERRORS, COMMON, LIMITED, NOT_FOUND, _require_admin
from web.services import get_chat

bp = APIBlueprint("api_keys", __name__, abp_responses=COMMON)


@bp.post("/api-keys", tags=[ADMIN], responses={201: s.NewApiKeyOut, **ADMIN_ERRORS, **LIMITED},
         security=ADMIN_AUTH)
@limit("api_keys")
def create_api_key(body: s.ApiKeyIn, header: s.AdminHeader):
    """A new API key for /v1/* and /api/chat; `key` is in this answer only."""
    denied = _require_admin()
    if denied:
        return denied
    name = validate_optional_text("name", body.name, 100)
    if name is None:
        raise InvalidInput("name", "'name' must not be empty")
    made = get_chat().store.create_api_key(
        name, validate_optional_text("application", body.application, 100),
        validate_optional_text("assistant_id", body.assistant_id, 100))
    return jsonify(made), 201


@bp.get("/api-keys", tags=[ADMIN], responses={200: s.ApiKeyListOut, **ADMIN_ERRORS},
        security=ADMIN_AUTH)
def list_api_keys(header: s.AdminHeader):
    """Every API key (never the key itself), newest first."""
    denied = _require_admin()
    if denied:
        return denied
    return jsonify(get_chat().store.list_api_keys())


@bp.delete("/api-keys/<key_id>", tags=[ADMIN], responses={204: None, **NOT_FOUND, **ADMIN_ERRORS},
           security=ADMIN_AUTH)
def delete_api_key(path: s.ApiKeyPath, header: s.AdminHeader):
    """Revoke a key: its next request is refused."""
    denied = _require_admin()
    if denied:
        return denied
    try:
        key_id = validate_id(path.key_id, "key_id")
    except InvalidInput:
        raise NotFound("api key not found") from None
    get_chat().store.delete_api_key(key_id)
    return "", 204

"""REST for assistants (issue 26): the tools they may use, and their CRUD and versions.

Reading is public (GET /assistants lists the public ones; the admin sees all);
writing takes `Authorization: Bearer <ADMIN_API_KEY>`.
"""

from __future__ import annotations

from flask import jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from agent.turn import InvalidInput
from storage import NotFound
from storage.base import UnknownAssistant
from web import schemas as s
from web.rest import ADMIN_AUTH, ADMIN_ERRORS, COMMON, FEEDBACK, NOT_FOUND, _require_admin, user_token
from web.services import get_chat

ASSISTANTS = Tag(name="assistants", description="Assistants: instructions, tools, greeting, "
                                                "versions; chosen per turn")

bp = APIBlueprint("assistants", __name__, abp_responses=COMMON)

# fields a PATCH may not set to null (the stored row needs them)
REQUIRED = ("name", "instructions", "description", "suggested_questions", "applications",
            "public", "suggestions")


def _tools() -> list:
    chat = get_chat()
    if chat.assistants is not None:
        return chat.assistants.tools
    return list(chat.agent.tools.values())


def _fields(body: s.AssistantPatchIn) -> dict:
    """The fields the client sent (explicit nulls kept), checked against the tools."""
    fields = body.model_dump(exclude_unset=True)
    for name in REQUIRED:
        if name in fields and fields[name] is None:
            raise InvalidInput(name, f"'{name}' must not be null")
    if fields.get("tools") is not None:
        known = {t.name for t in _tools()}
        unknown = [name for name in fields["tools"] if name not in known]
        if unknown:
            raise InvalidInput("tools", f"unknown tool(s): {', '.join(unknown)}; "
                                        "GET /tools lists them")
        fields["tools"] = list(dict.fromkeys(fields["tools"]))
    return fields


def _is_admin() -> bool:
    """True with the right admin key; a wrong or unusable one is refused (401/403)."""
    if "Authorization" not in request.headers:
        return False
    denied = _require_admin()
    if denied:
        raise _Denied(denied)
    return True


class _Denied(Exception):
    def __init__(self, response):
        super().__init__("denied")
        self.response = response


@bp.errorhandler(_Denied)
def _denied(exc: _Denied):
    return exc.response


@bp.app_errorhandler(UnknownAssistant)
def _unknown_assistant(exc: UnknownAssistant):
    return jsonify({"error": "'assistant_id' names no assistant", "field": "assistant_id"}), 400


@bp.get("/tools", tags=[ASSISTANTS], responses={200: s.ToolListOut})
def list_tools():
    """The tools an assistant may be given, by name."""
    return jsonify([{"name": t.name, "description": t.description} for t in _tools()])


@bp.get("/assistants", tags=[ASSISTANTS], responses={200: s.AssistantListOut, **ADMIN_ERRORS})
def list_assistants(header: s.AdminHeader):
    """The public assistants, the default first; every one with the admin key."""
    return jsonify(get_chat().store.list_assistants(everyone=_is_admin()))


@bp.post("/assistants", tags=[ASSISTANTS], security=ADMIN_AUTH,
         responses={201: s.AssistantOut, **ADMIN_ERRORS})
def create_assistant(body: s.AssistantIn, header: s.AdminHeader):
    """A new assistant at version 1."""
    denied = _require_admin()
    if denied:
        return denied
    return jsonify(get_chat().store.create_assistant(_fields(body))), 201


@bp.get("/assistants/<assistant_id>", tags=[ASSISTANTS],
        responses={200: s.AssistantOut, **NOT_FOUND})
def get_assistant(path: s.AssistantPath):
    """An assistant as it is now (non-public ones too: a page may be given one by id)."""
    found = get_chat().store.get_assistant(path.assistant_id)
    if found is None:
        raise NotFound("assistant not found")
    return jsonify(found)


@bp.patch("/assistants/<assistant_id>", tags=[ASSISTANTS], security=ADMIN_AUTH,
          responses={200: s.AssistantOut, **NOT_FOUND, **ADMIN_ERRORS})
def update_assistant(path: s.AssistantPath, body: s.AssistantPatchIn, header: s.AdminHeader):
    """A new version with the fields sent over the current ones; the old version is kept
    and later turns get the new one."""
    denied = _require_admin()
    if denied:
        return denied
    return jsonify(get_chat().store.update_assistant(path.assistant_id, _fields(body)))


@bp.delete("/assistants/<assistant_id>", tags=[ASSISTANTS], security=ADMIN_AUTH,
           responses={204: None, 409: s.ErrorOut, **NOT_FOUND, **ADMIN_ERRORS})
def delete_assistant(path: s.AssistantPath, header: s.AdminHeader):
    """Delete an assistant (not the default): its conversations fall back to the
    application's assistant or the default; its versions stay."""
    denied = _require_admin()
    if denied:
        return denied
    store = get_chat().store
    found = store.get_assistant(path.assistant_id)
    if found is None:
        raise NotFound("assistant not found")
    if found.get("default"):
        return jsonify({"error": "the default assistant cannot be deleted (edit it instead)"}), 409
    store.delete_assistant(path.assistant_id)
    return "", 204


@bp.get("/messages/<int:message_id>/suggestions", tags=[FEEDBACK],
        responses={200: s.SuggestionsOut, **NOT_FOUND})
def suggestions(path: s.MessagePath, header: s.TokenHeader):
    """The follow-up questions suggested after one of the user's answers (also sent as
    the `suggestions` event right after its final_message)."""
    return jsonify(get_chat().store.suggestions_of(user_token(), path.message_id))


@bp.get("/assistants/<assistant_id>/versions", tags=[ASSISTANTS],
        responses={200: s.AssistantListOut, **NOT_FOUND})
def assistant_versions(path: s.AssistantPath):
    """Every version of an assistant, oldest first (kept after it is deleted)."""
    versions = get_chat().store.assistant_versions(path.assistant_id)
    if not versions:
        raise NotFound("assistant not found")
    return jsonify(versions)

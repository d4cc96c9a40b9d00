"""REST endpoints of the model registry, per-user access and usage (issue 28), and
the answers to a refused model (403) or a spent budget (402).

Users: GET /me, GET /me/usage, GET /models (X-User-Token). Admins (Bearer
ADMIN_API_KEY): PUT and DELETE /models/<id>, PATCH /users/<id>, GET /usage.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from agent.text import UNSTORABLE
from agent.turn import InvalidInput, validate_id
from storage import BadValue, BudgetExceeded, ModelNotAllowed, NotFound
from web import schemas as s
from web.rest import ADMIN, ADMIN_AUTH, ADMIN_ERRORS, COMMON, NOT_FOUND, _require_admin, user_token
from web.services import get_chat

MODELS = Tag(name="models", description="Models, access, budgets and usage")

bp = APIBlueprint("models", __name__, abp_responses=COMMON)


def _default_model() -> str | None:
    return get_chat().agent.model_name


def _range(query: s.UsageQuery) -> tuple[datetime | None, datetime | None]:
    """`from` inclusive; `to` a day (inclusive: up to its end) or a time (exclusive)."""

    def parse(value: str | None, name: str) -> datetime | None:
        if value is None or not value.strip():
            return None
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(name, f"'{name}' must be a day (YYYY-MM-DD) or an ISO 8601 "
                                     "time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    since, until = parse(query.from_, "from"), parse(query.to, "to")
    if until is not None and query.to and len(query.to.strip()) == 10:  # YYYY-MM-DD
        until = None if until.date() == date.max else until + timedelta(days=1)
    return since, until


@bp.get("/me", tags=[MODELS], responses={200: s.AccessOut, **NOT_FOUND})
def me(header: s.TokenHeader):
    """The caller's models, balance and what they spent in the period; an unknown token
    is 404 (nothing is created)."""
    found = get_chat().store.me(user_token())
    if found is None:
        raise NotFound("no user with this token yet: send a message first")
    return jsonify(found)


@bp.get("/me/usage", tags=[MODELS], responses={200: s.UsageOut})
def my_usage(query: s.UsageQuery, header: s.TokenHeader):
    """The caller's usage per UTC day and model, newest first."""
    since, until = _range(query)
    return jsonify({"data": get_chat().store.usage(token=user_token(), since=since, until=until)})


@bp.get("/models", tags=[MODELS], responses={200: s.ModelListOut})
def list_models(header: s.TokenHeader):
    """The models the caller may use; `default` marks the one a message without
    `model` gets."""
    rows = get_chat().store.user_models(user_token(), _default_model())
    return jsonify({"data": [{k: m.get(k) for k in ("id", "name", "provider", "input_price",
                                                     "output_price", "context_window", "default")}
                             for m in rows]})


@bp.put("/conversations/<conversation_id>/model", tags=[MODELS],
        responses={200: s.ConversationModelOut, 403: s.ErrorOut, **NOT_FOUND})
def set_conversation_model(path: s.ConversationPath, body: s.ConversationModelIn,
                           header: s.TokenHeader):
    """The conversation's default model: its messages without `model` use it."""
    try:
        conversation_id = validate_id(path.conversation_id)
    except InvalidInput:
        raise NotFound("conversation not found") from None
    return jsonify(get_chat().store.set_conversation_model(user_token(), conversation_id,
                                                           body.model))


@bp.put("/models/<model_id>", tags=[ADMIN, MODELS], security=ADMIN_AUTH,
        responses={200: s.ModelOut, **ADMIN_ERRORS})
def put_model(path: s.ModelPath, body: s.ModelIn, header: s.AdminHeader):
    """Create or replace a model; prices in USD per million tokens (exact decimals)."""
    denied = _require_admin()
    if denied:
        return denied
    model_id = path.model_id.strip()
    if not model_id or len(model_id) > 100 or UNSTORABLE.search(model_id) or any(
            c.isspace() for c in model_id):
        return jsonify({"error": "a model id is 1 to 100 characters without spaces",
                        "field": "model_id"}), 400
    return jsonify(get_chat().store.put_model(
        model_id, body.name.strip(), body.input_price, body.output_price, body.context_window,
        body.enabled, body.provider))


@bp.delete("/models/<model_id>", tags=[ADMIN, MODELS], security=ADMIN_AUTH,
           responses={204: None, **ADMIN_ERRORS, **NOT_FOUND})
def delete_model(path: s.ModelPath, header: s.AdminHeader):
    """Remove a model (its usage stays)."""
    denied = _require_admin()
    if denied:
        return denied
    if UNSTORABLE.search(path.model_id):
        raise NotFound("model not found")
    get_chat().store.delete_model(path.model_id)
    return "", 204


@bp.patch("/users/<int:user_id>", tags=[ADMIN, MODELS], security=ADMIN_AUTH,
          responses={200: s.AccessOut, **ADMIN_ERRORS, **NOT_FOUND})
def set_access(path: s.UserPath, body: s.AccessIn, header: s.AdminHeader):
    """Set a user's models (null: all enabled), balance (null: unlimited) and budget
    period ("month" or null: all time); fields left out are kept."""
    denied = _require_admin()
    if denied:
        return denied
    given = {name: getattr(body, name) for name in body.model_fields_set
             if name in ("models", "balance_usd", "budget_period")}
    if "budget_period" in given and given["budget_period"] is not None:
        given["budget_period"] = str(given["budget_period"])
    return jsonify(get_chat().store.set_user_access(path.user_id, **given))


@bp.get("/usage", tags=[ADMIN, MODELS], security=ADMIN_AUTH,
        responses={200: s.UsageOut, **ADMIN_ERRORS})
def all_usage(query: s.AdminUsageQuery, header: s.AdminHeader):
    """Usage of every user per UTC day and model, newest first (narrowed by
    application and user)."""
    denied = _require_admin()
    if denied:
        return denied
    since, until = _range(query)
    return jsonify({"data": get_chat().store.usage(
        user_id=query.user_id, application=query.application, since=since, until=until)})


@bp.app_errorhandler(BudgetExceeded)
def budget_exceeded(exc: BudgetExceeded):
    return jsonify({"error": str(exc), "code": exc.code, "period": exc.period}), 402


@bp.app_errorhandler(ModelNotAllowed)
def model_not_allowed(exc: ModelNotAllowed):
    return jsonify({"error": str(exc), "field": exc.field}), 403


@bp.app_errorhandler(BadValue)
def bad_value(exc: BadValue):
    return jsonify({"error": str(exc), "field": exc.field}), 400

"""The model registry, per-user access, usage and budgets, as Store methods.

Every call is one SQL function of supabase/migrations/*_models.sql, the same on
both backends. Amounts go to the database as decimal strings (numeric there,
never a float on the way in) and come back as JSON numbers.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal


def _decimal_text(value) -> str | None:
    """An amount as the exact decimal text the SQL functions cast to numeric."""
    if value is None:
        return None
    if isinstance(value, float):
        value = Decimal(repr(value))  # the shortest text that is this float: what was sent
    return format(Decimal(value), "f")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class MeteredStore:
    """Mixed into `Store`: needs its `_fn`."""

    def _start_metered_run(self, params: dict, requested_model: str | None,
                           estimate: tuple[int, int]) -> dict:
        """jelly_start_run's call with the access check, budget check and reservation."""
        return self._fn("jelly_start_metered_run", {
            **params, "p_model": requested_model, "p_default_model": params["p_model"],
            "p_estimate_input": int(estimate[0]), "p_estimate_output": int(estimate[1]),
        }, idempotent=False)

    def record_usage(self, run_id: str, usage: list[dict]) -> dict:
        """Model calls of a run made after it ended (a title): recorded, priced now and
        added to its user's spending. {input_tokens, output_tokens, cost_usd}."""
        return self._fn("jelly_record_usage", {"p_run_id": run_id, "p_usage": list(usage)},
                        idempotent=False)

    # registry
    def put_model(self, model_id: str, name: str, input_price, output_price,
                  context_window: int | None = None, enabled: bool = True,
                  provider: str = "openai") -> dict:
        """Create or replace a model; prices in USD per million tokens."""
        return self._fn("jelly_put_model", {
            "p_id": model_id, "p_name": name, "p_input_price": _decimal_text(input_price),
            "p_output_price": _decimal_text(output_price), "p_context_window": context_window,
            "p_enabled": enabled, "p_provider": provider,
        })

    def ensure_model(self, model_id: str, name: str, input_price=0, output_price=0, *,
                     default: bool = False) -> dict:
        """Register a model when missing (an existing one keeps its prices)."""
        return self._fn("jelly_ensure_model", {
            "p_id": model_id, "p_name": name, "p_input_price": _decimal_text(input_price),
            "p_output_price": _decimal_text(output_price), "p_default": default,
        })

    def delete_model(self, model_id: str) -> None:
        """NotFound when there is no such model."""
        self._fn("jelly_delete_model", {"p_id": model_id})

    def user_models(self, token: str, default_model: str | None = None) -> list[dict]:
        """The enabled models the token's user may use, `default` marking the one a
        message without `model` gets (all enabled ones for an unknown token)."""
        return self._fn("jelly_user_models", {"p_token": token,
                                              "p_default_model": default_model}) or []

    def set_conversation_model(self, token: str, conversation_id: str, model: str | None) -> dict:
        """A conversation's default model (None: the server's); NotFound for a
        conversation not the user's, ModelNotAllowed for a model not theirs."""
        return self._fn("jelly_set_conversation_model", {
            "p_token": token, "p_id": conversation_id, "p_model": model})

    # access
    _UNSET = object()

    def set_user_access(self, user_id: int, *, models=_UNSET, balance_usd=_UNSET,
                        budget_period=_UNSET) -> dict:
        """Change what is given (None is a value: all models, unlimited, all time);
        NotFound for an unknown user, BadValue for an unknown model."""
        unset = MeteredStore._UNSET
        return self._fn("jelly_set_user_access", {
            "p_user_id": int(user_id),
            "p_set_models": models is not unset,
            "p_models": None if models is unset or models is None else list(models),
            "p_set_balance": balance_usd is not unset,
            "p_balance": None if balance_usd is unset else _decimal_text(balance_usd),
            "p_set_period": budget_period is not unset,
            "p_period": None if budget_period is unset else budget_period,
        }, idempotent=True)

    def me(self, token: str) -> dict | None:
        """{user_id, models, balance_usd, spent_usd, period, remaining_usd}; None for an
        unknown token (nothing is created)."""
        return self._fn("jelly_me", {"p_token": token})

    # usage
    def usage(self, *, token: str | None = None, user_id: int | None = None,
              application: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> list[dict]:
        """[{day, model, runs, input_tokens, output_tokens, cost_usd}] per UTC day and
        model, newest first; `until` is exclusive."""
        return self._fn("jelly_usage", {
            "p_token": token, "p_user_id": user_id, "p_application": application,
            "p_from": _iso(since), "p_to": _iso(until),
        }) or []

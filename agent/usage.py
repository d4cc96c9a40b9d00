"""What a run's model calls used, and the models the server registers at startup.

Each model call of a run (the answer's steps, the title; later summaries and
suggestions) becomes one usage record {kind, model?, input_tokens,
output_tokens, estimated}: from the provider's usage chunk, or, for a stream cut
short before it came, an estimate (about four characters a token) marked
`estimated`. The database prices them at the registry's prices of that moment
(supabase/migrations/*_models.sql), in the transaction that stores the run's
outcome, and so settles the cost reserved when the run started.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

log = logging.getLogger("jellychat.usage")

CHARS_PER_TOKEN = 4
MAX_MODEL_CHARS = 100


def estimate_tokens(chars: int) -> int:
    """Tokens of `chars` characters of text (rounded up; at least one for any text)."""
    return -(-max(chars, 0) // CHARS_PER_TOKEN)


def _chars(messages) -> int:
    total = 0
    for message in messages or ():
        content = getattr(message, "content", message)
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", "")) if isinstance(p, dict) else str(p))
                         for p in content)
    return total


def call_usage(usage, prompt, texts, kind: str = "answer") -> dict:
    """One model call's usage record: the provider's `usage` (LangChain's
    usage_metadata) when it came, else an estimate from the prompt's messages and
    the text received."""
    if usage:
        return {"kind": kind, "input_tokens": int(usage.get("input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0), "estimated": False}
    return {"kind": kind, "input_tokens": estimate_tokens(_chars(prompt)),
            "output_tokens": estimate_tokens(sum(len(t) for t in texts)), "estimated": True}


def totals(calls: list[dict], model: str | None, settled: dict | None = None,
           prices: tuple | None = None) -> dict:
    """final_message.usage of a run: {input_tokens, output_tokens, cost_usd, model,
    estimated}. The cost is the database's (`settled`, from finish_run) when it has
    one, else computed here from the run's `prices` (USD per million tokens)."""
    input_tokens = sum(c["input_tokens"] for c in calls)
    output_tokens = sum(c["output_tokens"] for c in calls)
    cost = (settled or {}).get("cost_usd")
    if cost is None and prices and all(p is not None for p in prices):
        exact = (Decimal(input_tokens) * _decimal(prices[0])
                 + Decimal(output_tokens) * _decimal(prices[1])) / Decimal(1_000_000)
        cost = float(exact)  # a JSON number
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": cost,
            "model": model, "estimated": any(c.get("estimated") for c in calls)}


def _decimal(value) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def parse_model_prices(text: str) -> dict[str, tuple[Decimal, Decimal]]:
    """MODEL_PRICES: `model=input/output` pairs separated by commas, in USD per million
    tokens (`gpt-4o-mini=0.15/0.60,gpt-4o=2.50/10`). ValueError says what is wrong."""
    prices: dict[str, tuple[Decimal, Decimal]] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, pair = item.partition("=")
        given, slash, taken = pair.partition("/")
        try:
            if not (sep and slash and name.strip()):
                raise InvalidOperation
            input_price, output_price = Decimal(given.strip()), Decimal(taken.strip())
            if not (input_price.is_finite() and output_price.is_finite()) or min(
                    input_price, output_price) < 0:
                raise InvalidOperation
        except InvalidOperation:
            raise ValueError(f"MODEL_PRICES: {item!r} is not model=input/output "
                             "(USD per million tokens, e.g. gpt-4o-mini=0.15/0.60)") from None
        prices[name.strip()] = (input_price, output_price)
    return prices


def register_models(settings, store) -> str:
    """Register the configured model (price 0 offline) and MODEL_PRICES' models when
    missing; the configured one is the default. Returns its id."""
    prices = parse_model_prices(settings.model_prices)
    default = settings.openai_model if settings.uses_openai else "offline"
    for model_id, (input_price, output_price) in prices.items():
        store.ensure_model(model_id, model_id, input_price, output_price,
                           default=model_id == default)
    if default not in prices:
        store.ensure_model(default, default, 0, 0, default=True)
    return default


def validate_model(value):
    """The `model` a message asks for: None when absent or blank, else its id."""
    from agent.turn import InvalidInput

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput("model", f"'model' must be a string, not {type(value).__name__}")
    value = value.strip()
    if len(value) > MAX_MODEL_CHARS or "\x00" in value:
        raise InvalidInput("model", f"'model' must be a model id of at most {MAX_MODEL_CHARS} characters")
    return value


def metered_call(writer, prompt: str, store, run_id: str | None, model: str | None,
                 kind: str) -> str:
    """A small model call made for a run (its title, summary or suggestions): the reply's
    text. When the run is metered (`model` from the registry), the call goes to that model
    and its usage is recorded with the run, priced now and added to the user's spending."""
    text, usage = metered_write(writer, prompt, run_id, model, kind)
    if usage:
        store.record_usage(run_id, usage)
    return text


def metered_write(writer, prompt: str, run_id: str | None, model: str | None,
                  kind: str) -> tuple[str, list[dict] | None]:
    """`metered_call` without the recording: the reply's text and, for a metered run, the
    usage rows to record (for a caller that stores them with something else in one call)."""
    write = getattr(writer, "write", None)
    if write is None or not model or run_id is None:
        return writer(prompt), None
    text, usage = write(prompt, model)
    return text, [{**usage, "kind": kind}] if usage else None

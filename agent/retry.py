"""Model retries inside the run's time budget, honouring the provider's Retry-After.

The openai client's own retries (`max_retries`) would sleep out a `Retry-After:
50` whatever the turn has left; here each retry is weighed against the run's
deadline first. A wait that does not fit fails the run at once with one
short line that says why (`ModelUnavailable`), instead of a timeout later.
Only failures before any token count (an HTTP status or a failed connection):
a stream that broke midway is not retried, its text was already sent.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time

from tenacity import RetryCallState, Retrying, retry_if_exception

from agent.cancel import CancelHandle

log = logging.getLogger("jellychat.retry")

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}
BACKOFF = (0.5, 4.0)  # first and longest wait without Retry-After, seconds
MARGIN = 0.5  # seconds a retry needs after its wait to be worth starting


class ModelUnavailable(RuntimeError):  # noqa: N818 - reads as the run's outcome
    """The model cannot answer within this run; the message is short and safe to show."""


def status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_connection_error(exc: BaseException) -> bool:
    try:
        import openai
    except ImportError:  # pragma: no cover - installed with langchain-openai
        return False
    return isinstance(exc, openai.APIConnectionError)


def retryable(exc: BaseException) -> bool:
    return status_of(exc) in RETRY_STATUSES or is_connection_error(exc)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (`retry-after-ms`, `retry-after`), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe(exc: BaseException) -> str:
    """A short, generic line for a model failure: never the provider's text (it may
    echo a key or the prompt)."""
    if isinstance(exc, ModelUnavailable):
        return str(exc)
    status = status_of(exc)
    if status == 429:
        return "the model provider is rate limiting requests (HTTP 429)"
    if status is not None:
        return f"the model provider answered HTTP {status}"
    if is_connection_error(exc):
        name = type(exc).__name__
        if "Timeout" in name:
            return "the model provider did not answer in time"
        return "the model provider could not be reached"
    return f"the model call failed ({type(exc).__name__})"


def budget_retrying(cancel: CancelHandle | None, max_retries: int) -> Retrying:
    """A tenacity policy for one model call: retry while the run's budget allows it.

    Used around opening the model's stream (agent/steps.py), so only failures
    before the first chunk are retried.
    """
    max_retries = max(0, int(max_retries))

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception()
        asked = retry_after(exc)
        if asked is not None:
            return asked
        backoff = BACKOFF[0] * 2 ** (state.attempt_number - 1)
        return min(BACKOFF[1], backoff) * random.uniform(0.8, 1.2)

    def out_of_budget(state: RetryCallState) -> bool:
        exc = state.outcome.exception()
        if state.attempt_number > max_retries:
            return True
        left = cancel.remaining() if cancel is not None else None
        if left is not None and state.upcoming_sleep + MARGIN > left:
            asked = retry_after(exc)
            if asked is not None:
                raise ModelUnavailable(
                    f"{describe(exc)}; it asks to retry in {asked:.0f} s "
                    f"and the turn has {max(0.0, left):.0f} s left") from None
            return True
        return False

    def before_sleep(state: RetryCallState) -> None:
        log.debug("model call failed (%s); retry %d in %.1f s", describe(
            state.outcome.exception()), state.attempt_number, state.upcoming_sleep)

    return Retrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=out_of_budget,
        before_sleep=before_sleep,
        sleep=time.sleep,  # green under eventlet; the deadline interrupts it
        reraise=True,
    )

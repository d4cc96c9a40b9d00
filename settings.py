"""One typed settings object, read once from the environment (and `.env`).

Everything below the app factory receives this object (or a slice of it);
nothing else reads `os.environ`. Validated by pydantic-settings at startup so a
wrong value (`PORT=abc`) stops the server with one line naming the variable and
what it accepts; a misspelt variable with a known prefix is warned about.
"""

from __future__ import annotations

import contextvars
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

# the environment `from_env` reads; unset for `Settings(...)`, which uses only its arguments
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "jellychat_settings_environ", default=None
)

# variables with these prefixes are ours (or close enough to be a typo of ours)
KNOWN_PREFIXES = (
    "JELLY", "OPENAI_", "SUPABASE_", "OCEAN_", "KNOWLEDGE_", "SOCKETIO_", "LLM_", "TURN_",
    "MAX_", "LOG_", "SHUTDOWN_", "HEADER_", "IDLE_", "DATABASE_", "EMBEDDING", "LOCAL_EMBEDDING",
    "ADMIN_", "CORS_", "MEMORY_", "MULTITASK", "STOP_ON", "RATE_", "POW_", "PROXY_",
    "RUN_SWEEP", "METRICS_", "REQUIRE_",
)
# read by libraries themselves, not by us: never "unknown"
FOREIGN_VARIABLES = {
    "OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "OPENAI_PROJECT_ID", "OPENAI_LOG", "OPENAI_WEBHOOK_SECRET",
    "OPENAI_ADMIN_KEY", "SUPABASE_ACCESS_TOKEN",
}


MIN_ADMIN_KEY_CHARS = 32  # a key anyone may try against GET /messages


class SettingsError(ValueError):
    """Invalid settings; `str()` is one line per bad variable, no traceback needed."""


class _GivenEnv(EnvSettingsSource):
    """The environment source, reading the mapping `from_env` was given."""

    def _load_env_vars(self):
        return parse_env_vars(_ENVIRON.get() or {}, False, True, None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", case_sensitive=False, env_ignore_empty=True,
        validate_default=False,
    )

    # server
    port: int = Field(8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    socketio_async_mode: Literal["eventlet", "threading"] = "eventlet"
    cors_origins: str = "*"
    admin_api_key: str = Field("", repr=False)  # empty: admin endpoints off; else 32+ characters
    metrics_token: str = Field("", repr=False)  # /metrics needs `Authorization: Bearer` it (empty: public)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # connections (eventlet server)
    max_connections: int = Field(10_000, ge=1)  # open connections the process holds
    max_connections_per_ip: int = Field(200, ge=0)  # 0 = no cap (behind a proxy that caps)
    header_timeout: float = Field(10.0, gt=0)  # seconds to send a request line and headers
    idle_timeout: float = Field(75.0, gt=0)  # seconds a keep-alive or silent socket is kept
    max_content_length: int = Field(1_048_576, ge=1024)  # bytes of a request body
    shutdown_grace: float = Field(20.0, ge=0)  # seconds running turns get on SIGTERM/SIGINT
    # scale-out: several processes share Socket.IO events through this queue (redis://...)
    socketio_message_queue: str = Field("", repr=False)
    run_sweep_interval: float = Field(30.0, gt=0)  # seconds between checks for runs of dead processes
    # allocations between young garbage collections (Python's own: 700); each collection
    # stops the hub, and with hundreds of turns at once 700 meant 1 s of collecting per
    # 400 turns (docs/benchmarks.md)
    gc_young_threshold: int = Field(10_000, ge=100)
    # storage
    database_url: str = Field("", repr=False)
    # connections one process keeps to PostgreSQL (DATABASE_URL or embedded); turns queue
    # for them, each holding one only for a call (mind the server's limit times processes)
    database_pool_size: int = Field(10, ge=1)
    supabase_url: str = ""
    supabase_key: str = Field("", repr=False)
    supabase_allow_anon: bool = False
    supabase_keepalive: float = Field(60.0, ge=0)  # seconds an idle connection to it is kept (0: none)
    data_dir: str = "./data"
    # seconds a request may queue for a database connection while the database is up (a
    # burst); a database that is down answers at once (the breaker, storage/breaker.py)
    db_pool_timeout: float = Field(60.0, gt=0)
    # chat model
    openai_api_key: str = Field("", repr=False)
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0)
    # seconds an idle connection to the provider is kept for the next request (0: none);
    # the SDK's 5 s made each turn after a pause open a new TLS connection (provider_http.py)
    llm_keepalive: float = Field(60.0, ge=0)
    # models and budgets (agent/usage.py): prices seeded when a model is missing,
    # "model=input/output,..." in USD per million tokens; and the tokens a user's first
    # run reserves against their balance (later runs reserve their last run's cost)
    model_prices: str = ""
    budget_estimate_input_tokens: int = Field(3000, ge=0)
    budget_estimate_output_tokens: int = Field(500, ge=0)
    # agent
    memory_messages: int = Field(10, ge=0)
    # past this many tokens (estimated), the older messages reach the model as the
    # conversation's summary (agent/history.py); 0: no summary, the memory as it is
    max_history_tokens: int = Field(2000, ge=0)
    max_tool_iterations: int = Field(6, ge=0)
    turn_timeout: float = Field(120.0, gt=0)
    max_message_chars: int = Field(10000, ge=1)  # a Telegram message (4096) with a quoted reply fits
    max_answer_chars: int = Field(20000, ge=0)  # a model's answer is cut there (0: no cap)
    # a message while a run is active: queue it, refuse it (409) or stop the running one
    multitask: Literal["enqueue", "reject", "interrupt"] = "enqueue"
    stop_on_disconnect: bool = True  # a client that disconnects stops its runs
    sse_keepalive: float = Field(15.0, gt=0)  # seconds between SSE comment lines while a run is quiet
    # tool activity on /v1/chat/completions: `reasoning_content` deltas, or Open WebUI's
    # <details type="tool_calls"> blocks written into the content
    openai_compat_tool_details: Literal["reasoning", "openwebui"] = "reasoning"
    # rate limits and quotas (web/limits.py): limit strings such as "30/minute;300/hour", 0 = off
    rate_limit_storage: str = Field("memory://", repr=False)  # redis://host:6379 for several processes
    rate_limit_turns_per_token: str = "30/minute;300/hour"
    rate_limit_turns_per_address: str = "600/minute"
    # the other endpoints that write or cost (web/limits.py `limit`): RATE_LIMIT_<NAME>_PER_TOKEN
    # and _PER_ADDRESS, where <NAME> is the name the endpoint declares
    rate_limit_conversations_per_token: str = "30/minute"  # POST /conversations
    rate_limit_conversations_per_address: str = "120/minute"
    rate_limit_kb_search_per_address: str = "60/minute"  # GET /kb/search (embeds the query)
    rate_limit_feedback_per_token: str = "60/minute"  # POST /messages/<id>/feedback
    rate_limit_users_per_address: str = "30/minute"  # POST /users
    # POST /v1/chat/completions and POST /api/chat: per API key and end user, per address
    # (each turn also passes the turn limits above)
    rate_limit_chat_completions_per_token: str = "60/minute"
    rate_limit_chat_completions_per_address: str = "240/minute"
    rate_limit_ui_chat_per_token: str = "60/minute"
    rate_limit_ui_chat_per_address: str = "240/minute"
    rate_limit_models_per_address: str = "600/minute"  # GET /v1/models (cheap)
    rate_limit_api_keys_per_address: str = "30/minute"  # POST /api-keys (admin)
    # refuse (401) user tokens the server did not issue through POST /users
    require_server_tokens: bool = False
    max_active_runs_per_user: int = Field(10, ge=0)  # pending + running runs of one user; 0 = no cap
    proxy_hops: int = Field(0, ge=0)  # reverse proxies whose X-Forwarded-For names the client
    # proof of work for public widgets (ALTCHA): a solved challenge opens each conversation
    pow_required: bool = False
    pow_hmac_key: str = Field("", repr=False)  # signs challenges; empty = random per process
    pow_max_number: int = Field(100_000, ge=10)  # the work: about half this many SHA-256s on average
    pow_expires: float = Field(600.0, gt=0)  # seconds a challenge can be solved and sent
    # tools
    ocean_url: str = "https://ocean.defichain.com"
    ocean_network: str = "mainnet"  # checked by the Ocean client (tools/ocean/client.py)
    ocean_timeout: float = 10.0
    # knowledge
    embeddings: Literal["auto", "openai", "local", "none"] = "auto"
    openai_embedding_model: str = "text-embedding-3-small"
    local_embedding_model: str = ""  # a sentence-transformers model folder; "" = bundled MiniLM
    knowledge_top_k: int = Field(6, ge=1)  # passages a knowledge tool hands the model
    # the one cut on them: passages scoring below this are dropped (0 keeps all that matched)
    knowledge_min_score: float = Field(0.0, ge=0)
    knowledge_max_chars: int = Field(6000, ge=0)  # text budget of one tool result (~1,500 tokens)
    knowledge_starter: bool = True  # ingest the bundled starter KB at startup (embedded DB)
    # a user's files in a conversation (POST /conversations/<id>/files) and memories
    max_file_size_mb: float = Field(10.0, gt=0)  # an upload's body; replaces MAX_CONTENT_LENGTH there
    max_files_per_conversation: int = Field(20, ge=1)
    file_ready_wait: float = Field(2.0, ge=0)  # seconds an upload waits for its file before `processing`

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("socketio_async_mode", "embeddings", "log_format", "multitask", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("admin_api_key")
    @classmethod
    def _admin_key(cls, value: str):
        if value and len(value) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"use at least {MIN_ADMIN_KEY_CHARS} characters (e.g. `openssl rand "
                             "-hex 32`), or leave it empty to turn the admin endpoints off")
        return value

    @field_validator("rate_limit_turns_per_token", "rate_limit_turns_per_address",
                     "rate_limit_conversations_per_token", "rate_limit_conversations_per_address",
                     "rate_limit_kb_search_per_address", "rate_limit_feedback_per_token",
                     "rate_limit_users_per_address", "rate_limit_chat_completions_per_token",
                     "rate_limit_chat_completions_per_address", "rate_limit_ui_chat_per_token",
                     "rate_limit_ui_chat_per_address", "rate_limit_models_per_address",
                     "rate_limit_api_keys_per_address")
    @classmethod
    def _rate_limits(cls, value: str):
        value = value.strip()
        if value.lower() in ("0", "off", "none"):
            return "0"
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("use limits such as '30/minute' or '30/minute;300/hour', "
                             "or 0 for none") from None
        return value

    @field_validator("model_prices")
    @classmethod
    def _model_prices(cls, value: str):
        from agent.usage import parse_model_prices

        parse_model_prices(value)  # ValueError: the settings error names MODEL_PRICES
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_uri(cls, value: str):
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+sentinel://",
                                 "redis+cluster://")):
            raise ValueError("use memory:// (one process) or redis://host:port (several)")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # `Settings(...)` is its arguments and the defaults; `from_env` adds the environment
        if _ENVIRON.get() is None:
            return (init_settings,)
        return (init_settings, _GivenEnv(settings_cls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from `environ` (default: os.environ), upper-case names.

        Raises SettingsError naming each bad variable and what it accepts.
        """
        token = _ENVIRON.set(dict(os.environ if environ is None else environ))
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, overrides)) from None
        finally:
            _ENVIRON.reset(token)

    @property
    def uses_openai(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def cors_origin_list(self) -> str | list[str]:
        """CORS_ORIGINS as Flask-CORS and Socket.IO take it: "*" or a list of origins."""
        if self.cors_origins == "*":
            return "*"
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    def store_kind(self) -> str:
        """Which storage backend the settings select: postgres, supabase or embedded."""
        if self.database_url:
            return "postgres"
        if self.supabase_url and self.supabase_key:
            return "supabase"
        return "embedded"


SECRET_FIELDS = ("openai_api_key", "supabase_key", "admin_api_key", "metrics_token", "database_url",
                 "pow_hmac_key", "rate_limit_storage", "socketio_message_queue")


def describe_errors(exc: ValidationError, overrides: Mapping | None = None) -> str:
    """One line per invalid variable: `PORT='abc': Input should be a valid integer`."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        shown = name.upper() if name not in (overrides or {}) else name
        value = error.get("input")
        if name in SECRET_FIELDS:
            value = "***"
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name!r}")
            continue
        message = error["msg"]
        if error["type"] == "bool_parsing":
            message += " (use 1/0, true/false, yes/no or on/off)"
        lines.append(f"invalid setting {shown}={value!r}: {message}")
    return "; ".join(lines)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for variables that look like ours but name no setting, with a suggestion."""
    environ = os.environ if environ is None else environ
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in known or upper in FOREIGN_VARIABLES or not upper.startswith(KNOWN_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown setting {name} is ignored{hint}")
    return warnings

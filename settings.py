"""One typed settings object, read once from the environment (and `.env`).

Everything below the app factory receives this object (or a slice of it);
nothing else reads `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    # server
    port: int = 8080
    host: str = "0.0.0.0"
    socketio_async_mode: str = "eventlet"
    cors_origins: str = "*"
    admin_api_key: str = ""
    log_level: str = "INFO"
    # storage
    database_url: str = ""
    supabase_url: str = ""
    supabase_key: str = ""
    supabase_allow_anon: bool = False
    data_dir: str = "./data"
    db_pool_timeout: float = 1.0  # seconds a request waits for a database connection
    # chat model
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    llm_timeout: float = 60.0
    llm_max_retries: int = 2
    # agent
    memory_messages: int = 10
    max_tool_iterations: int = 6
    turn_timeout: float = 120.0
    max_message_chars: int = 10000  # a Telegram message (4096) with a quoted reply fits
    max_answer_chars: int = 20000  # a model's answer is cut there (0: no cap)
    multitask: str = "enqueue"  # enqueue | reject | interrupt: a message while a run is active
    stop_on_disconnect: bool = True  # a client that disconnects stops its runs
    # tools
    ocean_url: str = "https://ocean.defichain.com"
    ocean_network: str = "mainnet"
    ocean_timeout: float = 10.0
    # knowledge
    embeddings: str = "auto"  # auto | openai | local | none
    openai_embedding_model: str = "text-embedding-3-small"
    local_embedding_model: str = ""  # a sentence-transformers model folder; "" = bundled MiniLM
    knowledge_top_k: int = 4
    knowledge_starter: bool = True  # ingest the bundled starter KB at startup (embedded DB)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Build settings from `environ` (default: os.environ), upper-case names."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or raw == "":
                continue
            if f.type == "bool":
                values[f.name] = _bool(raw)
            elif f.type == "int":
                values[f.name] = int(raw)
            elif f.type == "float":
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)

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

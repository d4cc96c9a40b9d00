"""Storage backends behind one interface; `make_store` is the only place that picks one."""

from __future__ import annotations

from storage.base import (
    QA,
    BadValue,
    BudgetExceeded,
    Busy,
    Chunk,
    EmbeddingSpace,
    KnowledgeBaseInfo,
    KnowledgeDocument,
    ModelNotAllowed,
    NotFound,
    RateLimited,
    Store,
    StoreError,
)

__all__ = [
    "QA", "Busy", "Chunk", "EmbeddingSpace", "KnowledgeBaseInfo", "KnowledgeDocument",
    "NotFound", "RateLimited", "Store", "StoreError", "make_store",
    "BadValue", "BudgetExceeded", "ModelNotAllowed",
]


def make_store(settings) -> Store:
    """SUPABASE_URL (without DATABASE_URL) -> Supabase; DATABASE_URL -> Postgres; else embedded."""
    kind = settings.store_kind()
    if kind == "supabase":
        from storage.supabase import SupabaseStore

        return SupabaseStore(
            settings.supabase_url, settings.supabase_key, allow_anon=settings.supabase_allow_anon,
            keepalive=settings.supabase_keepalive,
        )
    from storage.postgres import PostgresStore

    if kind == "postgres":
        return PostgresStore(settings.database_url, max_size=settings.database_pool_size,
                             request_timeout=settings.db_pool_timeout)
    from storage.embedded import start_embedded_postgres

    return PostgresStore(start_embedded_postgres(settings.data_path),
                         max_size=settings.database_pool_size,
                         request_timeout=settings.db_pool_timeout)

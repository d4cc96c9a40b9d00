"""A user's files in a conversation and the facts Jelly remembers for a user.

Written once on the SQL functions of supabase/migrations/*_files_memory.sql, which
both backends call through `Store._fn`; these functions take any Store, so that
no backend needs its own code for them.
"""

from __future__ import annotations


# files
def add_file(store, token: str, conversation_id: str, name: str, mime_type: str, size: int,
             max_files: int) -> dict:
    """A new file row (status processing). NotFound: not the token's conversation;
    Busy: the conversation already holds `max_files`."""
    return store._fn("jelly_add_file", {
        "p_token": token, "p_conversation_id": conversation_id, "p_name": name,
        "p_mime_type": mime_type, "p_size": int(size), "p_max_files": int(max_files),
    }, idempotent=False)


def finish_file(store, file_id: str, status: str, chunks: list[dict], error: str | None = None,
                embedder: str | None = None) -> dict | None:
    """Store a processed file's chunks ({content, metadata, embedding?}) and status in one
    transaction; None when the file was deleted meanwhile."""
    return store._fn("jelly_finish_file", {
        "p_file_id": file_id, "p_status": status, "p_error": error, "p_chunks": list(chunks),
        "p_embedder": embedder,
    })


def list_files(store, token: str, conversation_id: str) -> list[dict]:
    return store._fn("jelly_list_files", {"p_token": token, "p_conversation_id": conversation_id}) or []


def get_file(store, token: str, file_id: str) -> dict:
    return store._fn("jelly_get_file", {"p_token": token, "p_file_id": file_id})


def delete_file(store, token: str, file_id: str) -> dict:
    """The file, its chunks and their vectors; NotFound unless it is the token's."""
    return store._fn("jelly_delete_file", {"p_token": token, "p_file_id": file_id})


def run_context(store, token: str, conversation_id: str) -> dict:
    """{files: [{id, name}] ready in the conversation, memory_enabled} in one call."""
    return store._fn("jelly_run_context", {"p_token": token, "p_conversation_id": conversation_id})


def search_files(store, conversation_id: str, query: str, embedding=None, file_ids=None,
                 k: int = 5) -> list[dict]:
    """The best chunks of the conversation's ready files: [{id, file_id, name, content,
    metadata, score}], best first."""
    return store._fn("jelly_search_files", {
        "p_conversation_id": conversation_id, "p_query": query,
        "p_embedding": list(embedding) if embedding is not None else None,
        "p_file_ids": list(file_ids) if file_ids else None, "p_k": int(k),
    }) or []


# memories
def save_memory(store, token: str, greeting: str, content: str,
                conversation_id: str | None = None, embedding=None,
                embedder: str | None = None) -> dict:
    """{id, content, created_at, source_conversation_id, created}; `created` is False when
    the same fact was kept already."""
    return store._fn("jelly_save_memory", {
        "p_token": token, "p_greeting": greeting, "p_content": content,
        "p_conversation_id": conversation_id,
        "p_embedding": list(embedding) if embedding is not None else None,
        "p_embedder": embedder,
    }, idempotent=True)


def list_memories(store, token: str) -> list[dict]:
    return store._fn("jelly_list_memories", {"p_token": token}) or []


def delete_memory(store, token: str, memory_id: int) -> dict:
    return store._fn("jelly_delete_memory", {"p_token": token, "p_id": int(memory_id)})


def clear_memories(store, token: str) -> int:
    return (store._fn("jelly_clear_memories", {"p_token": token}) or {}).get("deleted", 0)


def search_memories(store, token: str, query: str, embedding=None, k: int = 5) -> list[dict]:
    return store._fn("jelly_search_memories", {
        "p_token": token, "p_query": query,
        "p_embedding": list(embedding) if embedding is not None else None, "p_k": int(k),
    }) or []


def preferences(store, token: str) -> dict:
    return store._fn("jelly_preferences", {"p_token": token}) or {"memory_enabled": True}


def set_memory_enabled(store, token: str, greeting: str, enabled: bool) -> dict:
    return store._fn("jelly_set_memory_enabled",
                     {"p_token": token, "p_greeting": greeting, "p_enabled": bool(enabled)})

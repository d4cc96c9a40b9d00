"""API keys and client-named conversations: the store methods of the OpenAI-compatible
and AI SDK endpoints, on the SQL functions of *_api_keys.sql (both backends).

A mixin of `Store`: it needs only `_fn`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "jelly-"


def new_key() -> str:
    """A fresh key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """What is stored of a key: a random 256-bit key needs no slow hash."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """Admin-made keys (stored hashed) and the conversation a client's turn lands in."""

    def create_api_key(self, name: str, application: str | None = None,
                       assistant_id: str | None = None) -> dict:
        """A new key: {id, name, application, assistant_id, created, key}; the key
        itself is in this answer only."""
        key = new_key()
        row = self._fn("jelly_create_api_key", {
            "p_name": name, "p_key_hash": key_hash(key), "p_application": application,
            "p_assistant_id": assistant_id}, idempotent=False)
        return {**row, "key": key}

    def list_api_keys(self) -> list[dict]:
        return self._fn("jelly_list_api_keys", {}) or []

    def delete_api_key(self, key_id: str) -> None:
        """NotFound when no such key."""
        self._fn("jelly_delete_api_key", {"p_id": key_id})

    def api_key(self, key: str) -> dict | None:
        """The key's record when `key` is a live key, else None (hashes compared in
        constant time)."""
        wanted = key_hash(key)
        row = self._fn("jelly_api_key_by_hash", {"p_key_hash": wanted})
        if not row or not hmac.compare_digest(str(row.pop("key_hash", "")), wanted):
            return None
        return row

    def client_conversation(self, token: str, greeting: str, alias: str | None = None,
                            history: list[dict] | None = None) -> str:
        """The id of the conversation a client's turn belongs to (created when new): the
        one `alias` names (our id or the client's), else the one whose last messages are
        `history` ([{type: human|jelly, content}], oldest first), else a new one."""
        found = self._fn("jelly_client_conversation", {
            "p_token": token, "p_greeting": greeting, "p_alias": alias,
            "p_history": list(history or [])}, idempotent=False)
        return str(found)

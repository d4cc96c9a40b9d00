"""Text a database can store: PostgreSQL holds no NUL and no lone surrogate."""

from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """Text a database can hold: lone surrogates and NULs become U+FFFD."""
    if not UNSTORABLE.search(text):
        return text
    return UNSTORABLE.sub("\ufffd", text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


_TOKEN = re.compile(r"\S+\s*|\s+")


def tokens_of(text: str) -> list[str]:
    """Split text into word tokens that join back to exactly `text`."""
    return _TOKEN.findall(text)

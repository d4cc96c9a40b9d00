"""The offline model's rules for a user's own material: the conversation's files and the
facts a user asked Jelly to remember (tools/files.py runs the tools; these rules only
decide when the offline model calls them and how it words their results)."""

from __future__ import annotations

import re

from agent.files import current_scope
from storage import StoreError
from storage import files as stored

REMEMBER = re.compile(r"^\W*(?:please\s+|jelly\W+)?(?:remember|keep in mind)\s+(?:that\s+)?"
                      r"(?P<fact>\S.*?)\W*$", re.I | re.S)
ABOUT_ME = re.compile(r"\b(my|me|i|mine|i'm|am i)\b", re.I)
QUOTE_CHARS = 600


def route_files(text: str, history):
    """A question the conversation's files answer (they are searched before the wiki)."""
    scope = current_scope.get()
    if scope is None or not scope.context()["files"]:
        return None
    try:
        found = stored.search_files(scope.store, scope.conversation_id, text, None, None, 1)
    except StoreError:
        return None
    return {"query": text} if found else None


def answer_files(question: str, result) -> str:
    match = re.match(r"\[1\] From (?P<where>[^:\n]+):\n(?P<text>.*?)(?:\n\n\[2\]|\Z)",
                     result.text, re.S)
    if not match:
        return result.text
    text = " ".join(match["text"].split())
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return f"From your file {match['where']}: {text}"


def route_save(text: str, history):
    match = REMEMBER.match(text.strip())
    return {"fact": match["fact"]} if match else None


def answer_save(question: str, result) -> str:
    fact = result.text.split(": ", 1)[-1]
    if result.text.startswith("Already"):
        return f"I already remember that: {fact} 🪼"
    return f"Got it, I'll remember that: {fact} 🪼"


def route_search(text: str, history):
    """A question about the user that a remembered fact answers."""
    scope = current_scope.get()
    if scope is None or not ABOUT_ME.search(text):
        return None
    try:
        found = stored.search_memories(scope.store, scope.user_token, text, None, 1)
    except StoreError:
        return None
    return {"query": text} if found else None


def answer_search(question: str, result) -> str:
    memories = (result.artifact or {}).get("memories") if isinstance(result.artifact, dict) else None
    facts = [m["content"] for m in memories or []]
    if not facts:
        return result.text
    return "You asked me to remember: " + "; ".join(facts[:3]) + " 🪼"

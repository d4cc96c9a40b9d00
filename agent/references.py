"""A references-only answer: the knowledge sources for a question, no model call and
nothing stored. `Chat.references` validates and admits the request as for a run."""

from __future__ import annotations

from agent import events as ev


def find_sources(question: str, retriever, kbs: tuple[str, ...], k: int,
                 relevant=None) -> list[dict]:
    """The top `k` chunks of the first knowledge base of `kbs` that is available, those
    that `relevant(question, chunk)` keeps, as sources."""
    kb = retriever.first_available(kbs) if retriever else None
    if kb is None:
        return []
    return [{"title": chunk.title, "url": chunk.url, "snippet": chunk.snippet(),
             "score": round(chunk.score, 6)}
            for chunk in retriever.search(kb, question, k)
            if relevant is None or relevant(question, chunk)]


def answer(sources: list[dict], sink: ev.EventSink) -> dict:
    """Send the sources as a final_message (the run fields empty); returns its payload."""
    payload = {"message": "", "sources": sources, "run_id": None, "conversation_id": None,
               "message_id": None, "status": "succeeded", "usage": None, "tool_calls": [],
               "references_only": True}
    sink.emit(ev.FINAL, payload)
    return payload

"""REST: `GET /kb/search?q=...&kb=wiki&k=5`, ranked chunks for references-only clients.

Like the chat tools, `wiki` and `defichainpython` fall back to the bundled
`starter` base until they are ingested; the answer's `kb` names the base that
answered (`requested` the one asked for).
"""

from __future__ import annotations

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from agent.turn import InvalidInput
from knowledge.ingest import check_kb_name
from knowledge.retrieval import get_retriever
from tools.knowledge import PYTHON_KBS, WIKI_KBS
from web import schemas as s
from web.limits import limit
from web.rest import COMMON, LIMITED
from web.services import get_chat, get_settings

bp = APIBlueprint("kb", __name__, abp_responses=COMMON)
KNOWLEDGE = Tag(name="knowledge", description="The knowledge bases Jelly answers from")

MAX_QUERY_CHARS = 1000
# the bases searched in turn for a requested kb, as the chat tools do
FALLBACKS = {kbs[0]: kbs for kbs in (WIKI_KBS, PYTHON_KBS)}


@bp.get("/kb/search", tags=[KNOWLEDGE], responses={200: s.KBSearchOut, 404: s.ErrorOut, **LIMITED})
@limit("kb_search")
def search(query: s.KBSearchQuery):
    """The best chunks of a knowledge base for a query (hybrid or full-text search)."""
    text = query.q.strip()
    if not text:
        raise InvalidInput("q", "'q' (the search text) is required")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput("q", f"'q' is longer than {MAX_QUERY_CHARS} characters")
    requested = query.kb
    try:
        check_kb_name(requested)
    except ValueError as exc:
        raise InvalidInput("kb", str(exc)) from None
    retriever = get_retriever(get_settings(), get_chat().store)
    kb = retriever.first_available(FALLBACKS.get(requested, (requested,)))
    if kb is None:
        known = ", ".join(sorted(retriever.bases())) or "none yet"
        return jsonify({
            "error": f"knowledge base '{requested}' does not exist (known: {known}); "
                     f"create it with: make ingest SOURCE=... KB={requested}",
        }), 404
    mode = "hybrid" if retriever.uses_vectors(kb) else "full-text"
    chunks = retriever.search(kb, text, query.k)
    return jsonify({
        "query": text,
        "kb": kb,
        "requested": requested,
        "fallback": kb != requested,
        "mode": mode,
        "results": [
            {
                "rank": rank,
                "score": round(chunk.score, 6),
                "title": chunk.title,
                "source": chunk.source,
                "url": chunk.url,
                "section": chunk.metadata.get("section"),
                "snippet": chunk.snippet(),
            }
            for rank, chunk in enumerate(chunks, 1)
        ],
    })

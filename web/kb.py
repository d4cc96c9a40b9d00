"""REST: `GET /kb/search?q=...&kb=wiki&k=5`, ranked chunks for references-only clients.

Like the chat tools, `wiki` and `defichainpython` fall back to the bundled
`starter` base until they are ingested; the answer's `kb` names the base that
answered (`requested` the one asked for).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from agent.turn import InvalidInput
from knowledge.ingest import check_kb_name
from knowledge.retrieval import get_retriever
from tools.knowledge import PYTHON_KBS, WIKI_KBS
from web.rest import int_arg
from web.services import get_chat, get_settings

bp = Blueprint("kb", __name__)

MAX_K = 50
MAX_QUERY_CHARS = 1000
# the bases searched in turn for a requested kb, as the chat tools do
FALLBACKS = {kbs[0]: kbs for kbs in (WIKI_KBS, PYTHON_KBS)}


def _params() -> tuple[str, str, int]:
    query = (request.args.get("q") or "").strip()
    if not query:
        raise InvalidInput("q", "'q' (the search text) is required")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput("q", f"'q' is longer than {MAX_QUERY_CHARS} characters")
    kb = request.args.get("kb", "wiki")
    try:
        check_kb_name(kb)
    except ValueError as exc:
        raise InvalidInput("kb", str(exc)) from None
    return query, kb, int_arg("k", 5, 1, MAX_K)


@bp.get("/kb/search")
def search():
    query, requested, k = _params()
    retriever = get_retriever(get_settings(), get_chat().store)
    kb = retriever.first_available(FALLBACKS.get(requested, (requested,)))
    if kb is None:
        known = ", ".join(sorted(retriever.bases())) or "none yet"
        return jsonify({
            "error": f"knowledge base '{requested}' does not exist (known: {known}); "
                     f"create it with: make ingest SOURCE=... KB={requested}",
        }), 404
    mode = "hybrid" if retriever.uses_vectors(kb) else "full-text"
    chunks = retriever.search(kb, query, k)
    return jsonify({
        "query": query,
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

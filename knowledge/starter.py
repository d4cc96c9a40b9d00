"""The starter knowledge base shipped in `knowledge/starter/`, and startup checks.

On the embedded database it is ingested at startup (incrementally, so a
restart does nothing), so a fresh install answers basic DeFiChain questions
before anyone ingests the wiki.
"""

from __future__ import annotations

import logging
from pathlib import Path

from knowledge.embeddings import EmbedderError, describe, why
from knowledge.ingest import ingest, mismatch
from knowledge.retrieval import get_retriever

log = logging.getLogger("jellychat.knowledge")

STARTER_DIR = Path(__file__).resolve().parent / "starter"
STARTER_KB = "starter"


def ingest_starter(store, embedder):
    """Ingest the starter kb with `embedder` (re-embedding it if the embedder changed);
    if embedding fails, store it for full-text search and say so."""
    space = embedder.space if embedder is not None else None
    reembed = mismatch(store, STARTER_KB, space) is not None
    try:
        return ingest(store, STARTER_DIR, STARTER_KB, embedder, progress=False, reembed=reembed)
    except EmbedderError as exc:
        log.warning("starter knowledge base stored without vectors: %s", exc)
        return ingest(store, STARTER_DIR, STARTER_KB, None, progress=False, reembed=True)


def prepare_knowledge(settings, store) -> None:
    """Startup: starter kb (embedded database only), embedder mismatch report, model warm-up.

    Never raises: a problem here is logged and knowledge search falls back to full text.
    """
    retriever = get_retriever(settings, store)
    embedder = retriever.embedder
    # the one line that says which embedder runs and why, before any slow model work
    log.info("embedder: %s (%s)", describe(embedder), why(settings))
    try:
        if settings.knowledge_starter and settings.store_kind() == "embedded":
            report = ingest_starter(store, embedder)
            if report.added or report.changed or report.removed:
                log.info("starter knowledge base: %s", report.summary())
        for problem in retriever.problems():
            retriever.warn_once(problem + " Until then it is searched by full text only.")
        if embedder is not None and any(retriever.uses_vectors(kb) for kb in retriever.bases()):
            embedder.warm_up()
        log.info("knowledge bases: %s",
                 ", ".join(f"{kb} ({i.documents} documents)" for kb, i in retriever.bases().items())
                 or "none")
    except Exception:  # noqa: BLE001 - knowledge problems must not stop the chat service
        log.exception("preparing the knowledge bases failed; knowledge search may be unavailable")

"""Query side: hybrid search when the kb's vectors match the embedder, else full text.

A kb whose vectors came from another embedder is searched by full text only,
and the reason is logged once (with the command that fixes it), so a changed
EMBEDDINGS setting never returns garbage and never stops the service.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from knowledge.embeddings import Embedder, EmbedderError, get_embedder, off_the_hub
from knowledge.ingest import mismatch
from storage.base import Chunk, KnowledgeBaseInfo

log = logging.getLogger("jellychat.knowledge")


_CPU_SLOTS = threading.Semaphore(1)  # green under eventlet: waiting costs the hub nothing


def embed_query(embedder: Embedder, text: str) -> list[float]:
    """The query's vector; a CPU-bound embedder runs off the hub (`off_the_hub`)."""
    if getattr(embedder, "cpu_bound", False):
        with _CPU_SLOTS:  # one at a time: the cores are few, and the hub needs the GIL too
            return off_the_hub(embedder.embed_query, text)
    return embedder.embed_query(text)


class Retriever:
    def __init__(self, store, embedder: Embedder | None, cache_seconds: float = 10.0):
        self.store = store
        self.embedder = embedder
        self.cache_seconds = cache_seconds
        self._bases: dict[str, KnowledgeBaseInfo] | None = None
        self._fetched = 0.0
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def bases(self, wanted: str | None = None) -> dict[str, KnowledgeBaseInfo]:
        """`store.knowledge_bases()`, refreshed at most every `cache_seconds`, and at once
        when `wanted` is missing: a base that `flask ingest` (another process) just
        created is visible on the next request, while known bases cost no query."""
        now = time.monotonic()
        if (self._bases is None or now - self._fetched > self.cache_seconds
                or (wanted is not None and wanted not in self._bases)):
            self._bases = self.store.knowledge_bases()
            self._fetched = now
        return self._bases

    def first_available(self, kbs) -> str | None:
        """The first of `kbs` that holds documents."""
        bases = self.bases(kbs[0]) if kbs else self.bases()
        return next((kb for kb in kbs if kb in bases and bases[kb].documents), None)

    def problems(self) -> list[str]:
        """Every kb whose stored vectors the embedder cannot be compared with."""
        space = self.embedder.space if self.embedder is not None else None
        bases = self.bases()
        return [p for kb in sorted(bases) if (p := mismatch(self.store, kb, space, bases))]

    def warn_once(self, message: str, key: str | None = None) -> None:
        with self._lock:
            if (key or message) in self._logged:
                return
            self._logged.add(key or message)
        log.error("%s", message)

    def uses_vectors(self, kb: str) -> bool:
        if self.embedder is None:
            return False
        bases = self.bases()
        info = bases.get(kb)
        if info is None or not info.embedders:
            return False
        problem = mismatch(self.store, kb, self.embedder.space, bases)
        if problem:
            self.warn_once(problem + " Until then it is searched by full text only.")
            return False
        return True

    def search(self, kb: str, query: str, k: int = 4) -> list[Chunk]:
        """The `k` best chunks of `kb`: hybrid when possible, else full text."""
        embedding = None
        if self.uses_vectors(kb):
            try:
                embedding = embed_query(self.embedder, query)
            except Exception as exc:  # noqa: BLE001 - fall back to full text, say why once
                self.warn_once(
                    f"embedding a question failed ({exc}); searching by full text only",
                    key="embedding failed",
                )
        return self.store.search(kb, query, embedding, k)


@functools.lru_cache(maxsize=8)
def get_retriever(settings, store) -> Retriever:
    """One retriever per (settings, store): startup, the knowledge tools and /kb/search
    share its knowledge-base cache and its once-only warnings."""
    try:
        embedder = get_embedder(settings)
    except EmbedderError as exc:
        log.error("%s; knowledge search uses full text only", exc)
        embedder = None
    return Retriever(store, embedder)

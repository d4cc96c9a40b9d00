"""Incremental, idempotent ingestion of one source into one knowledge base.

A kb mirrors its source: each document's hash (text, title, address, splitter
version and embedder) is compared with the stored one, so a re-run splits and
embeds only new or changed documents and removes documents that disappeared.
Vectors from another embedder are never mixed in: `ingest` refuses, and
`--reembed` rebuilds the kb with the configured embedder.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.embeddings import Embedder, EmbedderError, describe
from knowledge.loaders import Loaded, LoadError, SiteLayout, load
from knowledge.splitting import SPLITTER_VERSION, embedding_text, split_document
from storage.base import EmbeddingSpace, KnowledgeDocument

log = logging.getLogger("jellychat.knowledge.ingest")

KB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$")


class EmbedderMismatch(RuntimeError):
    """Stored vectors come from another embedder than the configured one."""


@dataclass
class IngestReport:
    kb: str
    source: str
    embedder: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks: int = 0  # chunks written for added and changed documents
    embedded: int = 0  # of those, chunks embedded
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def documents(self) -> int:
        return self.added + self.changed + self.unchanged

    def summary(self) -> str:
        line = (
            f"kb '{self.kb}': {self.added} added, {self.changed} changed, {self.removed} removed, "
            f"{self.unchanged} unchanged documents; {self.chunks} chunks written, "
            f"{self.embedded} embedded ({self.embedder}); {self.seconds:.1f} s"
        )
        if self.failed:
            line += f"; {len(self.failed)} failed"
        return line


def check_kb_name(kb: str) -> str:
    if not isinstance(kb, str) or not KB_NAME.match(kb):
        raise ValueError(
            "a knowledge base name is 1-64 letters, digits, '_', '-' or '.', starting with a "
            f"letter or digit, not {kb!r}"
        )
    return kb


def mismatch(store, kb: str, space: EmbeddingSpace | None, bases=None) -> str | None:
    """The user-facing problem when `kb` holds vectors `space` cannot be compared with."""
    info = (bases if bases is not None else store.knowledge_bases()).get(kb)
    stored = set(info.embedders) if info else set()
    if not stored or stored == {space}:
        return None
    held = ", ".join(sorted(str(s) for s in stored))
    now = str(space) if space else "none (EMBEDDINGS=none or no embedding model installed)"
    return (
        f"knowledge base '{kb}' holds vectors from {held}, but the configured embedder is {now}; "
        f"they cannot be compared. Re-ingest it with the configured embedder: "
        f"flask --app app ingest SOURCE --kb {kb} --reembed"
    )


def document_hash(document, space: EmbeddingSpace | None) -> str:
    digest = hashlib.sha256()
    for part in (SPLITTER_VERSION, str(space or "none"), document.url or "", document.title,
                 document.format, document.text):
        digest.update(part.encode("utf-8", "replace"))
        digest.update(b"\x00")
    return digest.hexdigest()


def ingest(
    store,
    source: str | Path,
    kb: str,
    embedder: Embedder | None = None,
    *,
    progress: bool = True,
    reembed: bool = False,
    prune: bool = True,
    layout: SiteLayout | None = None,
    loaded: Loaded | None = None,
) -> IngestReport:
    """Bring `kb` in line with `source` (folder, page URL or sitemap URL).

    reembed: rewrite every document (needed after changing the embedder).
    prune: remove stored documents the source no longer has (pages that failed
    to load are kept). Raises EmbedderMismatch, LoadError or EmbedderError.
    """
    started = time.perf_counter()
    check_kb_name(kb)
    space = embedder.space if embedder is not None else None
    problem = mismatch(store, kb, space)
    if problem and not reembed:
        raise EmbedderMismatch(problem)
    if loaded is None:
        loaded = load(str(source), layout=layout, progress=progress)
    if not loaded.documents and not loaded.failures:
        raise LoadError(f"{source} holds no markdown, mdx, rst, html or txt documents")
    report = IngestReport(kb=kb, source=str(source), embedder=describe(embedder),
                          failed=list(loaded.failures))
    stored = store.document_hashes(kb)
    seen: set[str] = set()
    todo = []
    for document in loaded.documents:
        if document.source in seen:
            continue
        seen.add(document.source)
        digest = document_hash(document, space)
        if not reembed and stored.get(document.source) == digest:
            report.unchanged += 1
        else:
            todo.append((document, digest, document.source in stored))

    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"ingesting into '{kb}'", unit="doc")
    try:
        for document, digest, existed in todo:
            chunks = split_document(document, kb)
            vectors = None
            if embedder is not None and chunks:
                try:
                    vectors = embedder.embed_documents([embedding_text(c) for c in chunks])
                except EmbedderError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any client error, reported clearly
                    raise EmbedderError(f"embedding with {space} failed: {exc}") from exc
                report.embedded += len(chunks)
            store.replace_document(
                kb,
                KnowledgeDocument(document.source, document.title, digest, document.updated_at),
                chunks, vectors, space if vectors is not None else None,
            )
            report.chunks += len(chunks)
            if existed:
                report.changed += 1
            else:
                report.added += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    if prune:
        keep = seen | {source for source, _ in loaded.failures}
        gone = sorted(set(stored) - keep)
        report.removed = store.delete_documents(kb, gone) if gone else 0
    if report.added or report.changed or report.removed:
        store.ingest_finished(kb)
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report

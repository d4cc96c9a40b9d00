"""Ingestion speed on the DeFiChain wiki: first run, unchanged re-run, one changed page.

    .venv/bin/python -m bench ingestion [--embeddings local|none]

Copies ../shared/corpus/defichainwiki/docs to a temp folder, ingests it into a
fresh embedded database, ingests it again unchanged, then edits one page and
ingests once more. Target (issue 3): the unchanged re-run is >= 10x faster
than the first run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.harness import target
from bench.kb_common import WIKI, local_embedder, open_store


def add_arguments(parser) -> None:
    parser.add_argument("--embeddings", choices=("local", "none"), default="local")


def run(args) -> dict:

    from knowledge.ingest import ingest

    work = Path(tempfile.mkdtemp(prefix="jelly-ingest-"))
    corpus = work / "docs"
    shutil.copytree(WIKI, corpus)
    store, _ = open_store(str(work / "db"))
    embedder = local_embedder() if args.embeddings == "local" else None  # loaded before timing

    first = ingest(store, corpus, "wiki", embedder, progress=False)
    again = ingest(store, corpus, "wiki", embedder, progress=False)
    page = corpus / "auto" / "Masternode.md"
    page.write_text(page.read_text() + "\n\nOne more paragraph added by the benchmark.\n")
    edited = ingest(store, corpus, "wiki", embedder, progress=False)
    store.close()

    print(f"corpus: {first.documents} documents, {first.chunks} chunks; embedder: {first.embedder}")
    print(f"{'run':<22} {'seconds':>8} {'docs/s':>8} {'chunks/s':>9}  summary")
    for label, report in (("first", first), ("unchanged re-run", again), ("one page changed", edited)):
        docs = report.documents / report.seconds
        chunks = first.chunks / report.seconds
        print(f"{label:<22} {report.seconds:>8.2f} {docs:>8.1f} {chunks:>9.1f}  {report.summary()}")
    print(f"unchanged re-run is {first.seconds / again.seconds:.0f}x faster than the first run")
    return {"documents": first.documents, "chunks": first.chunks, "embedder": str(first.embedder),
            "first_s": round(first.seconds, 2), "unchanged_s": round(again.seconds, 2),
            "one_page_changed_s": round(edited.seconds, 2),
            "targets": {"unchanged_rerun_speedup": target(round(first.seconds / again.seconds, 1), 10,
                                                          at_least=True, unit=" x")}}

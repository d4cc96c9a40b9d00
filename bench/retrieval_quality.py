"""Retrieval quality on the DeFiChain wiki: recall@1, recall@5 and MRR at page level.

    .venv/bin/python -m bench retrieval_quality [--data-dir DIR] [--misses]

Ingests ../shared/corpus/defichainwiki/docs (with the local model, so both modes
search the same chunks), then asks every question of bench/questions/wiki.yaml
in full-text mode and in hybrid mode. A question's rank is the position of the
first answering page among the distinct pages of the top 30 chunks.
Targets (issue 3): recall@5 >= 0.80 full text, >= 0.90 hybrid.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from bench.harness import target
from bench.kb_common import WIKI, local_embedder, open_store, pages_in_order

QUESTIONS = Path(__file__).resolve().parent / "questions" / "wiki.yaml"
CANDIDATE_CHUNKS = 30


def rank_of(pages: list[str], wanted: list[str]) -> int | None:
    return next((i for i, page in enumerate(pages, 1) if page in wanted), None)


def scores(ranks: list[int | None]) -> dict:
    n = len(ranks)
    return {
        "recall@1": sum(1 for r in ranks if r == 1) / n,
        "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help="reuse this database folder (default: a new temp dir)")
    parser.add_argument("--misses", action="store_true", help="list questions not answered in the top 5")


def run(args) -> dict:

    from knowledge.ingest import ingest

    questions = yaml.safe_load(QUESTIONS.read_text())
    store, path = open_store(args.data_dir)
    embedder = local_embedder()
    started = time.perf_counter()
    report = ingest(store, WIKI, "wiki", embedder, progress=False)
    print(f"database: {path}")
    print(f"ingest: {report.summary()} ({time.perf_counter() - started:.1f} s)")

    results = {}
    for mode in ("full-text", "hybrid"):
        ranks, misses = [], []
        for item in questions:
            vector = embedder.embed_query(item["q"]) if mode == "hybrid" else None
            chunks = store.search("wiki", item["q"], vector, CANDIDATE_CHUNKS)
            pages = pages_in_order(chunks)
            rank = rank_of(pages, item["pages"])
            ranks.append(rank)
            if not rank or rank > 5:
                misses.append((item["q"], item["pages"], pages[:5]))
        results[mode] = scores(ranks)
        if args.misses:
            print(f"\n{mode}: not in the top 5")
            for q, wanted, got in misses:
                print(f"  {q}\n    wanted {wanted}, got {got}")
    print(f"\n{len(questions)} questions, page-level ranks from the top {CANDIDATE_CHUNKS} chunks")
    print(f"{'mode':<10} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}")
    for mode, s in results.items():
        print(f"{mode:<10} {s['recall@1']:>9.3f} {s['recall@5']:>9.3f} {s['mrr']:>7.3f}")
    store.close()
    return {"questions": len(questions), "modes": results, "targets": {
        "recall5_full_text": target(results["full-text"]["recall@5"], 0.80, at_least=True),
        "recall5_hybrid": target(results["hybrid"]["recall@5"], 0.90, at_least=True)}}

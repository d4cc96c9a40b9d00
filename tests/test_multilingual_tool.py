"""What a real LLM is handed by the wiki tool (issue 27), through the real server:
the scripted model (tests/fakes/openai_server.py, `ask_tool`) calls
`defichain_wiki_knowledge` with the user's own words, in another language, as a
paraphrase or misspelt, and the tool result it receives must hold the page that
answers. Full-text retrieval over the real wiki (../shared; skips without it).

These questions are not those of bench/questions/multilingual_heldout.yaml, which
stays held out for bench/multilingual_recall.py."""

from __future__ import annotations

import uuid

import pytest

from bench.multilingual_recall import TOOL, pages_named, tool_results
from tests.helpers import SHARED, ServerProcess

WIKI = SHARED / "corpus" / "defichainwiki" / "docs"

QUESTIONS = [
    ("Wie funktioniert die Verschlüsselung der Wallet?", "Wallet_Encryption"),      # German, accent
    ("Qu'est-ce que la perte impermanente ?", "Impermanent_Loss"),                  # French word forms
    ("¿Cómo hago una copia de seguridad de mi wallet?", "Backup_Wallet"),           # Spanish
    ("Quanto costa un masternode in DFI?", "Masternode"),                           # Italian
    ("Hoe werkt liquiditeitsmijnbouw?", "Liquidity_Mining"),                        # Dutch compound
    ("whats the colateral ratio of my vualt", "Collateral_Ratio"),                  # typos
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real server on the whole wiki (full text), its LLM the scripted tool caller."""
    from knowledge.ingest import ingest
    from storage.embedded import start_embedded_postgres
    from storage.postgres import PostgresStore
    from tests.fakes.openai_server import OpenAIServer

    if not WIKI.is_dir():
        reason = f"needs the DeFiChain wiki corpus at {WIKI} (../shared; absent in a public clone)"
        print(reason)
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("multilingual")
    store = PostgresStore(start_embedded_postgres(data))
    store.initialize()
    ingest(store, WIKI, "wiki", None, progress=False)
    store.close()
    llm = OpenAIServer(ask_tool=TOOL).start()
    server = ServerProcess(data, env={"EMBEDDINGS": "none", "OPENAI_BASE_URL": llm.url,
                                      "OPENAI_API_KEY": "sk-test"}).start()
    yield server, llm
    server.stop()
    llm.stop()


@pytest.mark.parametrize(("question", "page"), QUESTIONS)
def test_the_tool_hands_the_model_the_page_that_answers(served, question, page):
    server, llm = served
    response = server.post("/user_message", {"user_token": f"ml-{uuid.uuid4().hex[:8]}", "message": question})
    assert response.status_code == 200, response.text
    results = tool_results(llm.requests, question)
    assert results, f"the model never received a {TOOL} result for {question!r}"
    pages = pages_named("\n".join(results))
    assert page in pages, f"{question!r}: the tool handed over {pages}"

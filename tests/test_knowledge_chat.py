"""Knowledge in the real server: wiki questions answered with sources over REST
and Socket.IO, `/kb/search`, and the starter knowledge base of a fresh install.

The `wiki_server` tests read the real wiki from ../shared and skip (with the
reason) without it; tests/test_first_run.py covers the same paths on documents
shipped in tests/docs, so a public clone still exercises them."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from langchain_core.messages import HumanMessage

from tests.helpers import ROOT, SHARED, ChatClient, ServerProcess

WIKI = SHARED / "corpus" / "defichainwiki" / "docs"
MASTERNODE_PAGE = "https://www.defichainwiki.com/docs/auto/Masternode"
ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdefghij"}


def token() -> str:
    return f"kb-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def wiki_server(tmp_path_factory):
    """A server whose embedded database holds the whole wiki (full text, no keys)."""
    from knowledge.ingest import ingest
    from storage.embedded import start_embedded_postgres
    from storage.postgres import PostgresStore

    if not WIKI.is_dir():
        pytest.skip(f"needs the DeFiChain wiki corpus at {WIKI} (../shared; absent in a public clone)")
    data = tmp_path_factory.mktemp("wiki-server")
    store = PostgresStore(start_embedded_postgres(data))
    store.initialize()
    report = ingest(store, WIKI, "wiki", None, progress=False)
    store.close()
    assert report.added > 80
    srv = ServerProcess(data, env={"EMBEDDINGS": "none",
                                   "ADMIN_API_KEY": "test-admin-key-0123456789abcdefghij"}).start()
    yield srv
    srv.stop()


def test_masternode_question_over_rest_cites_the_masternode_page(wiki_server):
    response = wiki_server.post("/user_message", {
        "user_token": token(), "message": "How many DFI do I need to run a masternode?",
    })
    assert response.status_code == 200
    body = response.json()
    assert "20,000" in body["response"]
    urls = [s["url"] for s in body["sources"]]
    assert urls[0] == MASTERNODE_PAGE
    assert len(urls) == len(set(urls)) and all(s["title"] for s in body["sources"])


def test_wiki_question_over_socketio_streams_and_sends_sources(wiki_server):
    client = ChatClient(wiki_server.url)
    try:
        result = client.ask(token(), "What is impermanent loss?")
    finally:
        client.close()
    names = result.names()
    assert names[0] == "tool_start"
    assert result.of("tool_start")[0]["tool_name"] == "Let me look that up in the DeFiChain wiki 📚"
    assert names[-1] == "final_message" and "final_answer_token" in names
    assert result.tokens == result.final["message"]
    sources = result.final["sources"]
    assert sources[0]["url"].endswith("/docs/auto/Impermanent_Loss")
    assert "impermanent" in result.final["message"].lower()


def test_question_and_sources_are_stored_as_qa(wiki_server):
    question = f"How do I get DFI on the testnet? ({uuid.uuid4().hex[:6]})"
    wiki_server.post("/user_message", {"user_token": token(), "message": question})
    pairs = wiki_server.get("/messages?limit=20", headers=ADMIN).json()
    pair = next(p for p in pairs if p["question"] == question)
    assert pair["sources"] and pair["sources"][0]["url"].endswith("/docs/auto/Testnet")


def test_small_talk_is_not_sent_to_the_wiki(wiki_server):
    for message in ("Thank you so much!", "Hi Jelly, how are you today?"):
        client = ChatClient(wiki_server.url)
        try:
            result = client.ask(token(), message)
        finally:
            client.close()
        assert result.of("tool_start") == [], message
        assert result.final["sources"] == []


def test_off_topic_question_cites_nothing(wiki_server):
    body = wiki_server.post("/user_message", {
        "user_token": token(), "message": "What is the weather like in Paris?",
    }).json()
    assert body["sources"] == []
    # nothing found, or found passages that are not about it: either way it says so
    assert "couldn't find" in body["response"] or "doesn't cover" in body["response"]


def test_kb_search_ranks_chunks(wiki_server):
    response = wiki_server.get("/kb/search", params={"q": "masternode collateral 20000 DFI", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["kb"] == body["requested"] == "wiki" and body["fallback"] is False
    assert body["mode"] == "full-text"
    results = body["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"] > 0
    assert results[0]["source"].startswith("https://www.defichainwiki.com/docs/auto/Masternode")
    assert all(r["title"] and r["snippet"] for r in results)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 1001}, "q"),
        ({"q": "dfi", "k": "many"}, "k"),
        ({"q": "dfi", "k": "0"}, "k"),
        ({"q": "dfi", "k": "51"}, "k"),
        ({"q": "dfi", "kb": "no spaces allowed"}, "kb"),
    ],
)
def test_kb_search_rejects_bad_parameters(server, params, field):
    response = server.get("/kb/search", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field and response.json()["error"]


def test_kb_search_unknown_kb_is_404(server):
    response = server.get("/kb/search", params={"q": "dfi", "kb": "nothing-here"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert "nothing-here" in error and "starter" in error and "make ingest" in error


def test_fresh_install_answers_from_the_starter_kb(server):
    """The session server started on an empty data dir: the starter kb was ingested."""
    response = server.post("/user_message", {
        "user_token": token(), "message": "How many DFI do I need to run a masternode?",
    })
    body = response.json()
    assert "20,000" in body["response"]
    assert body["sources"] and body["sources"][0]["url"] == MASTERNODE_PAGE
    starter = server.get("/kb/search", params={"q": "masternode collateral", "kb": "starter", "k": 2}).json()
    assert starter["results"][0]["source"] == "masternodes.md"


def test_python_question_goes_to_the_python_docs_tool(server):
    client = ChatClient(server.url)
    try:
        result = client.ask(token(), "How do I install the defichain python library with pip?")
    finally:
        client.close()
    assert result.of("tool_start")[0]["tool_name"] == "Let me check the DefichainPython docs 🐍"
    assert "pip install defichain" in result.final["message"]


def test_offline_routing_keeps_small_talk_and_calculator_first():
    from agent.offline import OfflineChatModel, small_talk
    from tools.calculator import make_tools as calculator_tools
    from tools.knowledge import make_knowledge_tool

    class NoStore:
        """Routing never reaches the store."""

    def knowledge(name):
        return make_knowledge_tool(None, name=name, label="x", kbs=("x",), description="d",
                                   friendly="f", k=3)

    model = OfflineChatModel(tools=[
        *calculator_tools(None, NoStore()),
        knowledge("defichain_wiki_knowledge"),
        knowledge("defichainpython_knowledge"),
    ])

    def routed(text):
        reply = model.respond([HumanMessage(text)])
        return reply.tool_calls[0]["name"] if reply.tool_calls else None

    assert routed("Thanks a lot, Jelly!") is None
    assert routed("hello") is None
    assert routed("Who are you?") is None
    assert routed("Hi! How many DFI do I need for a masternode?") == "defichain_wiki_knowledge"
    assert routed("what is 20000 divided by 4") == "calculator"
    assert routed("Show me python code to read a block from Ocean") == "defichainpython_knowledge"
    assert small_talk("Good morning, thank you!") and small_talk("what is a vault") is None


def test_knowledge_packages_do_not_import_flask():
    code = ("import sys, knowledge, knowledge.ingest, knowledge.loaders, knowledge.retrieval, "
            "tools.knowledge; assert 'flask' not in sys.modules, 'flask imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("question", "page", "within"),
    [
        ("what is DeFiChain?", "/docs/auto/Introduction", 1),  # the page that defines it, not an app's page
        ("what is a vault", "/docs/auto/Vaults_Loans", 1),
        ("how do i back up my wallet", "/docs/auto/Backup_Wallet", 3),  # "back up" is "backup" on the page
        ("how can i get test dfi", "/docs/auto/Testnet", 3),  # "test dfi" is the testnet
        ("when did defichain launch", "/docs/auto/Introduction", 1),  # "launched on April 26th, 2020"
        ("what are dtokens", "/docs/auto/Decentralized_Assets", 1),  # "... known commonly as dTokens"
        ("what is the community fund", "/docs/auto/Block_Rewards", 1),  # the phrase itself
    ],
)
def test_ranking_prefers_definitions_titles_and_page_openings(wiki_server, question, page, within):
    results = wiki_server.get("/kb/search", params={"q": question, "k": 10}).json()["results"]
    pages = list(dict.fromkeys(r["source"].split("#")[0] for r in results))
    assert any(p.endswith(page) for p in pages[:within]), pages[:5]


def test_masternode_answer_quotes_the_figure_and_defichain_is_defined(wiki_server):
    body = wiki_server.post("/user_message", {
        "user_token": token(), "message": "how much dfi do you need for a masternode",
    }).json()
    assert "20,000" in body["response"]
    body = wiki_server.post("/user_message", {"user_token": token(), "message": "what is defichain"}).json()
    assert "DeFiChain is a decentralized blockchain" in body["response"]
    assert body["sources"][0]["url"].endswith("/docs/auto/Introduction")


def test_a_question_the_wiki_cannot_answer_says_so_and_cites_nothing(wiki_server):
    body = wiki_server.post("/user_message", {
        "user_token": token(), "message": "who painted the mona lisa",
    }).json()
    assert "doesn't cover" in body["response"] and body["sources"] == []

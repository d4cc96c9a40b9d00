"""The knowledge tool hands an LLM what retrieval found (issue 27): every passage at or
above KNOWLEDGE_MIN_SCORE, whatever the question's language; the LLM path never
loads the offline model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langchain_core.messages import ToolCall

from storage.base import Chunk
from tests.helpers import ROOT
from tools.knowledge import make_knowledge_tool


class ScriptedRetriever:
    """Returns fixed chunks for any question, as a store's search would rank them."""

    def __init__(self, chunks, kb="wiki"):
        self.chunks, self.kb, self.asked = chunks, kb, []

    def first_available(self, kbs):
        return self.kb if self.kb in kbs else None

    def search(self, kb, query, k):
        self.asked.append(query)
        return self.chunks[:k]


def chunk(n, score, text):
    return Chunk(content=text, id=n, score=score,
                 metadata={"title": f"Page {n}", "url": f"https://wiki/Page_{n}", "source": f"Page_{n}.md"})


CHUNKS = [chunk(1, 0.9, "To run a masternode you need 20,000 DFI as collateral."),
          chunk(2, 0.5, "Masternodes earn block rewards."),
          chunk(3, 0.05, "An unrelated footnote.")]


def call(tool, question):
    message = tool.invoke(ToolCall(name=tool.name, args={"question": question}, id="c1", type="tool_call"))
    return message, json.loads(message.content)


@pytest.mark.parametrize("question", [
    "How many DFI do I need for a masternode?",
    "Wie viele DFI brauche ich für einen Masternode?",
    "Combien de DFI faut-il pour un masternode ?",
    "¿Cuántos DFI necesito para un masternode?",
    "マスターノードには何DFI必要ですか？",
])
def test_every_passage_above_the_threshold_reaches_the_model_in_any_language(question):
    retriever = ScriptedRetriever(CHUNKS)
    tool = make_knowledge_tool(retriever, name="defichain_wiki_knowledge", label="DeFiChain wiki",
                               kbs=("wiki",), description="d", friendly="f", k=6, min_score=0.1)
    message, content = call(tool, question)
    assert retriever.asked == [question]
    assert message.status == "success"
    assert [p["url"] for p in content["passages"]] == ["https://wiki/Page_1", "https://wiki/Page_2"]
    assert content["passages"][0]["text"].startswith("To run a masternode you need 20,000 DFI")
    assert content["passages"][0]["score"] == 0.9 and content["passages"][0]["title"] == "Page 1"
    assert message.artifact["sources"] == [{"title": "Page 1", "url": "https://wiki/Page_1"},
                                           {"title": "Page 2", "url": "https://wiki/Page_2"}]


def test_the_text_budget_keeps_whole_passages_in_rank_order():
    tool = make_knowledge_tool(ScriptedRetriever(CHUNKS), name="w", label="l", kbs=("wiki",),
                               description="d", friendly="f", k=6, max_chars=70)
    _, content = call(tool, "q")
    assert [p["n"] for p in content["passages"]] == [1]


def test_a_kb_never_ingested_is_a_tool_error_not_a_text_prefix():
    tool = make_knowledge_tool(ScriptedRetriever(CHUNKS, kb="other"), name="w", label="DeFiChain wiki",
                               kbs=("wiki",), description="d", friendly="f", k=6)
    message = tool.invoke(ToolCall(name="w", args={"question": "q"}, id="c1", type="tool_call"))
    assert message.status == "error" and "has not been ingested" in message.text


def test_the_llm_path_does_not_import_the_offline_model():
    code = (
        "import sys\n"
        "from settings import Settings\n"
        "from agent.models import make_chat_model\n"
        "from tools import build_tools\n"
        "s = Settings(openai_base_url='http://127.0.0.1:9/v1', openai_api_key='sk-x', embeddings='none')\n"
        "model = make_chat_model(s)\n"
        "tools = build_tools(s, None)\n"
        "import agent.turn, agent.runner\n"
        "assert type(model).__name__ != 'OfflineChatModel'\n"
        "assert all(not k.startswith('offline') for t in tools for k in (t.metadata or {}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('agent.offline')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""Knowledge tools: search the DeFiChain wiki or the DefichainPython docs.

Each hands the model what retrieval found, in rank order: up to
KNOWLEDGE_TOP_K passages `{n, title, section, url, text, score}` as JSON,
within KNOWLEDGE_MAX_CHARS characters, and as its artifact the same passages
plus their page-level sources `[{title, url}]` for the client. The only cut is
the retrieval score (KNOWLEDGE_MIN_SCORE): no rule about the question's words
or language decides what the model sees. When a kb has not been ingested, the
bundled starter kb answers instead; when none is, the tool fails
(`ToolMessage.status == "error"`).
"""

from __future__ import annotations

import json
import logging

from langchain_core.tools import StructuredTool, ToolException

from knowledge.retrieval import Retriever, get_retriever

log = logging.getLogger("jellychat.tools.knowledge")

WIKI_KBS = ("wiki", "starter")
PYTHON_KBS = ("defichainpython", "starter")
INSTRUCTION = ("Answer from these passages and cite the titles (and links) of the ones you use; "
               "if they do not contain the answer, say that the knowledge base does not cover it.")


def passage(chunk, n: int) -> dict:
    """One retrieved chunk as the model sees it."""
    return {"n": n, "title": chunk.title, "section": chunk.metadata.get("section") or None,
            "url": chunk.url, "text": chunk.content.strip(), "score": round(float(chunk.score), 6)}


def above_threshold(chunk, min_score: float) -> bool:
    """The one cut on what retrieval found: its own score."""
    return float(chunk.score) >= min_score


def select(chunks, min_score: float = 0.0, max_chars: int = 0) -> list[dict]:
    """The passages handed to the model: every chunk at or above `min_score`, in rank
    order, while their texts fit in `max_chars` (0: no budget); the first one always
    goes, shortened to the budget when it alone is longer."""
    passages, used = [], 0
    for chunk in chunks:
        if not above_threshold(chunk, min_score):
            continue
        item = passage(chunk, len(passages) + 1)
        if max_chars and used + len(item["text"]) > max_chars:
            if passages:
                break
            item["text"] = item["text"][:max_chars].rsplit(" ", 1)[0] + " …"
        passages.append(item)
        used += len(item["text"])
    return passages


def sources(passages: list[dict]) -> list[dict]:
    """Page-level sources, deduplicated, in rank order."""
    seen, found = set(), []
    for item in passages:
        key = (item["url"] or "").split("#", 1)[0] or item["title"]
        if key in seen:
            continue
        seen.add(key)
        found.append({"title": item["title"], "url": (item["url"] or "").split("#", 1)[0] or None})
    return found


def make_knowledge_tool(retriever: Retriever, *, name: str, label: str, kbs: tuple[str, ...],
                        description: str, friendly: str, k: int, min_score: float = 0.0,
                        max_chars: int = 0):
    def run(question: str):
        kb = retriever.first_available(kbs)
        if kb is None:
            raise ToolException(f"The {label} has not been ingested yet "
                                f"(make ingest SOURCE=... KB={kbs[0]}).")
        passages = select(retriever.search(kb, question, k), min_score, max_chars)
        label_used = label if kb == kbs[0] else f"{label} (starter knowledge base)"
        content = {"source": label_used, "query": question, "passages": passages}
        if passages:
            content["instruction"] = INSTRUCTION
        artifact = {"kb": kb, "label": label_used, "passages": passages, "sources": sources(passages)}
        return json.dumps(content, ensure_ascii=False), artifact

    return StructuredTool.from_function(
        func=run,
        name=name,
        description=description,
        response_format="content_and_artifact",
        handle_tool_error=True,
        metadata={"friendly": friendly},
    )


SPECS = [
    dict(
        name="defichain_wiki_knowledge",
        label="DeFiChain wiki",
        kbs=WIKI_KBS,
        description=(
            "Search the DeFiChain wiki for a question about DeFiChain: DFI, masternodes and "
            "staking, the DEX and liquidity mining, vaults, loans and dTokens, governance, "
            "wallets, nodes, fees and troubleshooting. Input: the user's question in full (any "
            "language). Returns JSON passages {n, title, section, url, text, score}, best first; "
            "answer only from them and cite their titles."
        ),
        friendly="Let me look that up in the DeFiChain wiki 📚",
    ),
    dict(
        name="defichainpython_knowledge",
        label="DefichainPython documentation",
        kbs=PYTHON_KBS,
        description=(
            "Search the documentation of DefichainPython, the Python library for DeFiChain "
            "(pip install defichain): its node RPC and Ocean API modules, HD wallet, "
            "transaction builder and code examples. Input: the question in full. Returns JSON "
            "passages {n, title, section, url, text, score}, best first; answer only from them."
        ),
        friendly="Let me check the DefichainPython docs 🐍",
    ),
]


def make_tools(settings, store) -> list:
    retriever = get_retriever(settings, store)
    return [make_knowledge_tool(retriever, k=settings.knowledge_top_k,
                                min_score=settings.knowledge_min_score,
                                max_chars=settings.knowledge_max_chars, **spec) for spec in SPECS]

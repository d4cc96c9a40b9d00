"""Knowledge tools: search the DeFiChain wiki or the DefichainPython docs.

Each returns the best chunks as text (what an LLM answers from) and, as its
artifact, their sources `[{title, url}]` for the client. The offline model
quotes the passage that best matches the question (`offline_answer`).
When a kb has not been ingested, the bundled starter kb answers instead.
"""

from __future__ import annotations

import logging
import re

from langchain_core.tools import StructuredTool

from knowledge.retrieval import Retriever, get_retriever

log = logging.getLogger("jellychat.tools.knowledge")

WIKI_KBS = ("wiki", "starter")
PYTHON_KBS = ("defichainpython", "starter")
NOTHING_FOUND = "No matching passages were found"

_PYTHON = re.compile(
    r"\b(python|pip|pypi|defichainpython|defichain[- ]python|library|libraries|sdk|package|"
    r"hdwallet|txbuilder|import|script|snippet|code|module|rawtransactions?)\b",
    re.I,
)

_STOPWORDS = set(
    """a an and are as at be been but by can could do does did for from get got has have how i if in
    into is it its me my of on or our please should so than that the their them then there these
    this to us was we what when where which who why will with would you your about tell explain
    much many one any some way does doing done want know need needed like also just use using
    get make go there here""".split()
)
# kept for scoring even though they are stop-ish: they carry the question's topic
_KEEP = {"need", "many", "much"}


def _words(text: str) -> set[str]:
    words = set()
    for raw in re.findall(r"[a-z0-9][a-z0-9,.'-]*", text.lower()):
        word = raw.strip(".,'-")
        if not word or (word in _STOPWORDS and word not in _KEEP):
            continue
        if len(word) > 4 and word.endswith("es") and not word.endswith("ses"):
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.add(word.replace(",", ""))
    return words


def _plain(text: str) -> str:
    """Markdown/RST noise out of a quoted passage."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)  # images
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text)  # html tags
    text = re.sub(r"^\s*(?:[-*+>]\s+|#+\s*)", "", text, flags=re.M)  # bullets, quotes, headings
    text = re.sub(r"`{1,3}|\*\*|__", "", text)
    return " ".join(text.split())


def _sentences(text: str) -> list[str]:
    text = re.sub(r"^\s*#{1,6}\s.*$", "", text, flags=re.M)  # headings inside a chunk
    parts = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[-*+]\s)|\n(?=\s*\d+\.\s)", text):
        parts.extend(re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", block.strip()))
    return [p for p in (_plain(s) for s in parts) if len(p) > 2]


def format_results(label: str, question: str, chunks) -> str:
    """The tool's text: numbered passages with title, section and link."""
    if not chunks:
        return f"{NOTHING_FOUND} in the {label} for: {question}"
    lines = [
        f"Passages from the {label} for: {question}",
        "Answer only from these passages and cite their titles; if they do not contain the "
        "answer, say that the knowledge base does not cover it.",
        "",
    ]
    for i, chunk in enumerate(chunks, 1):
        head = chunk.title
        if chunk.metadata.get("section"):
            head += " › " + chunk.metadata["section"]
        link = chunk.url
        lines.append(f"[{i}] {head}" + (f" ({link})" if link else ""))
        lines.append(chunk.content.strip())
        lines.append("")
    return "\n".join(lines).rstrip()


_PASSAGE = re.compile(r"^\[(\d+)\] (.+?)(?: \((https?://\S+)\))?$", re.M)


def parse_results(text: str) -> list[tuple[str, str | None, str]]:
    """(heading, link, body) of each passage in `format_results` text."""
    marks = list(_PASSAGE.finditer(text))
    passages = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        passages.append((mark.group(2), mark.group(3), text[mark.end():end].strip()))
    return passages


_WHAT_IS = re.compile(r"^\s*what(?:'s|\s+is|\s+are)\s+(?:an?\s+|the\s+)?(.+?)[\s?.!]*$", re.I)


def _definition(question: str):
    """For "what is X?", a pattern for sentences that define X ("X is ...", "The X are ...")."""
    match = _WHAT_IS.match(question)
    if not match:
        return None
    subject = r"\W+".join(re.escape(w) for w in re.findall(r"\w+", match.group(1)))
    if not subject:
        return None
    return re.compile(rf"^\W*(?:the\s+|an?\s+)?\W*{subject}s?\W*(?:\([^)]*\)\s*)?"
                      rf"(?:is|are|means|refers to|describes)\b", re.I)


def best_quote(question: str, passages) -> tuple[str, str | None, str] | None:
    """(heading, link, quote): the sentence(s) that share most words with the question
    (and whose heading does), favouring higher-ranked passages, definitions for
    "what is" questions and numbers for "how many/much" questions."""
    wanted = _words(question)
    if not wanted:
        return None
    wants_number = bool(re.search(r"\bhow (many|much)\b|\bminimum\b|\bamount\b|\bcost", question, re.I))
    defines = _definition(question)
    best = None
    for rank, (heading, link, body) in enumerate(passages):
        sentences = _sentences(body)
        in_heading = len(wanted & _words(heading))
        for i, sentence in enumerate(sentences):
            overlap = len(wanted & _words(sentence))
            if not overlap:
                continue
            score = (overlap + 0.3 * in_heading) * (1.0 - 0.12 * rank) - 0.01 * i
            if wants_number:  # "how many ...?" wants a sentence with a number
                score = score + 1.0 if re.search(r"\d", sentence) else score * 0.5
            if defines and defines.search(sentence):
                score += 2.0
            if best is None or score > best[0]:
                quote = sentence
                if len(quote) < 90 and i + 1 < len(sentences):
                    quote += " " + sentences[i + 1]
                best = (score, heading, link, quote)
    if best is None:
        return None
    return best[1], best[2], best[3]


def _offline_answer(label: str):
    def answer(question: str, result: str) -> str:
        if result.startswith(NOTHING_FOUND):
            return (
                f"I couldn't find anything about that in the {label} 🪼. "
                "Could you rephrase it, or ask about masternodes, DFI, the DEX, vaults or loans?"
            )
        quote = best_quote(question, parse_results(result))
        if quote is None:
            return f"I looked in the {label} but found nothing that answers this directly 🪼."
        heading, link, text = quote
        where = f"{heading}" + (f" ({link})" if link else "")
        return f"Here's what the {label} says 📚\n\n> {text}\n\nSource: {where}"
    return answer


def _is_python_question(text: str) -> bool:
    return bool(_PYTHON.search(text))


def _route_wiki(text: str, history) -> dict | None:
    return {"question": text.strip()} if text.strip() else None


def _route_python(text: str, history) -> dict | None:
    return {"question": text.strip()} if _is_python_question(text) else None


def _relevant(question: str, chunk) -> bool:
    """A chunk shares at least one meaningful word with the question (in its text,
    title or section), so off-topic questions get no sources."""
    text = " ".join((chunk.title, chunk.metadata.get("section") or "", chunk.content))
    return bool(_words(question) & _words(text))


def _sources(chunks) -> list[dict]:
    """Page-level sources, deduplicated, in rank order."""
    seen, sources = set(), []
    for chunk in chunks:
        key = chunk.metadata.get("url") or chunk.source
        if key in seen:
            continue
        seen.add(key)
        sources.append({"title": chunk.title, "url": chunk.metadata.get("url")})
    return sources


def make_knowledge_tool(retriever: Retriever, *, name: str, label: str, kbs: tuple[str, ...],
                        description: str, friendly: str, priority: int, route, k: int):
    def run(question: str):
        kb = retriever.first_available(kbs)
        if kb is None:
            return (f"{NOTHING_FOUND} in the {label}: it has not been ingested yet "
                    f"(make ingest SOURCE=... KB={kbs[0]})."), {"sources": []}
        chunks = [c for c in retriever.search(kb, question, k) if _relevant(question, c)]
        label_used = label if kb == kbs[0] else f"{label} (starter knowledge base)"
        return format_results(label_used, question, chunks), {"sources": _sources(chunks), "kb": kb}

    return StructuredTool.from_function(
        func=run,
        name=name,
        description=description,
        response_format="content_and_artifact",
        metadata={
            "friendly": friendly,
            "offline_priority": priority,
            "offline_route": route,
            "offline_answer": _offline_answer(label),
        },
    )


def make_tools(settings, store) -> list:
    retriever = get_retriever(settings, store)
    k = settings.knowledge_top_k
    wiki = make_knowledge_tool(
        retriever,
        name="defichain_wiki_knowledge",
        label="DeFiChain wiki",
        kbs=WIKI_KBS,
        description=(
            "Search the DeFiChain wiki for a question about DeFiChain: DFI, masternodes and "
            "staking, the DEX and liquidity mining, vaults, loans and dTokens, governance, "
            "wallets, nodes, fees and troubleshooting. Input: the user's question in full. "
            "Returns numbered passages with their titles; answer only from them."
        ),
        friendly="Let me look that up in the DeFiChain wiki 📚",
        priority=90,
        route=_route_wiki,
        k=k,
    )
    python = make_knowledge_tool(
        retriever,
        name="defichainpython_knowledge",
        label="DefichainPython documentation",
        kbs=PYTHON_KBS,
        description=(
            "Search the documentation of DefichainPython, the Python library for DeFiChain "
            "(pip install defichain): its node RPC and Ocean API modules, HD wallet, "
            "transaction builder and code examples. Input: the question in full. Returns "
            "numbered passages with their titles; answer only from them."
        ),
        friendly="Let me check the DefichainPython docs 🐍",
        priority=80,
        route=_route_python,
        k=k,
    )
    return [wiki, python]

"""The offline model's knowledge answers: which passage to quote, in English word rules.

It reads the passages a knowledge tool handed it (the artifact, as an LLM reads
the same passages as JSON), keeps those that share the question's topic words
(`relevant`, `covered`) and quotes the sentence that best answers the question.
None of these rules touches what an LLM receives.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import textwrap

log = logging.getLogger("jellychat.offline.knowledge")

_STOPWORDS = set(
    """a an and are as at be been but by can could do does did for from get got has have how i if in
    into is it its me my of on or our please should so than that the their them then there these
    this to us was we what when where which who why will with would you your about tell explain
    much many one any some way does doing done want know need needed like also just use using
    get make go there here up whats hows wheres whos""".split()
)
# kept for scoring even though they are stop-ish: they carry the question's topic
_KEEP = {"need", "many", "much"}


# spellings users type, joined into the word the pages use (as kb_normalise_query does in SQL)
SPELLINGS = [
    (r"\bback(?:ing|ed)?\s+up\b", "backup"),
    (r"\bset(?:ting)?\s+up\b", "setup"),
    (r"\blog(?:ging|ged)?\s+in\b", "login"),
    (r"\bmaster\s+nodes?\b", "masternode"),
    (r"\btest(?:ing)?[\s-]+net(?:work)?\b", "testnet"),  # the test network, as users write it
    (r"\btest\s+(dfi|coins?|tokens?|funds?)\b", r"testnet \1"),
]


def _words(text: str) -> set[str]:
    words = set()
    text = text.lower()
    for pattern, joined in SPELLINGS:
        text = re.sub(pattern, joined, text)
    for raw in re.findall(r"[a-z0-9][a-z0-9,.']*", text):  # "defi-portfolio" is two words
        word = re.sub(r"'s$", "", raw.strip(".,'-"))  # "krysh's" -> krysh
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


_WHAT_IS = re.compile(r"^\s*(?:what(?:'s|s|\s+is|\s+are)|define|explain)\s+(?:an?\s+|the\s+)?(.+?)[\s?.!]*$",
                      re.I)
# words that shape a question without naming its topic; they neither pick a
# passage nor count towards "the knowledge base covers this"
_NOT_TOPIC = set(
    """first last best good bad way thing things work works happen happens mean means difference
    anything something someone people become became tell know possible still now today right
    always never ever really pls please help thank thanks much many need needed see find look""".split()
)


def _stem(word: str) -> str:
    """A crude stem: "launched" and "launch" lose their endings, "collateralization"
    and "collateral" meet at their first 7 letters."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:7]


def _topic(text: str) -> set[str]:
    return {_stem(w) for w in _words(text) if w not in _NOT_TOPIC}


def _definition(question: str):
    """For "what is X?", a pattern for sentences that define X ("X is ...", "The X are ...")."""
    match = _WHAT_IS.match(question)
    if not match:
        return None
    words = re.findall(r"\w+", match.group(1))
    if not words or len(words) > 5:
        return None
    words[-1] = re.sub(r"s$", "", words[-1])
    subject = r"\W+".join(re.escape(w) for w in words)
    return re.compile(rf"^\W*(?:the\s+|an?\s+)?\W*{subject}s?\W*(?:\([^)]*\)\s*)?"
                      rf"(?:(?:is|are)\s+(?:a|an|the|one|short|similar|like|called|known)\b"
                      rf"|means|refers to|describes|stands for)"
                      # ... or a sentence that names it: "... are known commonly as dTokens"
                      rf"|\b(?:known|called|referred\s+to)\s+(?:(?:commonly|simply|also)\s+)?(?:as\s+)?"
                      rf"(?:the\s+|an?\s+)?{subject}s?\b", re.I)


# What a question asks for, and what a sentence that answers it contains:
# (question pattern, sentence pattern, bonus when present, factor when absent).
QUOTE_RULES = [
    (r"\bhow (many|much)\b|\bminimum\b|\bmaximum\b|\bamount\b|\bcost|\bfees?\b|\bratio\b|\bpercent",
     r"\d", 1.0, 0.5),
    (r"\bwhen\b|\bwhat year\b|\bsince when\b", r"\b(19|20)\d\d\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|"
     r"nov|dec)[a-z]*\b", 1.5, 0.7),
    (r"\bwho\b", r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", 1.0, 0.8),
    (r"\bhow (long|often)\b", r"\b\d[\d,.]*\s*(?:sec|min|hour|hr|day|week|month|year|block)", 1.0, 0.6),
    (r"\bwhere\b", r"https?://|\bwww\.|\.(?:com|io|live|org|net)\b|\b(?:website|explorer|menu|tab|folder|"
     r"directory|settings|page|site)\b", 0.5, 0.9),
    (r"\bhow (do|can|to|should)\b|\bhow\s+i\b", r"\b(click|go to|open|enter|select|run|use|type|command|"
     r"download|install|choose)\b", 0.5, 1.0),
]
_JUNK = re.compile(r"[{}]|^:::|^\W*$|\bTODO\b")


def _sentence_score(question: str, wanted: set[str], weights: dict, sentence: str, quote: str,
                    heading: float = 0.0) -> float:
    """How well `sentence` (quoted as `quote`, with what follows it) answers the question;
    `heading` is what the passage's heading adds (a section titled with the question's
    words answers it even where its sentences do not repeat them)."""
    words = _topic(sentence)
    score = sum(weights.get(w, 1.0) for w in wanted & words) + HEADING_SHARE * heading
    if not score:
        return 0.0
    for ask, has, bonus, otherwise in QUOTE_RULES:
        if re.search(ask, question, re.I):
            flags = 0 if ask == r"\bwho\b" else re.I  # names are capitalised
            score = score + bonus if re.search(has, quote, flags) else score * otherwise
    if _JUNK.search(sentence) or len(sentence.split()) < 4:
        score *= 0.3
    return score


def coverage(question: str, text: str) -> float:
    """The share of the question's topic words that `text` contains (1.0 without topic words)."""
    wanted = _topic(question)
    return len(wanted & _topic(text)) / len(wanted) if wanted else 1.0


def covered(question: str, texts) -> bool:
    """Whether one of `texts` holds at least `COVERED` of the question's topic words, where
    a word none of them holds counts `UNKNOWN` times: sharing one word is not enough when
    the other is foreign to every passage ("the first chancellor of germany" against an
    ETF table that lists a Germany fund). A word none holds but one spelled nearly like it
    (a typo: "colateral") is left out of the count."""
    wanted = _topic(question)
    topics = [_topic(text) for text in texts]
    seen = set().union(*topics) if topics else set()
    weights = {w: 1.0 if w in seen else UNKNOWN for w in wanted
               if w in seen or not difflib.get_close_matches(w, seen, 1, TYPO)}
    total = sum(weights.values())
    return not total or any(sum(weights.get(w, 0.0) for w in t) >= COVERED * total for t in topics)


_ABOUT = r"\bwhat (does|do) .+ do\b|\bwhat (is|are|'s) .+ (for|about)\b|\bwhat (is|are) .+ used for\b"
COVERED = 0.5  # a passage must hold at least this share of the question's topic words
UNKNOWN = 2.0  # a question word no retrieved passage holds weighs this much in `covered`
TYPO = 0.8  # a question word this similar (difflib ratio) to a passage's word is a typo of it
RANK_STEP = 0.5  # each lower-ranked passage counts this much less
QUOTE_LENGTH = 220  # characters of context quoted after the best sentence
SECOND_QUOTE = 0.3  # a second page is quoted too when it scores at least this share of the best
OPENING = 2  # sentences that make a page's opening (it says what the page's subject is and does)
HEADING_SHARE = 0.3  # a question word in a passage's heading counts this much in each of its sentences


def _page(heading: str, link: str | None) -> str:
    """The page a passage comes from: its link without the anchor, else its title."""
    return (link or "").split("#", 1)[0] or heading.split(" › ", 1)[0]


def best_quotes(question: str, passages, n: int = 2) -> list[tuple[str, str | None, str]]:
    """Up to `n` (heading, link, quote), best first: the sentence that best answers the
    question, with the sentence(s) after it for context, then the best of another page
    when it scores nearly as well (the right page is often ranked second). Question
    words weigh by how rare they are among the passages; higher-ranked passages,
    headings, definitions for "what is X" and the kind of fact the question asks for
    (a number, a date, a name, a step) weigh more. Empty when no passage covers the
    question's topic."""
    wanted = _topic(question)
    if not wanted:
        return []
    split = [(heading, link, _sentences(body), body) for heading, link, body in passages]
    every = [_topic(sentence) for _, _, sentences, _ in split for sentence in sentences]
    weights = {w: 1.0 + math.log((len(every) + 1) / (1 + sum(1 for s in every if w in s))) for w in wanted}
    defines = _definition(question)
    about = defines is not None or re.search(_ABOUT, question, re.I) is not None
    titled = sum(weights.values())  # what a sentence holding every question word would score
    best: dict[str, tuple] = {}  # page -> its best (score, heading, link, quote)
    for rank, (heading, link, sentences, body) in enumerate(split):
        if coverage(question, heading + " " + body) < COVERED:
            continue
        in_heading = sum(weights[w] for w in wanted & _topic(heading))
        page = _page(heading, link)
        for i, sentence in enumerate(sentences):
            quote = _with_context(sentences, i)
            score = _sentence_score(question, wanted, weights, sentence, quote, in_heading)
            if not score:
                continue
            score = score / (1.0 + RANK_STEP * rank) - 0.01 * i
            if defines and defines.search(sentence):
                score += 3.0
            if about and i < OPENING and "›" not in heading:
                score += 1.0  # a page's opening says what its subject is and does
                if titled and _topic(heading) <= wanted:
                    score += titled  # ... above all on the page named after the subject
            if page not in best or score > best[page][0]:
                best[page] = (score, heading, link, quote)
    ranked = sorted(best.values(), key=lambda b: -b[0])
    if not ranked:
        return []
    top = ranked[0][0]
    chosen = [ranked[0]] + [b for b in ranked[1:n] if b[0] >= SECOND_QUOTE * top]
    return [b[1:] for b in chosen]


def best_quote(question: str, passages) -> tuple[str, str | None, str] | None:
    """The best of `best_quotes`, or None."""
    found = best_quotes(question, passages, 1)
    return found[0] if found else None


def _with_context(sentences: list[str], i: int, length: int = QUOTE_LENGTH) -> str:
    """Sentence `i` and the ones after it, up to about `length` characters (a list
    announced by "...:" comes along)."""
    quote = sentences[i]
    for following in sentences[i + 1:i + 4]:
        if len(quote) >= length and not quote.endswith(":"):
            break
        quote += " " + following
    return quote


# --- code: DefichainPython how-tos quote the snippet ------------------------------------------

_DOCTEST = re.compile(r"(?:^>>> .*\n?(?:^(?!>>>|\s*$).*\n?)*)+", re.M)
_CODE_BLOCK = re.compile(r"^\.\. code-block::[^\n]*\n\s*\n((?:^(?:[ \t]+.*|\s*)\n?)+)", re.M)
_CODE_LIKE = re.compile(r"\w\(|\bimport\b|\bpip\b|^\s*\w[\w.]*\s*=", re.M)
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def _snippets(body: str) -> list[str]:
    found = [m.group(0) for m in _DOCTEST.finditer(body)]
    found += [textwrap.dedent(m.group(1)) for m in _CODE_BLOCK.finditer(body)]
    found += [m.group(1) for m in _FENCE.finditer(body)]
    return [s.strip("\n") for s in found if _CODE_LIKE.search(s)]


def _code_words(text: str) -> set[str]:
    """Words of code, split at dots, underscores and camelCase: "listToken" -> list, token."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").replace(".", " ")
    return _topic(spaced)


def best_snippet(question: str, passages) -> tuple[str, str | None, str] | None:
    """(heading, link, code): the code example that shares most words with the question."""
    wanted = _code_words(question) - {"python", "code", "snippet", "example", "library", "script"}
    best = None
    for rank, (heading, link, body) in enumerate(passages):
        for snippet in _snippets(body):
            overlap = len(wanted & (_code_words(snippet) | _topic(heading)))
            calls = len(re.findall(r"\w\(", snippet))  # an example that does something, not only imports
            score = (overlap + 0.2 * min(calls, 5)) * (1.0 - 0.1 * rank)
            if overlap and (best is None or score > best[0]):
                best = (score, heading, link, snippet)
    return None if best is None else best[1:]


NOT_COVERED = "doesn't cover this, as far as I can find"


def relevant(question: str, item: dict) -> bool:
    """A passage shares at least one meaningful word with the question (in its text,
    title or section), so off-topic questions get no quote."""
    text = " ".join((item.get("title") or "", item.get("section") or "", item.get("text") or ""))
    return bool(_words(question) & _words(text))


def _heading(item: dict) -> str:
    return item["title"] + (" › " + item["section"] if item.get("section") else "")


def passages_of(question: str, artifact: dict) -> list[tuple[str, str | None, str]]:
    """(heading, link, body) of the handed passages that are about the question's topic."""
    items = [i for i in artifact.get("passages") or [] if relevant(question, i)]
    texts = [" ".join((i["title"], i.get("section") or "", i["text"])) for i in items]
    if not covered(question, texts):
        return []  # nothing here is about the question's topic: say so
    return [(_heading(i), i.get("url"), i["text"]) for i in items]


def answer(default_label: str, code: bool = False):
    """The offline answer from a knowledge tool's result message."""
    def compose(question: str, message) -> str:
        artifact = message.artifact if isinstance(message.artifact, dict) else {}
        label = artifact.get("label") or default_label
        if getattr(message, "status", "success") == "error" or not artifact.get("passages"):
            return (
                f"I couldn't find anything about that in the {label}: it {NOT_COVERED} 🪼. "
                "Could you rephrase it, or ask about masternodes, DFI, the DEX, vaults or loans?"
            )
        passages = passages_of(question, artifact)
        snippet = best_snippet(question, passages) if code else None
        if snippet is not None:
            heading, link, text = snippet
            where = f"{heading}" + (f" ({link})" if link else "")
            return f"Here's how, from the {label} 🐍\n\n```python\n{text}\n```\n\nSource: {where}"
        quotes = best_quotes(question, passages)
        if not quotes:
            return f"I looked in the {label}, but it {NOT_COVERED} 🪼."
        parts = [f"Here's what the {label} says 📚"]
        for heading, link, text in quotes:
            where = f"{heading}" + (f" ({link})" if link else "")
            parts.append(f"> {text}\n\nSource: {where}")
        return "\n\n".join(parts)
    return compose


_PYTHON = re.compile(
    r"\b(python|pip|pypi|defichainpython|defichain[- ]python|library|libraries|sdk|package|"
    r"hdwallet|txbuilder|import|script|snippet|code|module|rawtransactions?)\b",
    re.I,
)


def route_wiki(text: str, history) -> dict | None:
    return {"question": text.strip()} if text.strip() else None


def route_python(text: str, history) -> dict | None:
    return {"question": text.strip()} if _PYTHON.search(text) else None

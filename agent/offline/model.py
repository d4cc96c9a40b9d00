"""The built-in offline chat model: deterministic tool routing, no network, no keys.

It is a real LangChain chat model, so it runs inside the same agent loop as an
OpenAI model and produces the same events. Its own table (`GUIDES`, by tool
name) says when to call each tool and how to phrase the structured result
(`ToolMessage` status, artifact and text) it gets back, as an LLM reads it;
small talk and memory questions are answered directly.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from agent.offline import calculator, files, knowledge, ocean
from agent.persona import GREETING
from agent.steps import bound_once, model_step_in_run
from agent.text import tokens_of


@dataclass(frozen=True)
class Guide:
    """When the offline model calls a tool and how it phrases the result."""

    priority: int  # lower is tried first
    route: Callable  # (text, history) -> args | None
    answer: Callable  # (question, ToolMessage) -> str


GUIDES = {
    # a user's own material first: "remember that …", questions about them, their files
    "save_memory": Guide(1, files.route_save, files.answer_save),
    "search_memories": Guide(2, files.route_search, files.answer_search),
    "conversation_files": Guide(15, files.route_files, files.answer_files),
    "calculator": Guide(10, calculator.route, calculator.answer),
    # before the Ocean: "how do I read a balance in Python" is a how-to
    "defichainpython_knowledge": Guide(20, knowledge.route_python,
                                       knowledge.answer("DefichainPython documentation", code=True)),
    **{f"ocean_{name}": Guide(ocean.PRIORITY, getattr(ocean, f"route_{name}"), ocean.answer)
       for name in ("address", "blocks", "governance", "vault", "masternode", "price", "stats", "token",
                    "transaction", "poolpairs")},
    "defichain_wiki_knowledge": Guide(90, knowledge.route_wiki, knowledge.answer("DeFiChain wiki")),
}

_SMALL_TALK = [
    (
        re.compile(r"^\W*(hi|hello|hey|hallo|gm|good (morning|afternoon|evening)|yo)\b", re.I),
        "Hello! 🪼 " + GREETING.split("! ", 1)[-1],
    ),
    (re.compile(r"\b(thanks|thank you|thx|danke)\b", re.I), "You're welcome! Happy to help 🪼"),
    (
        re.compile(r"\b(who|what) are you\b|\byour name\b|\bwhat can you do\b"
                   r"|\bare you (an? |the )?(real )?(bot|robot|human|person|ai|machine)\b", re.I),
        "I'm Jelly 🪼, the DeFiChain mascot. I answer questions about DeFiChain, "
        "look up live on-chain data and do the math for you.",
    ),
    (
        re.compile(r"\bhow are you\b", re.I),
        "I'm floating along happily, thanks for asking! 🪼 How can I help?",
    ),
    (re.compile(r"\b(bye|goodbye|see you|see ya|ciao|cya)\b", re.I), "Bye for now! Come back any time 🪼"),
    (
        re.compile(r"^\W*(ok(ay)?|k|lol|haha+|cool|nice|great|alright|got it|i see|sure)\b", re.I),
        "👍 Anything else about DeFiChain I can help with? 🪼",
    ),
]
# Questions about the conversation itself: (pattern, which earlier question(s) to repeat).
_ASKED = r"(ask|asked|say|said|write|wrote|type|typed|question|questions)"
MEMORY_RULES = [
    (re.compile(rf"\bwhat (were|are|have been) (all )?(my|the) (questions|messages)"
                rf"|\b(list|show|all) (of )?my (questions|messages)"
                rf"|\bwhat (have|did) i {_ASKED} (you )?(so far|until now|today)", re.I), "all"),
    (re.compile(rf"\b(first|1st) (thing |question |message )?(that )?i {_ASKED}|\bmy (first|1st) "
                rf"(question|message)|\bwhat did i {_ASKED} (you )?(at )?first\b", re.I), "first"),
    (re.compile(rf"\bwhat (did|was|were|have) (i|my) (just |last |previous |earlier |before |recently )?"
                rf"{_ASKED}|\bremind me (of )?what i {_ASKED}"
                rf"|\bremind me (of )?my (last |previous |earlier )?question"
                rf"|\b(do you )?remember (my|what i) (last |previous |earlier )?{_ASKED}"
                rf"|\brepeat my (last |previous |earlier )?(question|message)"
                rf"|\bwhich question did i {_ASKED}|\bmy (last|previous|earlier) (question|message)"
                rf"|\bwhat i {_ASKED} (you )?(before|earlier|previously|last)"
                rf"|\b(the|my) (very )?(last|previous|latest|most recent) (thing|question|message)"
                rf"( (that|which))? i {_ASKED}", re.I), "last"),
]
# words that may surround small talk without making it a question for the tools
_FILLER = set(
    """hi hello hey hallo gm yo good morning afternoon evening thanks thank thx danke you your
    so much very a lot for the help again all guys everyone there jelly how are am is i doing
    today who what name bye goodbye see later soon ciao cheers nice great cool ok okay awesome
    and it that this was me my to do can able with dear friend buddy mate lol haha hahaha k
    alright got see sure ya cya helped helpful useful bot robot human person real ai machine
    an are""".split()
)


def small_talk(text: str) -> str | None:
    """The reply when `text` is only small talk (greeting, thanks, who-are-you, bye), else None.

    "Hi, how many DFI do I need?" is a question, not small talk: words outside
    the small-talk vocabulary send it on to the tools.
    """
    words = re.findall(r"[a-zA-Z0-9']+", text.lower())
    if any(w not in _FILLER for w in words):
        return None
    for pattern, reply in _SMALL_TALK:
        if pattern.search(text):
            return reply
    return None


def recall(which: str, history) -> str:
    """The answer to "what did I ask before?": the last, first or every earlier question."""
    asked = [_text(m) for m in history or [] if isinstance(m, HumanMessage)]
    asked = [q for q in asked if not any(p.search(q) for p, _ in MEMORY_RULES)]
    if not asked:
        return "This is the first thing you've asked me in this conversation 🪼"
    if which == "first":
        return f'The first thing you asked me was: "{asked[0]}"'
    if which == "all" and len(asked) > 1:
        return "You asked me:\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(asked, 1))
    return f'You asked me: "{asked[-1]}"'


# "do X, then Y", "do X and then Y", "Do X. Then Y. Finally Z."
_THEN = re.compile(r"(?:[.;,!?]\s*|\s+)(?:and\s+)?(?:then|after that|afterwards|finally)\b[\s,]*", re.I)


# a later step must ask for a lookup or a sum; "how do I stake and then withdraw
# it" is one question for the knowledge base, not two
_STEP_ACTION = re.compile(
    r"\b(multiply|divide|add|subtract|times|plus|minus|percent|calculate|compute|convert|"
    r"check|look up|get|show|list|find|balance|price|vaults?|tokens?|utxos?|blocks?)\b|%", re.I)


def steps_of(text: str) -> list[str]:
    """The steps of a message that asks for several in order, else [text]."""
    parts = [p.strip(" .,;") for p in _THEN.split(text)]
    parts = [p for p in parts if p]
    if len(parts) > 1 and all(len(p.split()) >= 3 for p in parts) and \
            all(_STEP_ACTION.search(p) for p in parts[1:]):
        return parts
    return [text]


def _failed(result: ToolMessage) -> bool:
    """A step that did not work: the tool failed, or a search found nothing."""
    artifact = result.artifact if isinstance(result.artifact, dict) else {}
    return getattr(result, "status", "success") == "error" or artifact.get("passages") == []


def _call(name: str, args: dict) -> AIMessage:
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def _answer(text: str, results: list[ToolMessage]) -> AIMessage:
    """The answer composed from tool results, saying which of their sources it used
    (`response_metadata["sources_used"]`: those it cites by link or title), so that
    a "not covered" answer lists none; the runner takes these as the run's sources."""
    used, seen = [], set()
    for result in results:
        artifact = result.artifact if isinstance(result.artifact, dict) else {}
        for source in artifact.get("sources") or []:
            key = source.get("url") or source.get("title")
            if key and key not in seen and _cites(text, source):
                seen.add(key)
                used.append(source)
    return AIMessage(content=text, response_metadata={"sources_used": used})


def _cites(text: str, source: dict) -> bool:
    """`text` names this page: its link (not a longer one it begins) or, without one, its title."""
    if source.get("url"):
        return re.search(re.escape(source["url"]) + r"(?=[#)\s]|$)", text) is not None
    return bool(source.get("title")) and source["title"] in text


def _text(message: BaseMessage) -> str:
    return message.text if hasattr(message, "text") else str(message.content)


class OfflineChatModel(BaseChatModel):
    """Picks a tool from the message, then composes the answer from the tool result."""

    tools: list[Any] = []
    _bound: dict = PrivateAttr(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "jelly-offline"

    def bind_tools(self, tools, **kwargs):
        """A copy that knows `tools`, one per tool list (agent/steps.py `bound_once`)."""
        return bound_once(self._bound, tools, kwargs,
                          lambda tools, **_: self.model_copy(update={"tools": list(tools)}))

    # --- decisions -------------------------------------------------------
    def _tool(self, name: str):
        return next((t for t in self.tools if getattr(t, "name", None) == name), None)

    def respond(self, messages: list[BaseMessage]) -> AIMessage:
        last_human = max(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None
        )
        if last_human is None:
            return AIMessage(content=GREETING)
        question = _text(messages[last_human])
        history = messages[:last_human]
        results = [m for m in messages[last_human + 1 :] if isinstance(m, ToolMessage)]
        steps = steps_of(question)
        if len(steps) > 1 and (results or self._route(steps[0], history)):
            return self._next_step(steps, history, results)
        if results:
            return _answer(self._compose(question, results), results)
        direct = self._direct(question, history)
        if direct is not None:  # small talk and memory come before any tool
            return AIMessage(content=direct)
        call = self._route(question, history)
        if call is not None:
            return _call(*call)
        return AIMessage(content=self._chat(question, history))

    def _next_step(self, steps: list[str], history, results: list[ToolMessage]) -> AIMessage:
        """Several steps in one message ("look up X, then check its balance, then
        multiply it by 100"): one tool call per step, each routed with the earlier
        results in view, then one answer that reports every step."""
        done = len(results)
        failed = bool(results) and _failed(results[-1])
        if done < len(steps) and not failed:
            call = self._route(steps[done], [*history, *results])
            if call is not None:
                return _call(*call)
        parts = [self._compose(step, [result]) for step, result in zip(steps, results, strict=False)]
        if done < len(steps):
            left = "; ".join(f'"{step}"' for step in steps[done:])
            reason = "the step before it did not work" if failed else "I couldn't tell which tool does that"
            parts.append(f"I stopped before {left}: {reason} 🪼")
        return _answer("\n\n".join(parts), results)

    def _route(self, question: str, history) -> tuple[str, dict] | None:
        routed = sorted((GUIDES[t.name].priority, t.name) for t in self.tools
                        if getattr(t, "name", None) in GUIDES)
        for _, name in routed:
            args = GUIDES[name].route(question, history)
            if args is not None:
                return name, args
        return None

    def _direct(self, question: str, history) -> str | None:
        for pattern, which in MEMORY_RULES:
            if pattern.search(question):
                return recall(which, history)
        return small_talk(question)

    def _chat(self, question: str, history) -> str:
        direct = self._direct(question, history)
        if direct is not None:
            return direct
        for pattern, reply in _SMALL_TALK:
            if pattern.search(question):
                return reply
        return (
            "I'm not sure about that one 🪼. I can answer questions about DeFiChain, "
            "look up live on-chain data, or do some math for you."
        )

    def _compose(self, question: str, results: list[ToolMessage]) -> str:
        parts = []
        for result in results:
            guide = GUIDES.get(result.name)
            parts.append(guide.answer(question, result) if guide
                         else f"Here's what I found:\n\n{_text(result)}")
        return "\n\n".join(parts)

    # --- LangChain chat model protocol -----------------------------------
    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        streamed = model_step_in_run(lambda: self._stream(messages))  # within a run
        if streamed is not None:
            return streamed
        return ChatResult(generations=[ChatGeneration(message=self.respond(messages))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        reply = self.respond(messages)
        if reply.tool_calls:
            chunks = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(reply.tool_calls)
            ]
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=chunks))
            return
        metadata = dict(reply.response_metadata)  # on the first chunk only (lists would add up)
        for token in tokens_of(reply.content):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, response_metadata=metadata))
            metadata = {}
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk

"""Answer quality with no keys (issue 13): routing, offline answers and retrieval on question sets.

    .venv/bin/python -m bench answer_quality [--set tune|heldout|both] [--data-dir DIR] [--details]

Ingests the DeFiChain wiki and the DefichainPython docs (../shared/corpus, read
at run time) with the local model into an embedded PostgreSQL, starts the
local Ocean-compatible server (tests/fakes/ocean_server.py; no network), and
runs the offline model inside the real LangChain agent loop with every tool:

- routing: bench/questions/routing_<set>.yaml. A message counts when the tools
  called (in order) are the expected ones, the first call carries the expected
  arguments, a calculator call computes the expected number, and a direct
  answer contains what it must.
- answers: bench/questions/knowledge_<set>.yaml, asked as whole turns, once
  with full-text and once with hybrid retrieval. An answer counts when it
  contains one expected fact and cites an answering page; a question the
  knowledge base cannot answer counts when the answer says so and cites nothing.
- retrieval: recall@1, recall@5 and MRR of the answering page among the distinct
  pages of the top 30 chunks (`Store.search`), full text and hybrid.
- time: the server-side time of a knowledge turn (the agent loop, retrieval
  included) with full text, p50 and p90.

Targets (issue 13, on the held-out set): routing >= 0.90; answers with the fact
and source >= 0.80 (full text and hybrid); wiki recall@5 >= 0.85 full text,
>= 0.92 hybrid.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import yaml

from bench.harness import percentile, target
from bench.kb_common import SHARED, WIKI, open_store

QUESTIONS = Path(__file__).resolve().parent / "questions"
PYTHON_DOCS = SHARED / "corpus" / "defichainpython" / "docs" / "source"
CANDIDATE_CHUNKS = 30
KB_NAMES = {"wiki": "wiki", "defichainpython": "defichainpython"}
KUEGI = "df1qqtlz4uw9w5s4pupwgucv4shl6atqw7xlz2wn07"
NOT_COVERED = re.compile(r"does(?:n't| not) cover|couldn't find|could not find|no answer", re.I)


def page_name(source: str) -> str:
    """A page's name: the last part of its URL or path, without suffix."""
    name = (source or "").split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.(md|rst|html?)$", "", name)


def pages_in_order(chunks) -> list[str]:
    pages = []
    for chunk in chunks:
        page = page_name(chunk.metadata.get("url") or chunk.source)
        if page not in pages:
            pages.append(page)
    return pages


def to_messages(history):
    from langchain_core.messages import AIMessage, HumanMessage

    kinds = {"human": HumanMessage, "ai": AIMessage}
    return [kinds[role](text) for role, text in history or []]


class Harness:
    """The offline model and every tool, wired like the server wires them."""

    def __init__(self, store, embedder, ocean_url: str):
        from langchain.agents import create_agent

        from agent.offline import OfflineChatModel
        from agent.persona import SYSTEM_PROMPT
        from knowledge.retrieval import Retriever
        from settings import Settings
        from tools import calculator, knowledge, ocean

        settings = Settings(ocean_url=ocean_url, embeddings="none")
        self.retriever = Retriever(store, embedder)
        tools = [*calculator.make_tools(settings, store), *ocean.make_tools(settings, store)]
        k = settings.knowledge_top_k
        for spec in knowledge.SPECS:
            tools.append(knowledge.make_knowledge_tool(self.retriever, k=k, **spec))
        self.tools = {t.name: t for t in tools}
        self.graph = create_agent(OfflineChatModel(), tools, system_prompt=SYSTEM_PROMPT)

    def turn(self, message: str, history=None):
        """(tool calls in order, final answer, sources, seconds) of one turn."""
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        before = to_messages(history) + [HumanMessage(message)]
        started = time.perf_counter()
        state = self.graph.invoke({"messages": before}, {"recursion_limit": 13})
        seconds = time.perf_counter() - started
        new = state["messages"][len(before):]
        calls = [c for m in new if isinstance(m, AIMessage) for c in m.tool_calls]
        sources = []
        for m in new:
            if isinstance(m, ToolMessage) and isinstance(m.artifact, dict):
                sources.extend(m.artifact.get("sources", []))
        final = new[-1].text if new and isinstance(new[-1], AIMessage) else ""
        used = new[-1].response_metadata.get("sources_used") if final else None
        if isinstance(used, list):  # as agent/runner.py: the sources the answer used
            sources = used
        return calls, final, sources, seconds


def check_routing(harness, item) -> tuple[bool, str]:
    from tools.calculator import CalculatorError, calculate

    calls, final, _, _ = harness.turn(item["m"], item.get("history"))
    names = [c["name"] for c in calls]
    expect = item["expect"]
    got = f"{names or 'none'} {calls[0]['args'] if calls else final[:80]!r}"
    if isinstance(expect, dict):
        ok = (names[:1] or ["none"])[0] in expect["any"]
    elif isinstance(expect, list):
        ok = names == expect
    elif expect == "none":
        ok = not names
    else:
        ok = names[:1] == [expect]
    if ok and item.get("args"):
        ok = all(calls[0]["args"].get(k) == v for k, v in item["args"].items())
    if ok and "value" in item:
        try:
            value = float(calculate(calls[0]["args"]["expression"]))
            ok = abs(value - item["value"]) <= 1e-6 * max(1.0, abs(item["value"]))
        except (CalculatorError, KeyError, ValueError):
            ok = False
    if ok and item.get("answer"):
        ok = any(a.lower() in final.lower() for a in item["answer"])
    return ok, got


def check_answer(harness, item) -> tuple[bool, str, float]:
    calls, final, sources, seconds = harness.turn(item["q"])
    cited = re.findall(r"Source: .*?\((https?://\S+)\)", final)
    if item.get("covered") is False:
        ok = bool(NOT_COVERED.search(final)) and not sources
    else:
        fact = any(e.lower() in final.lower() for e in item["expect"])
        ok = fact and any(page_name(url) in item["pages"] for url in cited)
    return ok, final.replace("\n", " ")[:160], seconds


def retrieval(store, embedder, items, mode: str) -> dict:
    ranks = []
    for item in items:
        if item.get("covered") is False:
            continue
        vector = embedder.embed_query(item["q"]) if mode == "hybrid" else None
        pages = pages_in_order(store.search(KB_NAMES[item["kb"]], item["q"], vector, CANDIDATE_CHUNKS))
        ranks.append(next((i for i, p in enumerate(pages, 1) if p in item["pages"]), None))
    n = len(ranks)
    return {
        "n": n,
        "recall@1": sum(1 for r in ranks if r == 1) / n,
        "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def run_set(name: str, store, embedder, ocean_url: str, details: bool) -> dict:
    routing = yaml.safe_load((QUESTIONS / f"routing_{name}.yaml").read_text())
    knowledge = yaml.safe_load((QUESTIONS / f"knowledge_{name}.yaml").read_text())
    full_text = Harness(store, None, ocean_url)
    hybrid = Harness(store, embedder, ocean_url)

    routed = []
    for item in routing:
        ok, got = check_routing(full_text, item)
        routed.append(ok)
        if details and not ok:
            print(f"  ROUTE MISS {item['m']!r}: expected {item['expect']}, got {got}")

    answers, times = {}, []
    for mode, harness in (("full-text", full_text), ("hybrid", hybrid)):
        harness.turn("warm up: what is a vault")
        oks = []
        for item in knowledge:
            ok, answer, seconds = check_answer(harness, item)
            oks.append(ok)
            if mode == "full-text":
                times.append(seconds)
            if details and not ok:
                print(f"  ANSWER MISS ({mode}) {item['q']!r}: {answer}")
        answers[mode] = sum(oks) / len(oks)

    scores = {mode: retrieval(store, embedder, knowledge, mode) for mode in ("full-text", "hybrid")}
    wiki = [i for i in knowledge if i["kb"] == "wiki"]
    wiki_scores = {mode: retrieval(store, embedder, wiki, mode) for mode in ("full-text", "hybrid")}

    print(f"\n== {name} set: {len(routing)} routing messages, {len(knowledge)} knowledge questions")
    print(f"routing accuracy: {sum(routed) / len(routed):.3f} ({sum(routed)}/{len(routed)})")
    for mode, share in answers.items():
        print(f"answers with the expected fact and source ({mode}): {share:.3f}")
    print(f"knowledge turn, full text: p50 {1000 * statistics.median(times):.1f} ms, "
          f"p90 {1000 * percentile(times, 90):.1f} ms")
    print(f"{'retrieval':<22} {'n':>3} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}")
    for label, table in (("all", scores), ("wiki", wiki_scores)):
        for mode, s in table.items():
            print(f"{label + ' ' + mode:<22} {s['n']:>3} {s['recall@1']:>9.3f} {s['recall@5']:>9.3f} "
                  f"{s['mrr']:>7.3f}")
    return {"routing": sum(routed) / len(routed), "answers": answers, "retrieval_all": scores,
            "retrieval_wiki": wiki_scores, "turn_p50_ms": 1000 * statistics.median(times),
            "turn_p90_ms": 1000 * percentile(times, 90)}


def add_arguments(parser) -> None:
    parser.add_argument("--set", choices=("tune", "heldout", "both"), default="both")
    parser.add_argument("--data-dir", help="reuse this database folder (default: a new temp dir)")
    parser.add_argument("--details", action="store_true", help="list every miss")
    parser.add_argument("--rest", action="store_true",
                        help="also time knowledge turns through a real server (full text)")


def run(args) -> dict:

    from bench.kb_common import local_embedder
    from knowledge.ingest import ingest
    from tests.fakes.ocean_server import OceanData, OceanServer

    store, path = open_store(args.data_dir)
    embedder = local_embedder()
    started = time.perf_counter()
    for folder, kb in ((WIKI, "wiki"), (PYTHON_DOCS, "defichainpython")):
        report = ingest(store, folder, kb, embedder, progress=False)
        print(f"ingest {kb}: {report.summary()}")
    print(f"database: {path} (ingest {time.perf_counter() - started:.1f} s)")

    data = OceanData()
    data.balances[KUEGI] = "321.00000000"
    out: dict = {"sets": {}, "targets": {}}
    with OceanServer(data) as ocean:
        sets = ("tune", "heldout") if args.set == "both" else (args.set,)
        for name in sets:
            out["sets"][name] = run_set(name, store, embedder, ocean.url, args.details)
    store.close()
    if args.rest:
        out["rest_turn_p50_ms"] = rest_timing(path)
    held = out["sets"].get("heldout")
    if held:
        out["targets"] = {
            "routing": target(round(held["routing"], 3), 0.90, at_least=True),
            "answers_full_text": target(round(held["answers"]["full-text"], 3), 0.80, at_least=True),
            "answers_hybrid": target(round(held["answers"]["hybrid"], 3), 0.80, at_least=True),
            "wiki_recall5_full_text": target(held["retrieval_wiki"]["full-text"]["recall@5"], 0.85,
                                             at_least=True),
            "wiki_recall5_hybrid": target(held["retrieval_wiki"]["hybrid"]["recall@5"], 0.92, at_least=True),
        }
    return out


def rest_timing(path: Path, rounds: int = 3) -> float:
    """Knowledge turns through the real server on the same database, full text, one at a
    time: the client's wall time per POST /user_message (server time plus the local HTTP hop)."""
    import uuid

    from tests.helpers import ServerProcess

    questions = [i["q"] for i in yaml.safe_load((QUESTIONS / "knowledge_tune.yaml").read_text())
                 if i["kb"] == "wiki" and i.get("covered") is not False]
    server = ServerProcess(path, env={"EMBEDDINGS": "none"}).start()
    try:
        user = f"bench-{uuid.uuid4().hex[:8]}"
        server.post("/user_message", {"user_token": user, "message": questions[0]})
        times = []
        for _ in range(rounds):
            for question in questions:
                started = time.perf_counter()
                response = server.post("/user_message", {"user_token": f"{user}-{len(times)}",
                                                         "message": question})
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
    finally:
        server.stop()
    print(f"\nknowledge turn over REST (full text, {len(times)} turns, one at a time): "
          f"p50 {1000 * statistics.median(times):.1f} ms, p90 {1000 * percentile(times, 90):.1f} ms")
    return 1000 * statistics.median(times)

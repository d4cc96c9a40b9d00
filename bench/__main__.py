"""The benchmarks, one entry point: `python -m bench <scenario> [options] [--json PATH]`.

Each scenario is a module with a docstring, `add_arguments(parser)` and
`run(args) -> dict`. The harness prints the scenario's JSON result (with the
machine's load average before and after, and the commit), writes it to
`--json PATH` too, and exits 1 when a target of the result was missed (0 when
all were met or the scenario has none, 2 when it could not run). Scenarios
start their servers through bench/relay.py and tests/helpers.py, on the
project's default settings: only what a benchmark must change to run at all
(every client comes from 127.0.0.1) is set, with the reason beside it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

# name: (module, one line for --help). Modules are imported only when chosen: some
# monkey-patch with eventlet at import, as the server does.
SCENARIOS: dict[str, tuple[str, str]] = {
    "relay": ("bench.relay", "CPU per streamed turn, added time to first token and relay delay, side "
                             "by side with bare relay A (<= 1.3 x A, <= A + 8 ms, p99 <= 10 ms)"),
    "first_token": ("bench.first_token", "where the time to first token goes (phases from /metrics), "
                                         "side by side with A"),
    "burst": ("bench.burst", "hundreds of Socket.IO turns at once on default settings "
                             "(target: all answered)"),
    "openai_compat": ("bench.openai_compat", "CPU of a streamed /v1/chat/completions turn "
                                             "beside Socket.IO (target: <= +1 ms)"),
    "token_path": ("bench.token_path", "CPU per turn of the ways tokens can leave LangGraph "
                                       "(the hook against public streaming)"),
    "burst_cpu": ("bench.burst_cpu", "a burst's time before the model requests: the hub's CPU or "
                                     "waiting for a core, side by side with A"),
    "scaleout": ("bench.scaleout", "two server processes behind one Redis against one, same load"),
    "connections": ("bench.connections", "5,000 idle websockets and 1,000 slow HTTP clients while a "
                                         "normal client chats (target: turns under 1 s)"),
    "hub_blocking": ("bench.hub_blocking", "PostgreSQL and model calls in green threads do not "
                                           "serialize on the eventlet hub"),
    "embedding_hub": ("bench.embedding_hub", "local query embeddings leave the hub lag under 50 ms"),
    "sse": ("bench.sse", "SSE streams against Socket.IO connections: memory, hub lag, CPU"),
    "stop": ("bench.runs", "stop -> final_message and stop -> model stream closed (target: p99 <= 1 s)"),
    "faults": ("bench.faults", "model faults end by the turn deadline; one huge answer while others chat"),
    "ocean_timeout": ("bench.ocean_timeout", "a stuck Ocean costs its own turn "
                                             "OCEAN_TIMEOUT, others nothing"),
    "limits": ("bench.limits", "a one-token REST flood against the default limits and against none"),
    "fuzz": ("bench.fuzz", "the Hypothesis properties against a real server, longer than the tests"),
    "multilingual_recall": ("bench.multilingual_recall",
                            "what the knowledge tool hands a model for questions in six languages, "
                            "paraphrased, misspelt (>= 0.9; p95 < 50 ms)"),
    "retrieval_quality": ("bench.retrieval_quality", "recall@1/@5 and MRR on the wiki questions "
                                                     "(targets: recall@5 >= 0.80 full text, >= 0.90 hybrid)"),
    "retrieval_latency": ("bench.retrieval_latency", "hybrid top-5 over 100k chunks and HNSW recall@10 "
                                                     "(targets: p50 <= 20 ms, recall >= 0.95)"),
    "answer_quality": ("bench.answer_quality", "routing, offline answers and retrieval on the question sets"),
    "ingestion": ("bench.ingestion", "ingesting the wiki: first run, unchanged re-run (target: >= 10 x "
                                     "faster), one changed page"),
    "original_upgrade": ("bench.original_upgrade", "the in-place upgrade of an original JellyChat "
                                                   "database, against migrations on an empty one"),
}

ROOT = Path(__file__).resolve().parent.parent


def scenario_list() -> str:
    width = max(map(len, SCENARIOS))
    return "scenarios:\n" + "\n".join(f"  {name:<{width}}  {line}" for name, (_, line) in SCENARIOS.items())


class Unavailable(Exception):
    """A registered scenario that cannot run in this checkout (exit status 2)."""


def load(name: str):
    """The scenario's module; Unavailable, saying why, when it is missing or incomplete."""
    module_name = SCENARIOS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        path = module_name.replace(".", "/") + ".py"
        raise Unavailable(f"python -m bench {name}: its module {module_name} is not in this checkout "
                         f"({path}); the registry in bench/__main__.py names it") from None
    missing = [attr for attr in ("add_arguments", "run") if not callable(getattr(module, attr, None))]
    if missing or not module.__doc__:
        raise Unavailable(f"python -m bench {name}: {module_name} lacks "
                         f"{', '.join(missing) or 'a docstring'} (see bench/harness.py)")
    return module


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def missed(result: dict) -> list[str]:
    return [name for name, t in result.get("targets", {}).items() if not t["met"]]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                  epilog=scenario_list(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("scenario", choices=SCENARIOS, metavar="<scenario>", help="one of the scenarios below")
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])  # prints the help (or the error) and exits
    name = top.parse_args(argv[:1]).scenario
    try:
        module = load(name)
    except Unavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="also write the result here")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])

    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    result = module.run(args)
    result = {"scenario": name, "commit": commit(), "started": started.isoformat(timespec="seconds"),
              "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
              "cpus": os.cpu_count(), "load_average_before": load_before,
              "load_average_after": os.getloadavg(),
              "args": {k: v for k, v in vars(args).items() if k != "json"}, **result}
    result.setdefault("targets", {})
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    failed = missed(result)
    for target in failed:
        t = result["targets"][target]
        print(f"MISSED {target}: {t['value']} (target {t.get('op', '<=')} {t['limit']}{t.get('unit', '')})",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU of a streamed turn over /v1/chat/completions against the same turn over
Socket.IO, side by side on one server process. Not a unit test.

One server (eventlet, the local scripted model streaming `--words` words); blocks
of `--batch` concurrent runs alternate between the two transports (ABAB…, so
drift and neighbours' load fall on both alike), `--rounds` blocks each. The
server's CPU time (user + system, from the kernel) is read before and after each
block; the result is the median CPU per run of each transport and their
difference. Target: the OpenAI-compatible turn costs at most 1 ms more.

Run: .venv/bin/python -m bench openai_compat [--rounds 12] [--batch 10] [--words 40]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile

import psutil

from bench.harness import target
from bench.sse import ADMIN, openai_runs, question, socketio_runs
from tests.helpers import ROOT, ServerProcess

TARGET_MS = 1.0


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--slow", type=float, default=0.02)


def run(args) -> dict:
    llm = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server"], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True)
    llm_url = llm.stdout.readline().split()[1]
    text = question(args.words, args.slow)
    per_run: dict[str, list[float]] = {"socketio": [], "openai": []}
    try:
        with tempfile.TemporaryDirectory() as data:
            server = ServerProcess(data, env={
                "OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "LOG_LEVEL": "WARNING",
                "KNOWLEDGE_STARTER": "0", "MAX_CONNECTIONS_PER_IP": "0",
                "RATE_LIMIT_TURNS_PER_TOKEN": "0", "RATE_LIMIT_TURNS_PER_ADDRESS": "0",
                "ADMIN_API_KEY": ADMIN["Authorization"][7:],
            }).start()
            try:
                proc = psutil.Process(server.proc.pid)
                for runner in (socketio_runs, openai_runs):  # warm-up: imports, pool, first key
                    runner(server, 3, question(3, 0.01))
                for _ in range(args.rounds):
                    for name, runner in (("socketio", socketio_runs), ("openai", openai_runs)):
                        before = sum(proc.cpu_times()[:2])
                        results = runner(server, args.batch, text)
                        used = sum(proc.cpu_times()[:2]) - before
                        answered = sum(r.get("end") == "final_message" for r in results)
                        if answered == args.batch:  # a refused run costs less: not comparable
                            per_run[name].append(1000 * used / args.batch)
            finally:
                server.stop()
    finally:
        llm.terminate()
        llm.wait(10)
    median = {name: statistics.median(values) for name, values in per_run.items()}
    extra = median["openai"] - median["socketio"]
    result = {"runs_per_block": args.batch, "blocks": {k: len(v) for k, v in per_run.items()},
              "cpu_ms_per_run_median": median,
              "targets": {"openai_extra_cpu_ms": target(round(extra, 2), TARGET_MS, unit="ms")}}
    print(f"{args.words}-word streamed turns, {args.batch} at once, blocks alternating: "
          f"Socket.IO {median['socketio']:.2f} ms CPU/run, /v1/chat/completions "
          f"{median['openai']:.2f} ms CPU/run: {extra:+.2f} ms (target <= +{TARGET_MS} ms)")
    return result

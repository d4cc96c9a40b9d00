"""Runs benchmark (issue 8). Not a unit test.

1. Stop latency: 50 runs against a slowly streaming local OpenAI-compatible
   server; after the first token the client sends `stop`. Prints p50/p99 of
   stop -> `final_message` (status stopped) and stop -> the LLM server noticing
   its stream's connection closed.
2. What a run costs over the turn it replaced: the concurrency load of
   bench/concurrency.py (N Socket.IO clients at once, 1 s LLM) against this
   checkout and against a baseline commit (default: the last commit before
   runs, 89e0160) checked out beside it, measured alternately in one process.

Run: .venv/bin/python -m bench.runs [--stops 50] [--clients 50] [--baseline 89e0160]
     [--rounds 3 (0: stop latency only)]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.concurrency import run_turns
from bench.harness import percentile
from tests.fakes.openai_server import OpenAIServer
from tests.helpers import ROOT, RunClient, ServerProcess


def stop_latency(runs: int) -> dict:
    llm = OpenAIServer().start()
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "bench",
                                          "LOG_LEVEL": "WARNING", "KNOWLEDGE_STARTER": "0"}).start()
        to_final, to_close = [], []
        try:
            client = RunClient(server.url)
            for _ in range(runs):
                closed = len(llm.closed)
                client.start({"user_token": f"stop-{uuid.uuid4().hex[:8]}",
                              "message": "[long 300] [slow 0.02] talk"})
                run_id = client.until("run_started").of("run_started")[0]["run_id"]
                client.until("final_answer_token")
                t0 = time.monotonic()
                client.sio.emit("stop", {"run_id": run_id})
                final = client.until("final_message").final
                to_final.append(time.monotonic() - t0)
                assert final["status"] == "stopped", final["status"]
                assert llm.wait_closed(closed + 1, 10), "the LLM stream was not closed"
                to_close.append(llm.closed[-1]["at"] - t0)
            client.close()
        finally:
            server.stop()
            llm.stop()
    ms = lambda v, q: 1000 * percentile(v, q)  # noqa: E731
    return {"runs": runs, "final_p50_ms": ms(to_final, 50), "final_p99_ms": ms(to_final, 99),
            "close_p50_ms": ms(to_close, 50), "close_p99_ms": ms(to_close, 99)}


def cost_over_baseline(clients: int, baseline: str, rounds: int) -> dict:
    llm = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--delay", "1"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    llm_url = llm.stdout.readline().split()[1]
    base_root = Path(tempfile.mkdtemp(prefix="jelly-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(base_root), baseline], cwd=ROOT,
                   check=True, capture_output=True)
    (base_root / ".venv").symlink_to(ROOT / ".venv")
    figures = {"runs": [], "baseline": []}
    env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "LOG_LEVEL": "WARNING",
           "KNOWLEDGE_STARTER": "0"}
    try:
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            servers = {"runs": ServerProcess(d1, env=env).start(),
                       "baseline": ServerProcess(d2, env=env, root=base_root).start()}
            try:
                for server in servers.values():
                    run_turns(server, 5, 1.0)  # warm-up
                for _ in range(rounds):  # alternate, so both see the same machine load
                    for name, server in servers.items():
                        figures[name].append(run_turns(server, clients, 1.0))
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        llm.terminate()
        llm.wait(10)
        subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=ROOT,
                       capture_output=True)
    summary = {}
    for name, results in figures.items():
        summary[name] = {key: statistics.median(r[key] for r in results)
                         for key in ("ttft_p50_s", "ttft_p99_s", "wall_s", "server_cpu_ms_per_turn")}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="0: stop latency only")
    parser.add_argument("--baseline", default="89e0160")
    args = parser.parse_args()
    stops = stop_latency(args.stops)
    print(f"stop -> final_message: p50 {stops['final_p50_ms']:.0f} ms, p99 {stops['final_p99_ms']:.0f} ms; "
          f"stop -> LLM connection closed: p50 {stops['close_p50_ms']:.0f} ms, "
          f"p99 {stops['close_p99_ms']:.0f} ms ({stops['runs']} runs)")
    if not args.rounds:
        return  # stop latency only
    cost = cost_over_baseline(args.clients, args.baseline, args.rounds)
    for name, f in cost.items():
        print(f"{name:>8}: {args.clients} at once, medians of {args.rounds} rounds: "
              f"TTFT p50 {1000 * f['ttft_p50_s']:.0f} ms, p99 {1000 * f['ttft_p99_s']:.0f} ms, "
              f"wall {f['wall_s']:.2f} s, server CPU {f['server_cpu_ms_per_turn']:.1f} ms/turn")
    extra = 1000 * (cost["runs"]["ttft_p50_s"] - cost["baseline"]["ttft_p50_s"])
    print(f"a run adds {extra:+.0f} ms to the p50 time to first token over the baseline turn")


if __name__ == "__main__":
    main()

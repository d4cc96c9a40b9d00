"""Stop latency (issue 8): how soon a stopped run ends and its model stream closes.

50 runs against a slowly streaming OpenAI-compatible stub (300 tokens 20 ms
apart); after the first token the client sends `stop`. Reports p50/p99 of stop
-> `final_message` (status stopped) and stop -> the stub seeing its stream's
connection closed. Target: stop -> final_message p99 <= 1 s (a stop a person
sees take effect at once; measured 48 ms).

Run: .venv/bin/python -m bench stop [--stops 50]
"""

from __future__ import annotations

import tempfile
import time
import uuid

from bench.harness import percentile, target
from tests.fakes.openai_server import OpenAIServer
from tests.helpers import RunClient, ServerProcess


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


def add_arguments(parser) -> None:
    parser.add_argument("--stops", type=int, default=50, help="runs stopped after their first token")


def run(args) -> dict:
    stops = stop_latency(args.stops)
    print(f"stop -> final_message: p50 {stops['final_p50_ms']:.0f} ms, p99 {stops['final_p99_ms']:.0f} ms; "
          f"stop -> LLM connection closed: p50 {stops['close_p50_ms']:.0f} ms, "
          f"p99 {stops['close_p99_ms']:.0f} ms ({stops['runs']} runs)")
    return {**stops, "targets": {"stop_to_final_p99_ms": target(round(stops["final_p99_ms"], 1), 1000,
                                                                 unit=" ms")}}

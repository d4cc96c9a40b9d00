"""Longer fuzz run than the test suite's: the same Hypothesis properties
(tests/fuzzing.py) against a real server, with a normal user's turn times
measured alone first (the baseline) and then while the fuzz runs. The rate
limits are off: the fuzz sends thousands of turns from one token and address,
and a refusal would stop it from reaching the code behind them.

    .venv/bin/python -m bench fuzz [--rest 5000] [--socketio 3000] [--frames 2000]

Prints the statuses and outcomes seen, what was stored (every question must
have its answer) and the normal user's turn times, and the targets: every property holds,
every stored question has its answer, the server stays healthy.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import target
from tests import fuzzing  # noqa: E402
from tests.helpers import ServerProcess  # noqa: E402

ADMIN = "bench-fuzz-admin-0123456789abcdefghij"


def add_arguments(parser) -> None:
    parser.add_argument("--rest", type=int, default=5000, help="REST cases")
    parser.add_argument("--socketio", type=int, default=3000, help="Socket.IO cases")
    parser.add_argument("--frames", type=int, default=2000, help="raw websocket frame cases")
    parser.add_argument("--baseline-seconds", type=float, default=20)


def run(args) -> dict:

    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env={
            "ADMIN_API_KEY": ADMIN, "KNOWLEDGE_STARTER": "0", "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_TURNS_PER_TOKEN": "0", "RATE_LIMIT_TURNS_PER_ADDRESS": "0",
            "MAX_CONNECTIONS_PER_IP": "0",
        }).start()
        failed = []
        try:
            alone = fuzzing.Observer(server.url).start()
            time.sleep(args.baseline_seconds)  # the baseline: the normal user alone
            baseline = alone.stop()

            observer = fuzzing.Observer(server.url).start()
            figures = {}
            for name, run, count in (("rest", fuzzing.fuzz_rest, args.rest),
                                     ("socketio", fuzzing.fuzz_socketio, args.socketio),
                                     ("frames", fuzzing.fuzz_frames, args.frames)):
                stats: dict = {}
                started = time.monotonic()
                try:
                    run(server.url, count, stats)
                except Exception as exc:  # noqa: BLE001 - report every property that failed
                    failed.append(f"{name}: {exc!r}"[:2000])
                figures[name] = {"cases": count, "seconds": round(time.monotonic() - started, 1),
                                 "outcomes": {str(k): v for k, v in sorted(stats.items(), key=str)}}
            during = observer.stop()
            healthz = requests.get(server.url + "/healthz", timeout=10).status_code
            stored = fuzzing.unanswered(server.url, ADMIN)
        finally:
            server.stop()
        tracebacks = server.log().count("Traceback")

    report = {"fuzz": figures, "stored": stored, "healthz_after": healthz,
              "server_tracebacks": tracebacks,
              "normal_user_alone": baseline, "normal_user_during_fuzz": during}
    if stored["human_messages"] != stored["qa_pairs"] or stored["unanswered_in_transcripts"]:
        failed.append("a stored question has no answer")
    if healthz != 200 or tracebacks or during["failures"]:
        failed.append("the server failed during the fuzz")
    for line in failed:
        print("FAILED", line, file=sys.stderr)
    return {**report, "failed": failed, "targets": {"failures": target(len(failed), 0)}}

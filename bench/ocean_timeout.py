"""Ocean timeout benchmark (issue 4). Not a unit test.

One server process (`python app.py`, eventlet, offline model) with OCEAN_URL at
a local Ocean-compatible server (tests/fakes/ocean_server.py), on the default
OCEAN_TIMEOUT (10 s). Prints:

1. answer time of a balance question while Ocean answers normally (REST);
2. answer time while Ocean accepts connections and never answers ("hang"), and
   while it sends its body one byte at a time ("trickle"), for `--waiting`
   Socket.IO clients at once;
3. meanwhile, the latency of another client's calculator turns and of
   `/healthz`, and the hub lag of a 100 ms timer (from /metrics);
4. answer time when nothing listens at OCEAN_URL (connection refused).

Targets: a stuck Ocean's answer within OCEAN_TIMEOUT + 5 s and saying so; another
client's calculator turn meanwhile under 1 s. On the default OCEAN_TIMEOUT.

Run: .venv/bin/python -m bench ocean_timeout [--waiting 5]
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid

import requests

from bench.harness import hub_lag_buckets, lag_summary, target
from tests.fakes.ocean_server import ADDRESS, OceanServer
from tests.helpers import ChatClient, ServerProcess, free_port

QUESTION = f"What is the balance of {ADDRESS}?"


def ask_rest(server: ServerProcess, message: str) -> tuple[float, str]:
    started = time.monotonic()
    answer = server.post("/user_message", {"user_token": f"bench-{uuid.uuid4().hex[:8]}",
                                           "message": message}).json()["response"]
    return time.monotonic() - started, answer


def normal(server: ServerProcess, runs: int = 10) -> dict:
    times = []
    for _ in range(runs):
        seconds, answer = ask_rest(server, QUESTION)
        assert "1234.56780000 DFI" in answer, answer
        times.append(seconds)
    return {"p50_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}


def stuck(server: ServerProcess, ocean: OceanServer, mode: str, waiting: int) -> dict:
    """`waiting` clients ask Ocean while it misbehaves; another client keeps chatting."""
    ocean.reset()
    ocean.mode = mode
    clients = [ChatClient(server.url) for _ in range(waiting)]
    other = ChatClient(server.url)
    answers: list[tuple[float, str]] = []
    lock = threading.Lock()
    lag_before = hub_lag_buckets(server)

    def wait_for_ocean(client):
        started = time.monotonic()
        result = client.ask(f"bench-{uuid.uuid4().hex[:8]}", QUESTION, timeout=120)
        with lock:
            answers.append((time.monotonic() - started, result.final["message"]))

    threads = [threading.Thread(target=wait_for_ocean, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    assert ocean.request_seen.wait(30), "no request reached the fake Ocean"
    calc, health = [], []
    while any(t.is_alive() for t in threads):
        started = time.monotonic()
        result = other.ask(f"bench-{uuid.uuid4().hex[:8]}", "What is 20000 divided by 33.3?", timeout=60)
        assert "600.6" in result.final["message"]
        calc.append(time.monotonic() - started)
        started = time.monotonic()
        requests.get(server.url + "/healthz", timeout=30).raise_for_status()
        health.append(time.monotonic() - started)
    for t in threads:
        t.join()
    lag = lag_summary(lag_before, hub_lag_buckets(server))
    for c in [*clients, other]:
        c.close()
    ocean.reset()
    times = [s for s, _ in answers]
    explained = sum("not answering right now" in m for _, m in answers)
    return {
        "answers": len(answers), "explained": explained,
        "answer_min_s": round(min(times), 2), "answer_max_s": round(max(times), 2),
        "other_turns": len(calc), "other_turn_p50_ms": round(1000 * statistics.median(calc), 1),
        "other_turn_max_ms": round(1000 * max(calc), 1),
        "healthz_p50_ms": round(1000 * statistics.median(health), 1),
        "healthz_max_ms": round(1000 * max(health), 1),
        "hub_lag": lag,
    }


def refused(data_dir: str) -> dict:
    server = ServerProcess(data_dir, env={"OCEAN_URL": f"http://127.0.0.1:{free_port()}"}).start()
    try:
        ask_rest(server, "What is 1 + 1?")  # warm-up
        seconds, answer = ask_rest(server, QUESTION)
    finally:
        server.stop()
    return {"answer_s": round(seconds, 3), "explained": "not reachable" in answer}


def add_arguments(parser) -> None:
    parser.add_argument("--waiting", type=int, default=5, help="clients waiting on a stuck Ocean at once")


def run(args) -> dict:
    from settings import Settings

    timeout = Settings.model_fields["ocean_timeout"].default  # what users get
    out: dict = {"ocean_timeout_s": timeout}
    with OceanServer() as ocean, tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(f"{tmp}/a", env={"OCEAN_URL": ocean.url}).start()
        try:
            ask_rest(server, QUESTION)  # warm-up: loads the defichain modules, opens the pool
            print(f"OCEAN_TIMEOUT={timeout:g} s, {args.waiting} clients waiting on Ocean at once")
            for key, label, measure in (("answers", "ocean answers      :", lambda: normal(server)),
                                        ("hang", "ocean hangs        :",
                                         lambda: stuck(server, ocean, "hang", args.waiting)),
                                        ("trickle", "ocean trickles     :",
                                         lambda: stuck(server, ocean, "trickle", args.waiting))):
                out[key] = measure()
                print(label, out[key])
        finally:
            server.stop()
        out["refused"] = refused(f"{tmp}/b")
        print("connection refused :", out["refused"])
    out["targets"] = {
        "stuck_answer_max_s": target(max(out["hang"]["answer_max_s"], out["trickle"]["answer_max_s"]),
                                     timeout + 5, unit=" s"),
        "stuck_answers_explained": target(out["hang"]["explained"] + out["trickle"]["explained"],
                                          2 * args.waiting, at_least=True),
        "other_turn_max_while_stuck_ms": target(
            max(out["hang"]["other_turn_max_ms"], out["trickle"]["other_turn_max_ms"]), 1000, unit=" ms"),
    }
    return out

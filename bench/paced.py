"""One conversation at a person's pace: time to first token when each question
comes some seconds after the last answer (issue 12).

bench/relay.py and bench/first_token.py send a conversation's turns back to
back, so the connection to the model is always warm. A person reads the answer
and types for longer than the openai SDK keeps an idle connection (5 s); each
of their turns then opened a new one. Here the stub serves HTTPS (a certificate
of its own), so that a new connection costs a TLS handshake as with a real
provider, and each server gets one turn of its conversation after every
`--pause` seconds: baseline A (bench/bare_relay.py, the SDK's pool), the project
(LLM_KEEPALIVE, 60 s by default) and the project with LLM_KEEPALIVE=5 (the SDK's
expiry, as before). Who goes first rotates from turn to turn.

Prints, for each server, the time to first token added over the stub's 220 ms
(p50 and p90 over the turns after the first) and how many of those turns opened
a new connection to the stub (its connection count, `GET /stats`, before and
after each turn). On this machine the stub is on the loopback, so a
handshake costs only its CPU; over a network it also costs two round trips to
the provider (TCP, then TLS 1.3).

Run: .venv/bin/python -m bench.paced [--turns 15] [--pause 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import httpx

from bench.harness import percentile
from bench.relay import FIRST_TOKEN_FLOOR, Bare, Project, start_stub, warm_up
from bench.sio_client import Connection

TURN = "[silent 0.2] [long 5] [slow 0.02] [stamp] what next"


def connections_accepted(llm_url: str) -> int:
    """How many connections the stub has accepted so far."""
    return httpx.get(llm_url.rstrip("/") + "/stats", timeout=10).json()["connections"]


async def paced(servers: dict, turns: int, pause: float, llm_url: str) -> dict:
    conns = {name: await Connection.open(s.url) for name, s in servers.items()}
    users = {name: f"paced-{uuid.uuid4().hex[:10]}" for name in servers}
    out = {name: {"added": [], "new": 0} for name in servers}
    names = list(servers)
    try:
        for n in range(turns):
            if n:
                await asyncio.sleep(pause)  # the person reading and typing: the idle being measured
            for name in names[n % len(names):] + names[:n % len(names)]:
                before = connections_accepted(llm_url)
                turn = await conns[name].turn(users[name], TURN)
                if turn.first_token is None:
                    raise RuntimeError(f"{name}: no token ({turn.end})")
                if n:  # the first turn of every server opens its first connection
                    out[name]["added"].append(1000 * (turn.first_token - FIRST_TOKEN_FLOOR))
                    # one connection is this count's own request
                    out[name]["new"] += connections_accepted(llm_url) - before - 1
            print(f"turn {n + 1} of {turns} done", file=sys.stderr, flush=True)
    finally:
        for conn in conns.values():
            await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=15, help="turns of each conversation")
    parser.add_argument("--pause", type=float, default=8.0,
                        help="seconds between an answer and the next question")
    args = parser.parse_args()
    tls_dir = tempfile.mkdtemp()
    stub, llm_url = start_stub(tls_dir)
    try:
        with contextlib.ExitStack() as stack:
            def started(server):
                stack.callback(server.stop)
                return server

            def data_dir() -> str:
                return stack.enter_context(tempfile.TemporaryDirectory())

            servers = {
                "bare relay (A)": started(Bare(llm_url)),
                "project": started(Project(llm_url, data_dir())),
                "project, LLM_KEEPALIVE=5 (before)": started(
                    Project(llm_url, data_dir(), {"LLM_KEEPALIVE": "5"})),
            }
            for server in servers.values():
                warm_up(server)
            started_at = time.monotonic()
            results = asyncio.run(paced(servers, args.turns, args.pause, llm_url))
    finally:
        stub.terminate()
        stub.wait(10)
        shutil.rmtree(tls_dir)
    print(f"\nOne conversation, a question {args.pause:g} s after each answer, stub over HTTPS "
          f"({args.turns - 1} turns each after the first, {time.monotonic() - started_at:.0f} s):")
    print("| server | TTFT added p50 | p90 | connections opened |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | +{statistics.median(r['added']):.1f} ms | "
              f"+{percentile(r['added'], 90):.1f} ms | {r['new']} of {len(r['added'])} |")


if __name__ == "__main__":
    main()

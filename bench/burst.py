"""A burst: N users send a turn at the same moment over Socket.IO, on default settings.

Busy is not down (issue 32): every turn of the burst must be answered while the
database is healthy; requests queue for a pooled connection (DB_POOL_TIMEOUT)
and only a database that is down answers "storage unavailable". Starts the
scripted LLM stub (tests/fakes/openai_server.py) and the project (`python
app.py`, embedded PostgreSQL) with nothing but the model's address set; the
clients are spread over loopback addresses (127.0.0.x, at most `--per-address`
each) so that the per-address defaults (MAX_CONNECTIONS_PER_IP,
RATE_LIMIT_TURNS_PER_ADDRESS) see what many real users would make.

Run: .venv/bin/python -m bench burst [--n 500] [--rounds 1]
Result: answered of N per round, the wall time and p50/p99 time to the final
message; the target "answered" is met when every turn of every round was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

import websockets

from bench.harness import percentile
from bench.relay import start_stub
from bench.sio_client import Connection
from tests.helpers import ServerProcess

MESSAGE = "[long 10] [slow 0.05] hello there"


async def open_from(url: str, local_host: str) -> Connection:
    """A Socket.IO connection whose client address is `local_host` (a 127.0.0.x)."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    ws = await websockets.connect(ws_url, compression=None, max_size=None, open_timeout=60,
                                  ping_interval=None, local_addr=(local_host, 0))
    if not (await ws.recv()).startswith("0"):
        raise RuntimeError("no engine.io open packet")
    await ws.send("40")
    if not (await ws.recv()).startswith("40"):
        raise RuntimeError("no socket.io connect")
    return Connection(ws)


async def burst(url: str, n: int, message: str = MESSAGE, per_address: int = 100,
                timeout: float = 120) -> dict:
    """`n` connections (from 127.0.0.1, .2, ...), then one turn each, all sent together:
    {n, answered, errors (distinct texts), wall, p50, p99}."""
    hosts = [f"127.0.0.{1 + i // per_address}" for i in range(n)]
    conns = await asyncio.gather(*(open_from(url, h) for h in hosts))
    start = time.perf_counter()
    turns = await asyncio.gather(*(c.turn(f"burst-{uuid.uuid4().hex[:12]}", message, timeout)
                                   for c in conns))
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    ends = [t.events[-1][0] - t.sent for t in turns if t.events]
    errors = sorted({t.events[-1][2].get("error", "") for t in turns if t.end == "error"})
    return {"n": n, "answered": sum(t.end == "final_message" for t in turns), "errors": errors,
            "wall": round(wall, 2), "p50": round(percentile(ends, 50), 3),
            "p99": round(percentile(ends, 99), 3)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=500, help="turns sent at once")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--per-address", type=int, default=100,
                        help="connections per loopback address")
    parser.add_argument("--message", default=MESSAGE, help="the stub's script for each turn")


def run(args) -> dict:
    stub, llm_url = start_stub()
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as data:
            server = ServerProcess(data, env={"OPENAI_BASE_URL": llm_url,
                                              "OPENAI_API_KEY": "bench"}).start()
            try:
                for _ in range(args.rounds):
                    rounds.append(asyncio.run(burst(server.url, args.n, args.message,
                                                    args.per_address)))
            finally:
                server.stop()
    finally:
        stub.terminate()
        stub.wait(10)
    answered = min(r["answered"] for r in rounds)
    return {"scenario": "burst", "settings": "defaults", "rounds": rounds,
            "targets": {"answered": {"value": answered, "limit": args.n,
                                     "met": answered == args.n}}}


"""Two server processes against one, same load (issue 12, scale-out).

One OpenAI-compatible stub (its own process), one PostgreSQL (embedded, started
here, shared through DATABASE_URL) and, for two processes, one Redis
(Debian's redis-server, SOCKETIO_MESSAGE_QUEUE). N clients each send one
streamed turn at the same moment (50 tokens 20 ms apart, the first after
200 ms: the stub's floor is 1.2 s). With two processes the clients are dealt
to the two ports alternately, as a layer-4 balancer would (a proxy in this
process would cost more CPU than it measures). Prints throughput (turns per
second of the batch) and time to first token p50 / p99, for 1 and 2 processes,
alternately, `--rounds` times.

Targets: every turn answered; two processes at least the throughput of one.

Run: .venv/bin/python -m bench scaleout [--n 400] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
import uuid

from bench.harness import percentile, target
from bench.relay import STREAM_FLOOR, STREAMED, start_stub
from bench.sio_client import Connection
from storage.embedded import start_embedded_postgres
from tests.helpers import RedisServer, ServerProcess


async def spread_batch(urls: list[str], clients: int) -> dict:
    conns = await asyncio.gather(*(Connection.open(urls[i % len(urls)]) for i in range(clients)))
    start = time.perf_counter()
    turns = await asyncio.gather(*(c.turn(f"scale-{uuid.uuid4().hex[:10]}", STREAMED)
                                   for c in conns))
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    ttft = [t.first_token for t in turns if t.first_token is not None]
    failed = [(t.end, t.events[-1][2] if t.events else None) for t in turns
              if t.end != "final_message"]
    if failed:
        print(f"{len(failed)} turn(s) not answered, e.g. {failed[0]}")
    return {"wall": wall, "answered": sum(t.end == "final_message" for t in turns),
            "throughput": clients / wall, "ttft_p50": percentile(ttft, 50),
            "ttft_p99": percentile(ttft, 99)}


def add_arguments(parser) -> None:
    parser.add_argument("--n", type=int, default=400, help="streamed turns at once")
    parser.add_argument("--rounds", type=int, default=2)


def run(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stub, llm_url = start_stub()
    redis_server = RedisServer().start()
    results: dict[str, list[dict]] = {"1 process": [], "2 processes + Redis": []}
    try:
        with tempfile.TemporaryDirectory() as data:
            dsn = start_embedded_postgres(f"{data}/db")
            env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "LOG_LEVEL": "WARNING",
                   "DATABASE_URL": dsn, "MAX_CONNECTIONS_PER_IP": "0"}  # all from 127.0.0.1
            for _ in range(args.rounds):
                for label, count in (("1 process", 1), ("2 processes + Redis", 2)):
                    extra = {"SOCKETIO_MESSAGE_QUEUE": redis_server.url} if count == 2 else {}
                    servers = [ServerProcess(f"{data}/p{i}", env={**env, **extra}).start()
                               for i in range(count)]
                    try:
                        urls = [s.url for s in servers]
                        asyncio.run(spread_batch(urls, 10))  # warm-up
                        results[label].append(asyncio.run(spread_batch(urls, args.n)))
                    finally:
                        for server in servers:
                            server.stop()
    finally:
        redis_server.stop()
        stub.terminate()
        stub.wait(10)
    print(f"{args.n} streamed turns at once (stub floor {STREAM_FLOOR:.1f} s), "
          f"{args.rounds} round(s), alternating")
    print("| setup | answered | turns/s | wall / floor | TTFT p50 | TTFT p99 |")
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        for r in runs:
            print(f"| {label} | {r['answered']}/{args.n} | {r['throughput']:.0f} | "
                  f"{r['wall'] / STREAM_FLOOR:.2f}x | {r['ttft_p50']:.2f} s | {r['ttft_p99']:.2f} s |")
    answered = sum(r["answered"] for runs in results.values() for r in runs)
    asked = args.n * sum(len(runs) for runs in results.values())
    one, two = (statistics.median(r["throughput"] for r in results[k]) for k in results)
    return {"runs": results, "targets": {
        "answered": target(answered, asked, at_least=True),
        # two processes share this machine's two cores with the clients, the stub and
        # PostgreSQL: the target is that the second process does not lose throughput
        "two_over_one_process_throughput": target(round(two / one, 2), 1.0, at_least=True, unit=" x")}}

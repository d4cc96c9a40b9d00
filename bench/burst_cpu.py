"""Where a burst's time before the model requests goes: the hub's CPU, or waiting for a core (issue 12).

The same stub, servers and Socket.IO clients as bench/relay.py. In each round,
for A and then the project (the order rotates), `--burst` clients send one turn
each at the same moment. The stub keeps its answer back for a second, so
nothing streams while the requests go out, and records when each request
arrived (`GET /stats?since=N`). Meanwhile the client reads the server process's
scheduler figures (/proc/PID/task/*/schedstat: time on a core, time runnable but
waiting for one) every `--every` ms. Prints, at the moment the middle request
and the last one reached the stub (medians over the rounds, ms from the
burst):

- when: that request's arrival
- CPU: the server's time on a core until then (for the last request, also per
  turn)
- waiting: its time runnable but without a core (other processes had it: the
  database, the stub, the clients, other sessions of this machine)
- idle: the rest, when the server had nothing to run (waiting for the network
  or the database)

A burst whose requests leave together (A: a step) and one whose requests leave
one after another (the project: a ramp) differ in `when` for the middle
request; the CPU column says how much of that is work.

`--with-database` adds A + one database call (bench/bare_relay.py `--database`).

Linux only (schedstat). Run: .venv/bin/python -m bench burst_cpu [--burst 50] [--rounds 5]
     [--with-database]
"""

from __future__ import annotations

import asyncio
import bisect
import glob
import statistics
import time
import uuid

import httpx

from bench.relay import side_by_side
from bench.sio_client import Connection

HELD = "[silent 1] [long 3] hi"  # nothing streams while the burst's requests go out


def schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds the process's threads ran on a core, and waited runnable for one."""
    ran = waited = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended meanwhile
        ran += int(fields[0])
        waited += int(fields[1])
    return ran, waited


async def burst(server, stats_url: str, size: int, every: float) -> dict:
    """One burst: the arrival of its middle and last requests, and the server's
    scheduler figures at each."""
    conns = await asyncio.gather(*(Connection.open(server.url) for _ in range(size)))
    async with httpx.AsyncClient() as http:
        since = (await http.get(stats_url)).json()["requests"]
        samples = []  # (wall time, ns on a core, ns waiting for one)
        start = time.time()
        samples.append((start, *schedstat(server.pid)))
        turns = asyncio.gather(*(c.turn(f"bench-{uuid.uuid4().hex[:10]}", HELD) for c in conns))
        while not turns.done() and time.time() - start < 0.9:  # the stub holds its answers 1 s
            await asyncio.sleep(every)
            samples.append((time.time(), *schedstat(server.pid)))
        await turns
        arrivals = sorted((await http.get(f"{stats_url}?since={since}")).json()["arrivals"])
    await asyncio.gather(*(c.close() for c in conns))
    if len(arrivals) < size:
        raise RuntimeError(f"{len(arrivals)} of {size} requests reached the stub")
    times = [s[0] for s in samples]
    out = {}
    for label, index in (("middle", (size - 1) // 2), ("last", size - 1)):
        at = arrivals[index]
        # the last sample taken before the request arrived (a sample is `every` ms apart)
        _, ran, waited = samples[max(0, bisect.bisect_right(times, at) - 1)]
        when = 1000 * (at - start)
        cpu = (ran - samples[0][1]) / 1e6
        wait = (waited - samples[0][2]) / 1e6
        out[label] = {"when": when, "cpu": cpu, "waiting": wait, "idle": max(0.0, when - cpu - wait)}
    return out


def report(rounds: dict[str, list[dict]], size: int) -> None:
    count = len(next(iter(rounds.values())))
    middle = (size - 1) // 2 + 1
    print(f"\nms from the burst to the arrival of request {middle} and request {size} of {size} "
          f"at the model, and the server's scheduler figures until then (median of {count} rounds):")
    print(f"| server | request {middle}: when | CPU | waiting for a core | idle "
          f"| request {size}: when | CPU (per turn) | waiting for a core | idle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in rounds.items():
        m = {label: {k: statistics.median(r[label][k] for r in runs) for k in runs[0][label]}
             for label in ("middle", "last")}
        a, b = m["middle"], m["last"]
        print(f"| {name} | {a['when']:.0f} | {a['cpu']:.0f} | {a['waiting']:.0f} | {a['idle']:.0f} "
              f"| {b['when']:.0f} | {b['cpu']:.0f} ({b['cpu'] / size:.2f}) | {b['waiting']:.0f} "
              f"| {b['idle']:.0f} |")


def add_arguments(parser) -> None:
    parser.add_argument("--burst", type=int, default=50, help="turns at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--every", type=float, default=2.0, help="ms between schedstat readings")
    parser.add_argument("--with-database", action="store_true",
                        help="also measure A + one database call (the project's run call)")


def run(args) -> dict:
    rounds = side_by_side(
        args.rounds,
        lambda server, llm_url: asyncio.run(
            burst(server, llm_url.rstrip("/") + "/stats", args.burst, args.every / 1000)),
        prefix="bench-burst-", with_database=args.with_database)
    report(rounds, args.burst)
    return {"rounds": rounds, "targets": {}}  # a diagnosis: the targets are relay's and burst's

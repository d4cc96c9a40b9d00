"""Concurrency benchmark for the chat core (issue 2). Not a unit test.

1. 50 Socket.IO clients each send one message at once to one server process
   (eventlet), whose LLM is a local OpenAI-compatible server that takes 1 s per
   completion. Prints wall time for all answers, p50/p99 time to first token,
   the ratio to the 1 s floor, and /healthz latency while the turns are in
   flight (a blocked hub would show here).
2. 1000 idle Socket.IO connections held by one process: RSS before and after.

Run: .venv/bin/python -m bench.concurrency [--clients 50] [--idle 1000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psutil
import requests
import websocket

from bench.harness import percentile
from tests.helpers import ROOT, ChatClient, ServerProcess


def hub_lag_buckets(server: ServerProcess) -> dict[float, float]:
    """Cumulative counts of the server's hub-lag histogram, by upper bound."""
    buckets = {}
    for line in requests.get(server.url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("jellychat_hub_lag_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def lag_summary(before: dict, after: dict) -> dict:
    """p99 and max of hub lag during a window, as histogram bucket bounds."""
    delta = {b: after[b] - before.get(b, 0) for b in sorted(after)}
    total = delta[float("inf")]
    p99 = next(b for b, c in delta.items() if c >= 0.99 * total)
    worst = next(b for b, c in delta.items() if c >= total)
    return {"samples": total, "p99_le_s": p99, "max_le_s": worst}


def run_turns(server: ServerProcess, clients: int, floor: float) -> dict:
    lag_before = hub_lag_buckets(server)
    server_cpu = psutil.Process(server.proc.pid)
    cpu_before = sum(server_cpu.cpu_times()[:2])
    chats = [ChatClient(server.url) for _ in range(clients)]
    start_gate = threading.Barrier(clients + 1)
    results: list[dict] = [None] * clients

    def one(i: int) -> None:
        client = chats[i]
        start_gate.wait()
        t0 = time.perf_counter()
        client.sio.emit("user_message", {"user_token": f"bench-{uuid.uuid4().hex[:8]}",
                                         "message": "Tell me something nice", "application": "bench"})
        first = None
        while True:
            name, data = client.inbox.get(timeout=60)
            if name == "final_answer_token" and first is None:
                first = time.perf_counter() - t0
            if name in ("final_message", "error"):
                results[i] = {"ttft": first, "total": time.perf_counter() - t0, "event": name}
                return

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        session = requests.Session()
        while not stop.is_set():
            t = time.perf_counter()
            session.get(server.url + "/healthz", timeout=30).raise_for_status()
            health.append(time.perf_counter() - t)
            stop.wait(0.05)

    prober = threading.Thread(target=probe)
    wall0 = time.perf_counter()
    start_gate.wait()
    prober.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    stop.set()
    prober.join()
    for c in chats:
        c.close()
    ttft = [r["ttft"] for r in results if r["ttft"] is not None]
    lag = lag_summary(lag_before, hub_lag_buckets(server))
    cpu = sum(server_cpu.cpu_times()[:2]) - cpu_before
    return {
        "server_cpu_ms_per_turn": 1000 * cpu / clients,
        "hub_lag": lag,
        "clients": clients,
        "answered": sum(r["event"] == "final_message" for r in results),
        "wall_s": wall,
        "ratio_to_floor": wall / floor,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "healthz_p50_ms": 1000 * percentile(health, 50),
        "healthz_max_ms": 1000 * max(health),
        "healthz_samples": len(health),
    }


def hold_idle(server: ServerProcess, count: int) -> dict:
    proc = psutil.Process(server.proc.pid)
    before = proc.memory_info().rss
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    sockets = []
    for _ in range(count):
        ws = websocket.create_connection(url, timeout=30)
        assert ws.recv().startswith("0")  # engine.io open packet
        ws.send("40")  # socket.io connect to the default namespace
        assert ws.recv().startswith("40")
        sockets.append(ws)
    after = proc.memory_info().rss
    alive = requests.get(server.url + "/healthz", timeout=30).status_code == 200
    for ws in sockets:
        ws.close()
    return {"idle_connections": count, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
            "rss_added_mb": (after - before) / 2**20, "healthy_while_held": alive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per completion")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it

    # the LLM runs in its own process, so that it competes with neither side for a GIL
    llm = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--delay", str(args.delay)],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    llm_url = llm.stdout.readline().split()[1]
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env={"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench",
                                          "LOG_LEVEL": "WARNING", "MAX_CONNECTIONS_PER_IP": "0"}).start()
        try:
            run_turns(server, 5, args.delay)  # warm-up: imports, pool, first connections
            turns = run_turns(server, args.clients, args.delay)
            idle = hold_idle(server, args.idle)
        finally:
            server.stop()
            llm.terminate()
            llm.wait(10)
    print(f"turns: {turns['answered']}/{turns['clients']} answered in {turns['wall_s']:.2f} s "
          f"(floor {args.delay:.1f} s, ratio {turns['ratio_to_floor']:.2f}; target <= 2.0)")
    print(f"server CPU per turn: {turns['server_cpu_ms_per_turn']:.1f} ms")
    print(f"time to first token: p50 {turns['ttft_p50_s']:.2f} s, p99 {turns['ttft_p99_s']:.2f} s")
    print(f"/healthz during the turns: p50 {turns['healthz_p50_ms']:.1f} ms, "
          f"max {turns['healthz_max_ms']:.1f} ms over {turns['healthz_samples']} probes")
    lag = turns["hub_lag"]
    print(f"hub lag of a 100 ms timer during the turns: p99 <= {1000 * lag['p99_le_s']:.0f} ms, "
          f"max <= {1000 * lag['max_le_s']:.0f} ms over {lag['samples']:.0f} samples")
    print(f"idle: {idle['idle_connections']} Socket.IO connections, RSS {idle['rss_before_mb']:.1f} MB -> "
          f"{idle['rss_after_mb']:.1f} MB (+{idle['rss_added_mb']:.1f} MB; target < 150 MB), "
          f"healthy while held: {idle['healthy_while_held']}")


if __name__ == "__main__":
    main()

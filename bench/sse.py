"""SSE streams against Socket.IO connections, side by side. Not a unit test.

N clients at once ask one server process (eventlet) for a slow answer (the
local OpenAI-compatible server streams `--words` words, `--slow` s apart), once
as N Socket.IO connections (the baseline) and once as N SSE streams
(`POST /user_message`, `Accept: text/event-stream`) and as N streamed OpenAI-compatible
completions (`POST /v1/chat/completions`), each on a fresh server.
Prints, per transport: answered runs, server RSS added per stream (peak while
all streams are open, over the idle server), hub lag of a 100 ms timer during
the runs, time to the first event (run_started) and to the first token, and
server CPU per run.

Target: every run answered on both transports.

Run: .venv/bin/python -m bench sse [--streams 200] [--words 40] [--slow 0.1]
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psutil
import websocket

from bench.harness import hub_lag_buckets, lag_summary, percentile, target
from tests.helpers import ROOT, ServerProcess


class Peak:
    """Samples a process's RSS every 50 ms in a thread; keeps the largest."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def question(words: int, slow: float) -> str:
    return f"[long {words}] [slow {slow}] tell me a long story"


def socketio_runs(server: ServerProcess, n: int, text: str) -> list[dict]:
    """N Socket.IO clients ask at once: raw websockets speaking Engine.IO 4 / Socket.IO 5,
    read from one thread (a selector), like the SSE clients below, so that both
    transports get the same client-side cost."""
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    selector = selectors.DefaultSelector()
    results: list[dict] = [{} for _ in range(n)]
    sockets = []
    for _ in range(n):
        ws = websocket.create_connection(url, timeout=60)
        assert ws.recv().startswith("0")  # engine.io open packet
        ws.send("40")  # socket.io connect to the default namespace
        assert ws.recv().startswith("40")
        sockets.append(ws)
    t0 = time.perf_counter()
    for i, ws in enumerate(sockets):
        ws.send("42" + json.dumps(["user_message", {
            "user_token": f"sio-{uuid.uuid4().hex[:8]}", "message": text, "application": "bench"}]))
        selector.register(ws.sock, selectors.EVENT_READ, i)
    open_streams = n
    deadline = time.monotonic() + 300
    while open_streams and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            i, ws = key.data, sockets[key.data]
            while True:  # every frame read, including those already buffered by the client
                name = _socketio_event(ws)
                now = time.perf_counter() - t0
                if name:
                    results[i].setdefault("first_event", now)
                if name == "final_answer_token":
                    results[i].setdefault("first_token", now)
                if name in ("final_message", "error"):
                    results[i]["end"] = name
                    selector.unregister(key.fileobj)
                    ws.close()
                    open_streams -= 1
                    break
                if not any(ws.frame_buffer.recv_buffer):
                    break
    return results


def _socketio_event(ws) -> str | None:
    """The name of the Socket.IO event in the next frame (None for other packets)."""
    packet = ws.recv()
    if packet == "2":
        ws.send("3")  # engine.io ping -> pong
        return None
    return json.loads(packet[2:])[0] if packet.startswith("42") else None


def sse_runs(server: ServerProcess, n: int, text: str) -> list[dict]:
    """N SSE streams at once, from one thread over raw sockets (a selector)."""
    requests = []
    for _ in range(n):
        body = json.dumps({"user_token": f"sse-{uuid.uuid4().hex[:8]}", "message": text,
                           "application": "bench"}).encode()
        requests.append(b"POST /user_message HTTP/1.1\r\nHost: bench\r\n"
                        b"Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return _stream_runs(server, requests, (b"event: ", b"event: final_answer_token",
                                           b"event: final_message", b"event: error"))


def openai_runs(server: ServerProcess, n: int, text: str) -> list[dict]:
    """N streamed /v1/chat/completions at once (an API key, the end user named by `user`),
    read like the SSE streams."""
    key = server.post("/api-keys", {"name": "bench"}, headers=ADMIN).json()["key"].encode()
    requests = []
    for _ in range(n):
        body = json.dumps({"model": "jelly", "stream": True, "user": f"oai-{uuid.uuid4().hex[:8]}",
                           "messages": [{"role": "user", "content": text}]}).encode()
        requests.append(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
                        b"Authorization: Bearer " + key + b"\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # first event: the role chunk; a token: a content delta; the end: [DONE] or an error
    return _stream_runs(server, requests, (b"data: ", b'"content": "w', b"data: [DONE]",
                                           b'data: {"error"'))


def _stream_runs(server: ServerProcess, requests: list[bytes], markers) -> list[dict]:
    first_event, first_token, final, error = markers
    n = len(requests)
    selector = selectors.DefaultSelector()
    results: list[dict] = [{"buffer": b""} for _ in range(n)]
    socks = [(socket.create_connection(("127.0.0.1", server.port)), r) for r in requests]
    t0 = time.perf_counter()
    for i, (sock, request) in enumerate(socks):
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    open_streams = n
    deadline = time.monotonic() + 300
    while open_streams and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            result = results[key.data]
            data = key.fileobj.recv(65536)
            now = time.perf_counter() - t0
            result["buffer"] += data
            if first_event in result["buffer"]:
                result.setdefault("first_event", now)
            if first_token in result["buffer"]:
                result.setdefault("first_token", now)
            done = final in result["buffer"] or error in result["buffer"]
            if done and result["buffer"].endswith(b"\r\n0\r\n\r\n") or not data:
                result["end"] = "final_message" if final in result["buffer"] else "error"
                result["buffer"] = b""
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_streams -= 1
            elif len(result["buffer"]) > 4096:
                result["buffer"] = result["buffer"][-256:]  # keep only what a marker can span
    return results


RUNNERS = {"socketio": socketio_runs, "sse": sse_runs, "openai": openai_runs}
ADMIN = {"Authorization": "Bearer bench-admin-0123456789abcdefghijklmn"}


def measure(transport: str, n: int, text: str, llm_url: str) -> dict:
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env={
            "OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "LOG_LEVEL": "WARNING",
            "KNOWLEDGE_STARTER": "0",
            "MAX_CONNECTIONS_PER_IP": "0",  # every client is on 127.0.0.1
            "ADMIN_API_KEY": ADMIN["Authorization"][7:],
        }).start()
        try:
            runner = RUNNERS[transport]
            runner(server, 3, question(3, 0.01))  # warm-up: imports, pool, first connections
            proc = psutil.Process(server.proc.pid)
            idle = proc.memory_info().rss
            cpu0 = sum(proc.cpu_times()[:2])
            lag0 = hub_lag_buckets(server)
            wall0 = time.perf_counter()
            with Peak(server.proc.pid) as peak:
                results = runner(server, n, text)
            wall = time.perf_counter() - wall0
            lag = lag_summary(lag0, hub_lag_buckets(server))
            cpu = sum(proc.cpu_times()[:2]) - cpu0
        finally:
            server.stop()
    first_event = [r["first_event"] for r in results if "first_event" in r]
    first_token = [r["first_token"] for r in results if "first_token" in r]
    return {
        "transport": transport, "streams": n,
        "answered": sum(r.get("end") == "final_message" for r in results),
        "wall_s": wall, "idle_mb": idle / 2**20, "peak_mb": peak.peak / 2**20,
        "kb_per_stream": (peak.peak - idle) / 1024 / n,
        "lag": lag, "cpu_ms_per_run": 1000 * cpu / n,
        "first_event_p50": percentile(first_event, 50), "first_event_p99": percentile(first_event, 99),
        "first_token_p50": percentile(first_token, 50), "first_token_p99": percentile(first_token, 99),
    }


def add_arguments(parser) -> None:
    parser.add_argument("--streams", type=int, default=200, help="runs at once")
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--slow", type=float, default=0.1, help="seconds between words")
    parser.add_argument("--only", choices=tuple(RUNNERS), help="one transport only")


def run(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    llm = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server"], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True)
    llm_url = llm.stdout.readline().split()[1]
    text = question(args.words, args.slow)
    floor = args.words * args.slow
    try:
        rows = [measure(t, args.streams, text, llm_url)
                for t in RUNNERS if args.only in (None, t)]
    finally:
        llm.terminate()
        llm.wait(10)
    print(f"{args.streams} concurrent runs of {args.words} words {args.slow} s apart "
          f"(the model alone: {floor:.1f} s)")
    for r in rows:
        lag = r["lag"]
        print(f"{r['transport']:>8}: {r['answered']}/{r['streams']} answered in {r['wall_s']:.1f} s; "
              f"RSS {r['idle_mb']:.0f} -> {r['peak_mb']:.0f} MB ({r['kb_per_stream']:.0f} KiB/stream); "
              f"hub lag p99 <= {1000 * lag['p99_le_s']:.0f} ms, max <= {1000 * lag['max_le_s']:.0f} ms; "
              f"first event p50 {r['first_event_p50']:.2f} s, p99 {r['first_event_p99']:.2f} s; "
              f"first token p50 {r['first_token_p50']:.2f} s, p99 {r['first_token_p99']:.2f} s; "
              f"CPU {r['cpu_ms_per_run']:.0f} ms/run")
    return {"transports": {r["transport"]: r for r in rows},
            "targets": {f"{r['transport']}_answered": target(r["answered"], r["streams"], at_least=True)
                        for r in rows}}

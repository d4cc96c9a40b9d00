"""Connection limits benchmark (issues 11 and 12). Not a unit test.

One server process (`python app.py`, eventlet, embedded PostgreSQL, offline
model) holds N idle Socket.IO websockets that answer the server's pings, and M
slow HTTP clients that trickle header bytes (slowloris; each dropped after
HEADER_TIMEOUT reconnects at once), while a normal client chats. Prints the
normal client's turn time and /healthz latency before and under that load
(measured side by side in the same run), server RSS per idle connection, how
many slow clients the header timeout dropped, and the hub lag.

With `--baseline`, the same load is also put on a bare Flask-SocketIO app run
with `socketio.run` defaults (what the project did before): it shows where
eventlet's 1,024-connection default pool stops answering.

Targets: all idle websockets held to the end, and the normal client's turns under
1 s (max) under that load, on the default settings (HEADER_TIMEOUT included).

Run: .venv/bin/python -m bench connections [--idle 5000] [--slow 1000] [--baseline]
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import psutil
import requests

from bench.harness import hub_lag_buckets, lag_summary, percentile, target
from tests.helpers import ROOT, ChatClient, ServerProcess, free_port

# --- a minimal websocket Engine.IO/Socket.IO client (thousands in one asyncio loop) ---

def _frame(text: str) -> bytes:
    """A masked client text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return opcode, await reader.readexactly(length)


class Load:
    def __init__(self):
        self.connected = 0
        self.failed = 0
        self.pongs = 0
        self.slow_open = 0
        self.slow_dropped = 0
        self.slow_refused = 0
        self.stop = asyncio.Event()


async def idle_socketio(host: str, port: int, load: Load) -> None:
    """Connect over websocket, join the default namespace, answer pings until stopped."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        opcode, data = await asyncio.wait_for(_read_frame(reader), 30)  # engine.io open
        writer.write(_frame("40"))
        opcode, data = await asyncio.wait_for(_read_frame(reader), 30)
        if not data.startswith(b"40"):
            raise ConnectionError(data[:40])
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
        load.failed += 1
        return
    load.connected += 1
    try:
        while not load.stop.is_set():
            read = asyncio.ensure_future(_read_frame(reader))
            stopped = asyncio.ensure_future(load.stop.wait())
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                break
            opcode, data = read.result()
            if opcode == 8:
                break
            if opcode == 1 and data == b"2":  # engine.io ping
                writer.write(_frame("3"))
                load.pongs += 1
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        load.connected -= 1
        writer.close()


async def slow_http(host: str, port: int, load: Load) -> None:
    """Slowloris: a request whose headers never end; a byte a second; reconnect when dropped."""
    while not load.stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        except (TimeoutError, OSError):
            await asyncio.sleep(0.5)
            continue
        load.slow_open += 1
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while not load.stop.is_set():
                writer.write(b"X")
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    continue
                if data.startswith(b"HTTP/1.1 429") or data.startswith(b"HTTP/1.1 503"):
                    load.slow_refused += 1
                else:
                    load.slow_dropped += 1
                break
        except OSError:
            load.slow_dropped += 1
        finally:
            load.slow_open -= 1
            writer.close()


class LoadThread:
    """The asyncio load in its own thread, so the measuring client runs undisturbed."""

    def __init__(self, host: str, port: int, idle: int, slow: int):
        self.host, self.port, self.idle, self.slow = host, port, idle, slow
        self.load: Load | None = None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.load = Load()
        tasks = []
        for start in range(0, self.idle, 250):  # connect in waves, as a crowd would
            batch = [asyncio.ensure_future(idle_socketio(self.host, self.port, self.load))
                     for _ in range(min(250, self.idle - start))]
            tasks += batch
            await asyncio.sleep(0.2)
        tasks += [asyncio.ensure_future(slow_http(self.host, self.port, self.load)) for _ in range(self.slow)]
        deadline = time.monotonic() + 120
        while (self.load.connected + self.load.failed < self.idle or self.load.slow_open < self.slow * 0.9) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.ready.set()
        await self.load.stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> LoadThread:
        self.thread.start()
        self.ready.wait(180)
        return self

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.load.stop.set)
        self.thread.join(60)


# --- the normal client ---

def chat_turns(url: str, turns: int) -> dict:
    client = ChatClient(url)
    times = []
    try:
        for i in range(turns):
            started = time.perf_counter()
            result = client.ask(f"conn-bench-{uuid.uuid4().hex[:8]}", f"What is {i} + 17?")
            assert result.final and str(i + 17) in result.final["message"], result.events
            times.append(time.perf_counter() - started)
    finally:
        client.close()
    health = []
    session = requests.Session()
    for _ in range(20):
        started = time.perf_counter()
        session.get(url + "/healthz", timeout=30).raise_for_status()
        health.append(time.perf_counter() - started)
    return {"turn_p50": percentile(times, 50), "turn_max": max(times),
            "healthz_p50": percentile(health, 50), "healthz_max": max(health)}


def fmt(figures: dict) -> str:
    return (f"turn p50 {1000 * figures['turn_p50']:.0f} ms, max {1000 * figures['turn_max']:.0f} ms; "
            f"/healthz p50 {1000 * figures['healthz_p50']:.1f} ms, "
            f"max {1000 * figures['healthz_max']:.1f} ms")


def project(args) -> dict:
    from settings import Settings

    header_timeout = Settings.model_fields["header_timeout"].default  # what users get
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env={"LOG_LEVEL": "WARNING", "KNOWLEDGE_STARTER": "0",
                                          # every client comes from 127.0.0.1
                                          "MAX_CONNECTIONS_PER_IP": "0"}).start()
        try:
            proc = psutil.Process(server.proc.pid)
            chat_turns(server.url, 3)  # warm-up
            quiet = chat_turns(server.url, args.turns)
            rss_before = proc.memory_info().rss
            t0 = time.perf_counter()
            load = LoadThread("127.0.0.1", server.port, args.idle, 0).start()
            connect_s = time.perf_counter() - t0
            rss_idle = proc.memory_info().rss
            held = load.load.connected
            slow = LoadThread("127.0.0.1", server.port, 0, args.slow).start()
            lag_before = hub_lag_buckets(server)
            loaded = chat_turns(server.url, args.turns)
            time.sleep(header_timeout + 2)  # let the header timeout drop a round of slow clients
            loaded2 = chat_turns(server.url, args.turns)
            time.sleep(args.hold)  # past the Socket.IO ping interval (25 s): pings answered, sockets kept
            loaded3 = chat_turns(server.url, args.turns)
            lag = lag_summary(lag_before, hub_lag_buckets(server))
            rss_loaded = proc.memory_info().rss
            slow_stats = (slow.load.slow_open, slow.load.slow_dropped, slow.load.slow_refused)
            pongs, failed = load.load.pongs, load.load.failed
            still = load.load.connected
            slow.close()
            load.close()
        finally:
            server.stop()
    print(f"project (python app.py, HEADER_TIMEOUT={header_timeout:g}):")
    print(f"  quiet:               {fmt(quiet)}")
    print(f"  {held} idle websockets held ({failed} failed, connected in {connect_s:.1f} s), "
          f"+ {args.slow} slow HTTP clients:")
    print(f"  under load:          {fmt(loaded)}")
    print(f"  {header_timeout + 2:.0f} s later:         {fmt(loaded2)}")
    print(f"  {args.hold:.0f} s later again:   {fmt(loaded3)}")
    print(f"  RSS {rss_before / 2**20:.1f} MB -> {rss_idle / 2**20:.1f} MB with the idle websockets "
          f"({(rss_idle - rss_before) / max(held, 1) / 1024:.1f} KiB per idle connection); "
          f"{rss_loaded / 2**20:.1f} MB with the slow clients too")
    print(f"  idle websockets still connected at the end: {still}; pings answered: {pongs}")
    print(f"  slow clients: {slow_stats[0]} open at the end, {slow_stats[1]} dropped by the header "
          f"timeout, {slow_stats[2]} refused")
    print(f"  hub lag of a 100 ms timer during the loaded turns: p99 <= {1000 * lag['p99_le_s']:.0f} ms, "
          f"max <= {1000 * lag['max_le_s']:.0f} ms")
    worst = max(f["turn_max"] for f in (loaded, loaded2, loaded3))
    return {"quiet": quiet, "under_load": [loaded, loaded2, loaded3], "idle_held": held,
            "idle_failed": failed, "idle_still_connected": still, "pongs": pongs,
            "kib_per_idle_connection": round((rss_idle - rss_before) / max(held, 1) / 1024, 1),
            "slow_open_dropped_refused": slow_stats, "hub_lag": lag,
            "targets": {"idle_websockets_held": target(still, args.idle, at_least=True),
                        "turn_max_under_load_s": target(round(worst, 3), 1.0, unit=" s")}}


BARE_APP = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()
    import sys
    from flask import Flask
    from flask_socketio import SocketIO
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="eventlet")
    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}
    print("READY", flush=True)
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[1]))
""")


def baseline(args) -> None:
    """socketio.run defaults: does /healthz still answer under the same idle + slow load?"""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(BARE_APP)
    proc = subprocess.Popen([sys.executable, script.name, str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdout.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        load = LoadThread("127.0.0.1", port, args.idle, 0).start()
        slow = LoadThread("127.0.0.1", port, 0, args.slow).start()
        try:
            started = time.perf_counter()
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            answer = f"answered in {1000 * (time.perf_counter() - started):.0f} ms"
        except requests.RequestException as exc:
            answer = f"no answer within 10 s ({type(exc).__name__})"
        held, failed = load.load.connected, load.load.failed
        slow.close()
        load.close()
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(script.name)
    print("baseline (bare Flask-SocketIO, socketio.run defaults):")
    print(f"  {held} idle websockets held, {failed} failed; "
          f"with {args.slow} slow clients too, /healthz {answer}")


def add_arguments(parser) -> None:
    parser.add_argument("--idle", type=int, default=5000, help="idle websockets")
    parser.add_argument("--slow", type=int, default=1000, help="slow HTTP clients (slowloris)")
    parser.add_argument("--turns", type=int, default=10, help="turns of the normal client per window")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the load is held at the end")
    parser.add_argument("--baseline", action="store_true",
                        help="also a bare Flask-SocketIO app on socketio.run defaults")


def run(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process opens them all
    result = project(args)
    if args.baseline:
        baseline(args)
    return result

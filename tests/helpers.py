"""Test helpers: a real server process, and real Socket.IO / HTTP clients for it."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
# the corpora beside the checkout (CI has them; a public clone does not);
# JELLY_SHARED_DIR points elsewhere, e.g. at a missing folder to try the public-clone path
SHARED = Path(os.environ.get("JELLY_SHARED_DIR") or ROOT.parent / "shared")
TEST_DOCS = ROOT / "tests" / "docs" / "kb"  # small documents written for these tests


def needs_corpus(path: Path):
    """Skip (with the reason in pytest's summary) when a corpus under SHARED is absent."""
    return pytest.mark.skipif(
        not path.is_dir(),
        reason=f"needs the corpus {path} (../shared beside the checkout; absent in a public clone)",
    )


def scripted_env(llm, **env) -> dict:
    """A server's environment whose model is the scripted OpenAI-compatible server
    (tests/fakes/openai_server.py, the `llm` fixture), no retries, no starter KB."""
    return {"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-scripted",
            "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0", "KNOWLEDGE_STARTER": "0",
            **env}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python app.py` in a subprocess on a free port, with its own DATA_DIR.

    Readiness: the server prints `READY <url>` once its port is bound.
    """

    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None,
                 root: Path = ROOT):
        self.root = Path(root)
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._serving = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "SUPABASE_", "DATABASE_URL", "OCEAN_", "ADMIN_"))}
        env.update({"PORT": str(self.port), "HOST": "127.0.0.1", "DATA_DIR": str(self.data_dir),
                    "PYTHONUNBUFFERED": "1", "OCEAN_URL": "http://127.0.0.1:9"})
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90) -> ServerProcess:
        # an event of this start's own: the reader of a process stopped just before (a
        # restart) may still be draining its last lines, and its end must not wake us
        ready = threading.Event()
        self._serving = False
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=self.root, env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout) or not self._serving:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output[-60:]))
        return self

    def _pump(self, proc, ready: threading.Event) -> None:
        for line in proc.stdout:
            self.output.append(line)
            if line.startswith("READY "):
                self._serving = True
                ready.set()
        ready.set()  # process ended: wake its start() so it can report

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int | None:
        """Send `sig` (SIGINT by default; SIGTERM is what docker and Fly send), wait, and
        return the exit code (killed after `timeout`)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would; reaped, so its pid is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        return "".join(self.output)

    def post(self, path: str, json=None, **kwargs) -> requests.Response:
        return requests.post(self.url + path, json=json, timeout=kwargs.pop("timeout", 60), **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)


@dataclass
class TurnEvents:
    """Everything one Socket.IO client received, in order."""

    events: list[tuple[str, dict]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict]:
        return [data for n, data in self.events if n == name]

    @property
    def tokens(self) -> str:
        return "".join(d["token"] for d in self.of("final_answer_token"))

    @property
    def final(self) -> dict | None:
        finals = self.of("final_message")
        return finals[0] if finals else None


class ChatClient:
    """A python-socketio client over a real websocket that records server events."""

    EVENTS = ("tool_start", "final_answer_token", "final_message", "error")

    def __init__(self, url: str):
        self.sio = socketio.Client(reconnection=False)
        self.inbox: queue.Queue = queue.Queue()
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name))
        self.sio.connect(url, transports=["websocket"], wait_timeout=20)

    def _recorder(self, name):
        def record(data=None):
            self.inbox.put((name, data))
        return record

    def send(self, *args, event: str = "user_message", timeout: float = 60) -> TurnEvents:
        """Emit and collect events until `final_message` or `error` arrives."""
        self.sio.emit(event, args[0] if len(args) == 1 else args)
        result = TurnEvents()
        while True:
            name, data = self.inbox.get(timeout=timeout)
            result.events.append((name, data))
            if name in ("final_message", "error"):
                return result

    def ask(self, user_token: str, message: str, application: str = "pytest", **kw) -> TurnEvents:
        return self.send({"user_token": user_token, "message": message, "application": application}, **kw)

    def close(self) -> None:
        self.sio.disconnect()


class RunClient(ChatClient):
    """A client of today's protocol: every event, `conversation_id`, `stop`."""

    EVENTS = ("run_started", "tool_start", "tool_end", "final_answer_token", "final_message",
              "error")

    def start(self, payload: dict) -> None:
        self.sio.emit("user_message", payload)

    def next_event(self, timeout: float = 30) -> tuple[str, dict]:
        return self.inbox.get(timeout=timeout)

    def until(self, name: str, timeout: float = 30, into: TurnEvents | None = None) -> TurnEvents:
        """Collect events until one named `name` arrives (or final_message/error)."""
        into = into or TurnEvents()
        while True:
            event, data = self.inbox.get(timeout=timeout)
            into.events.append((event, data))
            if event == name or event in ("final_message", "error"):
                return into


class RoundRobinProxy:
    """A TCP load balancer for tests: each new connection goes to the next backend
    that accepts it (a dead one is skipped), bytes copied both ways unchanged.

    Like a layer-4 balancer without sticky sessions, so Socket.IO clients must use
    the websocket transport. `routes` lists the backend port of each connection.
    """

    def __init__(self, ports: list[int]):
        self.ports = list(ports)
        self.routes: list[int] = []
        self._next = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._route, args=(client,), daemon=True).start()

    def _route(self, client: socket.socket) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue  # that backend is down: the next one
            upstream.settimeout(None)
            self.routes.append(port)
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            self._pipe(client, upstream)
            return
        client.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


class RedisServer:
    """Debian's `redis-server` on a free port, no persistence, for one test module."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        import time

        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)  # polling for the port, not test synchronisation

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def under_eventlet(body: str, *, tls_dir: Path | None = None,
                   fix_idle_checks: bool = True, stub_args: tuple[str, ...] = ()) -> list[str]:
    """Run `body` in a fresh interpreter as the server runs: eventlet's monkey patching
    and (unless `fix_idle_checks` is False) httpx's pools fixed by
    `keep_idle_checks_off_the_hub`. `body` has `url`, the base URL of a test LLM
    server of its own (over HTTPS with a certificate in `tls_dir`, when given; started
    with `stub_args` too),
    `model`, the project's model client for it, and `pool`, that client's connection
    pool (httpx's own), and `switches_of_one_more`, which counts what one request
    costs the hub after others left their connections idle. Returns the words
    `body` prints."""
    code = textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import os, subprocess, sys
        if {fix!r}:
            from web.serving import keep_idle_checks_off_the_hub
            keep_idle_checks_off_the_hub()  # as app.py does under eventlet
        stub = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", *{args!r}],
                                stdout=subprocess.PIPE, text=True)
        try:
            url = stub.stdout.readline().split()[1]
            os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-test")
            if {cert!r}:
                os.environ["SSL_CERT_FILE"] = {cert!r}
            from agent.models import make_chat_model
            from settings import Settings
            model = make_chat_model(Settings.from_env())
            pool = model.root_client._client._transport._pool

            def switches_of_one_more(ask, slow, count, quick):
                # `count` asks of `slow` at once (each holds its connection open meanwhile,
                # idle after), then one of `quick`: its green-thread switches, counted with
                # greenlet's trace hook, and its answer
                import greenlet
                pile = eventlet.GreenPile(count)
                for _ in range(count):
                    pile.spawn(ask, slow)
                list(pile)
                switches = []
                greenlet.settrace(lambda event, args: switches.append(event))
                try:
                    answer = ask(quick)
                finally:
                    greenlet.settrace(None)
                return len(switches), answer
        {body}
        finally:
            stub.kill()
    """).format(fix=fix_idle_checks, args=[*(["--tls", str(tls_dir)] if tls_dir else []), *stub_args],
                cert=str(Path(tls_dir) / "cert.pem") if tls_dir else None,
                body=textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def first_token_figures(url: str) -> dict:
    """{(sample, phase): value}: the sums and counts of a server's time-to-first-token
    metrics (jellychat_first_token_seconds, jellychat_turn_phase_seconds)."""
    text = requests.get(url + "/metrics", timeout=30).text
    return {(s.name, s.labels.get("phase")): s.value
            for family in text_string_to_metric_families(text)
            if family.name in ("jellychat_first_token_seconds", "jellychat_turn_phase_seconds")
            for s in family.samples if s.name.endswith(("_sum", "_count"))}

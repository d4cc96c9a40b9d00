"""The server's own limits, against a real `python app.py`: connection caps and
timeouts, request limits, a dying embedded PostgreSQL, a graceful stop, a busy port."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from storage.embedded import running_uri
from tests.fakes.openai_server import OpenAIServer
from tests.helpers import ChatClient, ServerProcess, under_eventlet

LIMITS = {"MAX_CONNECTIONS_PER_IP": "20", "HEADER_TIMEOUT": "1", "IDLE_TIMEOUT": "2",
          "MAX_CONTENT_LENGTH": "65536", "KNOWLEDGE_STARTER": "0",
          "ADMIN_API_KEY": "serving-admin-key-0123456789abcdefg"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("serving-data"), env=LIMITS).start()
    yield server
    server.stop()


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int | None) -> bool:
    if pid is None or not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _slow_client(port: int, source: str = "127.0.0.2") -> socket.socket:
    """A connection that sends half a request and then nothing (slowloris)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_slow_requests_beyond_the_per_address_cap_leave_healthz_answering(srv):
    began = time.monotonic()
    srv.get("/healthz", timeout=5)
    alone = time.monotonic() - began  # side by side: the same probe before the slow clients
    slow = [_slow_client(srv.port) for _ in range(300)]
    try:
        started = time.monotonic()
        health = srv.get("/healthz", timeout=5)
        # answered while 300 clients are held (a blocked accept loop would keep it past
        # HEADER_TIMEOUT); 1 s, or 10 x the probe alone on a loaded machine
        assert health.status_code == 200 and time.monotonic() - started < max(1.0, 10 * alone)
        answers = [_read_until_closed(s, 10) for s in slow]
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
        dropped = [a for a in answers if a == b""]  # held until HEADER_TIMEOUT, then closed
        assert len(refused) >= 280 and len(dropped) <= 20
        assert len(refused) + len(dropped) == 300
        assert b"Retry-After: 10" in refused[0] and b"too many connections" in refused[0]
        # the held ones went after ~1 s; never would cost each read its 10 s (generous bound)
        assert time.monotonic() - started < 20
    finally:
        for s in slow:
            s.close()


def test_silent_and_idle_keepalive_connections_are_dropped(srv):
    silent = socket.create_connection(("127.0.0.1", srv.port))
    started = time.monotonic()
    assert _read_until_closed(silent, 10) == b""
    assert 0.5 < time.monotonic() - started < 9  # HEADER_TIMEOUT=1; never: the read's 10 s
    silent.close()

    keepalive = socket.create_connection(("127.0.0.1", srv.port))
    keepalive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    answer = _read_until_closed(keepalive, 15)
    assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer
    assert 1.5 < time.monotonic() - started < 12  # IDLE_TIMEOUT=2 after the answer; never: 15 s
    keepalive.close()


def test_huge_deep_and_unstorable_bodies_are_refused_before_anything_is_written(srv):
    before = srv.get("/human_message_count").json()["status"]
    token = f"limits-{uuid.uuid4().hex[:8]}"
    huge = srv.post("/user_message", {"user_token": token, "message": "x" * 200_000})
    assert huge.status_code == 413 and "error" in huge.json()
    # under MAX_CONTENT_LENGTH, far past the parser's recursion limit
    deep = requests.post(srv.url + "/user_message", data="[" * 60_000,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert deep.status_code == 400 and "error" in deep.json()
    for body in ('{"user_token": "TOKEN", "message": "hi \\ud800 there"}',
                 '{"user_token": "\\udfffTOKEN", "message": "hello"}',
                 '{"user_token": "TOKEN", "message": "ok", "application": ["\\ud800"]}'):
        body = body.replace("TOKEN", token)
        refused = requests.post(srv.url + "/user_message", data=body,
                                headers={"Content-Type": "application/json"}, timeout=30)
        assert refused.status_code == 400, body
        assert "Unicode" in refused.json()["error"]
    assert requests.post(srv.url + "/history", data='{"user_token": "\\ud800x"}',
                         headers={"Content-Type": "application/json"}, timeout=30).status_code == 400
    assert srv.get("/human_message_count").json()["status"] == before
    pairs = srv.get("/messages", headers={"Authorization": "Bearer " + LIMITS["ADMIN_API_KEY"]}).json()
    assert token not in json.dumps(pairs)


def test_socket_payloads_with_surrogates_or_deep_nesting_get_an_error_event(srv):
    client = ChatClient(srv.url)
    try:
        token = f"sock-limits-{uuid.uuid4().hex[:8]}"
        result = client.ask(token, "lone \ud800 surrogate")
        assert result.names() == ["error"] and result.of("error")[0]["field"] == "message"
        nested: list = []
        for _ in range(200):
            nested = [nested]
        result = client.send({"user_token": token, "message": "hi", "application": nested})
        assert result.names() == ["error"]
        ok = client.ask(token, "What is 2+2?")
        assert ok.final and "4" in ok.final["message"]
    finally:
        client.close()


def test_killed_postgres_is_restarted_and_healthz_answers_fast_meanwhile(srv):
    pid = _postmaster_pid(srv.data_dir)
    assert _running(pid)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    statuses, slowest = [], 0.0
    while time.monotonic() - killed < 90:
        started = time.monotonic()
        status = srv.get("/healthz", timeout=5).status_code
        slowest = max(slowest, time.monotonic() - started)
        statuses.append(status)
        if status == 200 and 503 in statuses:
            break
    recovered = time.monotonic() - killed
    assert 503 in statuses and statuses[-1] == 200, statuses
    # the pool waits 0.8 s, then 503 (before, each probe took 5 s): 3 s for a loaded machine
    assert slowest < 3.0
    # 2.9 s on a quiet machine; 31 s was seen at a load average of 8 (PostgreSQL's own
    # start-up waits for the disk and a core): the bound is that it comes back at all, soon
    assert recovered < 60
    assert _running(_postmaster_pid(srv.data_dir)) and _postmaster_pid(srv.data_dir) != pid
    user = f"after-{uuid.uuid4().hex[:8]}"
    answer = srv.post("/user_message", {"user_token": user, "message": "What is 3*3?"})
    assert answer.status_code == 200 and "9" in answer.json()["response"]
    print(f"embedded PostgreSQL back after {recovered:.1f} s; slowest /healthz {slowest * 1000:.0f} ms")


def test_sigterm_lets_the_running_turn_finish_then_stops_postgres(tmp_path):
    llm = OpenAIServer(delay=2.0).start()
    srv = ServerProcess(tmp_path, env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-shutdown-key",
                                       "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0",
                                       "KNOWLEDGE_STARTER": "0", "SHUTDOWN_GRACE": "15"}).start()
    client = None
    try:
        pg = _postmaster_pid(tmp_path)
        # where another process finds the server (bench/relay.py): read, not attached to
        assert running_uri(tmp_path / "none") is None
        with psycopg.connect(running_uri(tmp_path), autocommit=True) as conn:
            assert conn.execute("select count(*) from public.runs").fetchone()[0] == 0
        client = ChatClient(srv.url)
        outcome = {}
        asking = threading.Thread(target=lambda: outcome.update(r=client.ask("term-user", "hello there")))
        asking.start()
        deadline = time.monotonic() + 20
        while not llm.requests and time.monotonic() < deadline:
            time.sleep(0.02)  # poll: the turn has reached the model
        assert llm.requests
        srv.proc.send_signal(signal.SIGTERM)
        asking.join(30)
        result = outcome.get("r")
        assert result is not None and result.final is not None
        assert "Hello from the scripted model" in result.final["message"]
        assert srv.proc.wait(30) == 0
        assert not _running(pg)  # the test read its URI and connected: still stopped
        assert json.loads((tmp_path / "postgres" / ".handle_pids.json").read_text()) == []
        log = srv.log()
        assert "SIGTERM" in log and "stopped" in log and "Traceback" not in log
        assert "sk-test-shutdown-key" not in log
    finally:
        if client:
            client.sio.disconnect()
        srv.stop(signal.SIGKILL)
        llm.stop()


def test_killed_server_does_not_stop_later_ones_stopping_postgres_and_port_is_checked(tmp_path):
    env = {"KNOWLEDGE_STARTER": "0", "LOG_FORMAT": "json"}
    first = ServerProcess(tmp_path, env=env).start()
    first.proc.kill()  # no cleanup: its pid stays in the handle list, postgres keeps running
    first.proc.wait(10)
    pg = _postmaster_pid(tmp_path)
    assert _running(pg)
    second = ServerProcess(tmp_path, env=env, port=first.port).start()
    try:
        busy = ServerProcess(tmp_path / "other", env=env, port=second.port)
        with pytest.raises(RuntimeError, match="already in use"):
            busy.start(timeout=60)
        assert busy.proc.returncode == 1 and "READY" not in busy.log()
        assert second.get("/healthz").status_code == 200  # still the one serving
        assert not (tmp_path / "other" / "postgres").exists()
    finally:
        assert second.stop(signal.SIGTERM) == 0
    assert not _running(pg)
    lines = [line for line in second.log().splitlines() if line.strip() and not line.startswith("READY")]
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message", "request_id", "run_id"} <= set(records[0])
    assert any("forgot 1 embedded PostgreSQL handle" in r["message"] for r in records)


def test_accepted_sockets_have_nagle_off():
    """TCP_NODELAY set by the protocol's setup (in process: the option is not visible from outside)."""
    from web.serving import GuardedProtocol

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        protocol = GuardedProtocol.__new__(GuardedProtocol)
        protocol.request = accepted
        protocol.setup()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for s in (client, accepted, listener):
            s.close()


@pytest.mark.parametrize("fixed", [False, True])
def test_httpx_pools_check_idle_connections_without_the_hub(fixed):
    """Under eventlet, one request through an httpx client (supabase-py's kind, httpcore
    v1) whose pool keeps 20 idle connections: without `keep_idle_checks_off_the_hub`
    it goes round the hub once per idle connection at its start and at its end (a
    green zero-timeout select each), with it a couple of times. Counted with
    greenlet's trace hook against the test LLM server, which keeps connections alive
    as PostgREST does; the pool is httpx's own, read through private attributes."""
    idle, switches = map(int, under_eventlet("""
        import httpx
        client = httpx.Client()
        def ask(text):
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            reply = client.post(url + "/chat/completions", json=body).json()
            return reply["choices"][0]["message"]["content"]
        switches, _ = switches_of_one_more(ask, "[silent 0.5] hi", 20, "hi")
        print(len(client._transport._pool.connections), switches)
    """, fix_idle_checks=fixed))
    assert idle >= 10  # about 20; fewer if the machine is slow to start them
    if fixed:
        assert switches < 10
    else:
        assert switches >= 2 * idle  # the defect this fixes: still there in httpcore

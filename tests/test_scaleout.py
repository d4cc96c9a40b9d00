"""Several server processes behind one load balancer: Socket.IO events shared
through a real Redis (Debian's redis-server), state in one real PostgreSQL,
clients spread by a round-robin TCP proxy (tests/helpers.py), over websockets.

Nothing is faked but the model (tests/fakes/openai_server.py, the real
protocol over HTTP, streaming slowly so that runs can be stopped or cut short).
"""

from __future__ import annotations

import shutil
import uuid

import pytest
import requests

from tests.helpers import RedisServer, RoundRobinProxy, RunClient, ServerProcess

SLOW = "[long 80] [slow 0.1] tell me a long story"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (apt-get install redis-server; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path, pg_dsn, redis_server, llm):
    """Two processes on one database and one Redis, behind the proxy."""
    env = {"DATABASE_URL": pg_dsn, "SOCKETIO_MESSAGE_QUEUE": redis_server.url,
           "OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test", "LLM_MAX_RETRIES": "0",
           "RUN_SWEEP_INTERVAL": "0.5", "STOP_ON_DISCONNECT": "0", "LOG_LEVEL": "WARNING"}
    servers = [ServerProcess(tmp_path / f"p{i}", env=env) for i in (1, 2)]
    for server in servers:
        server.start()
    proxy = RoundRobinProxy([s.port for s in servers])
    yield proxy, servers
    proxy.close()
    for server in servers:
        server.stop()


def connect_to_each(proxy, count=2) -> list[RunClient]:
    """Clients through the proxy, one on each process (round robin)."""
    clients = [RunClient(proxy.url) for _ in range(count)]
    assert len(set(proxy.routes[-count:])) == count, proxy.routes
    return clients


def test_a_client_of_one_process_stops_a_run_of_the_other(cluster):
    proxy, servers = cluster
    user = f"scale-{uuid.uuid4().hex[:8]}"
    here, there = connect_to_each(proxy)
    try:
        there.start({"user_token": user, "message": SLOW})
        started = there.until("run_started").of("run_started")[0]
        there.until("final_answer_token")
        here.sio.emit("stop", {"run_id": started["run_id"], "user_token": user})
        # the serving process stops its run (the flag went through the database) ...
        served = there.until("final_message")
        assert served.final["status"] == "stopped"
        assert len(served.tokens) < len(" ".join(f"word{i}" for i in range(80)))
        # ... and its final_message reached the stopper, a client of the other
        # process, through Redis
        name, seen = here.next_event(timeout=30)
        assert name == "final_message"
        assert seen["run_id"] == started["run_id"] and seen["status"] == "stopped"
        assert seen["message"] == served.final["message"]
    finally:
        here.close()
        there.close()


def test_stopping_an_ended_run_says_so(cluster):
    proxy, _ = cluster
    user = f"scale-{uuid.uuid4().hex[:8]}"
    here, there = connect_to_each(proxy)
    try:
        there.start({"user_token": user, "message": "hello"})
        run_id = there.until("final_message").final["run_id"]
        here.sio.emit("stop", {"run_id": run_id, "user_token": user})
        name, data = here.next_event(timeout=30)
        assert name == "error" and data["status"] == "succeeded" and data["run_id"] == run_id
        here.sio.emit("stop", {"run_id": run_id, "user_token": "someone-else"})
        name, data = here.next_event(timeout=30)
        assert name == "error" and data["field"] == "run_id"
    finally:
        here.close()
        there.close()


def test_clients_of_a_killed_process_reconnect_to_the_other_and_lose_nothing(cluster):
    proxy, servers = cluster
    user = f"scale-{uuid.uuid4().hex[:8]}"
    by_port = {s.port: s for s in servers}
    survivor_client, victim_client = connect_to_each(proxy)
    victim = by_port[proxy.routes[-1]]
    survivor = by_port[proxy.routes[-2]]
    try:
        first = victim_client.ask(user, "hello")
        assert first.final["status"] == "succeeded"
        conversation = first.final["conversation_id"]
        victim_client.start({"user_token": user, "message": SLOW,
                             "conversation_id": conversation})
        victim_client.until("final_answer_token")
        victim.kill()  # mid-answer
        # the client comes back through the balancer, which now has one process left
        again = RunClient(proxy.url)
        assert proxy.routes[-1] == survivor.port
        follow = again.send({"user_token": user, "message": "what did I ask?",
                             "conversation_id": conversation})
        again.close()
        # queued behind the dead run until the survivor closed it, then answered
        assert follow.final["status"] == "succeeded"
        assert follow.final["message"] == f"You asked: {SLOW}"
    finally:
        survivor_client.close()
        victim_client.close()
    history = requests.get(f"{proxy.url}/conversations/{conversation}",
                           headers={"X-User-Token": user}, timeout=30).json()
    rows = [(m["type"], m["content"][:30], m["run_status"]) for m in history["messages"]]
    assert [r[0] for r in rows] == ["jelly", "human", "jelly", "human", "jelly", "human", "jelly"]
    assert rows[3][1] == SLOW[:30] and rows[3][2] == "failed"  # the question cut short
    assert "sorry" in history["messages"][4]["content"].lower()  # answered with the apology
    assert rows[5][1] == "what did I ask?" and rows[6][2] == "succeeded"

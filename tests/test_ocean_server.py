"""Ocean tools through the real server process (eventlet, offline model) and a local Ocean server."""

import queue
import threading
import time
import uuid

import pytest

from tests.fakes.ocean_server import ADDRESS, TIP
from tests.helpers import ChatClient, RunClient, ServerProcess

OCEAN_TIMEOUT = 2


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, ocean):
    # no starter knowledge base: these tests only need the Ocean tools, and it starts faster
    srv = ServerProcess(tmp_path_factory.mktemp("ocean-app"),
                        env={"OCEAN_URL": ocean.url, "OCEAN_TIMEOUT": str(OCEAN_TIMEOUT),
                             "KNOWLEDGE_STARTER": "false", "EMBEDDINGS": "none"})
    srv.start()
    yield srv
    srv.stop()


def _user() -> str:
    return f"ocean-{uuid.uuid4().hex[:8]}"


def _ask(srv, message: str) -> tuple[str, float]:
    started = time.monotonic()
    response = srv.post("/user_message", {"user_token": _user(), "message": message})
    assert response.status_code == 200, response.text
    return response.json()["response"], time.monotonic() - started


def test_rest_utxo_balance_is_the_number_ocean_holds(app_server, fake):
    fake.data.balances[ADDRESS] = "4321.87654321"
    answer, _ = _ask(app_server, f"What is the UTXO balance of {ADDRESS}?")
    assert "4321.87654321 DFI" in answer
    assert any(r.startswith(f"/v0/mainnet/address/{ADDRESS}/balance") for r in fake.requests)


def test_rest_current_block_height(app_server, fake):
    fake.data.tip = TIP + 11
    answer, _ = _ask(app_server, "What is the current block height?")
    assert f"Current block height: {TIP + 11}" in answer


def test_rest_bad_address_is_explained_without_asking_ocean(app_server, fake):
    answer, _ = _ask(app_server, f"What is the balance of {ADDRESS[:-1]}x?")
    assert "doesn't look like a DeFiChain address" in answer
    assert fake.requests == []


def test_rest_ocean_500_is_explained(app_server, fake):
    fake.mode = "error"
    answer, _ = _ask(app_server, "What is the DFI price?")
    assert "Ocean has a problem right now (HTTP 500)" in answer and "try again" in answer


def test_socketio_turn_shows_tool_start_and_the_value(app_server, fake):
    client = ChatClient(app_server.url)
    try:
        result = client.ask(_user(), "What is the BTC price right now?")
    finally:
        client.close()
    assert result.names()[0] == "tool_start"
    assert result.of("tool_start")[0]["tool_name"] == \
        "Let me gather some information out of the Ocean for you: Get Price 🌊"
    assert result.names()[-1] == "final_message"
    assert "43210.50000000 USD" in result.final["message"]
    assert result.tokens == result.final["message"]


def test_hanging_ocean_is_cut_off_and_other_clients_are_served_meanwhile(app_server, fake):
    fake.mode = "hang"
    waiting, other = ChatClient(app_server.url), ChatClient(app_server.url)
    finished: queue.Queue = queue.Queue()
    try:
        started = time.monotonic()

        def ask_ocean():
            result = waiting.ask(_user(), f"balance of {ADDRESS}", timeout=OCEAN_TIMEOUT + 20)
            finished.put((time.monotonic(), result))

        threading.Thread(target=ask_ocean, daemon=True).start()
        assert fake.request_seen.wait(10), "the turn reached the (hanging) Ocean"

        # meanwhile: another user's turn and a health check complete at once
        calc_started = time.monotonic()
        calc = other.ask(_user(), "What is 20000 divided by 33.3?", timeout=10)
        calc_seconds = time.monotonic() - calc_started
        health_started = time.monotonic()
        assert app_server.get("/healthz").status_code == 200
        health_seconds = time.monotonic() - health_started
        assert finished.empty(), "the Ocean turn was still waiting while the others were served"
        assert "600.6" in calc.final["message"]
        # served while the Ocean turn still waits (checked above); generous for a loaded machine
        assert calc_seconds < 5 and health_seconds < 3

        done_at, result = finished.get(timeout=OCEAN_TIMEOUT + 20)
        assert result.names()[0] == "tool_start"
        assert "Get Utxo Balance" in result.of("tool_start")[0]["tool_name"]
        assert f"not answering right now (no reply within {OCEAN_TIMEOUT} s)" in result.final["message"]
        assert OCEAN_TIMEOUT - 0.5 <= done_at - started <= OCEAN_TIMEOUT + 5
    finally:
        waiting.close()
        other.close()


def test_unreachable_ocean_answers_within_the_timeout(server):
    """The session server's OCEAN_URL is a port where nothing listens."""
    for question in (f"What is the balance of {ADDRESS}?", "What is the current block height?"):
        answer, seconds = _ask(server, question)
        assert "Ocean is not reachable right now" in answer and "try again" in answer
        assert seconds < 10 + 5  # the default OCEAN_TIMEOUT + 5 s


def test_stop_interrupts_a_tool_waiting_on_ocean(app_server, fake):
    """The tool's green thread is attached to the run's cancel handle (agent/steps.py,
    ToolSteps): a stop ends the run at once, not when the Ocean call times out."""
    fake.mode = "hang"
    client = RunClient(app_server.url)
    try:
        client.start({"user_token": _user(), "message": f"balance of {ADDRESS}"})
        started = client.until("run_started").of("run_started")[0]
        seen = client.until("tool_start")
        assert fake.request_seen.wait(10), "the tool reached the (hanging) Ocean"
        stop_at = time.monotonic()
        client.sio.emit("stop", {"run_id": started["run_id"]})
        final = client.until("final_message", into=seen).final
        stopped_in = time.monotonic() - stop_at
    finally:
        client.close()
    assert final["status"] == "stopped"
    assert stopped_in < OCEAN_TIMEOUT - 0.5, f"the stop waited for the Ocean timeout ({stopped_in:.2f} s)"
    assert "not answering right now" not in final["message"]

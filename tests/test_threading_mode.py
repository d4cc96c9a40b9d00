"""SOCKETIO_ASYNC_MODE=threading: the server without eventlet serves a turn, and a
stop or the deadline ends a run as promptly as under eventlet, closing the model's
stream (the real openai client against the scripted LLM server, which records how
many chunks were still unsent when the client went away)."""

import time
import uuid

import pytest

from tests.helpers import RunClient, ServerProcess, scripted_env

TIMEOUT = 2  # TURN_TIMEOUT of this server, seconds


def token() -> str:
    return f"threads-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    server = ServerProcess(
        tmp_path_factory.mktemp("threading-data"),
        env=scripted_env(llm, SOCKETIO_ASYNC_MODE="threading", TURN_TIMEOUT=str(TIMEOUT)),
    ).start()
    yield server
    server.stop()


@pytest.fixture
def client(srv):
    c = RunClient(srv.url)
    yield c
    c.close()


def test_a_turn_is_served(srv, client):
    client.start({"user_token": token(), "message": "hi there"})
    result = client.until("final_message")
    assert result.final["status"] == "succeeded"
    assert result.final["message"].startswith("Hello from the scripted model!")
    assert result.tokens == result.final["message"]
    assert srv.get("/healthz").status_code == 200


def test_stop_ends_the_run_and_closes_the_model_stream(llm, client):
    client.start({"user_token": token(), "message": "[long 60] [slow 0.3] tell me a story"})
    started = client.until("run_started").of("run_started")[0]
    seen = client.until("final_answer_token")
    closed_before = len(llm.closed)
    stop_at = time.monotonic()
    client.sio.emit("stop", {"run_id": started["run_id"]})
    rest = client.until("final_message", into=seen, timeout=15)
    assert rest.final["status"] == "stopped"
    assert time.monotonic() - stop_at < 1.0
    assert rest.tokens == rest.final["message"] and rest.final["message"].startswith("word0")
    assert llm.wait_closed(closed_before + 1, timeout=5)
    record = llm.closed[-1]
    assert record["at"] - stop_at < 1.0 and record["unsent_chunks"] > 50


def test_the_deadline_ends_a_slow_model(llm, client):
    closed_before = len(llm.closed)
    client.start({"user_token": token(), "message": "[long 100] [slow 0.1] go on"})
    began = time.monotonic()
    result = client.until("final_message", timeout=20)
    assert result.final["status"] == "timed_out"
    assert time.monotonic() - began < TIMEOUT + 1.0
    assert result.final["message"].startswith("word0") and result.tokens == result.final["message"]
    assert llm.wait_closed(closed_before + 1, timeout=5)
    assert llm.closed[-1]["unsent_chunks"] > 50


def test_the_deadline_ends_a_silent_model(client):
    client.start({"user_token": token(), "message": "[silent 30] are you there"})
    began = time.monotonic()
    result = client.until("final_message", timeout=20)
    assert result.final["status"] == "timed_out"
    assert time.monotonic() - began < TIMEOUT + 1.0


def test_a_stop_ends_a_tool_waiting_on_ocean_without_eventlet():
    """A tool step blocked on an Ocean call that does not answer: the run's cancel,
    from another thread, ends its wait at once (the run then ends as stopped)."""
    import threading

    from agent.cancel import CancelHandle
    from tools.ocean.client import OceanConfig, OceanUnavailable, run

    handle, key, never = CancelHandle(), object(), threading.Event()
    handle.attach(key)
    try:
        threading.Timer(0.2, handle.cancel, args=("stopped",)).start()
        began = time.monotonic()
        with pytest.raises(OceanUnavailable):
            run(OceanConfig(url="http://127.0.0.1:9", timeout=30), lambda client: never.wait(60))
        assert time.monotonic() - began < 2.0
    finally:
        handle.detach(key)
        never.set()

"""Persistence across restarts, and the layering rules."""

import json
import subprocess
import sys
import uuid

from tests.helpers import ROOT, ChatClient, ServerProcess


def test_history_survives_restart(tmp_path):
    srv = ServerProcess(tmp_path).start()
    user = f"restart-{uuid.uuid4().hex[:8]}"
    try:
        answer = srv.post("/user_message", {"user_token": user, "message": "What is 20000 divided by 33.3?"})
        assert "600.6" in answer.json()["response"]
        srv.restart()
        history = srv.post("/history", {"user_token": user}).json()
        assert [m["type"] for m in history] == ["jelly", "human", "tool", "jelly"]
        assert "600.6" in history[-1]["content"]
        follow = srv.post("/user_message", {"user_token": user, "message": "what did I just ask?"})
        assert "20000 divided by 33.3" in follow.json()["response"]
    finally:
        srv.stop()


def test_lower_layers_do_not_import_flask():
    code = (
        "import sys, json\n"
        "import agent.turn, agent.runner, agent.offline, agent.models, tools, storage, storage.postgres\n"
        "import compat, interrupts, provider_http\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'flask_socketio', 'eventlet', 'web'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_create_app_starts_no_database(tmp_path):
    code = (
        "from app import create_app\n"
        f"app = create_app({{'data_dir': {str(tmp_path)!r}}})\n"
        "print(sorted(app.extensions))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not (tmp_path / "postgres").exists()


def test_threading_async_mode_is_a_configuration_change(tmp_path):
    srv = ServerProcess(tmp_path, env={"SOCKETIO_ASYNC_MODE": "threading", "KNOWLEDGE_STARTER": "0"}).start()
    client = None
    try:
        assert "async mode: threading" in srv.log()
        client = ChatClient(srv.url)
        result = client.ask(f"thr-{uuid.uuid4().hex[:8]}", "What is 20000 divided by 33.3?")
        assert result.names()[0] == "tool_start"
        assert "600.6" in result.final["message"] and result.tokens == result.final["message"]
    finally:
        if client:
            client.close()
        srv.stop()

"""Settings validation and log redaction, in process (no server needed), plus the
one-line startup error of a real `python app.py` with a bad setting."""

import io
import json
import logging
import subprocess
import sys

import pytest

from logs import RedactingFilter, bind_run_id, configure_logging
from settings import Settings, SettingsError, unknown_variables
from tests.helpers import ROOT, ServerProcess


@pytest.mark.parametrize("env, expected", [
    ({"PORT": "abc"}, "PORT='abc': Input should be a valid integer"),
    ({"PORT": "70000"}, "PORT='70000': Input should be less than or equal to 65535"),
    ({"SOCKETIO_ASYNC_MODE": "evenlet"},
     "SOCKETIO_ASYNC_MODE='evenlet': Input should be 'eventlet' or 'threading'"),
    ({"KNOWLEDGE_STARTER": "maybe"}, "KNOWLEDGE_STARTER='maybe': Input should be a valid boolean"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml': Input should be 'text' or 'json'"),
    ({"MAX_CONNECTIONS_PER_IP": "-1"}, "MAX_CONNECTIONS_PER_IP='-1'"),
])
def test_bad_values_name_the_variable_and_what_it_accepts(env, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_values_are_parsed_and_normalised():
    s = Settings.from_env({"PORT": "9000", "LOG_LEVEL": "debug", "KNOWLEDGE_STARTER": "0",
                           "HOST": "", "SOCKETIO_ASYNC_MODE": "Threading", "EMBEDDINGS": "NONE"})
    assert (s.port, s.log_level, s.knowledge_starter, s.host) == (9000, "DEBUG", False, "127.0.0.1")
    assert (s.socketio_async_mode, s.embeddings) == ("threading", "none")
    assert Settings.from_env({}, port=1234).port == 1234


def test_constructor_ignores_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "1234")
    assert Settings().port == 8080
    assert Settings.from_env().port == 1234


def test_secrets_are_not_echoed_in_errors():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OPENAI_API_KEY": "sk-supersecretvalue123", "PORT": "x"}, openai_api_key=5)
    assert "sk-supersecret" not in str(caught.value)
    assert "sk-supersecret" not in repr(Settings.from_env({"OPENAI_API_KEY": "sk-supersecretvalue123"}))


def test_misspelt_variables_are_warned_about_with_a_suggestion():
    warnings = unknown_variables({"OPENAI_MODLE": "x", "TURN_TIMOUT": "3", "JELLY_FOO": "1",
                                  "PATH": "/bin", "OPENAI_ORG_ID": "org", "PORT": "1"})
    assert warnings == [
        "unknown setting JELLY_FOO is ignored",
        "unknown setting OPENAI_MODLE is ignored; did you mean OPENAI_MODEL?",
        "unknown setting TURN_TIMOUT is ignored; did you mean TURN_TIMEOUT?",
    ]


def test_bad_setting_stops_the_server_with_one_line(tmp_path):
    env = ServerProcess(tmp_path).env()
    env.update({"PORT": "abc", "SOCKETIO_ASYNC_MODE": "evenlet", "MAX_CONECTIONS": "5"})
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 2
    assert "Traceback" not in text and "READY" not in text
    assert "invalid setting PORT='abc'" in text and "SOCKETIO_ASYNC_MODE='evenlet'" in text
    assert not (tmp_path / "postgres").exists()


def _capture(log_format: str, secrets=()):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler._jellychat = True  # configure_logging formats its own handlers
    root = logging.getLogger()
    root.addHandler(handler)
    configure_logging("INFO", log_format, secrets=secrets)
    return stream, handler


def test_redaction_on_every_handler():
    stream, handler = _capture("text", secrets=["my-admin-key-123456"])
    try:
        log = logging.getLogger("jellychat.test")
        log.error("provider said: Incorrect API key provided: sk-proj-abcdefghijklmnop1234")
        log.warning("connecting to %s", "postgresql://jelly:hunter2secret@db.example:5432/app")
        log.warning("dsn host=db password=hunter2secret user=x, header Authorization: Bearer abcdefghijkl123")
        log.info("admin key %s", "my-admin-key-123456")
        try:
            raise RuntimeError("boom with sk-abcdefghijklmnop9999 inside")
        except RuntimeError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    for secret in ("sk-proj-abcdefghijklmnop1234", "hunter2secret", "abcdefghijkl123",
                   "my-admin-key-123456", "sk-abcdefghijklmnop9999"):
        assert secret not in text
    assert "postgresql://jelly:***@db.example" in text and "Traceback" in text


def test_json_lines_carry_run_id():
    stream, handler = _capture("json")
    try:
        with bind_run_id("run-42"):
            logging.getLogger("jellychat.test").warning("token sk-abcdefghijklmnop5555 seen")
        logging.getLogger("httpx").info("HTTP Request: POST http://x 200")  # silenced
        logging.getLogger("httpx2").info("HTTP Request: POST http://x 200")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["run_id"] == "run-42" and lines[0]["level"] == "WARNING"
    assert "sk-abcdefghijklmnop5555" not in lines[0]["message"]


def test_filter_keeps_records_whose_format_is_broken():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactingFilter().filter(record) is True
    assert "many" in record.getMessage()

"""A newcomer's first run: `/kb/search` on a fresh install falls back to the starter
base and says so, a base created by `flask ingest` (another process) is searchable
at once, the embedder is the one chosen, the CLI is quiet, `flask run` refuses,
CORS exposes the paging header, /healthz reports the version.

Knowledge documents come from tests/docs/kb (written for these tests), so this
runs in a public clone without ../shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from knowledge.embeddings import EmbedderError, LocalEmbedder, make_embedder
from settings import Settings
from tests.helpers import ROOT, TEST_DOCS, ServerProcess, free_port
from version import __version__

FLASK = Path(sys.executable).parent / "flask"  # the virtualenv's console script, as in the README
BASE_URL = "https://docs.example.org/kb/"


def flask_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLASK), "--app", "app", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh install (embedded database, starter kb only, EMBEDDINGS unset)."""
    srv = ServerProcess(tmp_path_factory.mktemp("fresh")).start()
    yield srv
    srv.stop()


def search(srv, q: str, **params) -> dict:
    response = srv.get("/kb/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_kb_search_falls_back_to_starter_then_sees_an_ingested_base_at_once(fresh):
    before = search(fresh, "masternode collateral", k=2)
    assert (before["kb"], before["requested"], before["fallback"]) == ("starter", "wiki", True)
    assert before["results"][0]["source"] == "masternodes.md"
    python = search(fresh, "pip install defichain", kb="defichainpython", k=1)
    assert (python["kb"], python["requested"], python["fallback"]) == ("starter", "defichainpython", True)

    # `flask ingest` is another process attached to the server's embedded PostgreSQL
    env = {**fresh.env(), "EMBEDDINGS": "none"}
    done = flask_cli("ingest", str(TEST_DOCS), "--kb", "wiki", "--base-url", BASE_URL, "--no-progress",
                     env=env)
    assert done.returncode == 0, done.stderr
    assert "kb 'wiki': 4 added" in done.stdout
    assert "Warning" not in done.stdout + done.stderr, done.stderr

    after = search(fresh, "How long does a vault auction last?", k=3)  # no wait: the very next request
    assert (after["kb"], after["requested"], after["fallback"]) == ("wiki", "wiki", False)
    assert after["results"][0]["url"] == BASE_URL + "auctions#how-long-an-auction-lasts"

    answer = fresh.post("/user_message", {"user_token": "first-run", "message":
                                          "How long does a vault auction last?"}).json()
    assert "720 blocks" in answer["response"]
    assert answer["sources"][0]["url"] == BASE_URL + "auctions"


def test_startup_announces_the_chosen_embedder_once(fresh):
    lines = [line for line in fresh.log().splitlines() if " embedder: " in line]
    assert len(lines) == 1, lines
    assert "embedder: none (full-text search only) (EMBEDDINGS=auto without OPENAI_API_KEY" in lines[0]
    assert "local embedding model" not in fresh.log()  # never loaded because torch is installed


def test_auto_never_picks_the_local_model():
    assert make_embedder(Settings(embeddings="auto")) is None
    assert make_embedder(Settings(embeddings="none")) is None
    if LocalEmbedder.available():  # CI installs it (make install-local)
        assert isinstance(make_embedder(Settings(embeddings="local")), LocalEmbedder)
    else:
        with pytest.raises(EmbedderError, match="make install-local"):
            make_embedder(Settings(embeddings="local"))


def test_healthz_reports_the_version(fresh):
    body = fresh.get("/healthz").json()
    assert body == {"status": "ok", "version": __version__}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "version.__version__"
    assert f"## [{__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_cors_exposes_the_paging_header(fresh):
    response = fresh.get("/messages", headers={"Origin": "https://admin.example.org"})
    exposed = response.headers.get("Access-Control-Expose-Headers", "")
    assert "X-Next-Before" in [h.strip() for h in exposed.split(",")]


def test_cli_commands_print_no_warnings():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUPABASE_", "DATABASE_URL"))}
    done = flask_cli("db", "sql", env=env)
    assert done.returncode == 0 and "create table" in done.stdout.lower()
    assert done.stderr == ""


def test_flask_run_refuses_with_one_line():
    env = {**os.environ, "PORT": str(free_port())}
    done = flask_cli("run", "--port", env["PORT"], env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "make run" in done.stderr and "python app.py" in done.stderr

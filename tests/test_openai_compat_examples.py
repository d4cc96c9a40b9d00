"""examples/openai-compat against the real server: the `openai` npm package and the
`ai` package's own transport and stream reader, in Node, installed from the lock file
(`make install-examples`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import ROOT
from tests.test_examples import MASTERNODE_PAGE, QUESTION

EXAMPLE = ROOT / "examples" / "openai-compat"
ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdefghij"}  # the session server's (conftest)


def node_with_packages() -> str:
    node = shutil.which("node")
    if node and all((EXAMPLE / "node_modules" / name).is_dir() for name in ("openai", "ai")):
        return node
    reason = "needs node and `make install-examples` (openai and ai from examples/openai-compat)"
    if os.environ.get("CI"):
        pytest.fail(reason + ": .ci/run installs them")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def key(server) -> str:
    made = server.post("/api-keys", {"name": "node examples"}, headers=ADMIN)
    assert made.status_code == 201
    return made.json()["key"]


def run(node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([node, *args], cwd=EXAMPLE, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_openai_npm_package_streams_an_answer_with_tool_activity(server, key):
    node = node_with_packages()
    done = run(node, "openai.mjs", server.url, key, QUESTION)
    assert done.returncode == 0, done.stderr
    reasoning, _, answer = done.stdout.partition("\n\n")
    assert reasoning.startswith("Let me look that up") and "defichain_wiki_knowledge:" in done.stdout
    assert "20,000 DFI" in answer and MASTERNODE_PAGE in answer
    assert done.stdout.rstrip().splitlines()[-1].startswith('usage: {"prompt_tokens"')
    wrong = run(node, "openai.mjs", server.url, "jelly-wrong-key", QUESTION)
    assert wrong.returncode == 1 and wrong.stderr.startswith("AuthenticationError: 401")


def test_ai_sdk_reader_builds_the_message_with_tools_and_sources(server, key):
    node = node_with_packages()
    done = run(node, "ai-sdk.mjs", server.url, key, "What is 20000 / 33.3?")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ('tool calculator {"expression":"20000 / 33.3"} [output-available]: '
                        "20000 / 33.3 = 600.6006006")
    assert "600.6" in lines[1]
    cited = run(node, "ai-sdk.mjs", server.url, key, QUESTION)
    assert cited.returncode == 0, cited.stderr
    assert "20,000 DFI" in cited.stdout
    assert f"source: Masternodes {MASTERNODE_PAGE}" in cited.stdout.splitlines()

"""The client examples in examples/ (the README shows them) against the real server:
the Python one (python-socketio) and the JavaScript one (socket.io-client in Node)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

QUESTION = "How many DFI do I need to run a masternode?"
MASTERNODE_PAGE = "https://www.defichainwiki.com/docs/auto/Masternode"
JS = ROOT / "examples" / "js"


def check_answer(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr
    answer, _, sources = done.stdout.partition("\nsource: ")
    assert "20,000 DFI" in answer
    assert sources.startswith(f"Masternodes {MASTERNODE_PAGE}")


def node_with_client() -> str:
    """`node`, with the example's socket.io-client installed; skip without (fail in CI)."""
    node = shutil.which("node")
    if node and (JS / "node_modules" / "socket.io-client").is_dir():
        return node
    reason = "needs node and `make install-examples` (socket.io-client from examples/js)"
    if os.environ.get("CI"):
        pytest.fail(reason + ": .ci/run installs them")
    pytest.skip(reason)


def test_python_example(server):
    done = subprocess.run([sys.executable, "examples/python/ask.py", server.url, QUESTION], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    check_answer(done)


def test_javascript_example_in_node(server):
    node = node_with_client()
    done = subprocess.run([node, "ask.mjs", server.url, QUESTION], cwd=JS, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    check_answer(done)


def test_javascript_example_reports_server_errors(server):
    """An `error` event (here: an empty question) rejects the promise with the server's words."""
    node = node_with_client()
    script = ("import { ask } from './jelly.mjs';"
              f"ask('{server.url}', 'node-example', '   ').then(() => process.exit(3),"
              " (err) => { console.error(err.message); process.exit(1); });")
    done = subprocess.run([node, "--input-type=module", "-e", script], cwd=JS, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "message" in done.stderr.lower()

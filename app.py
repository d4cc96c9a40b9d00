"""JellyChat backend: `python app.py` serves; `flask --app app ...` runs CLI commands.

With the (default) eventlet async mode, monkey-patching happens here, first,
before any other import, and only when this file is the entry point.
"""

import os

if __name__ == "__main__":
    from dotenv import load_dotenv

    load_dotenv()
    _MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
    if _MODE == "eventlet":
        import logging
        import warnings

        with warnings.catch_warnings():  # eventlet is in maintenance mode: a known, accepted choice
            warnings.simplefilter("ignore")
            import eventlet

        # eventlet 0.41 logs a harmless traceback to the last-resort handler while it
        # upgrades a GreenSSLContext's `super` object; keep startup output clean
        _last_resort, logging.lastResort = logging.lastResort, logging.NullHandler()
        eventlet.monkey_patch()
        logging.lastResort = _last_resort
    if _MODE == "eventlet":
        # before psycopg is imported: its C implementation (pure Python without the
        # psycopg-binary wheel), waiting through the green select() so queries yield
        from storage.green_psycopg import use_green_psycopg

        use_green_psycopg()

import gc  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

from dotenv import load_dotenv  # noqa: E402
from flask import Flask, g, redirect, request  # noqa: E402
from flask_cors import CORS  # noqa: E402
from flask_openapi3 import Info, OpenAPI  # noqa: E402

import compat  # noqa: E402
from knowledge import cli as knowledge_cli  # noqa: E402
from logs import REQUEST_ID, configure_logging  # noqa: E402
from metrics import watch_gc, watch_hub_lag  # noqa: E402
from settings import SECRET_FIELDS, Settings, SettingsError, unknown_variables  # noqa: E402
from storage import StoreError  # noqa: E402
from version import __version__  # noqa: E402
from web import (  # noqa: E402
    ai_sdk,
    api_keys,
    assistants,
    db_cli,
    kb,
    limits,
    models,
    openai_compat,
    page,
    rest,
    sockets,
)
from web import files as files_web  # noqa: E402
from web.services import get_chat  # noqa: E402
from web.serving import Drain  # noqa: E402

log = logging.getLogger("jellychat")


def _refuse_flask_run(settings) -> None:
    """`flask run` serves with Werkzeug, where eventlet websockets cannot work:
    stop at once with one line instead of serving REST with broken websockets."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name == "run" and settings.socketio_async_mode != "threading":
        raise click.ClickException(
            f"`flask run` cannot serve Socket.IO with {settings.socketio_async_mode}: start the server with "
            "`make run` or `.venv/bin/python app.py`"
        )


def create_app(test_config: dict | None = None, store=None) -> Flask:  # an OpenAPI app
    """Build the app. `test_config` overrides settings (lower-case field names)."""
    load_dotenv()
    settings = Settings.from_env(**(test_config or {}))
    _refuse_flask_run(settings)
    configure_logging(settings.log_level, settings.log_format,
                      secrets=[getattr(settings, name) for name in SECRET_FIELDS])
    for warning in unknown_variables():
        log.warning("%s", warning)
    app = OpenAPI(
        __name__,
        info=Info(title="JellyChat API", version=__version__,
                  description="Jelly, the DeFiChain assistant. Socket.IO events: see the README. "
                              "A user token (`X-User-Token` or `user_token`) is a bearer "
                              "secret: whoever holds it reads and writes that user's chats. "
                              "Get one from `POST /users`; with REQUIRE_SERVER_TOKENS=1 only "
                              "such tokens are accepted (401 otherwise)."),
        security_schemes={"admin": {"type": "http", "scheme": "bearer",
                                    "description": "ADMIN_API_KEY"},
                          "api_key": {"type": "http", "scheme": "bearer",
                                      "description": "a key from POST /api-keys"}},
        doc_prefix="/docs",
        validation_error_status=400,
        validation_error_model=rest.s.ErrorOut,
        validation_error_callback=rest.validation_error,
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    # bodies beyond this are refused (413) before they are read or parsed
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["jellychat.settings"] = settings
    app.extensions["jellychat.shutdown"] = Drain()
    _request_ids(app)
    if store is not None:
        app.extensions["jellychat.store"] = store
    # a browser admin page pages through GET /messages (and /history) with X-Next-Before;
    # a page backs off a 429 by its Retry-After
    CORS(app, origins=settings.cors_origin_list, expose_headers=["X-Next-Before", "Retry-After"])
    app.register_api(rest.bp)
    app.register_api(assistants.bp)
    app.register_api(models.bp)  # models, access, usage; the 402/403 answers
    # the description at /openapi.json; /docs: Swagger UI from flask-openapi3-swagger's files
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)
    app.add_url_rule("/docs", "docs", lambda: redirect("/docs/swagger"))
    sockets.init_app(app, settings)
    limits.init_app(app, settings)  # after sockets: its proxy fix wraps Socket.IO too
    db_cli.init_app(app)
    app.register_api(kb.bp)
    # API keys, Jelly as an OpenAI-compatible model and as an AI SDK chat backend
    app.register_api(api_keys.bp)
    app.register_api(openai_compat.bp)
    app.register_api(ai_sdk.bp)
    files_web.init_app(app)  # a user's files and memories
    app.register_blueprint(page.bp)  # the chat page, /widget.js, /static
    knowledge_cli.init_app(app)
    compat.check_all(imported_only=True)  # a warning line per shim whose library changed
    return app


_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_ids(app: Flask) -> None:
    """Each request gets an id (the client's X-Request-ID when sane) in its logs and answer."""

    @app.before_request
    def _bind_request_id():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID_OK.fullmatch(given) else uuid.uuid4().hex[:16]
        g.request_id_token = REQUEST_ID.set(g.request_id)

    @app.after_request
    def _send_request_id(response):
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def _unbind_request_id(_exc=None):
        token = g.pop("request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)


def _stop_store(app: Flask, settings) -> None:
    """Close the store's pool and stop the embedded PostgreSQL (when this process is its last user)."""
    chat = app.extensions.get("jellychat.chat")
    try:
        if chat is not None:
            if chat.unfinished:  # outcomes kept during a database outage: a last try
                chat.retry_unfinished()
            chat.store.close()
    except Exception as exc:  # noqa: BLE001 - shutting down: report, go on
        log.warning("closing the store: %s", exc)
    if settings.store_kind() == "embedded":
        from storage.embedded import stop_embedded_postgres

        stop_embedded_postgres(settings.data_path)


def _signals_wait_for_the_store() -> None:
    """From here on, SIGINT/SIGTERM only log: the store is stopping (the embedded
    PostgreSQL's `pg_ctl stop`, its list of attached processes), and a process cut
    short in there (a second Ctrl-C, a process group signalled twice) leaves the
    data directory for the next start to repair."""

    def wait(signum, _frame):
        log.warning("%s: already stopping the database; a moment", signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, wait)
    signal.signal(signal.SIGINT, wait)


def _exit_on_first_signal() -> None:
    """Until serving starts: the first stop signal exits through atexit (the embedded
    PostgreSQL stops there); a second one must not cut that exit short."""

    def exit_once(signum, _frame):
        _signals_wait_for_the_store()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_once)
    signal.signal(signal.SIGINT, exit_once)


def _count_runs(app: Flask, drain: Drain) -> None:
    """The graceful stop waits on the run registry (every turn is a run in it)."""
    registry = app.extensions["jellychat.chat"].registry
    drain.count_running = lambda: len(registry)


def _cancel_runs(app: Flask) -> int:
    """Runs still going after SHUTDOWN_GRACE: stopped, so each stores its final row."""
    chat = app.extensions.get("jellychat.chat")
    if chat is None or not len(chat.registry):
        return 0
    return chat.registry.cancel(chat.registry.ids(), "stopped")


def main() -> None:
    try:
        app = create_app()
    except SettingsError as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    settings = app.extensions["jellychat.settings"]
    drain: Drain = app.extensions["jellychat.shutdown"]
    from web import serving

    _exit_on_first_signal()

    eventlet_mode = sockets.socketio.async_mode == "eventlet"
    listener = None
    try:
        if eventlet_mode:
            serving.raise_fd_limit(settings.max_connections)
            serving.keep_idle_checks_off_the_hub()
            listener = serving.bind(settings.host, settings.port)
        else:
            serving.check_port_free(settings.host, settings.port)
    except serving.PortBusy as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)
    try:
        get_chat(app)
    except (StoreError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        _signals_wait_for_the_store()
        _stop_store(app, settings)
        sys.exit(1)
    _count_runs(app, drain)
    if settings.store_kind() == "embedded":
        from storage.embedded import watch

        store = app.extensions["jellychat.chat"].store
        pool = getattr(store, "pool", None)
        sockets.socketio.start_background_task(
            watch, settings.data_path, sockets.socketio.sleep,
            on_restart=pool.check if pool is not None else None,
            stopped=lambda: drain.is_draining,
        )
    sockets.socketio.start_background_task(watch_hub_lag, sockets.socketio.sleep)
    gc.set_threshold(settings.gc_young_threshold, *gc.get_threshold()[1:])
    watch_gc()
    sockets.socketio.start_background_task(sockets.watch_runs, app, sockets.socketio.sleep,
                                           sweep_every=settings.run_sweep_interval)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    log.info("JellyChat %s serving on http://%s:%s (async mode: %s)", __version__, settings.host,
             settings.port, sockets.socketio.async_mode)

    if eventlet_mode:
        _serve_eventlet(app, settings, drain, listener, host)
    else:
        _serve_other(app, settings, drain, host)


def _serve_eventlet(app, settings, drain: Drain, listener, host: str) -> None:
    import eventlet

    from web import serving

    def wake_accept():
        # the accept loop sees `is_draining` once accept() returns
        try:
            socket.create_connection((host, settings.port), timeout=1).close()
        except OSError:
            pass

    def on_signal(signum, _frame):
        if drain.is_draining:
            log.warning("%s again: stopping now", signal.Signals(signum).name)
            os._exit(1)
        drain.is_draining = True
        log.info("%s: no new connections; %d turn(s) running get up to %.0f s",
                 signal.Signals(signum).name, drain.running(), settings.shutdown_grace)
        eventlet.spawn_n(wake_accept)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"READY http://{host}:{settings.port}", flush=True)  # this process holds the port
    serving.serve(
        app, listener, max_connections=settings.max_connections,
        max_per_ip=settings.max_connections_per_ip, header_timeout=settings.header_timeout,
        idle_timeout=settings.idle_timeout, drain=drain,
        log_output=settings.log_level == "DEBUG",
    )
    left = drain.wait(settings.shutdown_grace)
    if left:
        log.warning("%d run(s) still going after SHUTDOWN_GRACE; stopping them", left)
        _cancel_runs(app)
        drain.wait(3)  # a stopped run writes its final row, then ends
    closed = serving.close_connections()
    log.info("closed %d open connection(s); stopping the database", closed)
    _signals_wait_for_the_store()
    _stop_store(app, settings)
    log.info("stopped")
    logging.shutdown()
    os._exit(0)  # green threads of closed connections need not unwind


def _serve_other(app, settings, drain: Drain, host: str) -> None:
    """threading: its own server; SIGTERM ends it like Ctrl-C."""

    def announce():
        # READY once the port accepts connections (the server binds a moment later)
        for _ in range(600):
            try:
                socket.create_connection((host, settings.port), timeout=1).close()
                break
            except OSError:
                sockets.socketio.sleep(0.05)
        print(f"READY http://{host}:{settings.port}", flush=True)

    def on_signal(signum, _frame):
        drain.is_draining = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sockets.socketio.start_background_task(announce)
    try:
        sockets.socketio.run(
            app, host=settings.host, port=settings.port, allow_unsafe_werkzeug=True,
            log_output=settings.log_level == "DEBUG",
        )
    except KeyboardInterrupt:
        pass
    drain.is_draining = True
    if drain.wait(settings.shutdown_grace, sleep=sockets.socketio.sleep):
        _cancel_runs(app)
        drain.wait(3, sleep=sockets.socketio.sleep)
    _signals_wait_for_the_store()
    _stop_store(app, settings)
    log.info("stopped")


if __name__ == "__main__":
    main()

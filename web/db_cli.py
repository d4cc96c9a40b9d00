"""`flask --app app db ...`: the schema migrations from the command line.

- `db upgrade` applies pending migrations to DATABASE_URL (or, when it is
  unset, to the embedded PostgreSQL under DATA_DIR), converting a database of
  the original JellyChat in place and printing what it converted;
- `db status` lists the migrations the database has not had yet;
- `db sql` prints every migration, to paste into Supabase's SQL editor; it
  needs no database.

The bodies call the plain functions of `storage.migrations`.
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from storage import StoreError
from storage.migrations import (
    all_sql,
    apply_migrations,
    is_original_jellychat,
    original_upgrade_report,
    pending,
)

db = AppGroup("db", help="Database schema: apply or print the SQL migrations.")

SUPABASE_ONLY = (
    "SUPABASE_URL is set but DATABASE_URL is not: the REST API cannot change the schema. "
    "Run `supabase db push`, paste the output of `flask --app app db sql` into the SQL editor, "
    "or set DATABASE_URL to the project's connection string."
)


def _target_dsn(settings) -> str:
    if settings.database_url:
        return settings.database_url
    if settings.store_kind() == "supabase":
        raise click.ClickException(SUPABASE_ONLY)
    from storage.embedded import start_embedded_postgres

    try:
        return start_embedded_postgres(settings.data_path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _connect(dsn: str):
    """A psycopg connection (autocommit; no prepared statements behind a transaction pooler)."""
    import psycopg

    from storage.postgres import is_transaction_pooler, redact

    kwargs = {"autocommit": True, "connect_timeout": 10}
    if is_transaction_pooler(dsn):
        kwargs["prepare_threshold"] = None
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"cannot connect to PostgreSQL at {redact(dsn)}: {first}") from None


def _settings():
    return current_app.extensions["jellychat.settings"]


@db.command("upgrade")
def upgrade_command() -> None:
    """Apply pending migrations to DATABASE_URL (or the embedded database)."""
    with _connect(_target_dsn(_settings())) as conn:
        applied = apply_migrations(conn)
        report = original_upgrade_report(conn, applied)
    if report:
        click.echo(report)
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("the database is up to date")


@db.command("status")
def status_command() -> None:
    """List the migrations the database has not had yet."""
    with _connect(_target_dsn(_settings())) as conn:
        names = pending(conn)
        original = is_original_jellychat(conn)
    if original:
        click.echo("this is a database of the original JellyChat: `db upgrade` (or starting the "
                   "server) converts it in place, keeping every row")
    if names:
        click.echo("pending:\n" + "\n".join(f"  {n}" for n in names))
    else:
        click.echo("the database is up to date")


@db.command("sql")
def sql_command() -> None:
    """Print every migration, in order, for the Supabase SQL editor (no database needed)."""
    click.echo(all_sql(), nl=False)
    click.echo()


def init_app(app: Flask) -> None:
    app.cli.add_command(db)

"""`flask --app app ingest SOURCE --kb NAME`: a thin command over `knowledge.ingest`."""

from __future__ import annotations

import click
from flask import current_app

from knowledge.embeddings import EmbedderError, describe, get_embedder
from knowledge.ingest import EmbedderMismatch, ingest
from knowledge.loaders import LoadError, SiteLayout


def _store(app):
    """The app's store (a test may have passed one), else a new one from the settings."""
    store = app.extensions.get("jellychat.store")
    if store is not None:
        return store, False
    from storage import make_store

    store = make_store(app.extensions["jellychat.settings"])
    return store, True


@click.command("ingest")
@click.argument("source")
@click.option("--kb", required=True, help="Knowledge base name, e.g. wiki or defichainpython.")
@click.option("--reembed", is_flag=True,
              help="Rewrite every document, e.g. after changing EMBEDDINGS.")
@click.option("--keep-missing", is_flag=True,
              help="Keep stored documents that SOURCE no longer has (default: remove them).")
@click.option("--base-url", default=None,
              help="Public address of the folder's pages (URL = base + path without suffix).")
@click.option("--page-suffix", default="", help="Appended to page URLs with --base-url, e.g. .html")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def ingest_command(source, kb, reembed, keep_missing, base_url, page_suffix, no_progress):
    """Load SOURCE (a folder, a page URL or a sitemap.xml URL) into a knowledge base.

    Incremental: only new or changed documents are split and embedded, and
    documents that disappeared from SOURCE are removed.
    """
    from storage import StoreError

    app = current_app
    settings = app.extensions["jellychat.settings"]
    try:
        embedder = get_embedder(settings)
    except EmbedderError as exc:
        raise click.ClickException(str(exc)) from None
    layout = SiteLayout(base_url if base_url.endswith("/") else base_url + "/", page_suffix) \
        if base_url else None
    click.echo(f"embedder: {describe(embedder)}")
    store, owned = _store(app)
    try:
        store.initialize()
        report = ingest(store, source, kb, embedder, progress=not no_progress, reembed=reembed,
                        prune=not keep_missing, layout=layout)
    except (EmbedderMismatch, EmbedderError, LoadError, StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if owned:
            store.close()
    for failed, reason in report.failed:
        click.echo(f"failed: {failed}: {reason}", err=True)
    click.echo(report.summary())


def init_app(app) -> None:
    app.cli.add_command(ingest_command)

"""``recloop db``: the durable store's schema; ``recloop backup`` and ``recloop restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recloop.cli.common import DataDir, app, console, fail, load_settings
from recloop.errors import RecloopError

db_app = typer.Typer(help="The durable store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Create or migrate the store's tables to the newest schema."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision, upgrade

    settings = load_settings(data_dir)
    if settings.is_embedded():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(settings.resolved_store_url())
        before = current_revision(store.engine)
        upgrade(store.engine)
    except RecloopError as exc:
        raise fail(exc) from exc
    console.print(f"schema: {before or 'empty'} -> {head_revision()}")
    store.close()


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Print the store's schema revision and the newest one this code knows."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision

    settings = load_settings(data_dir)
    if settings.is_embedded() and not (settings.data_dir / "recloop.db").exists():
        console.print(f"store: empty; code: {head_revision()}")
        return
    try:
        store = open_store(settings.resolved_store_url())
        console.print(
            f"store: {current_revision(store.engine) or 'empty'}; code: {head_revision()}"
        )
    except RecloopError as exc:
        raise fail(exc) from exc
    store.close()


@app.command()
def backup(
    target: Annotated[
        Path, typer.Argument(metavar="TARGET", help="An empty or new directory for the copy.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Copy the embedded store (consistent while the service runs) and the model versions."""
    from recloop.store.backup import backup as run_backup

    settings = load_settings(data_dir)
    try:
        copied = run_backup(settings.data_dir, settings.resolved_model_dir(), target)
    except RecloopError as exc:
        raise fail(exc) from exc
    console.print(
        f"backed up {settings.data_dir} to {target}: {copied['pages']} database pages, "
        f"{copied['model_files']} model files",
        soft_wrap=True,
    )


@app.command()
def restore(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="A directory written by recloop backup.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Put a backup in place of the store of an empty data directory (service stopped)."""
    from recloop.store.backup import restore as run_restore

    settings = load_settings(data_dir)
    try:
        run_restore(source, settings.data_dir, settings.resolved_model_dir())
    except RecloopError as exc:
        raise fail(exc) from exc
    console.print(f"restored {source} into {settings.data_dir}", soft_wrap=True)

"""``recloop db``: the durable store's schema."""

from __future__ import annotations

import typer

from recloop.cli.common import app, console, fail, load_settings
from recloop.errors import RecloopError

db_app = typer.Typer(help="The durable store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables to the newest schema."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision, upgrade

    settings = load_settings()
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
def db_current() -> None:
    """Print the store's schema revision and the newest one this code knows."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision

    settings = load_settings()
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

"""``recloop snapshot``: an app's store exported to Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from recloop.cli.common import DataDir, app, console, fail, load_settings, progress_bar
from recloop.errors import RecloopError

snapshot_app = typer.Typer(
    help="Training-data snapshots: an app's store exported to Parquet under DATA_DIR/snapshots."
)
app.add_typer(snapshot_app, name="snapshot")

_SnapshotApp = Annotated[str, typer.Option("--app", help="The app to snapshot.")]


@snapshot_app.callback(invoke_without_command=True)
def snapshot(
    ctx: typer.Context,
    app_id: _SnapshotApp = "default",
    data_dir: DataDir = None,
) -> None:
    """Take a snapshot (with no subcommand, as snapshot create does), or list them."""
    # Given before the subcommand, the folder holds for it too.
    ctx.obj = data_dir
    if ctx.invoked_subcommand is None:
        _take_snapshot(app_id, data_dir)


@snapshot_app.command("create")
def snapshot_create(
    ctx: typer.Context, app_id: _SnapshotApp = "default", data_dir: DataDir = None
) -> None:
    """Export an app's events, served lists, items and users to a new, immutable snapshot."""
    _take_snapshot(app_id, data_dir or ctx.obj)


def _take_snapshot(app_id: str, data_dir: Path | None) -> None:
    from recloop.data.snapshots import TABLES, check_snapshot, take_snapshot
    from recloop.store.bootstrap import prepare_store

    settings = load_settings(data_dir)
    root = settings.data_dir / "snapshots"
    try:
        store = prepare_store(settings)
        try:
            check_snapshot(store, app_id)
            totals = {
                "events": store.events.count(app_id),
                "items": store.catalog.count_items(app_id),
            }
            with progress_bar() as progress:
                tasks = {name: progress.add_task(name, total=totals.get(name)) for name in TABLES}
                snap = take_snapshot(
                    store,
                    root,
                    app_id=app_id,
                    now=datetime.now(UTC),
                    on_progress=lambda name, rows: progress.advance(tasks[name], rows),
                )
                for name, task in tasks.items():
                    progress.update(task, total=snap.manifest.row_counts[name])
        finally:
            store.close()
    except RecloopError as exc:
        raise fail(exc) from exc
    console.print(f"snapshot {snap.version} of app {app_id!r}")
    counts = Table("table", Column("rows", justify="right"))
    for name in TABLES:
        counts.add_row(name, f"{snap.manifest.row_counts[name]:,}")
    console.print(counts)
    console.print(f"path: {snap.path}", soft_wrap=True)


@snapshot_app.command("list")
def snapshot_list(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """List the snapshots in DATA_DIR/snapshots, newest first."""
    from recloop.data.snapshots import list_snapshots

    root = load_settings(data_dir or ctx.obj).data_dir / "snapshots"
    try:
        found = list_snapshots(root)
    except RecloopError as exc:
        raise fail(exc) from exc
    if not found:
        console.print(f"no snapshots in {root}", soft_wrap=True)
        return
    console.print(f"snapshots in {root}, newest first", soft_wrap=True)
    table = Table(
        Column("version", no_wrap=True),
        "app",
        *(Column(name, justify="right") for name in ("events", "served lists", "items", "users")),
    )
    for snap in found:
        m = snap.manifest
        table.add_row(
            snap.version,
            m.app_id,
            *(
                f"{m.row_counts.get(name, 0):,}"
                for name in ("events", "recommendation_log", "items", "users")
            ),
        )
    console.print(table)

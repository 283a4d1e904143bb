"""``recloop gc``: old snapshots, training sets and model versions listed, or removed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, err_console, fail, load_settings
from recloop.config import Settings
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.store import Store


def _size(n: int) -> str:
    """Bytes for people: 812 B, 3.4 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


@app.command()
def gc(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run/--delete",
            help="List what would go and the bytes freed (the default), or remove it.",
        ),
    ] = True,
    keep_versions: Annotated[
        int | None,
        typer.Option(min=1, help="Model versions kept per app (default: retention.keep_versions)."),
    ] = None,
    keep_snapshots: Annotated[
        int | None,
        typer.Option(min=1, help="Snapshots kept per app (default: retention.keep_snapshots)."),
    ] = None,
    keep_datasets: Annotated[
        int | None,
        typer.Option(min=1, help="Training sets kept per app (default: retention.keep_datasets)."),
    ] = None,
    show_kept: Annotated[
        bool, typer.Option("--show-kept", help="Also list what stays, and why.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Remove old snapshots, training sets and model versions. Safe while the service runs.

    Keeps the newest of each (retention.keep_*) and whatever the served, previous, pinned,
    shadowed or experiment-named versions were trained from.
    """
    from recloop.data.retention import collect, plan, run_gc
    from recloop.registry.artifacts import ModelRegistry

    settings = load_settings(data_dir)
    overrides = {
        name: value
        for name, value in (
            ("keep_versions", keep_versions),
            ("keep_snapshots", keep_snapshots),
            ("keep_datasets", keep_datasets),
        )
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(
            update={"retention": settings.retention.model_copy(update=overrides)}
        )
    registry = ModelRegistry(settings.resolved_model_dir())
    try:
        planned = plan(settings, registry)
    except (RecloopError, OSError) as exc:
        raise fail(exc) from exc
    if show_kept and planned.keep:
        kept = Table("kind", "app", "name", "size", "kept because", title="kept")
        for decision in planned.keep:
            e = decision.entry
            kept.add_row(e.kind, e.app_id or "", e.name, _size(e.size), decision.why)
        console.print(kept)
    if dry_run:
        if planned.remove:
            table = Table("kind", "app", "name", "size", "why", title="would be removed")
            for decision in planned.remove:
                e = decision.entry
                table.add_row(e.kind, e.app_id or "", e.name, _size(e.size), decision.why)
            console.print(table)
        console.print(
            f"dry run: {len(planned.remove)} would be removed, "
            f"{planned.bytes_freed:,} bytes ({_size(planned.bytes_freed)}) freed; "
            f"{len(planned.keep)} kept. Run `recloop gc --delete` to remove them.",
            soft_wrap=True,
        )
        return
    store = _store(settings)
    try:
        if store is None:
            report = collect(planned, settings, registry)
        else:
            # Planned again inside: what changed since the listing above is honoured.
            report = run_gc(
                settings, registry, audit=store.audit, actor="cli", now=datetime.now(UTC)
            )
    except (RecloopError, OSError) as exc:
        raise fail(exc) from exc
    finally:
        if store is not None:
            store.close()
    for entry in report.removed:
        console.print(f"  removed {entry.kind} {entry.label} ({_size(entry.size)})", soft_wrap=True)
    for decision in report.skipped:
        e = decision.entry
        console.print(f"  [yellow]kept[/yellow] {e.kind} {e.label}: {decision.why}", soft_wrap=True)
    console.print(
        f"removed {len(report.removed)}, {report.bytes_freed:,} bytes "
        f"({_size(report.bytes_freed)}) freed; {len(report.skipped)} left after all"
    )


def _store(settings: Settings) -> Store | None:
    """The store for the audit record, or None (said) when it cannot be opened."""
    from recloop.store.bootstrap import prepare_store

    try:
        return prepare_store(settings)
    except RecloopError as exc:
        err_console.print(f"[yellow]not audited[/yellow] ({exc})")
        return None

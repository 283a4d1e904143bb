"""``recloop export``: items, users or events to CSV, JSONL or Parquet that ``import`` reads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, fail, load_settings, progress_bar
from recloop.errors import RecloopError


@app.command("export")
def export(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", dir_okay=False, help="The file to write.")
    ],
    kind: Annotated[str, typer.Option(help="items, users or events.")],
    app_id: Annotated[str, typer.Option("--app", help="The app to export.")] = "default",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Events only: those that happened at or after this ISO 8601 time "
            "(a naive time is UTC)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Events only: those that happened before this ISO 8601 time."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Export an app's items, users or events in the form recloop import reads back."""
    from recloop.ingest.export import check_export, export_file, parse_time
    from recloop.ingest.files import detect_format
    from recloop.ingest.importer import RecordKind
    from recloop.store.bootstrap import prepare_store

    try:
        record_kind = RecordKind(kind)
    except ValueError as exc:
        raise typer.BadParameter("must be items, users or events", param_hint="--kind") from exc
    settings = load_settings(data_dir)
    started = time.perf_counter()
    try:
        resolved_format = fmt or detect_format(file)
        since_ts = None if since is None else parse_time(since, "since")
        until_ts = None if until is None else parse_time(until, "until")
        store = prepare_store(settings)
        try:
            check_export(
                store,
                app_id,
                record_kind,
                file,
                resolved_format,
                since=since_ts,
                until=until_ts,
                overwrite=force,
            )
            total = None  # users: the store does not count them
            if record_kind is RecordKind.EVENTS:
                total = store.events.count(app_id)
            elif record_kind is RecordKind.ITEMS:
                total = store.catalog.count_items(app_id)
            with progress_bar() as progress:
                task = progress.add_task(f"exporting {record_kind.value}", total=total)
                report = export_file(
                    store,
                    app_id,
                    record_kind,
                    file,
                    resolved_format,
                    since=since_ts,
                    until=until_ts,
                    overwrite=force,
                    on_progress=lambda n: progress.advance(task, n),
                )
        finally:
            store.close()
    except RecloopError as exc:
        raise fail(exc) from exc
    seconds = time.perf_counter() - started
    summary = Table(title=f"export of {record_kind.value} from app {app_id!r}", show_header=False)
    summary.add_row("rows written", f"{report.written:,}")
    if since_ts is not None or until_ts is not None:
        summary.add_row("events read", f"{report.read:,}")
        bounds = [f">= {since_ts.isoformat()}"] if since_ts else []
        bounds += [f"< {until_ts.isoformat()}"] if until_ts else []
        summary.add_row("events kept", "eventTs " + " and ".join(bounds))
    summary.add_row("file", str(report.path))
    summary.add_row("format", report.fmt)
    summary.add_row("seconds", f"{seconds:.2f}")
    console.print(summary)

"""``recloop import``: items, users or events from CSV, JSONL or Parquet files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, fail, load_settings, progress_bar
from recloop.errors import RecloopError


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="A .csv, .jsonl or .parquet file.",
        ),
    ],
    kind: Annotated[str, typer.Option(help="items, users or events.")],
    app_id: Annotated[str, typer.Option("--app", help="The app to import into.")] = "default",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 if any row was rejected.")
    ] = False,
    arrivals: Annotated[
        str,
        typer.Option(
            help="Events: 'stream' (the file arrives as a stream ending at the import: its "
            "newest event now, the others as long before as they happened) or 'now' "
            "(every event arrives at the import)."
        ),
    ] = "stream",
    data_dir: DataDir = None,
) -> None:
    """Import items, users or events from CSV, JSONL or Parquet, with the API's rules."""
    from recloop.ingest.files import count_rows, detect_format
    from recloop.ingest.importer import RecordKind, import_file
    from recloop.store.bootstrap import ensure_dev_key, prepare_store

    if arrivals not in ("stream", "now"):
        raise typer.BadParameter("must be stream or now", param_hint="--arrivals")
    try:
        record_kind = RecordKind(kind)
    except ValueError as exc:
        raise typer.BadParameter("must be items, users or events", param_hint="--kind") from exc
    settings = load_settings(data_dir)
    try:
        resolved_format = fmt or detect_format(file)
        store = prepare_store(settings)
        if settings.is_embedded():
            ensure_dev_key(store, settings.data_dir)
        if not store.tenancy.app_exists(app_id):
            hint = f"`recloop keys create --app {app_id}`"
            raise RecloopError(f"app {app_id!r} does not exist; create it with {hint}")
        total = count_rows(file, resolved_format)
        with progress_bar() as progress:
            task = progress.add_task(f"importing {record_kind.value}", total=total)
            report = import_file(
                store,
                app_id,
                record_kind,
                file,
                resolved_format,
                now=datetime.now(UTC),
                arrivals="now" if arrivals == "now" else "stream",
                on_progress=lambda n: progress.advance(task, n),
            )
    except RecloopError as exc:
        raise fail(exc) from exc
    store.close()
    summary = Table(title=f"import of {file.name}", show_header=False)
    summary.add_row("rows read", f"{report.read:,}")
    summary.add_row("stored", f"{report.stored:,}")
    if record_kind is RecordKind.EVENTS:
        summary.add_row("duplicates (already stored)", f"{report.duplicates:,}")
        summary.add_row(
            "arrivals",
            f"each event's own time + {report.shift} (the history ends at the import)"
            if arrivals == "stream"
            else "all at the import",
        )
    summary.add_row("rejected", f"{report.rejected:,}")
    console.print(summary)
    if report.rejections:
        rejected = Table("line", "field", "rule", title="rejected rows (first 20)")
        for number, field_name, reason in report.rejections[:20]:
            rejected.add_row(str(number), field_name, reason)
        console.print(rejected)
    if strict and report.rejected:
        raise typer.Exit(1)

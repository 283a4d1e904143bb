"""``recloop dataset``: training sets built from snapshots."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, fail, load_settings, progress_bar, resolve_id
from recloop.errors import RecloopError

dataset_app = typer.Typer(help="Training sets built from snapshots.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(
    snapshot_version: Annotated[
        str | None,
        typer.Option(
            "--snapshot", help="Snapshot version, or the start of one (default: the newest)."
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Clean, label, featurize (point in time) and split a snapshot into a training set."""
    from recloop.data.snapshots import list_snapshots
    from recloop.data.training import build_training_set

    settings = load_settings(data_dir)
    snapshots = list_snapshots(settings.data_dir / "snapshots")
    if snapshot_version is not None and snapshots:
        try:
            chosen = resolve_id(snapshot_version, (s.version for s in snapshots), "snapshot")
        except RecloopError as exc:
            raise fail(exc) from exc
        snapshots = [s for s in snapshots if s.version == chosen]
    if not snapshots:
        what = f"snapshot {snapshot_version!r}" if snapshot_version else "a snapshot"
        raise fail(
            RecloopError(f"no {what} in {settings.data_dir / 'snapshots'}; run `recloop snapshot`")
        )
    snapshot = snapshots[0]
    with progress_bar() as progress:
        task = progress.add_task("features for impressions", total=None)
        try:
            built = build_training_set(
                snapshot,
                settings.data_dir / "datasets",
                on_progress=lambda n: progress.advance(task, n),
            )
        except (RecloopError, ValueError) as exc:
            raise fail(exc) from exc
    console.print(built.cleaning.render())
    table = Table(
        "part",
        "rows",
        "clicks",
        "satisfied",
        "not satisfied",
        "click, unknown",
        title=f"training set from {snapshot.version}",
    )
    for name, part in built.parts.items():
        positives = built.metadata["positives"][name]
        unknown = built.metadata["unlabelled"][name]
        table.add_row(
            name,
            f"{part.num_rows:,}",
            f"{built.metadata['clicks'][name]:,}",
            f"{positives:,}",
            f"{part.num_rows - positives - unknown:,}",
            f"{unknown:,}",
        )
    console.print(table)
    labels = built.labels
    console.print(
        f"impressions {labels.impressions:,}: {labels.too_recent:,} too recent to label, "
        f"{labels.ambiguous:,} ambiguous (a click, satisfaction unknown); attributed by requestId "
        f"{labels.attributed_by_request:,}, by window {labels.attributed_by_window:,}. "
        f"{len(built.metadata['features'])} features. Boundaries: {built.boundaries.as_dict()}. "
        f"Written to {built.path}",
        soft_wrap=True,
    )

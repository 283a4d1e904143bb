"""``recloop purge``: deleted users removed from snapshots, training sets and model versions."""

from __future__ import annotations

from datetime import UTC, datetime

from recloop.cli.common import DataDir, app, console, fail, load_settings
from recloop.errors import RecloopError


@app.command()
def purge(data_dir: DataDir = None) -> None:
    """Rewrite snapshots, training sets and model versions without deleted users.

    The users deleted through the API: the store and the running service forget them at
    once; these files when this runs, or when the service runs it every
    serving.purge_interval_h.
    """
    from recloop.data.purge import run_purge
    from recloop.registry.artifacts import ModelRegistry
    from recloop.store.bootstrap import prepare_store

    settings = load_settings(data_dir)
    try:
        store = prepare_store(settings)
    except RecloopError as exc:
        raise fail(exc) from exc
    try:
        report = run_purge(
            store.audit,
            settings.data_dir,
            ModelRegistry(settings.resolved_model_dir()),
            "cli",
            datetime.now(UTC),
        )
    except RecloopError as exc:
        raise fail(exc) from exc
    finally:
        store.close()
    console.print(
        f"{report.users} deleted users: {report.rows_removed} rows removed from "
        f"{len(report.files_rewritten)} files, {len(report.models_rewritten)} models rewritten"
    )
    for path in [*report.files_rewritten, *report.models_rewritten]:
        console.print(f"  {path}", soft_wrap=True)
    for note in report.skipped:
        console.print(f"  [yellow]skipped[/yellow] {note}", soft_wrap=True)

"""``recloop runs``: the scheduled training runs, why each started, what it read and what it
decided."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Column, Table

from recloop.cli.common import DataDir, app, console, load_settings

runs_app = typer.Typer(help="Scheduled training runs: why each started and what it decided.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    limit: Annotated[int, typer.Option(min=1, help="Runs shown, newest first.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line, every field of each run.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """The app's training runs, newest first: when, which job, its trigger and reading, the
    data it read, and its outcome (the version, the gates that blocked it, or the error)."""
    from recloop.registry.runs import RunLog

    records = RunLog(load_settings(data_dir).resolved_model_dir()).recent(app_id, limit)
    if as_json:
        for record in records:
            console.print_json(json.dumps(record.as_dict()), indent=None)
        return
    if not records:
        console.print(f"no training runs recorded for app {app_id!r} (see [schedule])")
        return
    table = Table(
        Column("run", no_wrap=True),
        "job",
        "why it started",
        "data read",
        "outcome",
        Column("s", justify="right"),
    )
    for r in records:
        data = r.data
        read = ", ".join(
            part
            for part in (
                f"snapshot {data['snapshot_version']}" if "snapshot_version" in data else "",
                f"{data['interactions']:,} engagements" if "interactions" in data else "",
                f"{data['events']:,} events" if "events" in data else "",
                f"data to {data['data_as_of']}" if "data_as_of" in data else "",
            )
            if part
        )
        if r.outcome == "blocked":
            outcome = f"blocked: {r.version}; " + "; ".join(r.blocked_by())
        elif r.outcome == "promoted":
            outcome = f"promoted {r.version}"
        else:
            outcome = r.outcome + (f": {r.error}" if r.error else "")
        seconds = r.seconds
        table.add_row(
            r.run_id,
            r.job,
            r.reason,
            read,
            outcome,
            f"{seconds:.0f}" if seconds is not None else "",
        )
    console.print(table)

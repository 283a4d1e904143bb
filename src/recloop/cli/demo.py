"""``recloop demo``: a simulated world against the service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from recloop.cli.common import app, console, fail, load_settings
from recloop.errors import RecloopError


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed; one seed gives one run.")] = 7,
    users: Annotated[int, typer.Option(help="Users at the start.")] = 400,
    items: Annotated[int, typer.Option(help="Items at the start.")] = 1500,
    transport: Annotated[str, typer.Option(help="http (a real server) or inprocess.")] = "http",
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Run recloop train each simulated night.")
    ] = True,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="Users also search, typing with query suggestions (the search box).",
        ),
    ] = True,
    taste_shift_day: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The simulated day (1 is the first) at whose start every user's tastes shift "
            "at once to other categories; none by default.",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help="The folder the demo leaves its data and configuration in, for the other "
            "commands' --data-dir (default: recloop-data/demo); a previous demo run there is "
            "replaced, anything else is left alone.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a simulated world against the service on the embedded store, with a report."""
    from recloop.demo.run import DemoConfig, run_demo
    from recloop.simulate.search import SearchConfig
    from recloop.simulate.world import WorldConfig

    if transport not in ("http", "inprocess"):
        raise typer.BadParameter("must be http or inprocess", param_hint="--transport")
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Written to a file or a pipe, the tables get the width they need, not 80 columns.
        console.width = max(console.width, 132)
    settings = load_settings()
    config = DemoConfig(
        world=WorldConfig(
            seed=seed,
            initial_users=users,
            initial_items=items,
            taste_shift_day=taste_shift_day,
        ),
        days=days,
        transport="http" if transport == "http" else "inprocess",
        train_nightly=train,
        search=SearchConfig() if search else None,
    )
    try:
        run_demo(config, settings, console, data_dir)
    except RecloopError as exc:
        raise fail(exc) from exc

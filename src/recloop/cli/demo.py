"""``recloop demo``: a simulated world against the service."""

from __future__ import annotations

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
        bool, typer.Option("--train/--no-train", help="Run `recloop train` each simulated night.")
    ] = True,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="Users also search, typing with query suggestions (the search box).",
        ),
    ] = True,
) -> None:
    """Run a simulated world against the service on the embedded store, with a report."""
    from recloop.demo.run import DemoConfig, run_demo
    from recloop.simulate.search import SearchConfig
    from recloop.simulate.world import WorldConfig

    if transport not in ("http", "inprocess"):
        raise typer.BadParameter("must be http or inprocess", param_hint="--transport")
    settings = load_settings()
    config = DemoConfig(
        world=WorldConfig(seed=seed, initial_users=users, initial_items=items),
        days=days,
        transport="http" if transport == "http" else "inprocess",
        train_nightly=train,
        search=SearchConfig() if search else None,
    )
    try:
        run_demo(config, settings, console)
    except RecloopError as exc:
        raise fail(exc) from exc

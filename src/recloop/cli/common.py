"""What every ``recloop`` command shares: the root app, consoles, settings, errors."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeRemainingColumn,
)

from recloop.config import Settings

app = typer.Typer(
    help="recloop: a self-hostable recommendation platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """The settings, or exit 2 naming what is wrong with them."""
    try:
        return Settings()
    except Exception as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def progress_bar() -> Progress:
    """A progress bar on stderr, so that stdout stays for results."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` as an error and return the exit to raise."""
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)

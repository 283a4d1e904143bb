"""What every ``recloop`` command shares: the root app, consoles, settings, errors."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeRemainingColumn,
)

from recloop.config import Settings
from recloop.errors import RecloopError


def _plain_help() -> None:
    """Help without typer's type tags (``<bool>``, ``<str>``) and bracketed notes.

    typer (pinned in constraints.txt) prints each option's type in a column of its own and
    its default, range and "required" in brackets; the help texts say in words what a value
    is, so the tags go and the notes read "(default: 8000)". A range goes too: an option
    whose range matters says it in its help.
    """
    from typer import core, rich_utils

    rich_utils.DEFAULT_STRING = "(default: {})"
    rich_utils.ENVVAR_STRING = "(env var: {})"
    rich_utils.REQUIRED_LONG_STRING = "(required)"
    rich_utils.RANGE_STRING = ""

    def no_type(self: object, ctx: object) -> None:
        return None

    for param in (core.TyperOption, core.TyperArgument):
        setattr(param, "display_type_rich", no_type)  # noqa: B010 (a method, replaced)


_plain_help()

app = typer.Typer(
    help="recloop: a self-hostable recommendation platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


#: Every command's ``--data-dir``: the data directory, and the ``recloop.toml`` inside it.
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        file_okay=False,
        help="The data directory (default: data_dir of the settings, ./recloop-data); "
        "a recloop.toml inside it is the configuration, unless RECLOOP_CONFIG names one.",
        show_default=False,
    ),
]


def load_settings(data_dir: Path | None = None) -> Settings:
    """The settings (for ``data_dir`` when given), or exit 2 naming what is wrong."""
    try:
        return Settings() if data_dir is None else Settings(data_dir=data_dir)
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


def resolve_id(given: str, known: Iterable[str], what: str) -> str:
    """The id among ``known`` that ``given`` names: itself, or the only one it begins.

    Raises:
        RecloopError: none matches, or the prefix begins several (they are named).
    """
    ids = sorted(known)
    if given in ids:
        return given
    matches = [i for i in ids if given and i.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RecloopError(f"no {what} {given!r}" + (f" (there are {len(ids)})" if ids else ""))
    shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
    raise RecloopError(f"{what} {given!r} is ambiguous: it begins {shown}")


def audit(
    settings: Settings,
    app_id: str,
    action: str,
    subject: str,
    detail: dict[str, object] | None = None,
) -> None:
    """Record an administrative action in the store's audit log (a store that cannot be
    opened is said, and the action stands)."""
    from recloop.store.bootstrap import prepare_store

    try:
        store = prepare_store(settings)
    except RecloopError as exc:
        err_console.print(f"[yellow]not audited[/yellow] ({exc})")
        return
    try:
        store.audit.record(app_id, "cli", action, subject, datetime.now(UTC), detail)
    finally:
        store.close()

"""Every ``recloop`` help page reads as prose: no type tags, brackets or backticks."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from recloop import cli

pytestmark = pytest.mark.integration


def _paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The root, every group and every command, as the words that name them."""
    found = [path]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _paths(sub, (*path, name))
    return found


PATHS = _paths(typer.main.get_command(cli.app))


def test_there_are_pages_to_check() -> None:
    assert len(PATHS) > 25
    assert ("models", "promote") in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "recloop")
def test_a_help_page_has_no_type_tags_brackets_or_backticks(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "100"})

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    usage = next(i for i, line in enumerate(lines) if "Usage:" in line)
    # The usage line keeps typer's grammar ([OPTIONS], {REQUIRED}, COMMAND [ARGS]...).
    body = "\n".join(lines[usage + 1 :])
    for noise in ("<", ">", "[", "]", "`"):
        assert noise not in body, f"{noise!r} in the help of recloop {' '.join(path)}:\n{body}"

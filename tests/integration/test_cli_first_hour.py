"""A new user's first hour: a short demo, then the commands it prints, on the folder it left."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer

from recloop import cli
from recloop.cli import common
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from tests.factories import T0
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

SHORT_DEMO = (
    "demo",
    "--days",
    "2",
    "--users",
    "30",
    "--items",
    "80",
    "--no-train",
    "--no-search",
    "--transport",
    "inprocess",
)


def test_a_short_demo_leaves_a_folder_the_commands_it_prints_open_as_it_is(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "my-demo"

    result = run_cli(*SHORT_DEMO, "--data-dir", str(folder))

    assert result.exit_code == 0, result.output
    # Not a terminal: a plain line a simulated day, no progress bars.
    assert re.findall(r"^day (\d)/2: [\d,]+ sessions in \d+ s$", result.stdout, re.M) == ["1", "2"]
    assert "━" not in result.stdout.split("per day and variant")[0]
    key = (folder / "dev-key").read_text().strip()
    assert key in result.stdout
    # Printed relative to the working directory (the test runs in tmp_path).
    for command in (
        "experiment report demo-home --data-dir my-demo",
        "models list --data-dir my-demo",
        "serve --data-dir my-demo",
        "KEY=$(cat my-demo/dev-key)",
    ):
        assert command in result.stdout
    assert (folder / "recloop.toml").is_file()

    # The experiment lives in the folder's configuration, not in the demo's process.
    report = run_cli("experiment", "report", "demo-home", "--data-dir", str(folder), "--json")
    assert report.exit_code == 0, report.output
    body = orjson.loads(report.stdout)
    assert body["control"] == "popular"
    users = {v["variant"]: v["users"] for v in body["variants"]}
    assert set(users) == {"popular", "home"}
    assert min(users.values()) > 0
    listed = run_cli("experiment", "list", "--data-dir", str(folder))
    assert "demo-home" in listed.stdout
    keys = run_cli("keys", "list", "--data-dir", str(folder))
    assert "development key" in keys.stdout

    # Without --data-dir the commands use RECLOOP_DATA_DIR (here another, empty folder).
    elsewhere = run_cli("experiment", "report", "demo-home")
    assert elsewhere.exit_code == 1
    assert "none configured" in elsewhere.stderr


def test_a_second_demo_says_it_replaces_the_first(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert run_cli(*SHORT_DEMO, "--days", "1", "--data-dir", str(folder)).exit_code == 0
    (folder / "left-by-the-first-run").write_text("x")

    again = run_cli(*SHORT_DEMO, "--days", "1", "--data-dir", str(folder))

    assert again.exit_code == 0, again.output
    assert f"Removing the previous demo run in {folder}" in " ".join(again.stdout.split())
    assert not (folder / "left-by-the-first-run").exists()


def test_a_demo_never_removes_a_folder_that_is_not_a_demo_run(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")

    result = run_cli(*SHORT_DEMO, "--days", "1", "--data-dir", str(folder))

    assert result.exit_code == 1
    assert "not a previous demo run's" in " ".join(result.stderr.split())
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


VERSIONS = ("20261204T235537Z-d4d06d", "20261206T000334Z-0d3852")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """Two model versions in a folder given with --data-dir, the newer one served."""
    registry = ModelRegistry(tmp_path / "elsewhere" / "models")
    for version in VERSIONS:
        with registry.writing("default", version) as directory:
            (directory / "als").mkdir()
            (directory / "als" / "factors.npz").write_bytes(b"factors")
            registry.write_manifest(
                directory,
                VersionManifest(
                    version,
                    "default",
                    T0,
                    "20261204T235537Z-a80129ec",
                    (ModelEntry("als", "als", {"recall@100": 0.25}),),
                ),
            )
    registry.promote("default", VERSIONS[1])
    return registry


def test_models_list_prints_whole_ids_on_a_narrow_terminal(
    data_dir: Path, tmp_path: Path, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "width", 60)

    result = run_cli("models", "list", "--data-dir", str(tmp_path / "elsewhere"))

    assert result.exit_code == 0, result.output
    for version in VERSIONS:
        assert version in result.stdout
    assert "20261204T235537Z-a80129ec" in result.stdout


def test_models_promote_takes_a_unique_prefix_and_names_the_ambiguous_ones(
    data_dir: Path, tmp_path: Path, registry: ModelRegistry
) -> None:
    folder = str(tmp_path / "elsewhere")

    promoted = run_cli("models", "promote", "20261204", "--data-dir", folder)
    assert promoted.exit_code == 0, promoted.output
    assert VERSIONS[0] in promoted.stdout
    assert registry.current("default") == VERSIONS[0]

    ambiguous = run_cli("models", "promote", "2026120", "--data-dir", folder)
    assert ambiguous.exit_code == 1
    assert all(v in " ".join(ambiguous.stderr.split()) for v in VERSIONS)
    unknown = run_cli("models", "promote", "1999", "--data-dir", folder)
    assert unknown.exit_code == 1
    assert "no model version '1999'" in unknown.stderr
    assert registry.current("default") == VERSIONS[0]


def _runnable(command: Any, path: str) -> list[tuple[str, Any]]:
    """Every command a user can run: the leaves, and groups that run without a subcommand.

    (Typer's commands are its own click's: told apart by what they have, not their class.)
    """
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return [(path, command)]
    found = [(path, command)] if command.invoke_without_command else []
    for name, sub in subcommands.items():
        found += _runnable(sub, f"{path} {name}")
    return found


def test_every_command_takes_data_dir() -> None:
    root = typer.main.get_command(cli.app)
    # The root itself runs nothing.
    runnable = [(path, c) for path, c in _runnable(root, "recloop") if path != "recloop"]
    assert len(runnable) > 20

    without = [
        path
        for path, command in runnable
        if not any("--data-dir" in p.opts for p in command.params)
    ]

    assert without == []


def test_by_default_the_demo_runs_in_the_data_directorys_demo_folder(
    data_dir: Path, tmp_path: Path
) -> None:
    result = run_cli(*SHORT_DEMO, "--days", "1")

    assert result.exit_code == 0, result.output
    assert (data_dir / "demo" / "recloop.toml").is_file()
    assert "serve --data-dir data/demo" in result.stdout


def test_a_run_of_an_earlier_version_without_the_marker_is_replaced(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "old-demo"
    folder.mkdir()
    for name in ("recloop.db", "report.html", "dev-key"):
        (folder / name).write_text("from an earlier run")

    result = run_cli(*SHORT_DEMO, "--days", "1", "--data-dir", str(folder))

    assert result.exit_code == 0, result.output
    assert "Removing the previous demo run" in result.stdout
    assert (folder / "report.html").read_text() != "from an earlier run"

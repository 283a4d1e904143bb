"""``recloop snapshot`` driven in-process, on an embedded store in a temporary directory."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from typer.testing import Result

from recloop.data.snapshots import list_snapshots, open_snapshot
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration


def run(*args: str) -> Result:
    return run_cli(*args)


def import_events(tmp_path: Path, *event_ids: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"\n".join(
            orjson.dumps({"eventId": e, "userId": "u1", "itemId": "i1", "eventType": "click"})
            for e in event_ids
        )
    )
    result = run("import", str(path), "--kind", "events")
    assert result.exit_code == 0, result.output


def test_snapshot_without_a_subcommand_exports_the_default_app(
    data_dir: Path, tmp_path: Path
) -> None:
    import_events(tmp_path, "e1", "e2")
    result = run("snapshot")
    assert result.exit_code == 0, result.output
    (snap,) = list_snapshots(data_dir / "snapshots")
    assert f"snapshot {snap.version} of app 'default'" in result.stdout
    assert re.search(r"events\s*│\s*2\s*│", result.stdout)
    assert re.search(r"recommendation_log\s*│\s*0\s*│", result.stdout)
    assert f"path: {snap.path}" in result.stdout
    assert open_snapshot(snap.path).table("events").column("event_id").to_pylist() == ["e1", "e2"]


def test_snapshot_create_and_list_show_every_snapshot_newest_first(
    data_dir: Path, tmp_path: Path
) -> None:
    import_events(tmp_path, "e1")
    first = run("snapshot", "create", "--app", "default")
    assert first.exit_code == 0, first.output
    import_events(tmp_path, "e2", "e3")
    second = run("snapshot", "create")
    assert second.exit_code == 0, second.output
    listed = run("snapshot", "list")
    assert listed.exit_code == 0, listed.output
    newest, oldest = list_snapshots(data_dir / "snapshots")
    assert newest.manifest.row_counts["events"] == 3
    rows = [line for line in listed.stdout.splitlines() if "default" in line]
    assert [row.split("│")[1].strip() for row in rows] == [newest.version, oldest.version]
    assert rows[0].split("│")[3].strip() == "3"


def test_snapshot_of_an_unknown_app_fails_with_the_reason(data_dir: Path, tmp_path: Path) -> None:
    import_events(tmp_path, "e1")
    result = run("snapshot", "--app", "nope")
    assert result.exit_code == 1
    assert "unknown app 'nope'" in result.stderr
    assert list_snapshots(data_dir / "snapshots") == []


def test_snapshot_list_with_no_snapshots_says_so(data_dir: Path) -> None:
    result = run("snapshot", "list")
    assert result.exit_code == 0, result.output
    assert f"no snapshots in {data_dir / 'snapshots'}" in result.stdout

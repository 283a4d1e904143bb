"""``recloop gc`` on a data directory made by three real ``recloop train`` runs: the dry run
lists and keeps everything, ``--delete`` removes the oldest run's version and snapshot, and
the previous version stays for a rollback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from recloop.data.snapshots import list_snapshots
from recloop.registry.artifacts import ModelRegistry
from recloop.store import open_store
from tests.integration.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECLOOP_TRAIN__SOURCES", json.dumps([{"name": "covisitation"}]))
    monkeypatch.setenv("RECLOOP_TRAIN__RANKER__ENABLED", "false")
    for kind in ("VERSIONS", "SNAPSHOTS", "DATASETS"):
        monkeypatch.setenv(f"RECLOOP_RETENTION__KEEP_{kind}", "1")
    monkeypatch.setenv("RECLOOP_RETENTION__MIN_AGE_H", "0")
    return data_dir


def _train_on_more_events(tmp_path: Path, night: int) -> None:
    events = [
        {
            "eventId": f"e{night}-{u}-{step}",
            "userId": f"u{u}",
            "itemId": f"i{(u + step + night) % 12}",
            "eventType": "click",
            "eventTs": f"2026-01-{1 + night:02d}T10:{step:02d}:00Z",
        }
        for u in range(30)
        for step in range(4)
    ]
    source = tmp_path / f"events-{night}.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    assert run_cli("import", "--kind", "events", str(source)).exit_code == 0
    result = run_cli("train")
    assert result.exit_code == 0, result.output


def test_gc_lists_then_removes_the_oldest_run_and_keeps_the_rollback(
    data_dir: Path, tmp_path: Path
) -> None:
    for night in range(3):
        _train_on_more_events(tmp_path, night)
    registry = ModelRegistry(data_dir / "models")
    # In the order trained (runs within one second do not sort by name).
    oldest, previous, served = registry.promotions("default")
    assert registry.current("default") == served
    snapshots = [s.version for s in list_snapshots(data_dir / "snapshots")]  # newest first
    assert len(snapshots) == 3
    assert registry.manifest("default", oldest).snapshot_version == snapshots[-1]

    dry = run_cli("gc")
    assert dry.exit_code == 0, dry.output
    out = " ".join(dry.stdout.split())
    assert oldest in out
    assert snapshots[-1] in out
    freed = int(re.search(r"dry run: 2 would be removed, ([\d,]+) bytes", out)[1].replace(",", ""))  # type: ignore[index]
    on_disk = sum(
        f.stat().st_size
        for root in (registry.path("default", oldest), data_dir / "snapshots" / snapshots[-1])
        for f in root.rglob("*")
        if f.is_file()
    )
    assert freed == on_disk
    assert len(registry.versions("default")) == 3  # a dry run removes nothing

    done = run_cli("gc", "--delete")
    assert done.exit_code == 0, done.output
    assert f"removed version default/{oldest}" in done.stdout
    assert f"removed snapshot default/{snapshots[-1]}" in done.stdout
    assert sorted(registry.versions("default")) == sorted([previous, served])
    assert [s.version for s in list_snapshots(data_dir / "snapshots")] == snapshots[:2]
    store = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    try:
        [record] = [e for e in store.audit.since(0, 100) if e.action == "gc.run"]
    finally:
        store.close()
    assert record.actor == "cli"
    assert record.detail["version"] == 1
    assert record.detail["snapshot"] == 1

    again = run_cli("gc", "--delete")
    assert "removed 0, 0 bytes" in again.stdout
    rollback = run_cli("models", "promote", previous)
    assert rollback.exit_code == 0, rollback.output
    assert registry.current("default") == previous

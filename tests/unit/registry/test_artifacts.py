"""Model versions: written whole or not at all, promoted and rolled back atomically."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.registry.artifacts import (
    DamagedVersion,
    ModelEntry,
    ModelRegistry,
    VersionManifest,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _write(registry: ModelRegistry, version: str) -> None:
    with registry.writing("app", version) as directory:
        (directory / "als").mkdir()
        (directory / "als" / "factors.npz").write_bytes(b"factors of " + version.encode())
        registry.write_manifest(
            directory,
            VersionManifest(version, "app", NOW, "snap-1", (ModelEntry("als", "als", {"f": 8}),)),
        )


def test_a_written_version_is_listed_with_its_manifest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _write(registry, "v1")
    assert registry.versions("app") == ["v1"]
    assert registry.apps() == ["app"]
    manifest = registry.manifest("app", "v1")
    assert manifest.models[0].params == {"f": 8}
    assert manifest.snapshot_version == "snap-1"


def test_versions_of_one_second_are_listed_in_the_order_they_were_written(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    # Same second, random suffixes: the later one sorts first by name.
    _write(registry, "20261101T000000Z-ffffff")
    _write(registry, "20261101T000000Z-000000")
    _write(registry, "20261031T235959Z-999999")
    first = tmp_path / "app" / "20261101T000000Z-ffffff" / "manifest.json"
    later = tmp_path / "app" / "20261101T000000Z-000000" / "manifest.json"
    os.utime(first, ns=(10**18, 10**18))
    os.utime(later, ns=(10**18 + 1, 10**18 + 1))

    assert registry.versions("app") == [
        "20261031T235959Z-999999",
        "20261101T000000Z-ffffff",
        "20261101T000000Z-000000",
    ]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)

    def fail_half_way() -> None:
        with registry.writing("app", "v1") as directory:
            (directory / "half").write_text("x")
            raise RuntimeError("training failed")

    with pytest.raises(RuntimeError):
        fail_half_way()
    assert registry.versions("app") == []
    assert list((tmp_path / "app").iterdir()) == []


def test_promotion_and_rollback_move_the_pointer_only(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.current("app") is None
    _write(registry, "v1")
    _write(registry, "v2")
    registry.promote("app", "v2")
    assert registry.current("app") == "v2"
    registry.promote("app", "v1")
    assert registry.current("app") == "v1"
    assert registry.versions("app") == ["v1", "v2"]


def test_an_unfinished_or_unknown_version_cannot_be_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(FileNotFoundError):
        registry.promote("app", "nope")
    _write(registry, "v1")
    with pytest.raises(FileExistsError):
        _write(registry, "v1")


def test_a_whole_version_has_no_damaged_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _write(registry, "v1")
    assert registry.damaged("app", "v1") == {}


def test_a_changed_or_missing_file_is_named(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _write(registry, "v1")
    factors = registry.path("app", "v1") / "als" / "factors.npz"
    factors.write_bytes(factors.read_bytes()[:-1] + b"X")
    assert registry.damaged("app", "v1") == {"als/factors.npz": "changed"}
    factors.unlink()
    assert registry.damaged("app", "v1") == {"als/factors.npz": "missing"}


def test_a_damaged_version_is_not_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _write(registry, "v1")
    registry.promote("app", "v1")
    _write(registry, "v2")
    (registry.path("app", "v2") / "manifest.json").write_text("{}")

    with pytest.raises(DamagedVersion, match=r"manifest.json \(changed\)"):
        registry.promote("app", "v2")
    assert registry.current("app") == "v1"

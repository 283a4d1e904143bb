"""Model versions: written whole or not at all, promoted and rolled back atomically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _write(registry: ModelRegistry, version: str) -> None:
    with registry.writing("app", version) as directory:
        (directory / "als").mkdir()
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

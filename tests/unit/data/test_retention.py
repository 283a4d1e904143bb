"""Retention (``recloop gc``): the newest of each kind and every protected version with its
lineage stay; the rest goes, out of sight first, and never what became protected since."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recloop.config import RetentionSettings, Settings
from recloop.data.retention import (
    TRASH,
    Decision,
    collect,
    named_versions,
    plan,
    protection,
    scan,
    select,
)
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.registry.in_use import InUseMarks
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import CoVisitation
from recloop.serving.model_loader import ModelLoader

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD = time.time() - 3 * 86_400  # written three days ago: past any min_age_h below
APP = "app"


def _age(path: Path, when: float = OLD) -> None:
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when))


def _snapshot(data_dir: Path, name: str, day: int, app_id: str = APP) -> None:
    path = data_dir / "snapshots" / name
    (path / "events").mkdir(parents=True)
    (path / "events" / "part-0.parquet").write_bytes(b"x" * 1000)
    manifest = {
        "version": name,
        "app_id": app_id,
        "created_at": (T0 + timedelta(days=day)).isoformat(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    _age(path)


def _dataset(data_dir: Path, snapshot: str, day: int, config: str = "abcd1234") -> str:
    name = f"{snapshot}-{config}"
    path = data_dir / "datasets" / name
    path.mkdir(parents=True)
    (path / "train.parquet").write_bytes(b"y" * 500)
    built = (T0 + timedelta(days=day)).isoformat()
    (path / "metadata.json").write_text(json.dumps({"snapshot": snapshot, "built_at": built}))
    _age(path)
    return name


def _version(
    registry: ModelRegistry, name: str, day: int, snapshot: str, training_set: str | None = None
) -> None:
    with registry.writing(APP, name) as directory:
        (directory / "als").mkdir()
        (directory / "als" / "factors.npy").write_bytes(b"z" * 2000)
        if training_set is not None:
            report = {"training_set": f"/somewhere/datasets/{training_set}"}
            (directory / "ranker_report.json").write_text(json.dumps(report))
        registry.write_manifest(
            directory,
            VersionManifest(
                name, APP, T0 + timedelta(days=day), snapshot, (ModelEntry("als", "als", {}),)
            ),
        )
    _age(registry.path(APP, name))


@pytest.fixture
def world(tmp_path: Path) -> tuple[Settings, ModelRegistry]:
    """Eight nightly runs: snapshot sN, training set sN-abcd1234 and version vN on day N.

    v3 serves, v2 served before it, a shadow runs v5, v1 is pinned; v6 records no
    training set (its ranker report is absent), so every training set of s6 is its lineage.
    """
    data_dir = tmp_path / "data"
    registry = ModelRegistry(data_dir / "models")
    for n in range(1, 9):
        _snapshot(data_dir, f"s{n}", n)
        dataset = _dataset(data_dir, f"s{n}", n)
        _version(registry, f"v{n}", n, f"s{n}", None if n == 6 else dataset)
    _dataset(data_dir, "s6", 6, config="ffff0000")  # s6's second training set
    registry.promote(APP, "v2")
    registry.promote(APP, "v3")
    settings = Settings(
        data_dir=data_dir,
        shadows=[{"name": "next", "surface": "home", "model_version": "v5"}],
        retention={"keep_versions": 2, "keep_snapshots": 2, "keep_datasets": 2, "pinned": ["v1"]},
    )
    return settings, registry


def _names(decisions: list[Decision], kind: str) -> set[str]:
    return {d.entry.name for d in decisions if d.entry.kind == kind}


def test_the_newest_and_every_protected_version_stay(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    planned = plan(settings, registry)
    # v7, v8 newest; v3 served; v2 served before; v5 shadowed; v1 pinned.
    assert _names(planned.keep, "version") == {"v1", "v2", "v3", "v5", "v7", "v8"}
    assert _names(planned.remove, "version") == {"v4", "v6"}
    why = {d.entry.name: d.why for d in planned.keep if d.entry.kind == "version"}
    assert why["v3"] == "served"
    assert why["v2"] == "served before (rollback)"
    assert why["v5"] == "shadow next"
    assert why["v1"] == "pinned (retention.pinned)"
    assert why["v8"] == "among the newest 2"


def test_protected_versions_keep_their_snapshot_and_training_set(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    planned = plan(settings, registry)
    assert _names(planned.keep, "snapshot") == {"s1", "s2", "s3", "s5", "s7", "s8"}
    assert _names(planned.remove, "snapshot") == {"s4", "s6"}
    kept = _names(planned.keep, "dataset")
    assert kept == {f"s{n}-abcd1234" for n in (1, 2, 3, 5, 7, 8)}
    assert _names(planned.remove, "dataset") == {"s4-abcd1234", "s6-abcd1234", "s6-ffff0000"}
    on_disk = sum(
        f.stat().st_size for d in planned.remove for f in d.entry.path.rglob("*") if f.is_file()
    )
    assert planned.bytes_freed == on_disk
    assert on_disk > 2 * 2000 + 2 * 1000 + 3 * 500  # the payloads, and the manifests


def test_a_version_without_a_recorded_training_set_keeps_every_one_of_its_snapshot(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    pinned = settings.model_copy(
        update={"retention": settings.retention.model_copy(update={"pinned": ["v6"]})}
    )
    planned = plan(pinned, registry)
    assert {"s6-abcd1234", "s6-ffff0000"} <= _names(planned.keep, "dataset")
    assert "s6" in _names(planned.keep, "snapshot")


def test_the_counts_are_honoured_per_app(world: tuple[Settings, ModelRegistry]) -> None:
    settings, registry = world
    _snapshot(settings.data_dir, "other-1", 1, app_id="other")
    _snapshot(settings.data_dir, "other-2", 2, app_id="other")
    _snapshot(settings.data_dir, "other-3", 3, app_id="other")
    wide = RetentionSettings(keep_versions=5, keep_snapshots=4, keep_datasets=1)
    inventory = scan(settings.data_dir, registry)
    planned = select(inventory, protection(registry, {}, 60.0), wide)
    # No pins: served v3 and previous v2 are within the newest 5 anyway.
    assert _names(planned.keep, "version") == {"v4", "v5", "v6", "v7", "v8", "v2", "v3"}
    assert _names(planned.remove, "version") == {"v1"}
    assert _names(planned.keep, "snapshot") == {
        "other-1", "other-2", "other-3", "s2", "s3", "s5", "s6", "s7", "s8"
    }  # fmt: skip
    assert _names(planned.keep, "dataset") == {"s8-abcd1234", "s2-abcd1234", "s3-abcd1234"}


def test_a_version_a_running_service_holds_stays_until_its_mark_goes_stale(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    marks = InUseMarks(registry.root, name="host-b-4242")
    marks.record(APP, {"v4"})
    planned = plan(settings, registry)
    assert "v4" in _names(planned.keep, "version")
    assert "s4" in _names(planned.keep, "snapshot")
    mark = registry.root / APP / ".in-use" / "host-b-4242"
    os.utime(mark, (OLD, OLD))  # its process stopped three days ago
    assert "v4" in _names(plan(settings, registry).remove, "version")
    collect(plan(settings, registry), settings, registry)
    assert not mark.exists()  # a stale mark is removed with the rest


def test_nothing_younger_than_min_age_goes(world: tuple[Settings, ModelRegistry]) -> None:
    settings, registry = world
    _age(registry.path(APP, "v4"), time.time())
    _age(settings.data_dir / "snapshots" / "s4", time.time())
    planned = plan(settings, registry)
    assert "v4" in _names(planned.keep, "version")
    assert "s4" in _names(planned.keep, "snapshot")


def test_removal_takes_what_the_plan_said_and_rollback_still_works(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    report = collect(plan(settings, registry), settings, registry)
    assert {e.name for e in report.removed} == {
        "v4", "v6", "s4", "s6", "s4-abcd1234", "s6-abcd1234", "s6-ffff0000"
    }  # fmt: skip
    assert registry.versions(APP) == ["v1", "v2", "v3", "v5", "v7", "v8"]
    assert sorted(p.name for p in (settings.data_dir / "snapshots").iterdir()) == [
        "s1", "s2", "s3", "s5", "s7", "s8"
    ]  # fmt: skip
    assert not any(p.name.startswith(TRASH) for p in (registry.root / APP).iterdir())
    assert report.bytes_freed > 0
    registry.promote(APP, registry.previous(APP) or "")  # the one-command rollback
    assert registry.current(APP) == "v2"
    assert registry.damaged(APP, "v2") == {}


def test_what_became_protected_after_the_plan_is_not_removed(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    planned = plan(settings, registry)
    registry.promote(APP, "v4")  # promoted between the listing and the removal
    report = collect(planned, settings, registry)
    skipped = {d.entry.name: d.why for d in report.skipped}
    assert skipped["v4"] == "served"
    assert skipped["s4"] == "now trains a protected version"
    assert skipped["s4-abcd1234"] == "now trains a protected version"
    assert "v4" in registry.versions(APP)
    assert registry.damaged(APP, "v4") == {}
    # v3, served until then, is now the previous version and was protected before anyway.
    assert "v3" in registry.versions(APP)


def test_an_interrupted_removal_leaves_nothing_loadable_and_is_finished_next_time(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    # A removal killed after the rename: the version is out of every listing at once.
    os.rename(registry.path(APP, "v4"), registry.root / APP / f"{TRASH}v4-000000")
    assert "v4" not in registry.versions(APP)
    with pytest.raises(FileNotFoundError):
        registry.promote(APP, "v4")
    # A training killed while writing leaves its staging directory behind.
    staging = registry.root / APP / ".v9-crashed"
    staging.mkdir()
    _age(staging)
    planned = plan(settings, registry)
    leftovers = _names(planned.remove, "leftover")
    assert leftovers == {f"{TRASH}v4-000000", ".v9-crashed"}
    collect(planned, settings, registry)
    assert not [p for p in (registry.root / APP).iterdir() if p.is_dir() and p.name[0] == "."]


def test_a_training_still_writing_deep_in_its_staging_directory_is_left_alone(
    world: tuple[Settings, ModelRegistry],
) -> None:
    settings, registry = world
    staging = registry.root / APP / ".v9-writing"
    (staging / "ranker").mkdir(parents=True)
    (staging / "ranker" / "head.txt").write_text("being written")
    _age(staging)
    os.utime(staging / "ranker" / "head.txt")  # written just now, the folders long ago
    planned = plan(settings, registry)
    assert ".v9-writing" in _names(planned.keep, "leftover")
    collect(planned, settings, registry)
    assert (staging / "ranker" / "head.txt").exists()


def test_the_settings_name_experiment_shadow_and_pinned_versions(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        experiments=[
            {
                "name": "canary",
                "surface": "home",
                "variants": [
                    {"name": "control", "share": 0.5},
                    {"name": "next", "share": 0.5, "model_version": "v9"},
                ],
            }
        ],
        shadows=[{"name": "s", "surface": "home", "model_version": "v8"}],
        retention={"pinned": ["v7"]},
    )
    assert named_versions(settings) == {
        "v9": "experiment canary variant next",
        "v8": "shadow s",
        "v7": "pinned (retention.pinned)",
    }


def test_previous_follows_the_promotions_and_a_rollback(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for n, name in enumerate(("a", "b", "c"), start=1):
        _version(registry, name, n, f"s{n}")
    assert registry.previous(APP) is None
    registry.promote(APP, "a")
    assert registry.previous(APP) is None
    registry.promote(APP, "c")
    assert registry.previous(APP) == "a"  # not b: b never served
    registry.promote(APP, "a")  # a rollback
    assert registry.previous(APP) == "c"
    (registry.root / APP / "PROMOTIONS").unlink()  # a registry older than the record
    assert registry.previous(APP) is None  # nothing older than a
    registry.promote(APP, "c")
    (registry.root / APP / "PROMOTIONS").unlink()
    assert registry.previous(APP) == "b"  # the newest older version


class _NoChanges:
    def changes_since(self, after: object, limit: int) -> list[object]:
        return []

    def get_item(self, app_id: str, item_id: str) -> None:
        return None


def test_a_serving_process_marks_the_version_it_loaded(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    model = CoVisitation().fit(
        TrainingData(Interactions.from_records(["u", "u"], ["a", "b"], [0.0, 1.0]))
    )
    for name in ("v1", "v2"):
        with registry.writing(APP, name) as directory:
            (directory / "covisitation").mkdir()
            model.save(directory / "covisitation")
            registry.write_manifest(
                directory,
                VersionManifest(
                    name, APP, T0, None, (ModelEntry("covisitation", "covisitation", {}),)
                ),
            )
    registry.promote(APP, "v1")
    loader = ModelLoader(registry, ModelIndex(), _NoChanges())  # type: ignore[arg-type]
    loader.step()
    assert InUseMarks(registry.root).held(APP, 60.0) == {"v1"}
    registry.promote(APP, "v2")
    loader.step()
    assert InUseMarks(registry.root).held(APP, 60.0) == {"v2"}
    reasons = protection(registry, {}, 60.0).version(APP, "v2")
    assert reasons == ("served", "loaded by a running service")

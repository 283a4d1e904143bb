"""The model loader: a promoted version is served, a broken one is counted and skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.domain import Item
from recloop.ranking.learned import MANIFEST, RANKER_DIR, RankerModels
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import CoVisitation
from recloop.serving.model_loader import ModelLoader
from recloop.store.protocols import CatalogChange, CatalogCursor

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class _Catalog:
    """A catalog with no changes, or one that fails when asked."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def changes_since(self, after: CatalogCursor | None, limit: int) -> list[CatalogChange]:
        if self.fail:
            raise ConnectionError("store down")
        return []

    def get_item(self, app_id: str, item_id: str) -> Item | None:
        return None


def _publish(
    registry: ModelRegistry,
    version: str,
    kind: str = "covisitation",
    sources: tuple[str, ...] = ("covisitation",),
    promote: bool = True,
    ranker: bool = False,
) -> None:
    model = CoVisitation().fit(
        TrainingData(Interactions.from_records(["u", "u"], ["a", "b"], [0.0, 1.0]))
    )
    with registry.writing("app", version) as directory:
        for source in sources:
            (directory / source).mkdir()
            model.save(directory / source)
        if ranker:
            # Only its presence and checksum are read before it is loaded.
            (directory / RANKER_DIR).mkdir()
            (directory / RANKER_DIR / MANIFEST).write_text(json.dumps({"version": version}))
        (directory / "titles.json").write_text(json.dumps({"a": "Alpha"}))
        registry.write_manifest(
            directory,
            VersionManifest(
                version,
                "app",
                NOW,
                None,
                tuple(ModelEntry(source, kind, {}) for source in sources),
                extra={"data_as_of": NOW.isoformat()},
            ),
        )
    if promote:
        registry.promote("app", version)


def _damage(registry: ModelRegistry, version: str, part: str) -> None:
    """Flip the last byte of every file of ``part`` after the version was written."""
    root = registry.path("app", version) / part
    for path in [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def test_the_promoted_version_is_loaded_and_replaced_by_the_next(tmp_path: Path) -> None:
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    loader = ModelLoader(registry, index, _Catalog())  # type: ignore[arg-type]
    loader.step()
    assert index.get("app") is None
    _publish(registry, "v1")
    loader.step()
    bundle = index.get("app")
    assert bundle is not None
    assert bundle.version == "v1"
    assert bundle.titles == {"a": "Alpha"}
    assert bundle.model("covisitation") is not None
    _publish(registry, "v2")
    loader.step()
    assert index.apps() == {"app": "v2"}


def test_a_version_that_cannot_load_is_counted_and_the_old_one_keeps_serving(
    tmp_path: Path,
) -> None:
    errors: list[int] = []
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    loader = ModelLoader(registry, index, _Catalog(), lambda: errors.append(1))  # type: ignore[arg-type]
    _publish(registry, "v1")
    loader.step()
    _publish(registry, "v2", kind="no-such-kind")
    loader.step()
    assert index.apps() == {"app": "v1"}
    assert errors == [1]


def test_a_failing_catalog_is_counted_and_does_not_stop_loading(tmp_path: Path) -> None:
    errors: list[int] = []
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    _publish(registry, "v1")
    loader = ModelLoader(registry, index, _Catalog(fail=True), lambda: errors.append(1))  # type: ignore[arg-type]
    loader.step()
    assert index.apps() == {"app": "v1"}
    assert errors == [1]


def test_a_damaged_source_is_left_out_and_the_others_serve(tmp_path: Path) -> None:
    errors: list[int] = []
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    _publish(registry, "v1", sources=("covisitation", "item-knn"))
    _damage(registry, "v1", "item-knn")
    loader = ModelLoader(registry, index, _Catalog(), lambda: errors.append(1))  # type: ignore[arg-type]

    loader.step()

    bundle = index.get("app")
    assert bundle is not None
    assert bundle.version == "v1"
    assert set(bundle.models) == {"covisitation"}
    assert bundle.failed == {"item-knn"}
    assert errors == [1]
    assert loader.versions() == {"app": ("v1", "v1", ("item-knn",))}


def test_a_damaged_promoted_version_at_start_serves_the_newest_good_one(tmp_path: Path) -> None:
    errors: list[int] = []
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    _publish(registry, "v1")
    _publish(registry, "v2")
    _publish(registry, "v3")
    _damage(registry, "v3", "manifest.json")
    loader = ModelLoader(registry, index, _Catalog(), lambda: errors.append(1))  # type: ignore[arg-type]

    loader.step()
    loader.step()  # the damaged version is not hashed and refused again on every step

    assert index.apps() == {"app": "v2"}
    assert errors == [1]
    assert loader.versions()["app"][:2] == ("v3", "v2")


def test_a_damaged_version_promoted_while_serving_leaves_the_loaded_one(tmp_path: Path) -> None:
    registry, index = ModelRegistry(tmp_path), ModelIndex()
    _publish(registry, "v1")
    loader = ModelLoader(registry, index, _Catalog())  # type: ignore[arg-type]
    loader.step()
    _publish(registry, "v2", promote=False)
    (tmp_path / "app" / "CURRENT").write_text("v2\n")  # by hand, past promote's check
    _damage(registry, "v2", "covisitation")

    loader.step()

    assert index.apps() == {"app": "v1"}


def test_a_damaged_ranker_is_left_out_and_named_so_lists_say_fallback(tmp_path: Path) -> None:
    errors: list[int] = []
    registry, index, rankers = ModelRegistry(tmp_path), ModelIndex(), RankerModels()
    _publish(registry, "v1", ranker=True)
    _damage(registry, "v1", RANKER_DIR)
    loader = ModelLoader(registry, index, _Catalog(), lambda: errors.append(1), rankers=rankers)  # type: ignore[arg-type]

    loader.step()

    assert index.get("app") is not None  # the sources serve
    assert rankers.get("app") is None
    assert rankers.damaged("app") == "the ranker of model version v1 is damaged"
    assert errors == [1]
    # A version without a ranker clears it: that app is in the cold state, not a fallback.
    _publish(registry, "v2")
    loader.step()
    assert rankers.damaged("app") is None

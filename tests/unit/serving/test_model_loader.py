"""The model loader: a promoted version is served, a broken one is counted and skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.domain import Item
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


def _publish(registry: ModelRegistry, version: str, kind: str = "covisitation") -> None:
    model = CoVisitation().fit(
        TrainingData(Interactions.from_records(["u", "u"], ["a", "b"], [0.0, 1.0]))
    )
    with registry.writing("app", version) as directory:
        (directory / "covisitation").mkdir()
        model.save(directory / "covisitation")
        (directory / "titles.json").write_text(json.dumps({"a": "Alpha"}))
        registry.write_manifest(
            directory,
            VersionManifest(
                version,
                "app",
                NOW,
                None,
                (ModelEntry("covisitation", kind, {}),),
                extra={"data_as_of": NOW.isoformat()},
            ),
        )
    registry.promote("app", version)


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

"""The model loader swaps a version's suggestion model in with the version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.config import SuggestionSettings
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import CoVisitation
from recloop.serving.model_loader import ModelLoader
from recloop.suggest.build import LogEvent, build_model
from recloop.suggest.model import MODEL_DIR, SuggestionModels
from tests.unit.serving.test_model_loader import _Catalog

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _publish(registry: ModelRegistry, version: str, query: str | None) -> None:
    """A version with one source and, when ``query`` is given, a suggestion model of it."""
    source = CoVisitation().fit(
        TrainingData(Interactions.from_records(["u", "u"], ["a", "b"], [0.0, 1.0]))
    )
    with registry.writing("app", version) as directory:
        (directory / "covisitation").mkdir()
        source.save(directory / "covisitation")
        (directory / "titles.json").write_text(json.dumps({}))
        if query is not None:
            events = [LogEvent(f"u{n}", NOW.timestamp(), query=query) for n in range(3)]
            model, _ = build_model(events, [], SuggestionSettings(), now=NOW, version=version)
            model.save(directory / MODEL_DIR)
        registry.write_manifest(
            directory,
            VersionManifest(
                version, "app", NOW, None, (ModelEntry("covisitation", "covisitation", {}),)
            ),
        )
    registry.promote("app", version)


def test_each_promoted_versions_suggestions_replace_the_last(tmp_path: Path) -> None:
    registry, suggestions = ModelRegistry(tmp_path), SuggestionModels()
    loader = ModelLoader(registry, ModelIndex(), _Catalog(), suggestions=suggestions)  # type: ignore[arg-type]
    _publish(registry, "v1", "first query")
    loader.step()
    first = suggestions.get("app")
    assert first is not None
    assert first.version == "v1"
    assert [c.query for c in first.index.complete("fir")] == ["first query"]
    _publish(registry, "v2", "second query")
    loader.step()
    second = suggestions.get("app")
    assert second is not None
    assert second.version == "v2"
    assert second.row("first query") is None
    # A version built without suggestions leaves the app in the cold state.
    _publish(registry, "v3", None)
    loader.step()
    assert suggestions.get("app") is None
    assert suggestions.apps() == frozenset()


def test_an_unreadable_suggestion_model_is_counted_and_the_rest_of_the_version_serves(
    tmp_path: Path,
) -> None:
    errors: list[int] = []
    registry, index, suggestions = ModelRegistry(tmp_path), ModelIndex(), SuggestionModels()
    loader = ModelLoader(
        registry,
        index,
        _Catalog(),
        on_error=lambda: errors.append(1),
        suggestions=suggestions,  # type: ignore[arg-type]
    )
    _publish(registry, "v1", "a query")
    (tmp_path / "app" / "v1" / MODEL_DIR / "queries.parquet").write_bytes(b"not parquet")
    loader.step()
    assert errors == [1]
    assert index.apps() == {"app": "v1"}
    assert suggestions.get("app") is None

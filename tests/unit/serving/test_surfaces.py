"""Surfaces as configuration: every default builds, bad names and params name their key."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from pydantic import ValidationError

from recloop.config import (
    BudgetSettings,
    ComponentConfig,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
    default_surfaces,
)
from recloop.domain import CatalogEntry
from recloop.errors import ConfigError
from recloop.features.candidates import FeatureMatrix
from recloop.ranking.learned import LearnedRanker
from recloop.ranking.source_scores import SourceScoreRanker
from recloop.rerank.eligibility import ActiveCatalogGate, ExcludedItemsFilter
from recloop.retrieval.popularity import PopularityIndex
from recloop.serving.components import Resources
from recloop.serving.pipeline import Pipeline
from recloop.serving.surfaces import build_pipeline, build_pipelines
from recloop.store.protocols import Catalog, RecommendationLog
from tests.factories import ServedListsStub

pytestmark = pytest.mark.unit


class EmptyCatalog:
    """A catalog with nothing in it; building a pipeline never reads it."""

    def active_entries(self, app_id: str, item_ids: Collection[str]) -> dict[str, CatalogEntry]:
        return {}


class ZeroFeatures:
    """An online feature reader whose every feature is zero; building never reads it."""

    def matrix(
        self,
        app_id: str,
        user_id: str,
        item_ids: Sequence[str],
        *,
        session_id: str | None,
        device: str | None,
        surface: str | None,
        now: datetime,
    ) -> FeatureMatrix:
        return FeatureMatrix(tuple(item_ids), (), np.zeros((len(item_ids), 0)))


@pytest.fixture
def resources() -> Resources:
    return Resources(
        PopularityIndex(),
        cast(Catalog, EmptyCatalog()),
        features=ZeroFeatures(),
        rec_log=cast(RecommendationLog, ServedListsStub()),
    )


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def build(
    config: SurfaceConfig, resources: Resources, executor: ThreadPoolExecutor, name: str = "home"
) -> Pipeline:
    return build_pipeline(name, config, resources, BudgetSettings(), executor)


def key_of(error: ConfigError) -> str:
    """The key an error names: what comes before the first ': '."""
    return str(error).split(": ", 1)[0]


def test_every_default_surface_builds(resources: Resources, executor: ThreadPoolExecutor) -> None:
    surfaces = default_surfaces()

    pipelines = build_pipelines(surfaces, resources, BudgetSettings(), executor)

    assert set(pipelines) == {"home", "trending", "similar"}
    for name, pipeline in pipelines.items():
        config = surfaces[name]
        assert pipeline.name == name
        assert [s.source.name for s in pipeline.sources] == [s.name for s in config.sources]
        assert [s.quota for s in pipeline.sources] == [s.quota for s in config.sources]
        expected = LearnedRanker if config.ranker.name == "learned" else SourceScoreRanker
        assert isinstance(pipeline.ranker, expected)
        assert pipeline.policy.name == config.exploration.name
        # The fallback chain holds its sources, in order.
        assert [f.name for f in pipeline.fallbacks] == config.fallback
        # Eligibility is on every surface, whatever the config says.
        assert [type(f) for f in pipeline.filters] == [ExcludedItemsFilter]
        assert [type(g) for g in pipeline.gates] == [ActiveCatalogGate]


def test_the_budget_settings_reach_the_pipeline(
    resources: Resources, executor: ThreadPoolExecutor
) -> None:
    budget = BudgetSettings(retrieve_ms=7.0, rank_ms=3.0, rerank_ms=2.0)

    pipeline = build_pipeline("home", default_surfaces()["home"], resources, budget, executor)

    assert (pipeline.budget.retrieve_ms, pipeline.budget.rank_ms, pipeline.budget.rerank_ms) == (
        7.0,
        3.0,
        2.0,
    )


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (SurfaceConfig(sources=[SourceSlotConfig(name="nope")]), "surfaces.home.sources[0].name"),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular"), SourceSlotConfig(name="nope")]
            ),
            "surfaces.home.sources[1].name",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")], ranker=ComponentConfig(name="nope")
            ),
            "surfaces.home.ranker.name",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")],
                exploration=ComponentConfig(name="nope"),
            ),
            "surfaces.home.exploration.name",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")], rules=[ComponentConfig(name="nope")]
            ),
            "surfaces.home.rules[0].name",
        ),
    ],
    ids=["source", "second-source", "ranker", "policy", "rule"],
)
def test_an_unknown_component_name_raises_config_error_naming_the_key(
    config: SurfaceConfig, key: str, resources: Resources, executor: ThreadPoolExecutor
) -> None:
    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    assert key_of(raised.value) == key
    assert "'nope'" in str(raised.value)


def test_an_unknown_fallback_raises_config_error_naming_the_fallback_entry(
    resources: Resources, executor: ThreadPoolExecutor
) -> None:
    config = SurfaceConfig(sources=[SourceSlotConfig(name="popular")], fallback=["popular", "nope"])

    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    # The config reads `fallback = ["popular", "nope"]`: the entry is a name, not a table, so
    # there is no `fallback[1].name` key to look for.
    assert key_of(raised.value) == "surfaces.home.fallback[1]"


def test_an_empty_fallback_raises_config_error_naming_the_fallback_key(
    resources: Resources, executor: ThreadPoolExecutor
) -> None:
    config = SurfaceConfig(sources=[SourceSlotConfig(name="popular")], fallback=[])

    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    assert key_of(raised.value) == "surfaces.home.fallback"


def test_an_unknown_name_lists_the_known_ones(
    resources: Resources, executor: ThreadPoolExecutor
) -> None:
    config = SurfaceConfig(sources=[SourceSlotConfig(name="populer")])

    with pytest.raises(ConfigError, match="popular") as raised:
        build(config, resources, executor)

    assert "same-category" in str(raised.value)
    assert "trending" in str(raised.value)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (
            SurfaceConfig(sources=[SourceSlotConfig(name="popular", params={"window": 3})]),
            "surfaces.home.sources[0].params",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")],
                exploration=ComponentConfig(name="none", params={"epsilon": 0.1}),
            ),
            "surfaces.home.exploration.params",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")],
                ranker=ComponentConfig(name="source-scores", params={"bogus": 1}),
            ),
            "surfaces.home.ranker.params",
        ),
        (
            SurfaceConfig(
                sources=[SourceSlotConfig(name="popular")],
                ranker=ComponentConfig(
                    name="source-scores", params={"weights": {"popular": "heavy"}}
                ),
            ),
            "surfaces.home.ranker.params",
        ),
    ],
    ids=["source-takes-none", "policy-takes-none", "ranker-unknown-param", "ranker-bad-value"],
)
def test_bad_params_raise_config_error_naming_the_key(
    config: SurfaceConfig, key: str, resources: Resources, executor: ThreadPoolExecutor
) -> None:
    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    assert key_of(raised.value) == key


@pytest.mark.parametrize(
    "params",
    [{"because": "Because of {item}"}, {"reason": "{0} picks"}, {"weights": 2}],
    ids=["unknown-placeholder", "positional-placeholder", "unknown-param"],
)
def test_bad_trained_source_params_fail_at_build_naming_the_source(
    params: dict[str, object], resources: Resources, executor: ThreadPoolExecutor
) -> None:
    config = SurfaceConfig(sources=[SourceSlotConfig(name="als", params=params)])

    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    assert key_of(raised.value) == "surfaces.home.sources[0].params"


@pytest.mark.parametrize(
    "rule",
    [
        ComponentConfig(name="cap", params={"attribute": "colour"}),
        ComponentConfig(name="mmr", params={"lambda": 2.0}),
        ComponentConfig(name="business", params={"pin": [{"item_id": "x", "position": -1}]}),
    ],
    ids=["cap-attribute", "mmr-lambda", "pin-position"],
)
def test_bad_rule_params_fail_at_build_naming_the_rule(
    rule: ComponentConfig, resources: Resources, executor: ThreadPoolExecutor
) -> None:
    config = SurfaceConfig(sources=[SourceSlotConfig(name="popular")], rules=[rule])

    with pytest.raises(ConfigError) as raised:
        build(config, resources, executor)

    assert key_of(raised.value) == "surfaces.home.rules[0].params"


def test_a_config_error_in_one_surface_names_that_surface(
    resources: Resources, executor: ThreadPoolExecutor
) -> None:
    surfaces = {
        **default_surfaces(),
        "shop": SurfaceConfig(sources=[SourceSlotConfig(name="bestsellers")]),
    }

    with pytest.raises(ConfigError) as raised:
        build_pipelines(surfaces, resources, BudgetSettings(), executor)

    assert key_of(raised.value) == "surfaces.shop.sources[0].name"


def test_a_surface_without_sources_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one source"):
        SurfaceConfig(sources=[])


# --- Settings from recloop.toml and the environment --------------------------------------------

TOML = """
[serving]
default_limit = 7
max_limit = 50

[surfaces.fresh]
sources = [{name = "trending", quota = 10, timeout_ms = 5.0}]
ranker = {name = "source-scores", params = {weights = {trending = 3.0}}}

[surfaces.related]
sources = [{name = "same-category", quota = 40}, {name = "popular", quota = 20}]
requires_item = true
fallback = ["trending", "popular"]
"""


@pytest.fixture
def toml_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "recloop.toml"
    path.write_text(TOML)
    monkeypatch.setenv("RECLOOP_CONFIG", str(path))
    monkeypatch.delenv("RECLOOP_SERVING__DEFAULT_LIMIT", raising=False)
    monkeypatch.delenv("RECLOOP_SURFACES", raising=False)
    return path


def settings_from_files(tmp_path: Path) -> Settings:
    # data_dir given so that nothing is written to the working directory.
    return Settings(data_dir=tmp_path / "data")


def test_settings_read_custom_surfaces_from_the_config_file(
    toml_config: Path, tmp_path: Path, resources: Resources, executor: ThreadPoolExecutor
) -> None:
    settings = settings_from_files(tmp_path)

    assert settings.serving.default_limit == 7
    assert settings.serving.max_limit == 50
    assert set(settings.surfaces) == {"fresh", "related"}
    fresh = settings.surfaces["fresh"]
    assert fresh.sources == [SourceSlotConfig(name="trending", quota=10, timeout_ms=5.0)]
    assert fresh.ranker.params == {"weights": {"trending": 3.0}}
    assert settings.surfaces["related"].requires_item

    pipelines = build_pipelines(settings.surfaces, resources, settings.serving.budget, executor)
    assert [s.source.name for s in pipelines["related"].sources] == ["same-category", "popular"]
    assert [f.name for f in pipelines["related"].fallbacks] == ["trending", "popular"]
    assert [s.timeout_ms for s in pipelines["fresh"].sources] == [5.0]


def test_an_environment_variable_overrides_the_config_file(
    toml_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_SERVING__DEFAULT_LIMIT", "11")

    settings = settings_from_files(tmp_path)

    assert settings.serving.default_limit == 11
    # Only the one nested key is overridden; the file's other serving keys stay.
    assert settings.serving.max_limit == 50
    assert set(settings.surfaces) == {"fresh", "related"}


def test_constructor_arguments_override_the_environment_and_the_file(
    toml_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_SERVING__DEFAULT_LIMIT", "11")

    settings = Settings(data_dir=tmp_path, serving={"default_limit": 3})

    assert settings.serving.default_limit == 3


def test_an_unknown_key_in_the_config_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "recloop.toml"
    path.write_text('[surfaces.home]\nsources = [{name = "popular", qouta = 5}]\n')
    monkeypatch.setenv("RECLOOP_CONFIG", str(path))

    with pytest.raises(ValidationError, match="qouta"):
        settings_from_files(tmp_path)


def test_without_a_config_file_the_default_surfaces_are_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_CONFIG", str(tmp_path / "absent.toml"))

    settings = settings_from_files(tmp_path)

    assert settings.surfaces == default_surfaces()
    assert settings.serving.default_limit == 20


def test_a_config_file_with_an_unknown_source_fails_at_build_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resources: Resources,
    executor: ThreadPoolExecutor,
) -> None:
    path = tmp_path / "recloop.toml"
    path.write_text('[surfaces.feed]\nsources = [{name = "popular"}, {name = "collab"}]\n')
    monkeypatch.setenv("RECLOOP_CONFIG", str(path))
    settings = settings_from_files(tmp_path)

    with pytest.raises(ConfigError) as raised:
        build_pipelines(settings.surfaces, resources, settings.serving.budget, executor)

    assert key_of(raised.value) == "surfaces.feed.sources[1].name"

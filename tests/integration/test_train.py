"""`recloop train` end to end: a simulated store in, a promoted model version out, served
by a running service without a restart."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from recloop.config import (
    BudgetSettings,
    ComponentConfig,
    ExperimentConfig,
    RankerTrainSettings,
    ServingSettings,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
    TrainSettings,
    TrainSourceConfig,
)
from recloop.demo.run import DemoConfig, run_demo
from recloop.domain import Item, User
from recloop.errors import SnapshotRefused
from recloop.registry.artifacts import ModelRegistry
from recloop.runtime.process import start_runtime
from recloop.serving.recommender import RecommendationRequest
from recloop.simulate.world import WorldConfig
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.training.job import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = WorldConfig(
    seed=5, initial_items=300, initial_users=120, new_items_per_day=10, new_users_per_day=5
)
SOURCES = [
    TrainSourceConfig(name="covisitation"),
    TrainSourceConfig(name="als", params={"factors": 16, "iterations": 5}),
    TrainSourceConfig(name="content", params={"embedder": "hashing"}),
    TrainSourceConfig(name="ease", params={"max_items": 10}),  # refuses: too many items
    TrainSourceConfig(name="segment-popular"),
]
# These tests ask what is served, not how fast: on a machine loaded by other jobs a source
# can miss the default 15 ms of its slot and leave a list flagged as a fallback.
SLOT_MS = 2_000.0
HOME = SurfaceConfig(
    sources=[
        SourceSlotConfig(name="covisitation", quota=100, timeout_ms=SLOT_MS),
        SourceSlotConfig(name="als", quota=100, timeout_ms=SLOT_MS),
        SourceSlotConfig(name="content", quota=50, timeout_ms=SLOT_MS),
        SourceSlotConfig(name="interests", quota=20, timeout_ms=SLOT_MS),
        SourceSlotConfig(name="segment-popular", quota=20, timeout_ms=SLOT_MS),
        SourceSlotConfig(name="popular", quota=50, timeout_ms=SLOT_MS),
    ]
)
SIMILAR = SurfaceConfig(
    sources=[SourceSlotConfig(name="content", quota=50)], requires_item=True, fallback=["popular"]
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    config = DemoConfig(world=WORLD, days=2, transport="inprocess", train_nightly=False)
    run_demo(config, Settings(data_dir=root), Console(file=io.StringIO()))
    return root / "demo"


EXPLORE = SurfaceConfig(
    sources=[SourceSlotConfig(name="popular", quota=100)],
    exploration=ComponentConfig(name="epsilon-greedy", params={"epsilon": 0.5}),
)


RANKED = SurfaceConfig(
    sources=HOME.sources,
    ranker=ComponentConfig(name="learned", params={"weights": {"click": 1, "satisfaction": 2}}),
    online_features=True,
)


def _settings(data_dir: Path, sources: list[TrainSourceConfig] = SOURCES) -> Settings:
    return Settings(
        data_dir=data_dir,
        # A two-day world has few satisfied clicks; the default minimum is for real apps. The
        # gate has tests of its own (test_gate.py, test_train_from_interactions.py); here the
        # learned heads serve, whatever a gate would make of two days.
        train=TrainSettings(
            sources=sources, ranker=RankerTrainSettings(min_positives=5, gate=False)
        ),
        surfaces={"home": HOME, "similar": SIMILAR, "explore": EXPLORE, "ranked": RANKED},
        serving=ServingSettings(budget=BudgetSettings(retrieve_ms=SLOT_MS)),
    )


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> Settings:
    settings = _settings(data_dir)
    store = prepare_store(settings)
    try:
        result = train(settings, store)
    finally:
        store.close()
    assert result.promoted
    return settings


def test_train_publishes_a_validated_version_and_says_what_it_skipped(trained: Settings) -> None:
    registry = ModelRegistry(trained.resolved_model_dir())
    version = registry.current("default")
    assert version is not None
    manifest = registry.manifest("default", version)
    assert [m.name for m in manifest.models] == [
        "covisitation",
        "als",
        "content",
        "segment-popular",
    ]
    for entry in manifest.models:
        assert 0.0 <= entry.metrics["recall@100"] <= 1.0
        assert entry.metrics["cases"] > 0
    # The collaborative sources learned something: better than nothing on held-out days.
    assert max(m.metrics["recall@500"] for m in manifest.models) > 0.05
    assert any("ease" in note and "item-knn" in note for note in manifest.notes)


def test_train_fits_a_calibrated_ranker_and_writes_its_report(trained: Settings) -> None:
    registry = ModelRegistry(trained.resolved_model_dir())
    version = registry.current("default")
    assert version is not None
    root = registry.path("default", version)
    report = json.loads((root / "ranker_report.json").read_text())

    assert set(report["heads"]) == {"click", "satisfaction"}
    click = report["heads"]["click"]
    assert click["test"]["rows"] > 0
    assert sum(b["count"] for b in click["test"]["reliability"]) == click["test"]["rows"]
    assert abs(sum(click["importance"].values()) - 1.0) < 1e-3
    assert (root / "ranker" / "ranker.json").exists()
    summary = registry.manifest("default", version).extra["ranker"]
    assert 0.0 <= summary["click_auc"] <= 1.0


def test_the_learned_ranker_serves_without_falling_back_once_trained(trained: Settings) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        user = _user_with_history(runtime)
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id=user, surface="ranked", limit=20)
        )
        version = ModelRegistry(trained.resolved_model_dir()).current("default")
        assert served.model_version == f"learned+retrieval:{version}"
        assert not served.fallback, [t for t in served.trace if t.degraded]
        rank = next(t for t in served.trace if t.stage == "rank:learned")
        assert rank.outcome == "ok"
        scores = [item.score for item in served.items]
        # Weighted calibrated probabilities: at most the sum of the weights, in order.
        assert all(0.0 <= s <= 3.0 for s in scores)
        assert len(set(scores)) > 1
    finally:
        runtime.close()


def test_the_service_serves_trained_sources_with_reasons(trained: Settings) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        user = _user_with_history(runtime)
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id=user, surface="home", limit=20)
        )
        sources = {s for item in served.items for s in item.sources}
        assert sources & {"covisitation", "als", "content"}
        version = ModelRegistry(trained.resolved_model_dir()).current("default")
        assert served.model_version == f"source-scores-1+retrieval:{version}"
        assert any(item.reason.startswith("Because you watched ") for item in served.items)
        assert not served.fallback, [t for t in served.trace if t.degraded]
    finally:
        runtime.close()


def test_a_new_user_is_served_from_their_region_and_interests(trained: Settings) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        known = store.users.scan_users("default", None, 1)[0]
        region = known.attributes["region"]
        store.users.upsert_users(
            "default",
            [User("newcomer", {"region": region, "interests": known.attributes["interests"]})],
            datetime.now(UTC),
        )
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id="newcomer", surface="home", limit=30)
        )
        reasons = {item.reason for item in served.items}
        assert f"Popular in {region}" in reasons
        assert any(r.startswith("Trending in ") for r in reasons)
        assert not any(r.startswith("Because you watched") for r in reasons)
    finally:
        runtime.close()


def test_served_items_log_their_source_scores_and_the_next_ranker_learns_from_them(
    trained: Settings,
) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        user = _user_with_history(runtime)
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id=user, surface="ranked", limit=20)
        )
        runtime.writer.flush()
        logged = store.rec_log.get("default", served.request_id)
    finally:
        runtime.close()
    assert logged is not None
    for item in logged.items:
        scores = dict(item.source_scores)
        # The first finder scored it, and the scores are normalised to (0, 1].
        assert item.source in scores
        assert all(0.0 < v <= 1.0 for v in scores.values())
    # The version trained from the demo's log ranked with the sources it had logged.
    registry = ModelRegistry(trained.resolved_model_dir())
    version = registry.current("default")
    assert version is not None
    report = json.loads((registry.path("default", version) / "ranker_report.json").read_text())
    assert "source_score:popular" in report["features"]


def test_explored_positions_are_logged_with_their_propensities(trained: Settings) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id="explorer", surface="explore", limit=20)
        )
        runtime.writer.flush()
        logged = store.rec_log.get("default", served.request_id)
    finally:
        runtime.close()
    assert logged is not None
    propensities = [item.propensity for item in logged.items]
    assert propensities == [item.propensity for item in served.items]
    assert 0.5 in propensities  # exploited positions: 1 - epsilon
    assert any(p < 0.5 for p in propensities)  # explored: epsilon / pool left


def test_an_item_created_after_training_is_retrievable_at_once(trained: Settings) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        anchor = store.catalog.scan_items("default", None, 1)[0]
        twin = Item(
            item_id="brand-new-twin",
            title=anchor.title,
            description=anchor.description,
            category=anchor.category,
            tags=anchor.tags,
        )
        store.catalog.upsert_items("default", [twin], datetime.now(UTC))
        similar = RecommendationRequest(
            user_id="someone", surface="similar", limit=5, item_id=anchor.item_id
        )
        before = runtime.recommender.recommend("default", similar)
        assert "brand-new-twin" not in [i.item_id for i in before.items]
        runtime.model_loader.step()
        after = runtime.recommender.recommend("default", similar)
        assert after.items[0].item_id == "brand-new-twin"
        assert after.items[0].source == "content"
        assert after.items[0].reason == f"Similar to {anchor.title}"
    finally:
        runtime.close()


def test_a_promoted_version_is_served_without_a_restart(trained: Settings, data_dir: Path) -> None:
    store = prepare_store(trained)
    runtime = start_runtime(trained, store)
    try:
        user = _user_with_history(runtime)
        request = RecommendationRequest(user_id=user, surface="home", limit=20)
        first = runtime.recommender.recommend("default", request)
        assert "als" in {s for item in first.items for s in item.sources}
        train(_settings(data_dir, [TrainSourceConfig(name="covisitation")]), store)
        runtime.model_loader.step()
        second = runtime.recommender.recommend("default", request)
        # The new version has no ALS model: the running service no longer serves one.
        sources = {s for item in second.items for s in item.sources}
        assert "als" not in sources
        assert "covisitation" in sources
    finally:
        runtime.close()


def test_a_variant_pinned_to_the_previous_version_keeps_being_served_from_it(
    trained: Settings, data_dir: Path
) -> None:
    registry = ModelRegistry(trained.resolved_model_dir())
    # The first version trained here (other tests may have promoted newer ones).
    previous = registry.versions("default")[0]
    assert "als" in [m.name for m in registry.manifest("default", previous).models]
    store = prepare_store(trained)
    try:
        # A newer version, without ALS, is promoted; half of the users keep the previous one.
        train(_settings(data_dir, [TrainSourceConfig(name="covisitation")]), store)
        latest = registry.current("default")
        assert latest not in (None, previous)
        settings = trained.model_copy(
            update={
                "experiments": [
                    ExperimentConfig.model_validate(
                        {
                            "name": "keep-previous",
                            "surface": "home",
                            "variants": [
                                {"name": "latest", "share": 0.5},
                                {"name": "previous", "share": 0.5, "model_version": previous},
                            ],
                        }
                    )
                ]
            }
        )
        runtime = start_runtime(settings, store)
        try:
            seen: dict[str, set[str]] = {}
            sources: dict[str, set[str]] = {}
            for user in _users_by_clicks(runtime)[:40]:
                request = RecommendationRequest(user_id=user, surface="home", limit=20)
                served = runtime.recommender.recommend("default", request)
                seen.setdefault(served.variant, set()).add(
                    served.model_version.rsplit("retrieval:", 1)[-1]
                )
                sources.setdefault(served.variant, set()).update(
                    s for item in served.items for s in item.sources
                )
            # The previous version's ALS serves only the users pinned to it.
            assert "als" in sources["previous"]
            assert "als" not in sources["latest"]
            assert seen == {"latest": {latest}, "previous": {previous}}
        finally:
            runtime.close()
    finally:
        store.close()


def test_training_an_app_without_events_is_refused_with_a_reason(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = prepare_store(settings)
    try:
        ensure_dev_key(store, tmp_path)
        with pytest.raises(SnapshotRefused, match="no events"):
            train(settings, store)
    finally:
        store.close()
    assert ModelRegistry(settings.resolved_model_dir()).current("default") is None


def _user_with_history(runtime: object) -> str:
    """The user with the most clicks: the one trained sources know best."""
    return _users_by_clicks(runtime)[0]


def _users_by_clicks(runtime: object) -> list[str]:
    """Users with clicks, the most first; bots (who click nearly all they see) left out."""
    from collections import Counter

    from recloop.runtime.process import Runtime

    assert isinstance(runtime, Runtime)
    counts = Counter(
        (event.user_id, event.event_type)
        for _, event in runtime.store.events.scan(0, 100_000, app_id="default")
    )
    clicks = Counter({user: n for (user, kind), n in counts.items() if kind == "click"})
    assert clicks, "the simulation clicked nothing"
    return [
        user
        for user, n in clicks.most_common()
        if n < 0.5 * counts[(user, "impression")]  # a bot clicks every item it is shown
    ]

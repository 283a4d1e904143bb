"""An imported history with no served lists trains a ranker: from what the sources recalled
for users before the latest time slice, labelled by what they engaged with next."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recloop.config import (
    ComponentConfig,
    RankerTrainSettings,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
    TrainSettings,
    TrainSourceConfig,
)
from recloop.domain import Event, EventType, Item
from recloop.monitoring.drift import DRIFT_REFERENCE, DriftReference
from recloop.registry.artifacts import ModelRegistry
from recloop.runtime.process import start_runtime
from recloop.serving.recommender import RecommendationRequest
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.training.job import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

END = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
GROUPS = 4
ITEMS_PER_GROUP = 40


def _history(seed: int = 3, users: int = 800) -> tuple[list[Item], list[Event]]:
    """Users of four tastes, each engaging with items of their taste over 60 days; within a
    taste, the next item tends to follow the last (a sequence a source can learn)."""
    rng = np.random.default_rng(seed)
    items = [
        Item(
            f"g{g}-i{i}",
            title=f"item {g}/{i}",
            category=f"c{g}",
            created_at=END - timedelta(days=90),
        )
        for g in range(GROUPS)
        for i in range(ITEMS_PER_GROUP)
    ]
    events: list[Event] = []
    for u in range(users):
        group = u % GROUPS
        n = int(rng.integers(6, 20))
        start = END - timedelta(days=float(rng.uniform(12, 40)))
        at = start
        current = int(rng.integers(ITEMS_PER_GROUP))
        for k in range(n):
            at += timedelta(hours=float(rng.exponential(24)))
            if at >= END:
                break
            current = (current + int(rng.integers(1, 4))) % ITEMS_PER_GROUP
            events.append(
                Event(
                    app_id="default",
                    event_id=f"u{u}-{k}",
                    user_id=f"u{u}",
                    item_id=f"g{group}-i{current}",
                    event_type=EventType.PURCHASE if k % 3 == 0 else EventType.CLICK,
                    event_ts=at,
                    server_ts=at,
                )
            )
    return items, events


HOME = SurfaceConfig(
    sources=[
        SourceSlotConfig(name="covisitation", quota=50),
        SourceSlotConfig(name="item-knn", quota=50),
        SourceSlotConfig(name="popular", quota=50),
    ],
    ranker=ComponentConfig(name="learned"),
    online_features=True,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, object]:
    data_dir: Path = tmp_path_factory.mktemp("imported")
    settings = Settings(
        data_dir=data_dir,
        train=TrainSettings(
            sources=[TrainSourceConfig(name="covisitation"), TrainSourceConfig(name="item-knn")],
            # Fewer negatives kept than the sources recall, so that some are sampled out.
            ranker=RankerTrainSettings(min_positives=5, max_negatives=40),
            validation_fraction=0.2,
        ),
        surfaces={"home": HOME},
    )
    store = prepare_store(settings)
    ensure_dev_key(store, data_dir)
    items, events = _history()
    store.catalog.upsert_items("default", items, END - timedelta(days=90))
    store.events.append(events)
    try:
        result = train(settings, store, now=END + timedelta(days=1))
    finally:
        store.close()
    return settings, result


def test_an_imported_history_trains_a_ranker_from_its_interactions(
    trained: tuple[Settings, object],
) -> None:
    settings, result = trained
    ranker = result.ranker  # type: ignore[attr-defined]
    assert ranker.skipped is None, ranker.skipped
    assert ranker.model is not None
    report = ranker.report
    assert report["impressions"].startswith("no labelled impressions: the snapshot holds no")
    candidates = report["candidates"]
    assert candidates["rows"]["train"] > 1000
    assert candidates["positives"]["train"] >= 30
    assert 0.2 < candidates["candidate_recall"] <= 1.0
    assert report["objective"] == "lambdarank"
    # Negatives were sampled; each kept one counted for those left out when calibrating.
    assert candidates["negatives_sampled_out"] > 0
    assert report["heads"]["click"]["calibration_weighted"] is True
    # Out of fold, on every candidate of every list: 0.038 when calibrated on the sample
    # as if it were every candidate, 0.014 weighted (when this test was written).
    assert report["summary"]["click_ece"] < 0.025
    # Cross-fitted: every user's list is scored by the ranker of its fold, fitted without
    # that fold's users, and the gate judges them all, not the test fifth alone.
    crossed = report["cross_fit"]
    assert crossed["folds"] == 5
    assert len(crossed["per_fold"]) == 5
    assert sum(f["test_users"] for f in crossed["per_fold"]) == candidates["cases"]
    gate = report["gate"]
    assert gate["measure"] == "interactions"
    assert gate["lists"]["interactions"] > 0.5 * candidates["cases"]
    # Every alternative was measured on the same lists; what serves is the blend, or the
    # best of them when it beats the blend for sure, and the reason says which.
    figures = {name: f["interactions"] for name, f in gate["figures"].items()}
    assert set(figures) >= {"learned", "blend", "source:covisitation", "source:item-knn"}
    best = max(figures, key=lambda name: figures[name])
    assert gate["serve"] in ("blend", best)
    assert "lower bound" in gate["reason"] or gate["serve"] == best == "blend"
    version = ModelRegistry(settings.resolved_model_dir()).current("default")
    assert version is not None
    saved = json.loads(
        (settings.resolved_model_dir() / "default" / version / "ranker" / "ranker.json").read_text()
    )
    assert saved["serve"] == gate["serve"]
    # The version carries the reference its drift is measured against at serving.
    reference = DriftReference.load(
        settings.resolved_model_dir() / "default" / version / DRIFT_REFERENCE
    )
    assert "item_ctr_30d" in {b.name for b in reference.features}


def test_with_one_fold_the_users_are_split_once_and_the_gate_judges_the_test_part(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        train=TrainSettings(
            sources=[TrainSourceConfig(name="covisitation")],
            ranker=RankerTrainSettings(min_positives=5, cross_fit_folds=1),
            validation_fraction=0.2,
        ),
        surfaces={"home": HOME},
    )
    store = prepare_store(settings)
    ensure_dev_key(store, tmp_path)
    items, events = _history()
    store.catalog.upsert_items("default", items, END - timedelta(days=90))
    store.events.append(events)
    try:
        result = train(settings, store, now=END + timedelta(days=1))
    finally:
        store.close()
    report = result.ranker.report
    assert report["cross_fit"] == {"folds": 1, "why": "train.ranker.cross_fit_folds is 1"}
    assert report["rows"]["test"] == report["candidates"]["rows"]["test"] > 0
    cases = report["candidates"]["cases"]
    assert 20 <= report["gate"]["lists"]["interactions"] < 0.35 * cases


def test_the_service_serves_the_gates_choice_and_it_is_no_fallback(
    trained: tuple[Settings, object],
) -> None:
    settings, result = trained
    runtime = start_runtime(settings)
    try:
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id="u5", surface="home", limit=10)
        )
    finally:
        runtime.close()
    assert len(served.items) == 10
    assert not served.fallback
    serve = result.ranker.report["gate"]["serve"]  # type: ignore[attr-defined]
    if serve.startswith("source:"):
        assert serve in served.model_version

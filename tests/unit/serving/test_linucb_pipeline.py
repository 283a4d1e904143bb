"""LinUCB in serving: built from a surface's config, fed the ranked features by the pipeline,
and its evidence loaded with the model version."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from recloop.domain import Candidate, RequestContext
from recloop.errors import ConfigError
from recloop.explore.linucb import TrainedLinUCB
from recloop.features.bandit_context import (
    CONTEXT_FEATURES,
    EVIDENCE_FILE,
    INPUT_FEATURES,
    ContextEvidence,
    context,
)
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import FEATURE_NAMES
from recloop.ranking.learned import RankerModels
from recloop.ranking.source_scores import SourceScoreRanker
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import CoVisitation
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.protocols import RetrievalQuery
from recloop.serving.budget import Budget
from recloop.serving.components import Resources, build_policy
from recloop.serving.model_loader import ModelLoader
from recloop.serving.pipeline import Pipeline, SourceSlot
from recloop.store.protocols import CatalogChange, CatalogCursor

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
AFFINITY = CONTEXT_FEATURES.index("user_category_affinity")


class _Source:
    name = "popular"

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        return [Candidate(f"i{n}", "popular", 100.0 - n, "popular") for n in range(30)][:k]


class _Features:
    """Online features in which the user's category affinity goes to ``affine`` only."""

    def __init__(self, affine: set[str]) -> None:
        self.affine = affine
        self.calls = 0

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
        self.calls += 1
        values = np.zeros((len(item_ids), len(FEATURE_NAMES)))
        values[:, FEATURE_NAMES.index("item_ctr_30d")] = 0.02
        values[:, FEATURE_NAMES.index("user_category_affinity")] = [
            float(i in self.affine) for i in item_ids
        ]
        return FeatureMatrix(tuple(item_ids), FEATURE_NAMES, values)


class _Catalog:
    def changes_since(self, after: CatalogCursor | None, limit: int) -> list[CatalogChange]:
        return []


def _evidence() -> ContextEvidence:
    """Affinity goes with clicks: 80% against 5%."""
    rng = np.random.default_rng(4)
    inputs = np.zeros((3000, len(INPUT_FEATURES)))
    inputs[:, 0] = 0.02
    inputs[:, INPUT_FEATURES.index("user_category_affinity")] = rng.integers(0, 2, 3000)
    x = context(inputs, positions=rng.integers(0, 10, 3000))
    clicked = rng.random(3000) < np.where(x[:, AFFINITY] > 0, 0.8, 0.05)
    return ContextEvidence.fit(x, clicked.astype(float))


def _resources(rankers: RankerModels) -> Resources:
    return Resources(PopularityIndex(), _Catalog(), rankers=rankers)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def _pipeline(
    executor: ThreadPoolExecutor, rankers: RankerModels, features: _Features | None
) -> Pipeline:
    policy = build_policy(
        "linucb",
        {"pool": 20, "temperature": 0.02, "alpha": 0.2},
        _resources(rankers),
        "surfaces.home.exploration",
    )
    return Pipeline(
        name="home",
        sources=[SourceSlot(_Source(), 30, 1000.0)],
        filters=[],
        ranker=SourceScoreRanker(["popular"]),
        rules=[],
        policy=policy,
        fallback=_Source(),
        budget=Budget(retrieve_ms=1000.0),
        executor=executor,
        feature_reader=features,
        default_features=FEATURE_NAMES,
    )


def _ctx(request_id: str) -> RequestContext:
    return RequestContext(app_id="app", request_id=request_id, surface="home", user_id="u", now=NOW)


def test_a_surface_names_linucb_and_a_wrong_parameter_fails_naming_the_key() -> None:
    policy = build_policy("linucb", {"alpha": 0.5}, _resources(RankerModels()), "k")
    assert isinstance(policy, TrainedLinUCB)
    assert policy.config.alpha == 0.5
    with pytest.raises(ConfigError, match=r"surfaces\.home\.exploration\.params"):
        build_policy("linucb", {"dim": 3}, _resources(RankerModels()), "surfaces.home.exploration")


def test_linucb_without_online_features_is_refused_at_start_up(
    executor: ThreadPoolExecutor,
) -> None:
    with pytest.raises(ConfigError, match=r"surfaces\.home\.online_features = true"):
        _pipeline(executor, RankerModels(), None)


def test_the_pipeline_hands_linucb_the_ranked_features_and_logs_propensities(
    executor: ThreadPoolExecutor,
) -> None:
    rankers = RankerModels()
    features = _Features(affine={"i17", "i25"})
    pipeline = _pipeline(executor, rankers, features)

    # No evidence yet: a uniform draw from the pool of 20 (i25 is not in it).
    before = [pipeline.run(_ctx(f"a{n}"), 5) for n in range(40)]
    firsts = [served.items[0].item_id for served in before]
    assert len(set(firsts)) > 5
    assert all(served.model_version == "source-scores-1" for served in before)

    rankers.publish("app", None, _evidence())
    after = [pipeline.run(_ctx(f"b{n}"), 5) for n in range(40)]
    for served in (*before, *after):
        assert len(served.items) == 5
        assert all(0.0 < item.propensity <= 1.0 for item in served.items)
        explore = next(t for t in served.trace if t.stage == "explore:linucb")
        assert explore.outcome == "ok"
        assert not served.fallback
    assert all(served.items[0].item_id == "i17" for served in after)
    assert all(served.items[0].propensity > 0.9 for served in after)
    assert features.calls == 80


def _publish(registry: ModelRegistry, version: str, evidence: str | None) -> None:
    model = CoVisitation().fit(
        TrainingData(Interactions.from_records(["u", "u"], ["a", "b"], [0.0, 1.0]))
    )
    with registry.writing("app", version) as directory:
        (directory / "covisitation").mkdir()
        model.save(directory / "covisitation")
        if evidence is not None:
            (directory / EVIDENCE_FILE).write_text(evidence)
        registry.write_manifest(
            directory,
            VersionManifest(
                version,
                "app",
                NOW,
                None,
                (ModelEntry("covisitation", "covisitation", {}),),
                extra={"data_as_of": NOW.isoformat()},
            ),
        )
    registry.promote("app", version)


def test_the_loader_publishes_each_versions_evidence_and_survives_a_broken_one(
    tmp_path: Path,
) -> None:
    registry, index, rankers = ModelRegistry(tmp_path), ModelIndex(), RankerModels()
    errors: list[int] = []
    loader = ModelLoader(
        registry,
        index,
        _Catalog(),  # type: ignore[arg-type]
        on_error=lambda: errors.append(1),
        rankers=rankers,
    )
    evidence = _evidence()
    evidence.save(tmp_path / "evidence.json")
    _publish(registry, "v1", (tmp_path / "evidence.json").read_text())
    loader.step()
    loaded = rankers.linucb("app")
    assert loaded is not None
    assert loaded.gram == pytest.approx(evidence.gram)
    assert errors == []

    _publish(registry, "v2", None)  # trained before any list was served
    loader.step()
    assert index.apps() == {"app": "v2"}
    assert rankers.linucb("app") is None

    _publish(registry, "v3", json.dumps({"names": ["bias"], "gram": [[1.0]]}))
    loader.step()
    # The version's models serve; LinUCB falls back as if it had no evidence; it is counted.
    assert index.apps() == {"app": "v3"}
    assert rankers.linucb("app") is None
    assert errors == [1]

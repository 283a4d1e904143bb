"""What the request path feeds the drift monitor: sampled ranked rows (never a fallback's or
a cold start's, never at a request's cost), the head of the catalog, embedding shifts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.config.drift import DriftSettings
from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix
from recloop.monitoring.drift import DriftReference, DriftWindow, fit_binning
from recloop.monitoring.drift_monitor import DriftMonitor
from recloop.ranking.learned import RankerModel, RankerModels
from recloop.ranking.protocols import Scores
from recloop.retrieval.bundle import ModelBundle
from recloop.retrieval.factors import ALSModel
from recloop.retrieval.popularity import PopularityIndex, PopularitySnapshot
from recloop.serving.drift_sampling import HeadItems, SampledRanker, embedding_shifts

pytestmark = pytest.mark.unit

CTX = RequestContext(
    app_id="a", user_id="u", surface="home", now=datetime(2026, 1, 1, tzinfo=UTC), request_id="r"
)


class Fixed:
    """A ranker that answers ``scores`` (with its fallback and cold notes)."""

    version = "fixed"

    def __init__(self, **notes: str) -> None:
        self.notes = notes

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        return Scores(np.linspace(1, 0, len(features.item_ids)), **self.notes)


def _setup(**settings: int) -> tuple[DriftMonitor, RankerModels]:
    monitor = DriftMonitor(DriftSettings(sample_every=1, **settings))
    reference = DriftReference(
        "v1",
        (fit_binning("item_ctr_30d", np.linspace(0, 1, 100)),),
        fit_binning("score", np.linspace(0, 1, 100)),
    )
    monitor.publish("a", reference)
    models = RankerModels()
    models.publish("a", RankerModel("v1", ("item_ctr_30d", "position"), {}))
    return monitor, models


def _matrix(rows: int) -> FeatureMatrix:
    return FeatureMatrix(
        tuple(f"i{n}" for n in range(rows)), ("item_ctr_30d",), np.linspace(0, 1, rows)[:, None]
    )


def test_a_sampled_request_folds_at_most_rows_per_request_rows_and_its_scores() -> None:
    monitor, models = _setup(rows_per_request=30)
    ranker = SampledRanker(Fixed(), models, monitor)
    scores = ranker.score(_matrix(100), CTX)
    assert len(scores.combined) == 100
    window = monitor.window("a", "v1")
    assert window is not None
    [drift] = window.features()
    assert drift.name == "item_ctr_30d"  # the position is the served one: left out
    assert drift.rows == 30
    score = window.score()
    assert score is not None
    assert score.rows == 30


@pytest.mark.parametrize("notes", [{"fallback": "ranker failed"}, {"cold": "no ranker yet"}])
def test_a_list_the_ranker_did_not_rank_is_not_sampled(notes: dict[str, str]) -> None:
    monitor, models = _setup()
    SampledRanker(Fixed(**notes), models, monitor).score(_matrix(10), CTX)
    window = monitor.window("a", "v1")
    assert window is not None
    assert window.features() == []


def test_the_blend_the_gate_chose_samples_features_but_not_scores() -> None:
    monitor, models = _setup()
    SampledRanker(Fixed(version="blend:source-scores"), models, monitor).score(_matrix(10), CTX)
    window = monitor.window("a", "v1")
    assert window is not None
    assert len(window.features()) == 1
    assert window.score() is None


def test_a_failing_fold_costs_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor, models = _setup()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the window is broken")

    monkeypatch.setattr(DriftWindow, "observe", broken)
    ranker = SampledRanker(Fixed(), models, monitor)
    for _ in range(3):
        assert len(ranker.score(_matrix(5), CTX).combined) == 5


def test_the_head_is_the_most_popular_share_of_active_items() -> None:
    index = PopularityIndex()
    ids = tuple(f"i{n}" for n in range(300))
    index.publish("a", PopularitySnapshot(popular=(ids, (1.0,) * 300), active_items=300))
    monitor = DriftMonitor(DriftSettings(head_share=0.01))
    head = HeadItems(index, monitor)
    assert head.head("a") == frozenset({"i0", "i1", "i2"})
    head.served("a", ["i0", "i1", "i50", "i60"])
    assert monitor.state("a").head_share == pytest.approx(0.5)
    assert head.head("other") == frozenset()


def _als(users: np.ndarray, items: np.ndarray) -> ALSModel:
    model = ALSModel(factors=users.shape[1])
    model._set(
        tuple(f"u{n}" for n in range(len(users))),
        tuple(f"i{n}" for n in range(len(items))),
        users,
        items,
    )
    return model


def test_embedding_shifts_compare_the_sources_both_versions_have() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(30, 4)), rng.normal(size=(50, 4))
    before = ModelBundle("v1", {"als": _als(users, items)})
    after = ModelBundle("v2", {"als": _als(users, -items), "newest": object()})  # type: ignore[dict-item]
    shifts = {(s.source, s.entity): s for s in embedding_shifts(before, after)}
    assert set(shifts) == {("als", "item"), ("als", "user")}
    assert shifts[("als", "item")].shift == pytest.approx(0.0, abs=1e-6)  # a reflection
    assert shifts[("als", "user")].ids == 30
    assert shifts[("als", "user")].previous == "v1"

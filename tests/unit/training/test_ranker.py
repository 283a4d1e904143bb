"""The learned ranker's training: it learns a known signal, undoes downsampling and
position bias, calibrates, and reports; heads without enough positives are left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recloop.config import RankerTrainSettings
from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import FEATURE_NAMES
from recloop.ranking.calibration import sigmoid
from recloop.ranking.learned import (
    SCORE_SUM_FEATURE,
    LearnedRanker,
    LearnedRankerConfig,
    RankerModel,
    RankerModels,
    correct_downsampling,
)
from recloop.ranking.protocols import Scores
from recloop.training.candidates import SAMPLING_WEIGHT
from recloop.training.ranker import fit_ranker, in_list_ndcg, with_source_scores

pytestmark = pytest.mark.unit

LIST = 10
START = datetime(2026, 1, 1, tzinfo=UTC)


def impressions(lists: int, seed: int, start: datetime = START) -> pa.Table:
    """Served lists in which clicks follow ``item_ctr_30d`` and position, and satisfaction
    follows ``item_mean_dwell_s_30d`` among clicks; every other feature is noise."""
    rng = np.random.default_rng(seed)
    n = lists * LIST
    columns: dict[str, object] = {name: rng.normal(size=n) for name in FEATURE_NAMES}
    appeal = rng.normal(size=n)
    quality = rng.normal(size=n)
    columns["item_ctr_30d"] = appeal
    columns["item_mean_dwell_s_30d"] = quality
    position = np.tile(np.arange(LIST), lists)
    # Position bias: lower positions are seen less, whatever the item.
    click_p = sigmoid(-3.0 + 1.5 * appeal) * (1.0 + position) ** -0.8
    clicked = rng.random(n) < click_p
    satisfied = clicked & (rng.random(n) < sigmoid(2.0 * quality))
    label = np.where(satisfied, 1.0, np.where(clicked & (rng.random(n) < 0.5), np.nan, 0.0))
    columns["position"] = position
    columns["label_click"] = clicked.astype(np.int32)
    columns["label"] = pa.array(label, mask=np.isnan(label), type=pa.int32())
    columns["request_id"] = np.repeat([f"r{seed}-{i}" for i in range(lists)], LIST)
    columns["served_at"] = pa.array(
        np.repeat([start + timedelta(minutes=i) for i in range(lists)], LIST),
        pa.timestamp("us", tz="UTC"),
    )
    return pa.table(columns)


def parts(lists: int = 6000) -> dict[str, pa.Table]:
    return {
        "train": impressions(lists, seed=1),
        "validation": impressions(lists // 3, seed=2),
        "test": impressions(lists // 3, seed=3),
    }


@pytest.fixture(scope="module")
def fitted() -> tuple[RankerModel, dict[str, object]]:
    result = fit_ranker(parts(), RankerTrainSettings(max_rounds=150), version="v1")
    assert result.model is not None
    return result.model, result.report


def test_each_head_learns_its_own_signal(fitted: tuple[RankerModel, dict]) -> None:  # type: ignore[type-arg]
    _, report = fitted
    heads = report["heads"]

    assert heads["click"]["test"]["auc"] > 0.75
    assert next(iter(heads["click"]["importance"])) in {"item_ctr_30d", "position"}
    assert next(iter(heads["satisfaction"]["importance"])) in {
        "item_ctr_30d",
        "item_mean_dwell_s_30d",
    }
    # Short clicks have no satisfaction label: the satisfaction head never trained on them.
    assert heads["satisfaction"]["test"]["rows"] < report["rows"]["test"]


def test_calibrated_probabilities_match_observed_rates_on_held_out_lists(
    fitted: tuple[RankerModel, dict],  # type: ignore[type-arg]
) -> None:
    _, report = fitted
    click = report["heads"]["click"]["test"]

    assert click["ece"] < 0.01
    mean_predicted = sum(b["count"] * b["mean_predicted"] for b in click["reliability"])
    assert mean_predicted / click["rows"] == pytest.approx(click["base_rate"], rel=0.15)


def test_the_ranker_orders_served_lists_better_than_their_random_served_order(
    fitted: tuple[RankerModel, dict],  # type: ignore[type-arg]
) -> None:
    _, report = fitted
    ndcg = report["test_in_list_ndcg"]["click"]

    assert ndcg["lists"] > 100
    assert ndcg["ranker"] > ndcg["logged"] + 0.05


def test_serving_ignores_position_and_matches_the_saved_model(
    fitted: tuple[RankerModel, dict],
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    model, _ = fitted
    rows = impressions(30, seed=9)
    names = (*FEATURE_NAMES, "position")
    values = np.column_stack([np.asarray(rows.column(n).to_numpy(), float) for n in names])
    matrix = FeatureMatrix(tuple(str(i) for i in range(len(values))), names, values)
    shifted = FeatureMatrix(matrix.item_ids, names, values.copy())
    shifted.values[:, -1] += 5

    model.save(tmp_path / "ranker")
    loaded = RankerModel.load(tmp_path / "ranker")

    for head, p in model.predict(matrix).items():
        assert np.array_equal(p, model.predict(shifted)[head])
        assert np.allclose(p, loaded.predict(matrix)[head])
        assert np.all((p >= 0) & (p <= 1))


def test_a_head_with_too_few_positives_is_left_out_and_said_so() -> None:
    few = parts(300)

    result = fit_ranker(few, RankerTrainSettings(min_positives=10_000), version="v")

    assert result.model is None
    assert result.skipped is not None
    assert "min_positives" in result.skipped


def test_downsampling_correction_restores_the_base_rate() -> None:
    rng = np.random.default_rng(0)
    q = rng.uniform(0.001, 0.05, 100_000)
    # A model trained on 10% of negatives sees odds inflated tenfold.
    inflated = q * 10 / (q * 10 + 1 - q)

    assert np.allclose(correct_downsampling(inflated, 0.1), q)
    assert np.array_equal(correct_downsampling(q, 1.0), q)


def test_in_list_ndcg_is_one_for_a_perfect_order_and_counts_only_lists_with_a_positive() -> None:
    table = pa.table(
        {
            "request_id": ["a", "a", "a", "b", "b"],
            "position": [0, 1, 2, 0, 1],
            "label_click": [0, 0, 1, 0, 0],
        }
    )
    perfect = np.array([0.0, 0.1, 0.9, 0.5, 0.4])

    result = in_list_ndcg(table, perfect, "label_click")

    assert result["lists"] == 1
    assert result["ranker"] == pytest.approx(1.0)
    assert result["logged"] == pytest.approx(0.5)


class Constant:
    version = "constant-1"

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        return Scores(np.ones(len(features.item_ids)))


def ctx() -> RequestContext:
    return RequestContext("app", "r", "home", "u", START)


def test_without_a_trained_ranker_the_stand_in_ranks_in_the_cold_state_not_as_a_fallback() -> None:
    ranker = LearnedRanker(RankerModels(), Constant())
    matrix = FeatureMatrix(("a", "b"), (), np.zeros((2, 0)))

    scores = ranker.score(matrix, ctx())

    assert scores.combined.tolist() == [1.0, 1.0]
    assert "no trained ranker" in scores.cold
    assert scores.fallback == ""
    assert scores.version == "constant-1"


def test_a_ranker_that_did_not_load_is_a_fallback_not_the_cold_state() -> None:
    models = RankerModels()
    models.publish("app", None, damaged="the ranker of model version v2 is damaged")
    ranker = LearnedRanker(models, Constant())
    matrix = FeatureMatrix(("a", "b"), (), np.zeros((2, 0)))

    scores = ranker.score(matrix, ctx())

    assert scores.combined.tolist() == [1.0, 1.0]
    assert "v2 is damaged" in scores.fallback
    assert scores.cold == ""
    # The next version that loads clears it.
    models.publish("app", None)
    assert ranker.score(matrix, ctx()).fallback == ""


def test_a_failing_model_falls_back_instead_of_failing_the_request(
    fitted: tuple[RankerModel, dict],  # type: ignore[type-arg]
) -> None:
    model, _ = fitted
    models = RankerModels()
    models.publish("app", model)
    ranker = LearnedRanker(models, Constant())
    # The wrong number of columns reaches LightGBM through a broken design matrix.
    broken = RankerModel("bad", ("a",), model.heads)

    ok = ranker.score(FeatureMatrix(("x",), ("item_ctr_30d",), np.ones((1, 1))), ctx())
    models.publish("app", broken)
    failed = ranker.score(FeatureMatrix(("x",), (), np.zeros((1, 0))), ctx())

    assert not ok.fallback
    assert set(ok.by_objective) == {"click", "satisfaction"}
    assert "ranker failed" in failed.fallback


def test_head_weights_must_name_known_heads_and_one_must_be_positive() -> None:
    with pytest.raises(ValueError, match="unknown heads"):
        LearnedRankerConfig(weights={"dwell": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        LearnedRankerConfig(weights={"click": 0.0})


def test_logged_source_scores_become_features_when_common_enough() -> None:
    train = pa.table(
        {"source_scores": ['{"als": 0.5, "rare": 1.0}', '{"als": 1.0}', None] + ["{}"] * 97}
    )
    old = pa.table({"request_id": ["r"]})  # logged before scores were: no column at all

    parts, features = with_source_scores({"train": train, "test": old}, min_share=0.02)

    assert features == ["source_score:als", SCORE_SUM_FEATURE]
    assert parts["train"].column("source_score:als").to_pylist()[:3] == [0.5, 1.0, 0.0]
    assert parts["test"].column("source_score:als").to_pylist() == [0.0]


def test_the_sum_of_source_scores_is_the_same_in_training_and_at_serving() -> None:
    train = pa.table(
        {"source_scores": ['{"a": 0.5, "b": 0.25}', '{"b": 1.0}', "{}", '{"a": 0.2, "c": 1}']}
    )
    parts, features = with_source_scores({"train": train}, min_share=0.3)
    assert features == ["source_score:a", "source_score:b", SCORE_SUM_FEATURE]
    trained = parts["train"].column(SCORE_SUM_FEATURE).to_pylist()
    assert trained == pytest.approx([0.75, 1.0, 0.0, 0.2])  # c is no feature: not summed
    # Serving derives it from the request's columns (c among them, a missing): the same.
    model = RankerModel(version="v", features=tuple(features), heads={})
    matrix = FeatureMatrix(
        ("i0", "i1", "i2", "i3"),
        ("source_score:b", "source_score:c", "source_score:a"),
        np.array([[0.25, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.2]]),
    )
    served = model.design(matrix)[:, features.index(SCORE_SUM_FEATURE)]
    assert served.tolist() == pytest.approx(trained)
    # With no source features there is no sum either.
    assert with_source_scores({"train": pa.table({"x": [1]})})[1] == []


def test_heads_with_the_same_labels_are_fitted_once_and_shared() -> None:
    same = {
        name: part.set_column(part.column_names.index("label"), "label", part.column("label_click"))
        for name, part in parts(600).items()
    }

    result = fit_ranker(same, RankerTrainSettings(max_rounds=20), version="v")

    assert result.model is not None
    heads = result.model.heads
    assert heads["satisfaction"].booster is heads["click"].booster
    assert heads["satisfaction"].name == "satisfaction"
    assert result.report["heads"]["satisfaction"]["same_labels_as"] == "click"


def test_heads_with_different_labels_are_fitted_apart(
    fitted: tuple[RankerModel, dict],  # type: ignore[type-arg]
) -> None:
    model, report = fitted
    assert model.heads["satisfaction"].booster is not model.heads["click"].booster
    assert "same_labels_as" not in report["heads"]["satisfaction"]


def candidate_lists(users: int, seed: int, keep_negatives: int | None) -> pa.Table:
    """Candidate lists of 100 items, clicks following ``item_ctr_30d`` (about 2% click);
    with ``keep_negatives``, every positive and that many random negatives of each list,
    each kept negative weighted by how many it stands for, as training samples them."""
    rng = np.random.default_rng(seed)
    size = 100
    n = users * size
    columns: dict[str, object] = {name: rng.normal(size=n) for name in FEATURE_NAMES}
    appeal = rng.normal(size=n)
    columns["item_ctr_30d"] = appeal
    clicked = rng.random(n) < sigmoid(-5.0 + 1.5 * appeal)
    columns["label_click"] = clicked.astype(np.int64)
    columns["label"] = clicked.astype(np.int64)
    columns["position"] = np.zeros(n, dtype=np.int32)
    columns["request_id"] = np.repeat([f"c{seed}-{i}" for i in range(users)], size)
    weight = np.ones(n)
    keep = np.ones(n, dtype=bool)
    if keep_negatives is not None:
        for start in range(0, n, size):
            negatives = start + np.flatnonzero(~clicked[start : start + size])
            left_out = rng.choice(negatives, len(negatives) - keep_negatives, replace=False)
            keep[left_out] = False
            weight[negatives] = len(negatives) / keep_negatives
    columns[SAMPLING_WEIGHT] = weight
    return pa.table(columns).filter(pa.array(keep))


def test_sampled_negatives_calibrate_to_the_click_rate_of_every_candidate() -> None:
    # Trained and calibrated on a tenth of each list's negatives, tested on whole lists.
    sampled = {
        "train": candidate_lists(3000, seed=11, keep_negatives=10),
        "validation": candidate_lists(1500, seed=12, keep_negatives=10),
        "test": candidate_lists(1500, seed=13, keep_negatives=None),
    }
    result = fit_ranker(sampled, RankerTrainSettings(max_rounds=80), version="v1", ranking=True)
    assert result.model is not None
    click = result.report["heads"]["click"]
    test = click["test"]

    assert click["calibration_weighted"] is True
    mean_predicted = sum(b["count"] * b["mean_predicted"] for b in test["reliability"])
    assert mean_predicted / test["rows"] == pytest.approx(test["base_rate"], rel=0.2)
    assert test["ece"] < 0.01

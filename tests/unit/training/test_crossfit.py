"""Cross-fitting the ranker over user folds: every user's list is scored by a model that
never saw that user, and the gate judges every list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recloop.config import (
    ComponentConfig,
    RankerTrainSettings,
    SourceSlotConfig,
    SurfaceConfig,
)
from recloop.features.definitions import FEATURE_NAMES
from recloop.ranking.calibration import Calibrator, sigmoid
from recloop.ranking.learned import (
    LEARNED,
    POSITION_FEATURE,
    Head,
    LearnedRankerConfig,
    RankerModel,
)
from recloop.training import crossfit
from recloop.training.candidates import VALIDATION_SHARE, fold_of, part_of, stopping_part_of
from recloop.training.crossfit import FOLD, CrossFit, cross_fit, fold_parts
from recloop.training.gate import out_of_fold_scores
from recloop.training.job import _gate
from recloop.training.ranker import RankerFit

pytestmark = pytest.mark.unit

CLICKS = {"click": 1.0}
USERS = [f"user-{n}" for n in range(5000)]
LIST = 8


def test_folds_are_stable_even_and_five_folds_keep_the_test_part_as_fold_0() -> None:
    folds = np.array([fold_of(u, 5) for u in USERS])
    assert folds.min() == 0
    assert folds.max() == 4
    assert [fold_of(u, 5) for u in USERS[:50]] == folds[:50].tolist()
    shares = np.bincount(folds) / len(USERS)
    assert np.all(np.abs(shares - 0.2) < 0.03)
    # With five folds, fold 0 is exactly the users the split without folds tests on.
    assert all((fold == 0) == (part_of(u) == "test") for u, fold in zip(USERS, folds, strict=True))
    assert {fold_of(u, 1) for u in USERS} == {0}


def test_the_early_stopping_share_is_drawn_apart_from_the_folds() -> None:
    folds = np.array([fold_of(u, 5) for u in USERS])
    stopping = np.array([stopping_part_of(u) == "validation" for u in USERS])
    assert abs(stopping.mean() - VALIDATION_SHARE) < 0.02
    # Every fold holds its share of early-stopping users, not one fold all of them.
    for k in range(5):
        assert abs(stopping[folds == k].mean() - VALIDATION_SHARE) < 0.04


def lists(users: list[str], seed: int) -> pa.Table:
    """A candidate list per user, clicks following ``item_ctr_30d``; each row with its
    user's fold of five (lists of early-stopping users are in no way set apart here)."""
    rng = np.random.default_rng(seed)
    n = len(users) * LIST
    columns: dict[str, Any] = {name: rng.normal(size=n) for name in FEATURE_NAMES}
    clicked = rng.random(n) < sigmoid(-2.0 + 2.0 * columns["item_ctr_30d"])
    user = np.repeat(users, LIST)
    columns.update(
        {
            "request_id": [f"list-{u}" for u in user],
            "user_id": user,
            "item_id": [f"i{i}" for i in range(n)],
            POSITION_FEATURE: np.zeros(n, dtype=np.int32),
            "merge_rank": np.tile(np.arange(LIST, dtype=np.int32), len(users)),
            "label_click": clicked.astype(np.int64),
            "label": clicked.astype(np.int64),
            "relevant_count": np.repeat(
                [max(1, int(c)) for c in clicked.reshape(-1, LIST).sum(axis=1)], LIST
            ),
            FOLD: pa.array([fold_of(u, 5) for u in user], pa.int32()),
        }
    )
    return pa.table(columns)


def served(rows: int, seed: int) -> pa.Table:
    """Served impressions: no user fold (null), as the impressions' parts have none."""
    table = lists([f"served-{n}" for n in range(rows // LIST)], seed)
    return table.set_column(
        table.schema.get_field_index(FOLD), FOLD, pa.nulls(table.num_rows, pa.int32())
    )


def parts(users: list[str]) -> tuple[dict[str, pa.Table], pa.Table]:
    every = lists(users, seed=1)
    stopping = pa.array([stopping_part_of(u) == "validation" for u in every["user_id"].to_pylist()])
    impressions = served(800, seed=2)
    return {
        "train": pa.concat_tables([every.filter(pc.invert(stopping)), impressions]),
        "validation": every.filter(stopping),
        "test": every.slice(0, 0),
    }, every


def _users(table: pa.Table) -> set[str]:
    return set(table.column("user_id").to_pylist())


def test_a_folds_parts_train_on_the_other_folds_users_and_test_on_its_own() -> None:
    given, every = parts(USERS[:400])
    for k in range(5):
        own = fold_parts(given, every, k)
        mine = {u for u in USERS[:400] if fold_of(u, 5) == k}
        assert _users(own["test"]) == mine
        assert own["test"].num_rows == len(mine) * LIST  # every candidate of every list
        assert not (_users(own["train"]) | _users(own["validation"])) & mine
        # Every other user still trains or stops it, and so does every served impression.
        others = {u for u in USERS[:400] if fold_of(u, 5) != k}
        assert (_users(own["train"]) | _users(own["validation"])) - _users(served(800, 2)) == others
        assert _users(served(800, 2)) <= _users(own["train"])


def test_each_fold_model_is_fitted_without_its_folds_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given, every = parts(USERS[:600])
    seen: list[tuple[set[str], set[str]]] = []
    real = crossfit.fit_ranker

    def spy(fold: Mapping[str, pa.Table], *args: Any, **kwargs: Any) -> RankerFit:
        seen.append((_users(fold["train"]) | _users(fold["validation"]), _users(fold["test"])))
        return real(fold, *args, **kwargs)

    monkeypatch.setattr(crossfit, "fit_ranker", spy)
    settings = RankerTrainSettings(max_rounds=30, min_positives=5, heads=("click",))
    result = cross_fit(
        given, every, settings, 5, version="v", features=(*FEATURE_NAMES, POSITION_FEATURE)
    )

    assert len(seen) == len(result.models) == 5
    assert all(model is not None for model in result.models)
    for fitted_on, scored in seen:
        assert scored
        assert not fitted_on & scored
    assert set().union(*(scored for _, scored in seen)) == set(USERS[:600])
    per_fold = result.report["per_fold"]
    assert sum(f["test_users"] for f in per_fold) == 600
    assert all(f["heads"]["click"]["auc"] > 0.7 for f in per_fold)  # the signal is learned
    assert result.report["summary"]["click_auc"] == pytest.approx(
        np.mean([f["summary"]["click_auc"] for f in per_fold])
    )


class Constant:
    """A booster whose raw score is ``value`` times the first design column."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: np.ndarray, raw_score: bool = True, num_threads: int = 1) -> np.ndarray:
        return self.value * x[:, 0]


def model(value: float) -> RankerModel:
    """A ranker whose click head scores ``sigmoid(value * source_score:a)``."""
    head = Head("click", Constant(value), "binary", 1.0, Calibrator("none"))  # type: ignore[arg-type]
    return RankerModel(version=f"m{value}", features=("source_score:a",), heads={"click": head})


def gate_lists(users: list[str]) -> pa.Table:
    """A list per user whose one positive ``source_score:a`` puts first (the blend and
    ``source_score:b`` put it last)."""
    table = lists(users, seed=3).select(
        ["request_id", "user_id", "item_id", "merge_rank", "label", FOLD]
    )
    n = table.num_rows
    positive = np.tile(np.arange(LIST) == LIST - 1, len(users))
    return (
        table.append_column("label_click", pa.array(positive.astype(np.int64)))
        .append_column("relevant_count", pa.array(np.ones(n, dtype=np.int64)))
        .append_column("source_score:a", pa.array(np.where(positive, 1.0, 0.5)))
        .append_column("source_score:b", pa.array(np.where(positive, 0.0, 0.5)))
    )


def test_every_row_is_scored_by_its_folds_model_and_a_fold_without_one_is_nan() -> None:
    table = gate_lists(USERS[:100])
    fold = np.asarray(table.column(FOLD).to_numpy(), dtype=int)
    models = [model(1.0), model(2.0), None, model(4.0), model(5.0)]
    scores = out_of_fold_scores(
        models, fold, table, ["a", "b"], LearnedRankerConfig(weights=CLICKS)
    )
    a = np.asarray(table.column("source_score:a"))
    for k, value in enumerate([1.0, 2.0, None, 4.0, 5.0]):
        rows = fold == k
        if value is None:
            assert np.isnan(scores[rows]).all()
        else:
            np.testing.assert_allclose(scores[rows], sigmoid(value * a[rows]))


SURFACE = SurfaceConfig(
    sources=[SourceSlotConfig(name="a", quota=10), SourceSlotConfig(name="b", quota=10)],
    ranker=ComponentConfig(name="learned", params={"weights": CLICKS}),
)


def test_cross_fitted_the_gate_judges_every_users_list_with_out_of_fold_scores() -> None:
    users = USERS[:300]
    every = gate_lists(users)
    # The serving model orders every list perfectly; fold 1's model, fitted without fold
    # 1's users, gets them backwards. Only out-of-fold scores show that.
    folds = [model(1.0), model(-1.0), model(1.0), model(1.0), model(1.0)]
    crossed = CrossFit(folds, every)
    result = _gate(model(1.0), None, SURFACE, every.slice(0, 0), crossed)

    assert result.lists["interactions"] == len(users)
    in_fold_1 = np.mean([fold_of(u, 5) == 1 for u in users])
    # A list ordered backwards has its positive last: NDCG 1 / log2(LIST + 1).
    expected = 1.0 - in_fold_1 * (1.0 - 1.0 / np.log2(LIST + 1))
    assert result.figures[LEARNED]["interactions"] == pytest.approx(expected)
    assert result.figures["source:a"]["interactions"] == pytest.approx(1.0)
    # A fold without a model leaves its lists out for every alternative alike.
    crossed = CrossFit([model(1.0), None, *folds[2:]], every)
    fewer = _gate(model(1.0), None, SURFACE, every.slice(0, 0), crossed)
    assert fewer.lists["interactions"] == sum(fold_of(u, 5) != 1 for u in users)
    assert fewer.figures[LEARNED]["interactions"] == pytest.approx(1.0)


def test_without_cross_fitting_the_gate_judges_the_test_part_with_the_serving_model() -> None:
    users = USERS[:300]
    every = gate_lists(users)
    test = every.filter(pc.equal(every.column(FOLD), 0))
    result = _gate(model(-1.0), None, SURFACE, test)
    assert result.lists["interactions"] == sum(part_of(u) == "test" for u in users)
    assert result.figures[LEARNED]["interactions"] == pytest.approx(1.0 / np.log2(LIST + 1))

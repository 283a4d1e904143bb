"""A model version's drift reference: its ranker's features binned on the training rows
(the shown position left out), its serving score on the held-out rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recloop.config import RankerTrainSettings
from recloop.evaluation.drift_reference import drift_reference, save_drift_reference
from recloop.monitoring.drift import DRIFT_REFERENCE, DriftReference, psi
from recloop.ranking.learned import BLEND, RankerModel
from recloop.training.ranker import fit_ranker

pytestmark = pytest.mark.unit


def _rows(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ctr = rng.normal(shift, 1.0, n)
    clicked = rng.random(n) < 1 / (1 + np.exp(2.0 - ctr))
    return pa.table(
        {
            "item_ctr_30d": ctr,
            "user_engagement_7d": rng.poisson(3, n).astype(float),
            "position": np.tile(np.arange(10), n // 10),
            "label_click": clicked.astype(np.int32),
            "label": clicked.astype(np.int32),
            "request_id": np.repeat([f"r{seed}-{i}" for i in range(n // 10)], 10),
        }
    )


@pytest.fixture(scope="module")
def model() -> RankerModel:
    parts = {"train": _rows(4000, 1), "validation": _rows(1000, 2), "test": _rows(1000, 3)}
    fitted = fit_ranker(
        parts,
        RankerTrainSettings(max_rounds=30, heads=("click",)),
        version="v1",
        features=("item_ctr_30d", "user_engagement_7d", "position"),
    )
    assert fitted.model is not None
    return fitted.model


def test_every_feature_but_the_position_is_binned_and_the_score_too(model: RankerModel) -> None:
    train, test = _rows(4000, 1), _rows(1000, 3)
    reference = drift_reference(model, train, test)
    assert [b.name for b in reference.features] == ["item_ctr_30d", "user_engagement_7d"]
    assert reference.version == "v1"
    assert reference.rows == 4000
    ctr = reference.features[0]
    assert sum(ctr.shares) == pytest.approx(1.0)
    # The training rows fit their own bins; rows drawn one deviation higher do not.
    assert psi(ctr.shares, ctr.counts(_rows(2000, 9).column("item_ctr_30d").to_numpy())) < 0.05
    shifted = _rows(2000, 9, shift=1.0).column("item_ctr_30d").to_numpy()
    assert psi(ctr.shares, ctr.counts(shifted)) > 0.25
    assert reference.score is not None
    assert reference.score.name == "score"


def test_a_ranker_that_serves_the_blend_has_no_score_reference(
    model: RankerModel, tmp_path: Path
) -> None:
    blend = replace(model, serve=BLEND)
    save_drift_reference(tmp_path, blend, {"train": _rows(1000, 1), "test": _rows(100, 3)})
    reference = DriftReference.load(tmp_path / DRIFT_REFERENCE)
    assert reference.score is None
    assert len(reference.features) == 2


def test_items_from_candidate_rows_weighted_back_users_from_impressions_no_clock_features(
    model: RankerModel,
) -> None:
    # Served items: ranked high (another population of items), for live users (theirs).
    impressions = _rows(1000, 4, shift=3.0)
    live_users = impressions.column("user_engagement_7d").to_numpy() + 10.0
    impressions = impressions.set_column(
        impressions.column_names.index("user_engagement_7d"),
        "user_engagement_7d",
        pa.array(live_users),
    )
    candidates = _rows(2000, 5)
    # Candidates with a low item_ctr_30d were sampled at a quarter: each stands for four.
    low = candidates.column("item_ctr_30d").to_numpy() < 0
    kept = candidates.filter(pa.array(~low | (np.arange(2000) % 4 == 0)))
    weights = np.where(kept.column("item_ctr_30d").to_numpy() < 0, 4.0, 1.0)
    kept = kept.append_column("merge_rank", pa.array(np.arange(kept.num_rows), pa.int32()))
    kept = kept.append_column("sampling_weight", pa.array(weights))
    train = pa.concat_tables([impressions, kept], promote_options="permissive")
    # (Serving the blend: its heads, trained without the extra column, are not run.)
    clocked = replace(model, features=(*model.features, "context_hour"), serve=BLEND)
    train = train.append_column("context_hour", pa.array(np.zeros(train.num_rows)))

    reference = drift_reference(clocked, train, train)

    assert [b.name for b in reference.features] == ["item_ctr_30d", "user_engagement_7d"]
    assert reference.rows == train.num_rows
    # The request's own features (the user's) are the live requests': the impressions'.
    users = reference.features[1]
    assert psi(users.shares, users.counts(live_users)) < 0.02
    ctr = reference.features[0]
    # Every candidate, as serving would see them: the sample weighted back, no impression.
    every = candidates.column("item_ctr_30d").to_numpy()
    assert psi(ctr.shares, ctr.counts(every)) < 0.02
    unweighted = drift_reference(clocked, train.drop_columns(["sampling_weight"]), train).features[
        0
    ]
    assert psi(unweighted.shares, unweighted.counts(every)) > psi(ctr.shares, ctr.counts(every))

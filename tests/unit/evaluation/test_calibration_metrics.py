"""Classifier metrics: AUC against its pairwise definition, log loss, reliability bins."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.evaluation.calibration import (
    auc,
    expected_calibration_error,
    log_loss,
    reliability_table,
)

pytestmark = pytest.mark.unit


def pairwise_auc(scores: list[float], labels: list[int]) -> float:
    """The definition: P(score of a positive > score of a negative), ties counting half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@given(
    st.lists(
        st.tuples(st.integers(0, 5).map(float), st.integers(0, 1)), min_size=2, max_size=40
    ).filter(lambda rows: 0 < sum(y for _, y in rows) < len(rows))
)
def test_auc_equals_the_pairwise_definition_including_ties(rows: list[tuple[float, int]]) -> None:
    scores = [s for s, _ in rows]
    labels = [y for _, y in rows]

    assert auc(np.array(scores), np.array(labels)) == pytest.approx(pairwise_auc(scores, labels))


def test_auc_is_nan_when_one_class_is_missing() -> None:
    assert math.isnan(auc(np.array([0.1, 0.9]), np.array([1, 1])))


def test_log_loss_of_a_known_case() -> None:
    value = log_loss(np.array([0.8, 0.1]), np.array([1, 0]))

    assert value == pytest.approx(-(math.log(0.8) + math.log(0.9)) / 2)


@given(
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=1, max_size=200),
    st.integers(1, 20),
)
def test_reliability_bins_cover_every_row_in_prediction_order(
    rows: list[tuple[float, int]], bins: int
) -> None:
    p = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])

    table = reliability_table(p, y, bins)

    assert sum(b.count for b in table) == len(rows)
    assert all(a.high <= b.low for a, b in itertools.pairwise(table))
    assert 0.0 <= expected_calibration_error(table) <= 1.0


def test_a_calibrated_predictor_has_a_small_ece_and_an_inflated_one_does_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.2, 50_000)
    y = (rng.random(len(p)) < p).astype(float)

    calibrated = expected_calibration_error(reliability_table(p, y))
    inflated = expected_calibration_error(reliability_table(np.minimum(1.0, 2 * p), y))

    assert calibrated < 0.01
    assert inflated > 0.08

"""Calibrators: isotonic is monotone and fits; Platt recovers a known distortion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.evaluation.calibration import expected_calibration_error, reliability_table
from recloop.ranking.calibration import (
    Calibrator,
    fit_isotonic,
    fit_platt,
    logit,
    sigmoid,
)

pytestmark = pytest.mark.unit


@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=1, max_size=300))
def test_isotonic_output_never_decreases_and_stays_a_probability(
    rows: list[tuple[float, int]],
) -> None:
    scores = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows], dtype=float)
    calibrator = fit_isotonic(scores, labels)

    grid = np.linspace(-0.5, 1.5, 101)
    out = calibrator.apply(grid)

    assert np.all(np.diff(out) >= -1e-12)
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_isotonic_pools_adjacent_violators_into_their_mean() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    labels = np.array([0.0, 1.0, 0.0, 1.0])

    calibrator = fit_isotonic(scores, labels)

    # The middle pair violates the order: pooled to 0.5 at its centre, 0.25.
    assert calibrator.knots_x == pytest.approx((0.1, 0.25, 0.4))
    assert calibrator.knots_y == pytest.approx((0.0, 0.5, 1.0))


def distorted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose log-odds are 2x the truth plus 1: overconfident and too high."""
    rng = np.random.default_rng(seed)
    true = sigmoid(rng.normal(-3.0, 1.0, n))
    labels = (rng.random(n) < true).astype(float)
    return sigmoid(2.0 * logit(true) + 1.0), labels


def test_platt_recovers_the_inverse_of_a_logit_distortion() -> None:
    scores, labels = distorted(200_000, seed=1)

    calibrator = fit_platt(scores, labels)

    assert calibrator.slope == pytest.approx(0.5, abs=0.03)
    assert calibrator.intercept == pytest.approx(-0.5, abs=0.1)


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
def test_calibration_fitted_on_one_sample_removes_the_error_on_another(fit) -> None:  # type: ignore[no-untyped-def]
    train_scores, train_labels = distorted(50_000, seed=2)
    test_scores, test_labels = distorted(50_000, seed=3)

    calibrator: Calibrator = fit(train_scores, train_labels)

    before = expected_calibration_error(reliability_table(test_scores, test_labels))
    after = expected_calibration_error(
        reliability_table(calibrator.apply(test_scores), test_labels)
    )
    assert before > 0.03
    assert after < before / 4


def test_a_calibrator_survives_its_json_form() -> None:
    scores, labels = distorted(5_000, seed=4)
    calibrator = fit_isotonic(scores, labels)

    again = Calibrator.from_dict(calibrator.as_dict())

    assert np.array_equal(again.apply(scores), calibrator.apply(scores))


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
@given(
    st.lists(
        st.tuples(st.floats(0.001, 0.999), st.integers(0, 1), st.integers(1, 4)),
        min_size=2,
        max_size=60,
    )
)
def test_a_row_weighing_k_counts_as_k_copies_of_it(fit, rows: list[tuple[float, int, int]]) -> None:  # type: ignore[no-untyped-def]
    scores = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows], dtype=float)
    weights = np.array([r[2] for r in rows], dtype=float)

    weighted: Calibrator = fit(scores, labels, weights=weights)
    copied: Calibrator = fit(
        np.repeat(scores, weights.astype(int)), np.repeat(labels, weights.astype(int))
    )

    grid = np.linspace(0.0, 1.0, 41)
    # Newton's steps stop within a tolerance: the two fits agree to far below any use.
    assert weighted.apply(grid) == pytest.approx(copied.apply(grid), abs=1e-5)


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
def test_negatives_sampled_and_weighted_calibrate_to_the_full_rate(fit) -> None:  # type: ignore[no-untyped-def]
    scores, labels = distorted(200_000, seed=5)
    rng = np.random.default_rng(6)
    # Keep every positive and a tenth of the negatives, as candidate rows are sampled.
    kept = (labels > 0.5) | (rng.random(len(labels)) < 0.1)
    weights = np.where(labels[kept] > 0.5, 1.0, 10.0)

    unweighted: Calibrator = fit(scores[kept], labels[kept])
    weighted: Calibrator = fit(scores[kept], labels[kept], weights=weights)

    rate = labels.mean()
    # Unweighted, the map promises the sample's rate, several times the full one.
    assert unweighted.apply(scores).mean() > 3 * rate
    assert weighted.apply(scores).mean() == pytest.approx(rate, rel=0.1)
    after = expected_calibration_error(reliability_table(weighted.apply(scores), labels))
    assert after < 0.01


def test_platt_on_a_set_of_one_label_predicts_its_smoothed_rate() -> None:
    # A full Newton step from the identity once sent this set to a slope of -6e8.
    calibrator = fit_platt(
        np.array([0.90625, 0.25]), np.array([0.0, 0.0]), weights=np.array([1.0, 2.0])
    )

    assert calibrator.apply(np.linspace(0.0, 1.0, 11)) == pytest.approx(
        np.full(11, 1.0 / 5.0), abs=1e-6
    )


def test_platt_on_scores_all_alike_is_a_constant_at_their_rate() -> None:
    scores = np.full(8, 0.75)
    labels = np.array([0, 0, 0, 1, 0, 1, 0, 0], dtype=float)

    calibrator = fit_platt(scores, labels)

    assert abs(calibrator.slope) < 1e-6
    # Smoothed targets: positives at 3/4, negatives at 1/8, so (2 * 3/4 + 6 / 8) / 8.
    assert calibrator.apply(np.array([0.1, 0.9])) == pytest.approx([0.28125, 0.28125], abs=1e-6)

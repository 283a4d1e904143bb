"""Validation split and tuning of trained sources."""

from __future__ import annotations

import pytest

from recloop.training.sources import evaluate, fit, time_validation, tune
from tests.factories import returning_users

pytestmark = pytest.mark.unit


def test_validation_asks_about_later_items_only_of_users_seen_before() -> None:
    data = returning_users()
    validation = time_validation(data, 0.2)
    train = validation.train.interactions
    assert train.timestamps.max() < validation.cutoff_ts
    assert validation.cases
    for case in validation.cases:
        assert case.history  # seen before the cut-off
        assert not case.relevant & case.exclude  # only items new to the user count


def test_tuning_never_ends_worse_on_validation_than_the_parameters_it_started_from() -> None:
    validation = time_validation(returning_users(), 0.2)
    start = {"window": 1, "alpha": 1.0}
    baseline, _ = fit("covisitation", start, validation.train)
    before = evaluate(baseline, validation.cases)["recall@100"]
    result = tune("covisitation", validation, trials=2, start=start)
    assert result.trials == 2
    assert result.value >= before
    assert set(result.params) >= {"window", "alpha", "half_life_days", "recency_half_life"}


def test_fixed_parameters_are_kept_out_of_the_search() -> None:
    validation = time_validation(returning_users(), 0.2)
    result = tune("ease", validation, trials=2, fixed={"l2": 42.0})
    assert result.params["l2"] == 42.0


def test_the_first_trial_is_the_starting_point() -> None:
    validation = time_validation(returning_users(), 0.2)
    start = {"window": 3, "alpha": 0.25, "half_life_days": 7.0, "recency_half_life": 2.0}
    baseline, _ = fit("covisitation", start, validation.train)
    result = tune("covisitation", validation, trials=1, start=start)
    assert result.params == start
    assert result.value == evaluate(baseline, validation.cases)["recall@100"]

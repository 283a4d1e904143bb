"""``ranker_no_regression``: the new ranker against the served one on the same test lists."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.training.gate import MIN_LISTS, ListValues
from recloop.training.promotion import RANKER_NO_REGRESSION, ranker_no_regression

pytestmark = pytest.mark.unit


def _values(
    learned: np.ndarray, previous: np.ndarray, blend: np.ndarray | None = None
) -> ListValues:
    per_list = {"learned": {"interactions": learned}, "previous": {"interactions": previous}}
    if blend is not None:
        per_list["blend"] = {"interactions": blend}
    return ListValues(per_list, {"interactions": len(learned)}, served=False)


RNG = np.random.default_rng(5)
SERVED = RNG.uniform(0.1, 0.5, 300)


def test_a_sure_drop_beyond_the_tolerance_blocks_with_both_figures() -> None:
    gate = ranker_no_regression(_values(SERVED * 0.5, SERVED), "previous", "v1", 0.05)
    assert gate.name == RANKER_NO_REGRESSION
    assert not gate.passed
    new, old = float(np.mean(SERVED * 0.5)), float(np.mean(SERVED))
    assert f"the new learned ranker {new:.4f} against the served ranker {old:.4f}" in gate.detail
    assert "against served v1's" in gate.detail
    assert "fell 50%" in gate.detail
    assert "(train.promotion.max_ranker_regression)" in gate.detail


def test_a_drop_within_the_tolerance_passes() -> None:
    gate = ranker_no_regression(_values(SERVED * 0.97, SERVED), "learned", "v1", 0.05)
    assert gate.passed, gate.detail


def test_a_drop_beyond_the_tolerance_within_the_noise_passes() -> None:
    # The mean is 10% lower, but over lists whose differences swing far both ways.
    noise = RNG.normal(0.0, 0.5, 30)
    learned = SERVED[:30] + noise - noise.mean() - 0.1 * SERVED[:30].mean()
    gate = ranker_no_regression(_values(learned, SERVED[:30]), "learned", "v1", 0.05)
    assert gate.passed, gate.detail


def test_the_ordering_the_version_would_serve_is_compared_too() -> None:
    gate = ranker_no_regression(_values(SERVED, SERVED, blend=SERVED * 0.6), "blend", "v1", 0.05)
    assert not gate.passed
    assert "blend (would serve)" in gate.detail
    assert "fell 40%" in gate.detail
    # A blocked gate names what fell only: the learned ranker did not.
    assert "the new learned ranker" not in gate.detail


def test_nothing_to_compare_passes_and_says_why() -> None:
    assert ranker_no_regression("nothing is served yet", "learned", "", 0.05).detail == (
        "not compared: nothing is served yet"
    )
    few = _values(SERVED[: MIN_LISTS - 1] * 0.1, SERVED[: MIN_LISTS - 1])
    gate = ranker_no_regression(few, "learned", "v1", 0.05)
    assert gate.passed
    assert "too few test lists" in gate.detail


def test_a_learned_ranker_that_serves_nothing_is_not_held_against_its_version() -> None:
    # The served version's ranker lost to the blend, so it serves the blend; the new one
    # loses to the blend as well, and the new version serves the blend too.
    values = _values(SERVED * 0.5, SERVED, blend=SERVED)
    gate = ranker_no_regression(values, "blend", "v1", 0.05, previous_serves="blend")
    assert gate.passed, gate.detail
    # The same figures where the served version serves its learned ranker: a training
    # whose ranker fell that far looks broken, whatever the new version would serve.
    assert not ranker_no_regression(values, "blend", "v1", 0.05).passed


def test_a_version_that_would_serve_the_served_ordering_passes_and_says_so() -> None:
    values = _values(SERVED * 0.5, SERVED)
    gate = ranker_no_regression(values, "previous", "v1", 0.05, previous_serves="blend")
    assert gate.passed
    assert "serves what served v1 serves (blend)" in gate.detail

"""Drift measures: PSI and the chi-square test on reference bins, the live window, the
aligned embedding shift, and the monitor's verdicts."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.config.drift import DriftSettings
from recloop.monitoring.drift import (
    DriftReference,
    DriftWindow,
    aligned_cosine_shift,
    chi_square,
    fit_binning,
    psi,
)
from recloop.monitoring.drift_monitor import DriftMonitor, EmbeddingShift

pytestmark = pytest.mark.unit

shares = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12)


@given(shares)
def test_psi_is_zero_for_the_same_distribution(expected: list[float]) -> None:
    total = sum(expected)
    as_counts = [1000 * e / total for e in expected]
    assert psi(expected, as_counts) == pytest.approx(0.0, abs=1e-9)


@given(shares, st.floats(0.05, 0.9))
def test_psi_grows_as_mass_moves_to_one_bin(expected: list[float], step: float) -> None:
    e = np.asarray(expected) / sum(expected)
    target = np.zeros_like(e)
    target[int(np.argmin(e))] = 1.0
    # Mixtures further toward one bin: never a smaller PSI.
    values = [psi(e, (1 - t) * e + t * target) for t in (0.0, step / 2, step, 1.0)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
    assert values[-1] > values[0]


@settings(deadline=None, max_examples=30)
@given(st.floats(-5, 5), st.floats(0.1, 5), st.integers(0, 2**31))
def test_a_sample_of_the_reference_distribution_is_not_drift(
    loc: float, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    binning = fit_binning("x", rng.normal(loc, scale, 20_000))
    live = binning.counts(rng.normal(loc, scale, 2_000))
    assert psi(binning.shares, live) < 0.05
    assert chi_square(binning.shares, live, 2_000)[1] > 1e-4


@settings(deadline=None, max_examples=30)
@given(st.floats(-5, 5), st.floats(0.1, 5), st.integers(0, 2**31))
def test_a_shifted_sample_is_drift(loc: float, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    binning = fit_binning("x", rng.normal(loc, scale, 20_000))
    live = binning.counts(rng.normal(loc + scale, scale, 2_000))  # one standard deviation
    assert psi(binning.shares, live) > 0.25
    assert chi_square(binning.shares, live, 2_000)[1] < 1e-6


def test_the_test_needs_a_sample_psi_does_not() -> None:
    binning = fit_binning("x", np.random.default_rng(1).normal(0, 1, 10_000))
    live = binning.counts(np.random.default_rng(2).normal(0.5, 1, 5_000))
    few, many = chi_square(binning.shares, live, 5)[1], chi_square(binning.shares, live, 5_000)[1]
    # The same shares: the statistic scales with the effective sample size, PSI does not.
    assert few > 0.5
    assert many < 1e-10


def test_a_mostly_zero_feature_keeps_zero_in_a_bin_of_its_own() -> None:
    values = np.concatenate([np.zeros(900), np.arange(1, 101, dtype=float)])
    binning = fit_binning("x", values)
    assert binning.shares[0] == pytest.approx(0.9)
    # Live rows that are all zero: a large shift, all in the zero bin.
    assert psi(binning.shares, binning.counts(np.zeros(100))) > 0.05
    assert psi(binning.shares, binning.counts(values)) == pytest.approx(0.0, abs=1e-12)


def test_categories_keep_their_commonest_codes_and_an_other_bin() -> None:
    codes = np.array([5.0] * 50 + [7.0] * 30 + [9.0] * 20)
    binning = fit_binning("c", codes, categorical=True, categories=2)
    assert binning.edges == (5.0, 7.0)
    assert binning.shares == pytest.approx((0.5, 0.3, 0.2))
    counts = binning.counts(np.array([7.0, 11.0, 5.0, 5.0]))
    assert counts.tolist() == [2.0, 1.0, 1.0]
    # A code never seen in training is drift: everything lands in "other".
    assert psi(binning.shares, binning.counts(np.full(100, 42.0))) > 1.0


def test_a_missing_value_has_a_bin_and_the_infinities_the_extreme_ones() -> None:
    binning = fit_binning("x", np.arange(100.0))
    counts = binning.counts(np.array([np.nan, np.inf, -np.inf, 3.0]))
    assert counts[-1] == 1  # NaN
    assert counts[-2] == 1  # +inf: above every edge
    assert counts[0] == 1  # -inf
    assert counts.sum() == 4


cells = st.one_of(st.floats(-3, 3), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, 2.0, 7.0]))


@settings(deadline=None, max_examples=60)
@given(
    st.integers(0, 2**31),
    st.lists(st.lists(cells, min_size=4, max_size=4), min_size=1, max_size=30),
    st.permutations(["q", "c", "z", "other"]),
)
def test_a_window_counts_each_column_as_its_binning_does(
    seed: int, table: list[list[float]], names: list[str]
) -> None:
    rng = np.random.default_rng(seed)
    reference = DriftReference(
        "v",
        (
            fit_binning("q", rng.normal(size=200)),
            fit_binning("c", rng.integers(0, 4, 200).astype(float), categorical=True),
            fit_binning("z", np.zeros(50)),
        ),
    )
    window = DriftWindow(reference)
    rows = np.array(table)
    window.observe(names, rows)
    by_name = {d.name: d for d in window.features()}
    assert set(by_name) == {"q", "c", "z"}
    for binning in reference.features:
        expected = binning.counts(rows[:, names.index(binning.name)])
        assert by_name[binning.name].psi == pytest.approx(psi(binning.shares, expected))


def _reference(seed: int = 0) -> DriftReference:
    rng = np.random.default_rng(seed)
    return DriftReference(
        "v1",
        (fit_binning("a", rng.normal(0, 1, 5000)), fit_binning("b", rng.exponential(1, 5000))),
        fit_binning("score", rng.uniform(0, 1, 5000)),
        5000,
    )


def test_a_reference_saves_and_loads(tmp_path: Path) -> None:
    reference = _reference()
    reference.save(tmp_path / "ref.json")
    assert DriftReference.load(tmp_path / "ref.json") == reference


def test_a_window_measures_the_rows_folded_in_and_decays() -> None:
    window = DriftWindow(_reference(), window_rows=1000)
    rng = np.random.default_rng(3)
    for _ in range(40):
        rows = np.column_stack([rng.normal(0, 1, 50), rng.exponential(1, 50), np.ones(50)])
        window.observe(["a", "b", "not in the reference"], rows, rng.uniform(0, 1, 50))
    by_name = {d.name: d for d in window.features()}
    assert set(by_name) == {"a", "b"}
    assert by_name["a"].psi < 0.1
    assert by_name["b"].psi < 0.1
    assert by_name["a"].rows <= 1000  # halved past window_rows
    score = window.score()
    assert score is not None
    assert score.psi < 0.1
    for _ in range(40):  # then "a" moves by two standard deviations
        rows = np.column_stack([rng.normal(2, 1, 50), rng.exponential(1, 50)])
        window.observe(["a", "b"], rows, rng.uniform(0, 1, 50))
    by_name = {d.name: d for d in window.features()}
    assert by_name["a"].psi > 1.0
    assert by_name["a"].p_value < 1e-6
    assert by_name["b"].psi < 0.1


def test_the_monitor_names_what_drifted_once_the_sample_is_large_enough() -> None:
    monitor = DriftMonitor(DriftSettings(min_requests=20, sample_every=1))
    monitor.publish("app", _reference())
    window = monitor.window("app", "v1")
    assert window is not None
    assert monitor.window("app", "v2") is None  # another version: not this reference
    rng = np.random.default_rng(4)
    for n in range(30):
        rows = np.column_stack([rng.normal(3, 1, 20), rng.exponential(1, 20)])
        window.observe(["a", "b"], rows)
        if n == 10:
            assert monitor.state("app").drifted == ()  # 11 requests: too few to say
    state = monitor.state("app")
    assert [d.split(":")[0] for d in state.drifted] == ["a"]
    monitor.served("app", head=9, items=10)
    monitor.embeddings_shifted("app", (EmbeddingShift("als", "item", 0.9, 100, "v0"),))
    state = monitor.state("app")
    assert state.head_share == pytest.approx(0.9)
    # A retraining answers the feature, not the new version's embeddings nor the head.
    assert [d.split(":")[0] for d in state.drifted] == ["a"]
    assert [w.split(":")[0] for w in state.warnings] == ["als item embeddings", "head share"]
    gauges = {(name, tuple(sorted(labels.items()))): v for name, _, labels, v in monitor.gauges()}
    assert gauges[("recloop_drift_detected", (("app", "app"),))] == 1.0
    assert gauges[("recloop_drift_feature_psi", (("app", "app"), ("feature", "a")))] > 1.0
    monitor.publish("app", None)  # a version without a reference: its counts are gone
    assert monitor.state("app").features == ()


def test_the_monitor_samples_one_request_in_n() -> None:
    monitor = DriftMonitor(DriftSettings(sample_every=4))
    assert sum(monitor.sampled() for _ in range(100)) == 25
    assert not any(DriftMonitor(DriftSettings(enabled=False)).sampled() for _ in range(10))


def test_embedding_shift_is_zero_for_a_rotation_and_large_for_a_reshuffle() -> None:
    rng = np.random.default_rng(5)
    ids = [f"i{n}" for n in range(300)]
    vectors = rng.normal(size=(300, 16))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    # The same geometry, rotated and with ids in another order: no shift.
    order = rng.permutation(300)
    rotated = aligned_cosine_shift(
        (ids, vectors), ([ids[i] for i in order], (vectors @ rotation)[order])
    )
    assert rotated is not None
    assert rotated[0] == pytest.approx(0.0, abs=1e-9)
    assert rotated[1] == 300
    # The same vectors given to other ids: nothing kept.
    shuffled = aligned_cosine_shift((ids, vectors), ([ids[i] for i in order], vectors))
    assert shuffled is not None
    assert shuffled[0] > 0.7
    # A little noise: a little shift.
    noisy = aligned_cosine_shift((ids, vectors), (ids, vectors + rng.normal(0, 0.1, vectors.shape)))
    assert noisy is not None
    assert 0.0 < noisy[0] < 0.05
    assert aligned_cosine_shift((ids, vectors), (["other"], vectors[:1])) is None

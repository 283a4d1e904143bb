"""The shadow report: agreement with the served lists and an off-policy CTR with support."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.analysis.shadow_report import ShadowPair, shadow_report
from recloop.domain import RecommendationRecord, ServedItem, ShadowRecord
from recloop.evaluation.ope import BootstrapSpec

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ITEMS = [f"i{n}" for n in range(6)]
#: Each item's click probability when examined, and each position's examination probability.
APPEAL = dict(zip(ITEMS, [0.30, 0.05, 0.20, 0.10, 0.15, 0.02], strict=True))
EXAMINED = [1.0, 0.6, 0.4]


def _pair(
    n: int,
    served: list[str],
    shadow: list[str],
    clicked: set[str],
    propensity: float,
    latency: float = 5.0,
) -> ShadowPair:
    rid = f"r{n:06d}"
    return ShadowPair(
        RecommendationRecord(
            "app", rid, f"u{n % 50}", "home", NOW,
            tuple(ServedItem(i, k, 1.0, "s", propensity) for k, i in enumerate(served)),
            "v1", None, "default", False, latency,
        ),
        ShadowRecord(
            "app", rid, "next", f"u{n % 50}", "home", NOW,
            tuple(ServedItem(i, k, 1.0, "s", 1.0) for k, i in enumerate(shadow)),
            "v2", False, 2 * latency,
        ),
        frozenset(clicked),
    )  # fmt: skip


def _clicks(items: list[str], rng: np.random.Generator) -> set[str]:
    return {
        i for k, i in enumerate(items) if rng.random() < EXAMINED[k] and rng.random() < APPEAL[i]
    }


def test_the_shadows_ctr_is_estimated_without_bias_from_randomised_served_lists() -> None:
    rng = np.random.default_rng(5)
    shadow = ["i0", "i2", "i4"]  # the best three, best first
    pairs = []
    for n in range(6000):
        # Served: a uniformly random ordered pick of 3 of 6, so every item is at every
        # position with probability 1/6.
        served = [ITEMS[j] for j in rng.permutation(6)[:3]]
        pairs.append(_pair(n, served, shadow, _clicks(served, rng), 1 / 6))
    truth = float(np.mean([EXAMINED[k] * APPEAL[i] for k, i in enumerate(shadow)]))

    report = shadow_report("next", pairs, bootstrap=BootstrapSpec(n_resamples=300, seed=1))

    estimate = report.shadow_ctr
    assert estimate is not None
    assert estimate.ci_low <= truth <= estimate.ci_high
    assert estimate.value == pytest.approx(truth, rel=0.15)
    served_truth = float(np.mean([EXAMINED[k] * np.mean(list(APPEAL.values())) for k in range(3)]))
    assert report.served_ctr == pytest.approx(served_truth, rel=0.1)
    assert report.unsupported_share == 0.0
    assert report.same_slot == pytest.approx(1 / 6, abs=0.01)


def test_a_shadow_that_matches_the_served_lists_has_the_served_ctr() -> None:
    rng = np.random.default_rng(2)
    pairs = []
    for n in range(500):
        served = ["i0", "i1", "i2"]
        pairs.append(_pair(n, served, served, _clicks(served, rng), 1.0))

    report = shadow_report("next", pairs, bootstrap=BootstrapSpec(n_resamples=100))

    assert report.shadow_ctr is not None
    assert report.shadow_ctr.value == pytest.approx(report.served_ctr)
    assert (report.overlap, report.same_first, report.same_slot) == (1.0, 1.0, 1.0)
    assert report.warnings == ()
    assert report.served is not None
    assert report.shadowed is not None
    assert report.shadowed.latency_p50_ms == pytest.approx(2 * report.served.latency_p50_ms)


def test_a_shadow_the_served_policy_never_explores_towards_is_flagged() -> None:
    rng = np.random.default_rng(3)
    pairs = []
    for n in range(500):
        served = ["i0", "i1", "i2"]
        pairs.append(_pair(n, served, ["i3", "i1", "i5"], _clicks(served, rng), 1.0))

    report = shadow_report("next", pairs, bootstrap=BootstrapSpec(n_resamples=100))

    assert report.unsupported_share == pytest.approx(2 / 3)
    assert any("could never have shown" in w for w in report.warnings)
    assert report.overlap == pytest.approx(1 / 3)
    assert report.same_first == 0.0


def test_no_shadowed_requests_is_an_empty_report_with_the_missing_counted() -> None:
    report = shadow_report("next", [], missing_served=3)
    assert report.requests == 0
    assert report.shadow_ctr is None
    assert "3 shadow lists have no served list" in report.notes[0]
    assert report.to_dict()["shadowCtr"] is None


def test_users_who_click_like_bots_are_left_out() -> None:
    rng = np.random.default_rng(4)
    pairs = [_pair(n, ["i0", "i1", "i2"], ["i0", "i1", "i2"], set(), 1.0) for n in range(100)]
    # One user who clicks everything in 20 lists: 60 clicks at CTR 1.
    pairs += [
        _pair(1000 + n, ["i3", "i4", "i5"], ["i3", "i4", "i5"], {"i3", "i4", "i5"}, 1.0)
        for n in range(20)
    ]
    pairs = [
        ShadowPair(
            dataclasses.replace(p.served, user_id="bot") if p.clicked else p.served,
            p.shadow,
            p.clicked,
        )
        for p in pairs
    ]
    rng.shuffle(pairs)  # type: ignore[arg-type]

    report = shadow_report("next", pairs, bootstrap=BootstrapSpec(n_resamples=50))

    assert report.requests == 100
    assert report.served_ctr == 0.0
    assert "1 users left out as bots" in report.notes[0]


def test_a_stated_support_decides_which_shadow_slots_are_unsupported() -> None:
    rng = np.random.default_rng(6)
    pairs = []
    for n in range(200):
        served = ["i0", "i1", "i2"]
        pair = _pair(n, served, ["i3", "i1", "i5"], _clicks(served, rng), 0.9)
        # The served policy could have put i3 first (it was in its pool), never i5 third.
        supported = dataclasses.replace(pair.shadow, support=(0.05, 0.9, 0.0))
        pairs.append(ShadowPair(pair.served, supported, pair.clicked))

    report = shadow_report("next", pairs, bootstrap=BootstrapSpec(n_resamples=50))

    assert report.support_known == 1.0
    assert report.unsupported_share == pytest.approx(1 / 3)
    assert any("could never have shown" in w for w in report.warnings)
    # The estimate over the supported slots alone: positions 0 and 1, never 2.
    at_1 = np.mean([("i1" in p.clicked) for p in pairs]) / 0.9
    assert report.supported_ctr is not None
    assert report.supported_ctr.value == pytest.approx((0.0 + at_1) / 2)

"""Coverage as an experiment metric and guardrail: distinct items at equal numbers of users."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.analysis.outcomes import ExperimentOutcomes, VariantOutcomes
from recloop.analysis.report import experiment_report
from recloop.analysis.stats import coverage_test
from recloop.config import ExperimentConfig

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _users(n: int, catalog: int, rng: np.random.Generator, per_user: int = 10) -> list[set[str]]:
    # Popular items more often: a Zipf-like draw over the arm's catalog.
    weights = 1.0 / np.arange(1, catalog + 1)
    weights /= weights.sum()
    return [
        {f"i{x}" for x in rng.choice(catalog, size=per_user, replace=False, p=weights)}
        for _ in range(n)
    ]


def test_an_arm_with_more_users_but_the_same_lists_has_the_same_coverage() -> None:
    rng = np.random.default_rng(1)
    result = coverage_test(_users(3000, 2000, rng), _users(600, 2000, rng), rng=rng)
    assert result.relative_diff == pytest.approx(0.0, abs=0.03)
    assert not result.significant
    assert result.test == "distinct items at 300 users, subsampled"


def test_a_treatment_that_serves_a_narrower_catalog_covers_significantly_less() -> None:
    rng = np.random.default_rng(2)
    result = coverage_test(_users(800, 2000, rng), _users(800, 400, rng), rng=rng)
    assert result.relative_diff < -0.3
    assert result.relative_ci[1] < 0
    assert result.significant


def test_identical_arms_are_rarely_significant() -> None:
    rng = np.random.default_rng(3)
    flagged = sum(
        coverage_test(
            _users(200, 1000, rng), _users(200, 1000, rng), rng=rng, resamples=200
        ).significant
        for _ in range(60)
    )
    assert flagged <= 9  # alpha 0.05: about 3 of 60 expected


def _variant(users: list[set[str]]) -> VariantOutcomes:
    outcomes = VariantOutcomes()
    for n, items in enumerate(users):
        unit = outcomes.unit(f"u{n}")
        unit["requests"] = 1
        unit["impressions"] = len(items)
        unit["clicks"] = 1
        outcomes.user_items[f"u{n}"] = items
        outcomes.served_items.update(items)
        outcomes.latencies_ms.append(10.0)
    return outcomes


def test_a_coverage_guardrail_blocks_a_treatment_that_narrows_the_catalog() -> None:
    rng = np.random.default_rng(4)
    config = ExperimentConfig.model_validate(
        {
            "name": "e",
            "surface": "home",
            "variants": [{"name": "control", "share": 0.5}, {"name": "narrow", "share": 0.5}],
            "guardrails": [{"metric": "coverage", "bad_direction": "down", "tolerance": 0.1}],
        }
    )
    outcomes = ExperimentOutcomes(
        "e",
        {"control": _variant(_users(500, 2000, rng)), "narrow": _variant(_users(500, 300, rng))},
        NOW,
        NOW,
        0,
    )

    report = experiment_report(config, outcomes)

    (treatment,) = report.treatments
    assert treatment.metrics["coverage"].relative_diff < -0.1
    (check,) = treatment.decision.guardrails
    assert check.status.value == "tripped"
    assert treatment.decision.decision.value == "don't ship"

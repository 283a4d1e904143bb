"""The experiment report: per-user outcomes in, tests, guardrails and a decision out."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.analysis.outcomes import ExperimentOutcomes, VariantOutcomes, variant_in
from recloop.analysis.report import experiment_report, without_bots
from recloop.config import CleaningConfig, ExperimentConfig
from recloop.domain import RecommendationRecord, ServedItem

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _config(**fields: object) -> ExperimentConfig:
    data: dict[str, object] = {
        "name": "e",
        "surface": "home",
        "variants": [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}],
        "guardrails": [{"metric": "hide_rate", "bad_direction": "up"}],
    }
    return ExperimentConfig.model_validate(data | fields)


def _variant(users: int, ctr: float, hide_rate: float, rng: np.random.Generator) -> VariantOutcomes:
    outcomes = VariantOutcomes()
    for n in range(users):
        impressions = float(rng.integers(5, 40))
        unit = outcomes.unit(f"u{n}")
        unit["requests"] = impressions / 10
        unit["impressions"] = impressions
        unit["clicks"] = float(rng.binomial(int(impressions), ctr))
        unit["satisfied"] = float(rng.binomial(int(unit["clicks"]), 0.3))
        unit["hides"] = float(rng.binomial(int(impressions), hide_rate))
        outcomes.latencies_ms.extend(rng.gamma(4.0, 3.0, size=3).tolist())
    return outcomes


def _outcomes(**variants: VariantOutcomes) -> ExperimentOutcomes:
    return ExperimentOutcomes("e", dict(variants), NOW, NOW, 0)


def test_a_clear_win_within_guardrails_ships() -> None:
    rng = np.random.default_rng(1)
    report = experiment_report(
        _config(),
        _outcomes(
            control=_variant(3000, 0.05, 0.01, rng), treatment=_variant(3000, 0.07, 0.01, rng)
        ),
    )
    (treatment,) = report.treatments
    assert treatment.metrics["ctr"].relative_diff == pytest.approx(0.4, abs=0.08)
    assert treatment.decision.decision.value == "ship"
    assert treatment.power is not None
    assert 0 < treatment.power.mde_relative < 0.4


def test_more_hides_block_a_ctr_win() -> None:
    rng = np.random.default_rng(2)
    report = experiment_report(
        _config(),
        _outcomes(
            control=_variant(3000, 0.05, 0.01, rng), treatment=_variant(3000, 0.07, 0.03, rng)
        ),
    )
    (treatment,) = report.treatments
    assert treatment.decision.decision.value == "don't ship"
    assert treatment.decision.guardrails[0].status.value == "tripped"


def test_users_split_far_from_the_configured_shares_make_the_result_invalid() -> None:
    rng = np.random.default_rng(3)
    report = experiment_report(
        _config(),
        _outcomes(
            control=_variant(3000, 0.05, 0.01, rng), treatment=_variant(2500, 0.07, 0.01, rng)
        ),
    )
    assert report.srm is not None
    assert report.srm.mismatch
    assert report.treatments[0].decision.decision.value == "invalid"


def test_an_arm_without_users_gets_a_note_not_a_test() -> None:
    rng = np.random.default_rng(4)
    report = experiment_report(_config(), _outcomes(control=_variant(50, 0.05, 0.01, rng)))
    assert report.treatments == ()
    assert any("treatment" in note for note in report.notes)
    assert [v.users for v in report.variants] == [50, 0]


def _record(experiment: str | None, variant: str) -> RecommendationRecord:
    return RecommendationRecord(
        "app", "r1", "u1", "home", NOW, (ServedItem("i1", 0, 1.0, "popular", 1.0),), "v1",
        experiment, variant, False, 3.0,
    )  # fmt: skip


def test_a_list_served_under_two_experiments_counts_for_each_with_its_own_variant() -> None:
    record = _record("ranking,rules", "treatment,control")
    assert variant_in(record, "ranking") == "treatment"
    assert variant_in(record, "rules") == "control"
    assert variant_in(record, "other") is None
    assert variant_in(_record(None, "default"), "ranking") is None


def test_bots_left_out_take_their_fallback_lists_with_them() -> None:
    outcomes = VariantOutcomes()
    person = outcomes.unit("person")
    person.update(requests=90, impressions=900, clicks=20, fallbacks=0)
    bot = outcomes.unit("bot")
    bot.update(requests=10, impressions=100, clicks=95, fallbacks=10)
    outcomes.fallbacks = 10
    kept, left_out = without_bots(outcomes, CleaningConfig())
    assert left_out == 1
    assert set(kept.users) == {"person"}
    # The bots' requests and their fallback lists leave together: 0 of 90, not 10 of 90.
    assert kept.fallbacks == 0

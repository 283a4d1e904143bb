"""The promotion gates, one at a time: what passes, what blocks and what each says."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recloop.config import (
    PromotionSettings,
    RankerTrainSettings,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
)
from recloop.evaluation.retrieval_metrics import EvalCase
from recloop.ranking.learned import RankerModel
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.interactions import TrainingData
from recloop.training.promotion import (
    LATENCY,
    NO_REGRESSION,
    SCORE_SANITY,
    VALIDATED,
    ServedMetrics,
    Verdict,
    deadlines,
    latency,
    list_tables,
    no_regression,
    score_sanity,
    serving_metrics,
    validated,
)
from recloop.training.ranker import fit_ranker
from recloop.training.sources import evaluate, fit, time_validation
from tests.factories import returning_users

pytestmark = pytest.mark.unit

GOOD = {"recall@100": 0.4, "ndcg@10": 0.1, "cases": 50.0}


def test_validated_passes_sources_asked_enough_users_with_finite_metrics() -> None:
    gate = validated({"als": GOOD, "covisitation": {**GOOD, "cases": 12.0}}, 10)
    assert gate.name == VALIDATED
    assert gate.passed
    assert "each on 12 users or more" in gate.detail


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        ({"als": {}}, "als on 0 users"),  # not validated at all: the stray-event version
        ({"als": {**GOOD, "cases": 3.0}}, "als on 3 users"),
        ({"als": {**GOOD, "recall@100": math.nan}}, "als: recall@100 not finite"),
        ({}, "no source trained"),
    ],
)
def test_validated_blocks_a_source_without_a_valid_validation(
    metrics: dict[str, dict[str, float]], says: str
) -> None:
    gate = validated(metrics, 10)
    assert not gate.passed
    assert says in gate.detail


def _served(best: float, merged: float) -> ServedMetrics:
    return ServedMetrics(
        "v1",
        {"als": {"recall@100": best}, "covisitation": {"recall@100": best / 2}},
        {"recall@100": merged},
    )


def test_no_regression_passes_within_the_tolerance_and_blocks_beyond_it() -> None:
    new = {"als": {"recall@100": 0.37}, "covisitation": {"recall@100": 0.1}}
    within = no_regression(new, {"recall@100": 0.5}, _served(0.4, 0.52), "recall@100", 0.1)
    assert within.name == NO_REGRESSION
    assert within.passed, within.detail  # 7.5% and 4% lower: within 10%
    worse = no_regression(new, {"recall@100": 0.5}, _served(0.45, 0.52), "recall@100", 0.1)
    assert not worse.passed
    assert "best source fell 18%" in worse.detail
    merged = no_regression(new, {"recall@100": 0.3}, _served(0.4, 0.52), "recall@100", 0.1)
    assert not merged.passed
    assert "merged fell 42%" in merged.detail
    assert "best source" not in merged.detail.split(";")[-1]


def _cases(n: int) -> tuple[EvalCase, ...]:
    return tuple(
        EvalCase(f"u{k}", ("seen",), frozenset({f"next{k}"}), frozenset({"seen"})) for k in range(n)
    )


def _hitting(cases: tuple[EvalCase, ...], hits: np.ndarray) -> list[list[str]]:
    """One list per case that holds the case's next item where ``hits`` says so."""
    return [[f"next{k}" if hit else "other"] for k, hit in enumerate(hits)]


def _compare(
    cases: tuple[EvalCase, ...], new_hits: np.ndarray, old_hits: np.ndarray
) -> tuple[bool, str]:
    new_lists, old_lists = _hitting(cases, new_hits), _hitting(cases, old_hits)
    served = ServedMetrics(
        "v1",
        {"als": {"recall@100": float(old_hits.mean())}},
        {"recall@100": float(old_hits.mean())},
        {"als": old_lists},
        old_lists,
    )
    gate = no_regression(
        {"als": {"recall@100": float(new_hits.mean())}},
        {"recall@100": float(new_hits.mean())},
        served,
        "recall@100",
        0.1,
        cases=cases,
        new_lists={"als": new_lists},
        new_merged_lists=new_lists,
    )
    return gate.passed, gate.detail


def test_no_regression_lets_a_drop_within_the_noise_of_few_users_pass() -> None:
    # 40 users, recall 0.45 against 0.525: 14% lower, three users' worth, a coin's noise.
    rng = np.random.default_rng(0)
    old = np.zeros(40, dtype=bool)
    old[:21] = True
    new = old.copy()
    new[rng.choice(21, 5, replace=False)] = False
    new[30:32] = True
    passed, detail = _compare(_cases(40), new, old)

    assert passed, detail
    assert "within the noise of 40 users" in detail


def test_no_regression_blocks_a_drop_that_is_sure() -> None:
    # 400 users, recall 0.30 against 0.50: every user the old lists found, a third lost.
    old = np.zeros(400, dtype=bool)
    old[:200] = True
    new = old.copy()
    new[:80] = False
    new[300:320] = True
    passed, detail = _compare(_cases(400), new, old)

    assert not passed
    assert "merged fell 30%, upper bound of the difference -0." in detail


def test_no_regression_says_why_it_did_not_compare() -> None:
    gate = no_regression({"als": GOOD}, {}, "nothing is served yet", "recall@100", 0.1)
    assert gate.passed
    assert gate.detail == "not compared: nothing is served yet"


def test_the_served_versions_models_are_asked_the_new_users_unless_they_saw_them(
    tmp_path: Path,
) -> None:
    data = returning_users(40)
    validation = time_validation(data, 0.2)
    registry = ModelRegistry(tmp_path)
    assert serving_metrics(registry, "a", validation.cases, validation.cutoff_ts) == (
        "nothing is served yet"
    )

    def publish(version: str, through: float, train_on: TrainingData) -> None:
        model, _ = fit("item-knn", {}, train_on)
        with registry.writing("a", version) as directory:
            (directory / "item-knn").mkdir()
            model.save(directory / "item-knn")
            registry.write_manifest(
                directory,
                VersionManifest(
                    version,
                    "a",
                    datetime.now(UTC),
                    None,
                    (ModelEntry("item-knn", "item-knn", {}),),
                    extra={"trained_through_ts": through},
                ),
            )
        registry.promote("a", version)

    publish("v1", validation.cutoff_ts - 1, validation.train)
    served = serving_metrics(registry, "a", validation.cases, validation.cutoff_ts)
    assert isinstance(served, ServedMetrics)
    assert served.version == "v1"
    # The same evaluation as the new version's sources get, on the same users.
    expected = evaluate(fit("item-knn", {}, validation.train)[0], validation.cases)
    assert served.sources["item-knn"]["cases"] == len(validation.cases)
    assert served.sources["item-knn"]["recall@100"] == expected["recall@100"] > 0
    assert served.merged["recall@100"] == expected["recall@100"]

    publish("v2", float(data.interactions.timestamps.max()), data)
    leaked = serving_metrics(registry, "a", validation.cases, validation.cutoff_ts)
    assert isinstance(leaked, str)
    assert "trained on data after this validation's cut-off" in leaked


def _ranker_parts(collapsed: bool) -> dict[str, pa.Table]:
    """Served lists of ten whose clicks follow one feature (or nothing: a collapsed fit)."""
    rng = np.random.default_rng(0)
    parts = {}
    for name, lists in (("train", 300), ("validation", 100), ("test", 100)):
        n = lists * 10
        x = rng.random(n)
        clicks = (rng.random(n) < (0.02 if collapsed else 0.05 + 0.5 * x)).astype(np.int64)
        parts[name] = pa.table(
            {
                "request_id": [f"{name}-{i // 10}" for i in range(n)],
                "item_id": [f"i{i}" for i in range(n)],
                "label": clicks,
                "label_click": clicks,
                "position": np.tile(np.arange(10), lists).astype(np.int32),
                "item_ctr_30d": np.zeros(n) if collapsed else x,
            }
        )
    return parts


def _ranker(collapsed: bool) -> tuple[RankerModel, list[pa.Table], dict[str, tuple[float, int]]]:
    parts = _ranker_parts(collapsed)
    fitted = fit_ranker(
        parts,
        RankerTrainSettings(heads=("click",), min_positives=5, min_data_in_leaf=5),
        version="v",
        features=("item_ctr_30d",),
    )
    assert fitted.model is not None, fitted.skipped
    summary = fitted.report["summary"]
    return fitted.model, list_tables(parts["test"]), {"click": (summary["click_ece"], 1000)}


def test_score_sanity_passes_a_ranker_that_orders_its_lists() -> None:
    model, lists, ece = _ranker(collapsed=False)
    gate = score_sanity(model, lists, ece, PromotionSettings())
    assert gate.name == SCORE_SANITY
    assert gate.passed, gate.detail
    assert "100 test lists" in gate.detail


def test_score_sanity_blocks_a_collapsed_ranker_and_a_calibration_error_past_its_bound() -> None:
    model, lists, ece = _ranker(collapsed=True)
    gate = score_sanity(model, lists, ece, PromotionSettings())
    assert not gate.passed
    assert "one score for every row in 100 of 100 lists" in gate.detail
    good, lists, _ = _ranker(collapsed=False)
    miscalibrated = score_sanity(good, lists, {"click": (0.3, 1000)}, PromotionSettings())
    assert not miscalibrated.passed
    assert "calibration error 0.300 above train.promotion.max_ece (0.1)" in miscalibrated.detail
    # Over a few rows, ten bins measure noise: said, not judged.
    few = score_sanity(good, lists, {"click": (0.3, 70)}, PromotionSettings())
    assert few.passed, few.detail
    assert "calibration error click 0.300 (not judged: 70 rows)" in few.detail


class _NaNHead:
    """A head whose model answers NaN (a damaged or diverged booster)."""

    name = "click"

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), np.nan)


def test_score_sanity_blocks_scores_that_are_not_finite() -> None:
    _, lists, ece = _ranker(collapsed=False)
    model = RankerModel("v", ("item_ctr_30d",), {"click": _NaNHead()})  # type: ignore[dict-item]
    gate = score_sanity(model, lists, ece, PromotionSettings())
    assert not gate.passed
    assert gate.detail == "click: scores not finite"
    assert score_sanity(None, [], {}, PromotionSettings()).passed


def test_latency_blocks_a_source_or_ranker_past_its_deadline() -> None:
    fast = [1.0] * 95 + [30.0] * 5
    gate = latency({"als": fast}, {"als": 15.0}, [2.0] * 100, 10.0, 0.95)
    assert gate.name == LATENCY
    assert gate.passed, gate.detail  # the slowest 5% are over, the 95th percentile is not
    slow = latency({"als": [1.0] * 90 + [30.0] * 10}, {"als": 15.0}, [], 10.0, 0.95)
    assert not slow.passed
    assert "als p95 30.0 ms over its 15 ms deadline" in slow.detail
    ranker = latency({"als": fast}, {"als": 15.0}, [12.0] * 100, 10.0, 0.95)
    assert not ranker.passed
    assert "ranker p95 12.0 ms over serving.budget.rank_ms (10)" in ranker.detail
    assert latency({}, {}, [], 10.0, 0.95).passed


def test_a_sources_deadline_is_its_tightest_slot_within_the_retrieve_budget() -> None:
    settings = Settings(
        surfaces={
            "home": SurfaceConfig(
                sources=[
                    SourceSlotConfig(name="als", timeout_ms=40),
                    SourceSlotConfig(name="covisitation", timeout_ms=8),
                ]
            ),
            "more": SurfaceConfig(sources=[SourceSlotConfig(name="als", timeout_ms=20)]),
        }
    )
    assert deadlines(settings) == {"als": 20.0, "covisitation": 8.0}  # retrieve_ms is 25


def test_a_verdict_passes_when_every_gate_did_and_reads_back_as_written() -> None:
    verdict = Verdict(
        (validated({"als": GOOD}, 10), latency({"als": [50.0]}, {"als": 15.0}, [], 10, 0.95))
    )
    assert not verdict.passed
    assert [g.name for g in verdict.blocked_by] == [LATENCY]
    assert Verdict.from_dict(verdict.as_dict()) == verdict

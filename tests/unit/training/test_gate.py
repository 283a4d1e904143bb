"""The ranker's gate, inverse-propensity weights, and the orderings a gate may choose."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix
from recloop.ranking.learned import (
    BLEND,
    LEARNED,
    LearnedRanker,
    LearnedRankerConfig,
    RankerModel,
    RankerModels,
)
from recloop.ranking.protocols import Scores
from recloop.ranking.source_scores import SourceScoreConfig, SourceScoreRanker
from recloop.training.gate import (
    MIN_LISTS,
    ListValues,
    candidate_ndcg,
    decide,
    judge,
    list_values,
    logged_dcg,
    paired_interval,
)
from recloop.training.ranker import ips_weights

pytestmark = pytest.mark.unit

CTX = RequestContext(
    app_id="a", request_id="r", surface="home", user_id="u", now=datetime(2026, 1, 1, tzinfo=UTC)
)
CLICKS = {"click": 1.0}


def candidates(groups: list[list[int]], relevant: list[int] | None = None) -> pa.Table:
    """Candidate lists: one group per list, labels in merge order."""
    rows: dict[str, list[object]] = {
        "request_id": [],
        "item_id": [],
        "label_click": [],
        "label": [],
        "merge_rank": [],
        "relevant_count": [],
    }
    for g, labels in enumerate(groups):
        for rank, label in enumerate(labels):
            rows["request_id"].append(f"g{g}")
            rows["item_id"].append(f"g{g}-i{rank}")
            rows["label_click"].append(label)
            rows["label"].append(0)
            rows["merge_rank"].append(rank)
            rows["relevant_count"].append((relevant or [sum(x) for x in groups])[g])
    return pa.table(rows)


def test_candidate_ndcg_counts_the_relevant_items_retrieval_missed() -> None:
    table = candidates([[0, 0, 1, 0], [1, 0, 0, 0]], relevant=[1, 2])
    in_order = -np.arange(table.num_rows, dtype=float)  # the merge order
    value, lists = candidate_ndcg(table, in_order, CLICKS)
    # List 1: its one positive third (1 / log2 4 = 0.5). List 2: one of two relevant items
    # found, at the top: 1 / (1 + 1 / log2 3).
    assert lists == 2
    assert value == pytest.approx((0.5 + 1.0 / (1.0 + 1.0 / np.log2(3.0))) / 2)
    perfect = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert candidate_ndcg(table, perfect, CLICKS)[0] == pytest.approx(
        (1.0 + 1.0 / (1.0 + 1.0 / np.log2(3.0))) / 2
    )


def test_logged_dcg_orders_within_each_served_list_with_a_click() -> None:
    table = pa.table(
        {
            "request_id": ["r1", "r1", "r1", "r2", "r2"],
            "item_id": ["a", "b", "c", "d", "e"],
            "position": [0, 1, 2, 0, 1],
            "label_click": [0, 0, 1, 0, 0],
            "label": [0, 0, 0, 0, 0],
        }
    )
    value, lists = logged_dcg(table, np.array([0.0, 0.0, 1.0, 0.0, 0.0]), CLICKS)
    assert (value, lists) == (1.0, 1)
    assert logged_dcg(table, np.zeros(5), CLICKS)[0] == pytest.approx(0.5)


class ByColumn:
    """A ranker that orders by one feature column."""

    def __init__(self, name: str) -> None:
        self.version = name
        self._column = name

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        return Scores(features.column(self._column).astype(np.float64))


def gate_table(lists: int, good: str) -> pa.Table:
    """Candidate lists whose one positive is ranked first by ``good`` and last by the other."""
    rng = np.random.default_rng(0)
    table = candidates([[0, 0, 0, 1] for _ in range(lists)])
    labels = np.asarray(table.column("label_click"))
    noise = rng.random(table.num_rows) * 0.5
    other = "source_score:b" if good == "source_score:a" else "source_score:a"
    return table.append_column(good, pa.array(labels + noise)).append_column(
        other, pa.array(1.0 - labels + noise)
    )


def test_the_best_ordering_on_held_out_lists_serves_and_the_reason_says_why() -> None:
    table = gate_table(MIN_LISTS + 5, good="source_score:a")
    rankers = {LEARNED: ByColumn("source_score:b"), "source:a": ByColumn("source_score:a")}

    result = judge(rankers, candidates=table, logged=None, weights=CLICKS)

    assert result.serve == "source:a"
    assert result.measure == "interactions"
    assert result.figures["source:a"]["interactions"] == 1.0
    assert result.figures[LEARNED]["interactions"] == pytest.approx(1 / np.log2(5))
    assert "source:a 1.0000 against learned 0.4307" in result.reason
    assert "lower bound +0.5693 at one-sided 95.00%" in result.reason
    assert result.reason.endswith("source:a serves")


def test_the_learned_ranker_serves_when_it_is_best_or_tied() -> None:
    table = gate_table(MIN_LISTS, good="source_score:a")
    rankers = {LEARNED: ByColumn("source_score:a"), "source:a": ByColumn("source_score:a")}
    assert judge(rankers, candidates=table, logged=None, weights=CLICKS).serve == LEARNED


def test_given_scores_stand_in_for_an_alternatives_own_and_judge_values_then_decides() -> None:
    table = gate_table(MIN_LISTS * 3, good="source_score:a")
    rankers = {LEARNED: ByColumn("source_score:b"), BLEND: ByColumn("source_score:b")}
    good = np.asarray(table.column("source_score:a"), dtype=float)

    values = list_values(
        rankers,
        candidates=table,
        logged=None,
        weights=CLICKS,
        scores={"interactions": {LEARNED: good}},
    )

    assert values.per_list[LEARNED]["interactions"] == pytest.approx(1.0)
    assert values.per_list[BLEND]["interactions"] == pytest.approx(1 / np.log2(5))
    assert values.lists == {"interactions": MIN_LISTS * 3}
    assert not values.served
    assert decide(values).serve == LEARNED
    # Without them each alternative orders by its own scores, and judge is the two steps.
    own = judge(rankers, candidates=table, logged=None, weights=CLICKS)
    assert own == decide(list_values(rankers, candidates=table, logged=None, weights=CLICKS))
    assert own.serve == BLEND


def test_too_few_lists_to_judge_leave_the_learned_ranker_serving_and_say_so() -> None:
    table = gate_table(MIN_LISTS - 1, good="source_score:a")
    rankers = {LEARNED: ByColumn("source_score:b"), "source:a": ByColumn("source_score:a")}
    result = judge(rankers, candidates=table, logged=None, weights=CLICKS)
    assert (result.serve, result.measure) == (LEARNED, None)
    assert "too few test lists" in result.reason


def noisy_table(lists: int, flips: float, seed: int) -> pa.Table:
    """Lists of four candidates with one positive: ``source_score:a`` puts it first in all
    but a share ``flips`` of them (where it puts it last); ``source_score:b`` ranks it
    second everywhere."""
    rng = np.random.default_rng(seed)
    table = candidates([[0, 0, 0, 1] for _ in range(lists)])
    labels = np.asarray(table.column("label_click"), dtype=float)
    flip = np.repeat(rng.random(lists) < flips, 4)
    a = np.where(flip, 1.0 - labels, labels) + np.tile([0.3, 0.2, 0.1, 0.0], lists)
    b = np.tile([1.0, 0.0, 0.5, 0.8], lists)  # the positive (last) second, after the first
    return table.append_column("source_score:a", pa.array(a)).append_column(
        "source_score:b", pa.array(b)
    )


def test_the_blend_keeps_serving_unless_an_alternative_beats_it_for_sure() -> None:
    rankers = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    # a is a little better in expectation (its positive first 40% of the time, else last:
    # NDCG 0.4 + 0.6 / log2(5) = 0.658 against b's 1 / log2(3) = 0.631), but 30 lists
    # cannot tell: the blend serves.
    few = judge(rankers, candidates=noisy_table(30, 0.6, 2), logged=None, weights=CLICKS)
    assert few.figures[BLEND]["interactions"] == pytest.approx(1 / np.log2(3))
    assert few.figures[LEARNED]["interactions"] > few.figures[BLEND]["interactions"]
    assert few.serve == BLEND
    assert few.reason.endswith("no gain for sure, the blend keeps serving")
    # The same ranker on 2,000 lists is better for sure: it serves.
    many = judge(rankers, candidates=noisy_table(2000, 0.6, 2), logged=None, weights=CLICKS)
    assert many.figures[LEARNED]["interactions"] > many.figures[BLEND]["interactions"]
    assert many.serve == LEARNED
    assert "learned serves" in many.reason


def test_the_best_of_many_alternatives_must_clear_a_corrected_bound() -> None:
    # Fourteen orderings as good as the blend in expectation, each a little noisy: the
    # luckiest beats the blend on these lists, but not for sure once the choice among
    # fourteen is accounted for.
    rng = np.random.default_rng(7)
    lists = 40
    table = candidates([[0, 0, 0, 1] for _ in range(lists)])
    labels = np.asarray(table.column("label_click"), dtype=float)
    blend = np.tile([1.0, 0.0, 0.5, 0.8], lists)  # the positive second
    table = table.append_column("source_score:blend", pa.array(blend))
    rankers: dict[str, ByColumn] = {BLEND: ByColumn("source_score:blend")}
    for n in range(14):
        # The positive first (NDCG 1) or third (0.5): 0.262 + 0.738 * 0.5 = 0.631, the blend's.
        first = np.repeat(rng.random(lists) < 0.262, 4)
        noisy = np.where(first, labels * 2.0, blend - labels * 0.35) + np.tile(
            [0.0, 0.01, 0.02, 0.0], lists
        )
        table = table.append_column(f"source_score:s{n}", pa.array(noisy))
        rankers[f"source:s{n}"] = ByColumn(f"source_score:s{n}")
    result = judge(rankers, candidates=table, logged=None, weights=CLICKS)
    best = max(result.figures, key=lambda name: result.figures[name]["interactions"])
    assert best != BLEND
    assert result.figures[best]["interactions"] > result.figures[BLEND]["interactions"]
    assert result.serve == BLEND
    assert "(95% over 14 alternatives)" in result.reason


def test_the_learned_ranker_is_judged_against_the_blend_at_half_the_error_alone() -> None:
    rankers = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    result = judge(rankers, candidates=noisy_table(2000, 0.6, 2), logged=None, weights=CLICKS)
    assert result.serve == LEARNED
    assert "at one-sided 97.50% (named before)" in result.reason


def test_where_lists_were_served_the_learned_ranker_is_one_alternative_among_all() -> None:
    # Held-out interactions of served users are largely what they were shown: the learned
    # ranker gets no step of its own there.
    rankers = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    served = pa.table(
        {
            "request_id": ["r0", "r0"],
            "item_id": ["i0", "i1"],
            "position": [0, 1],
            "label_click": [0, 1],
            "label": [0, 0],
            "source_score:a": [0.0, 1.0],
            "source_score:b": [1.0, 0.0],
        }
    )
    table = noisy_table(2000, 0.6, 2)
    result = judge(rankers, candidates=table, logged=served, weights=CLICKS)
    assert result.measure == "interactions"
    assert "named before" not in result.reason
    assert "(95% over 1 alternatives)" in result.reason


def test_orderings_identical_to_the_blend_do_not_raise_the_bar() -> None:
    # Sources that recalled nothing leave the blend's order: they are no chance of a lucky
    # win, so they neither count in the correction nor change the verdict.
    table = noisy_table(400, 0.6, 4)
    two = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    dead = {f"source:dead{n}": ByColumn("source_score:b") for n in range(14)}
    alone = judge(two, candidates=table, logged=None, weights=CLICKS)
    crowded = judge({**two, **dead}, candidates=table, logged=None, weights=CLICKS)
    assert (crowded.serve, crowded.reason) == (alone.serve, alone.reason)


def test_a_source_must_beat_the_learned_ranker_that_beat_the_blend() -> None:
    table = gate_table(300, good="source_score:a")
    noise = np.random.default_rng(1).random(table.num_rows) * 0.01
    labels = np.asarray(table.column("label_click"), dtype=float)
    # c puts the positive first like a, by a smaller margin: as good as a, never better.
    table = table.append_column("source_score:c", pa.array(labels * 0.6 + noise))
    rankers = {
        LEARNED: ByColumn("source_score:a"),
        BLEND: ByColumn("source_score:b"),
        "source:c": ByColumn("source_score:c"),
    }
    result = judge(rankers, candidates=table, logged=None, weights=CLICKS)
    assert result.serve == LEARNED
    assert result.reason.endswith("learned serves")


def test_the_measure_with_more_lists_judges() -> None:
    rankers = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    few = gate_table(MIN_LISTS, good="source_score:b")  # the blend is best on these
    served = pa.table(
        {
            "request_id": [f"r{n // 2}" for n in range(200)],
            "item_id": [f"i{n}" for n in range(200)],
            "position": [n % 2 for n in range(200)],
            "label_click": [n % 2 for n in range(200)],  # the second one clicked
            "label": [0] * 200,
            "source_score:a": [float(n % 2) for n in range(200)],  # learned puts it first
            "source_score:b": [float(1 - n % 2) for n in range(200)],
        }
    )
    result = judge(rankers, candidates=few, logged=served, weights=CLICKS)
    assert result.lists == {"interactions": MIN_LISTS, "logged": 100}
    assert result.measure == "logged"
    assert result.serve == LEARNED


def test_too_few_lists_leave_the_blend_serving_where_there_is_one() -> None:
    table = gate_table(MIN_LISTS - 1, good="source_score:a")
    rankers = {LEARNED: ByColumn("source_score:a"), BLEND: ByColumn("source_score:b")}
    result = judge(rankers, candidates=table, logged=None, weights=CLICKS)
    assert (result.serve, result.measure) == (BLEND, None)
    assert "the blend serves" in result.reason


def test_the_paired_interval_covers_the_mean_difference_and_shrinks_with_lists() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(4000), rng.random(4000)
    small = paired_interval(a[:100] + 0.05, b[:100])
    large = paired_interval(a + 0.05, b)
    assert small[0] < float(np.mean(a[:100] + 0.05 - b[:100])) < small[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 4
    assert large[0] > 0
    assert np.isnan(paired_interval(np.zeros(0), np.zeros(0))[0])


def test_ips_weights_are_inverse_propensities_clipped_and_the_clipping_reported() -> None:
    table = pa.table({"propensity": [1.0, 0.5, 0.01, None]})
    weighted, report = ips_weights(table, clip=10.0)
    assert weighted.column("weight").to_pylist() == [1.0, 2.0, 10.0, 1.0]
    assert report["clipped_rows_share"] == 0.25
    assert report["clipped_weight_share"] == pytest.approx(90.0 / 104.0)


def _model(serve: str) -> RankerModel:
    return RankerModel(version="v", features=(), heads={}, serve=serve)


def _matrix() -> FeatureMatrix:
    return FeatureMatrix(
        ("x", "y", "z", "w"),
        ("source_score:a", "source_score:b"),
        np.array([[0.2, 1.0], [0.9, 0.0], [0.0, 0.5], [0.0, 0.9]]),
    )


def _ranker(model: RankerModel) -> LearnedRanker:
    models = RankerModels()
    models.publish("a", model)
    blend = SourceScoreRanker(["a", "b"], SourceScoreConfig())
    return LearnedRanker(models, blend, LearnedRankerConfig())


def test_a_source_chosen_by_the_gate_orders_and_the_blend_breaks_its_ties() -> None:
    scores = _ranker(_model("source:a")).score(_matrix(), CTX)
    order = np.argsort(-scores.combined, kind="stable").tolist()
    # a: y (0.9), x (0.2); z and w not recalled by a: the blend orders them (w 0.9, z 0.5).
    assert order == [1, 0, 3, 2]
    assert (scores.fallback, scores.version) == ("", "source:a")


def test_the_blend_chosen_by_the_gate_is_not_a_fallback() -> None:
    scores = _ranker(_model(BLEND)).score(_matrix(), CTX)
    assert np.argsort(-scores.combined, kind="stable").tolist() == [0, 1, 3, 2]
    assert scores.fallback == ""
    assert scores.version.startswith("blend")


def test_the_choice_is_saved_with_the_ranker(tmp_path: Path) -> None:
    path = tmp_path / "ranker"
    _model("source:a").save(path)
    assert RankerModel.load(path).serve == "source:a"
    assert replace(RankerModel.load(path), serve=LEARNED).serve == LEARNED


def test_a_click_low_in_a_list_counts_more_when_positions_are_debiased() -> None:
    # Two lists, each clicked once: one at the top, one at the bottom. Without debiasing,
    # keeping the served order and flipping it tie; once the bottom's low chance of being
    # looked at is counted, its click weighs more, and the order that lifts it wins.
    table = pa.table(
        {
            "request_id": ["r1", "r1", "r2", "r2"],
            "item_id": ["a", "b", "c", "d"],
            "position": [0, 1, 0, 1],
            "label_click": [1, 0, 0, 1],
            "label": [0, 0, 0, 0],
        }
    )
    served = np.array([1.0, 0.0, 1.0, 0.0])
    flipped = np.array([0.0, 1.0, 0.0, 1.0])
    assert logged_dcg(table, served, CLICKS)[0] == logged_dcg(table, flipped, CLICKS)[0]
    seen = np.array([1.0, 0.25])
    assert logged_dcg(table, flipped, CLICKS, seen)[0] > logged_dcg(table, served, CLICKS, seen)[0]


def test_the_gate_judges_on_the_measure_it_is_told_when_that_has_lists_enough() -> None:
    rng = np.random.default_rng(9)
    base = rng.uniform(0.2, 0.6, 200)
    values = ListValues(
        {
            BLEND: {"interactions": base, "logged": base},
            LEARNED: {"interactions": base * 0.5, "logged": base * 1.5},
        },
        {"interactions": 200, "logged": 200},
        served=True,
    )

    # A tie in lists: auto judges on held-out interactions, where the blend is ahead.
    assert decide(values).serve == BLEND
    logged = decide(values, "logged")
    assert logged.serve == LEARNED
    assert logged.measure == "logged"
    # Named but with too few lists, the measure gives way to the one that has them.
    few = replace(values, lists={"interactions": 200, "logged": 3})
    assert decide(few, "logged").measure == "interactions"

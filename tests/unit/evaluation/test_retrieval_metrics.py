"""Full-ranking retrieval metrics: hand-computed values and properties over random rankings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.evaluation.retrieval_metrics import (
    EvalCase,
    evaluate_recall,
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
    round_robin_merge,
    score_rankings,
)
from recloop.retrieval.models import Recalled, RecallQuery

pytestmark = pytest.mark.unit

ITEMS = [f"i{n}" for n in range(30)]


@st.composite
def ranked_and_relevant(draw: st.DrawFn) -> tuple[list[str], frozenset[str], int]:
    ranked = draw(st.permutations(ITEMS))[: draw(st.integers(0, len(ITEMS)))]
    relevant = frozenset(draw(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=10)))
    k = draw(st.integers(1, 40))
    return list(ranked), relevant, k


def log2_discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)  # rank is 1-based


def test_hand_computed_example() -> None:
    ranked = ["a", "x", "b", "y", "c"]
    relevant = {"a", "b", "c", "d"}
    assert recall_at_k(ranked, relevant, 1) == 0.25
    assert recall_at_k(ranked, relevant, 3) == 0.5  # hits / |relevant|, not / min(k, |rel|)
    assert recall_at_k(ranked, relevant, 5) == 0.75
    dcg = log2_discount(1) + log2_discount(3)
    idcg = log2_discount(1) + log2_discount(2) + log2_discount(3)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(dcg / idcg)
    # k = 2 < |relevant|: ideal DCG over 2 ranks only
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1.0 / (1.0 + log2_discount(2)))
    assert hit_rate_at_k(ranked, relevant, 1) == 1.0
    assert hit_rate_at_k(["x", "y", "a"], relevant, 2) == 0.0
    assert hit_rate_at_k(["x", "y", "a"], relevant, 3) == 1.0


def test_single_relevant_item_ndcg_is_the_discount_of_its_rank() -> None:
    ranked = [f"i{n}" for n in range(10)]
    assert ndcg_at_k(ranked, {"i3"}, 10) == pytest.approx(1.0 / math.log2(5))
    assert ndcg_at_k(ranked, {"i3"}, 3) == 0.0


def test_repeats_count_once_and_empty_relevant_is_zero() -> None:
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, 3) == 0.5
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))
    assert recall_at_k(["a"], set(), 5) == 0.0
    assert ndcg_at_k(["a"], set(), 5) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["a"], {"a"}, 0)


@given(ranked_and_relevant())
def test_metrics_are_in_unit_interval(case: tuple[list[str], frozenset[str], int]) -> None:
    ranked, relevant, k = case
    for metric in (recall_at_k, ndcg_at_k, hit_rate_at_k):
        assert 0.0 <= metric(ranked, relevant, k) <= 1.0 + 1e-12


@given(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=10, unique=True), st.integers(1, 40))
def test_perfect_ranking_scores_one(relevant: list[str], k: int) -> None:
    others = [x for x in ITEMS if x not in relevant]
    ranked = relevant + others
    assert ndcg_at_k(ranked, set(relevant), k) == pytest.approx(1.0)
    assert hit_rate_at_k(ranked, set(relevant), k) == 1.0
    if k >= len(relevant):
        assert recall_at_k(ranked, set(relevant), k) == 1.0


@given(ranked_and_relevant(), st.data())
def test_moving_a_relevant_item_up_never_lowers_ndcg(
    case: tuple[list[str], frozenset[str], int], data: st.DataObject
) -> None:
    ranked, relevant, k = case
    positions = [i for i, x in enumerate(ranked) if x in relevant]
    if not positions:
        return
    src = data.draw(st.sampled_from(positions))
    dst = data.draw(st.integers(0, src))
    moved = ranked.copy()
    moved.insert(dst, moved.pop(src))
    assert ndcg_at_k(moved, relevant, k) >= ndcg_at_k(ranked, relevant, k) - 1e-12


@given(ranked_and_relevant())
def test_recall_and_hit_rate_are_monotone_in_k(case: tuple[list[str], frozenset[str], int]) -> None:
    ranked, relevant, _ = case
    recalls = [recall_at_k(ranked, relevant, k) for k in range(1, 35)]
    hits = [hit_rate_at_k(ranked, relevant, k) for k in range(1, 35)]
    assert recalls == sorted(recalls)
    assert hits == sorted(hits)


def test_round_robin_merge_interleaves_and_dedupes() -> None:
    merged = round_robin_merge([["a", "b", "c", "d"], ["b", "x"], []], 10)
    assert merged == ["a", "b", "x", "c", "d"]
    assert round_robin_merge([["a", "b", "c"], ["x", "y", "z"]], 3) == ["a", "x", "b"]


@given(st.lists(st.lists(st.sampled_from(ITEMS), max_size=12), max_size=4), st.integers(1, 40))
def test_round_robin_merge_holds_each_lists_top_share(lists: list[list[str]], k: int) -> None:
    merged = round_robin_merge(lists, k)
    assert len(merged) == len(set(merged)) <= k
    share = k // max(len(lists), 1)
    for ranked in lists:
        assert set(ranked[:share]) <= set(merged)


def _cases() -> list[EvalCase]:
    return [
        EvalCase("u1", ("h1",), frozenset({"a", "b"}), frozenset({"h1"})),
        EvalCase("u2", ("h2", "h1"), frozenset({"c"}), frozenset({"h1", "h2"})),
        EvalCase("u3", (), frozenset({"z"}), frozenset()),
    ]


def test_evaluate_recall_asks_once_for_max_k_and_scores_per_segment() -> None:
    asked: list[tuple[str | None, int, frozenset[str]]] = []
    answers = {"u1": ["a", "x", "b"], "u2": ["x", "h1", "c"], "u3": []}

    def recall(query: RecallQuery, k: int) -> list[Recalled]:
        asked.append((query.user_id, k, query.exclude))
        return [Recalled(item, 1.0) for item in answers[query.user_id or ""]]

    kept: list[list[str]] = []
    report = evaluate_recall(
        recall,
        _cases(),
        ks=(1, 3),
        segments=lambda c: "new" if not c.history else "known",
        top=2,
        rankings_out=kept,
    )
    assert [a[:2] for a in asked] == [("u1", 3), ("u2", 3), ("u3", 3)]
    assert asked[1][2] == frozenset({"h1", "h2"})
    assert kept == [answers["u1"], answers["u2"], answers["u3"]]
    assert report.overall.n_cases == 3
    assert report.overall.recall[1] == pytest.approx((0.5 + 0 + 0) / 3)
    assert report.overall.recall[3] == pytest.approx((1.0 + 1.0 + 0) / 3)
    assert report.overall.hit_rate == pytest.approx(1 / 3)  # only u1 hits within top 2
    assert report.segments["new"].n_cases == 1
    assert report.segments["new"].recall[3] == 0.0
    assert report.segments["known"].recall[3] == 1.0
    assert report.excluded_returned == 1  # u2's answer held its training item h1
    assert report.latency_p50_ms >= 0.0
    rows = report.as_rows()
    assert [r["segment"] for r in rows] == ["all", "known", "new"]
    assert set(rows[0]) >= {"Recall@1", "Recall@3", "NDCG@2", "HR@2", "cases"}


def test_score_rankings_without_latencies_and_mismatched_lengths() -> None:
    report = score_rankings([["a"], ["c"], ["z"]], _cases(), ks=(1,))
    assert report.overall.recall[1] == pytest.approx((0.5 + 1 + 1) / 3)
    assert math.isnan(report.latency_p99_ms)
    assert report.to_dict()["latency_p99_ms"] is None
    with pytest.raises(ValueError, match="one ranking per case"):
        score_rankings([["a"]], _cases())

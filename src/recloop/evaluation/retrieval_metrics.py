"""Full-ranking metrics for candidate retrieval: Recall@k, NDCG@k, HitRate@k over held-out items.

A retrieval source is asked, once per evaluation case, for its top ``max(ks)`` items over the
whole catalog (no sampled negatives), with the user's training items excluded; every cut-off is
then read off that one list. :func:`evaluate_recall` does this for a model's ``recall``;
:func:`score_rankings` scores lists already computed (a merge of several sources, say).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recloop.retrieval.models import Recalled, RecallQuery

__all__ = [
    "EvalCase",
    "RetrievalReport",
    "SegmentMetrics",
    "evaluate_recall",
    "hit_rate_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "round_robin_merge",
    "score_rankings",
]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _distinct(ranked: Sequence[str], k: int) -> Iterator[str]:
    """The first ``k`` entries of ``ranked``, skipping repeats of an earlier entry."""
    seen: set[str] = set()
    for item in ranked[:k]:
        if item not in seen:
            seen.add(item)
            yield item


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Relevant items among the top ``k``, divided by the number of relevant items.

    This is the standard definition, hits / |relevant|, not hits / min(k, |relevant|): with
    more relevant items than ``k`` it cannot reach 1. A repeated item counts once; no relevant
    items gives 0.0.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    hits = sum(1 for item in _distinct(ranked, k) if item in relevant)
    return hits / len(relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` with binary gains.

    DCG sums 1 / log2(rank + 1) over the relevant items at ranks 1..k; it is divided by the
    ideal DCG, all relevant items first, over min(k, |relevant|) ranks, so a perfect ranking
    scores 1. A repeated item counts once; no relevant items gives 0.0.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(
        1.0 / math.log2(rank + 2)
        for rank, item in enumerate(ranked[:k])
        if item in relevant and item not in ranked[:rank]
    )
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def hit_rate_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 when any relevant item is among the top ``k``, else 0.0."""
    _check_k(k)
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def round_robin_merge(lists: Sequence[Sequence[str]], k: int) -> list[str]:
    """Interleave ranked lists (first of each, then second of each, ...), dropping repeats.

    Every list gets the same share of the first ``k`` slots while it has items, so no source's
    scale dominates the merge; the result holds at most ``k`` distinct items.
    """
    _check_k(k)
    out: list[str] = []
    seen: set[str] = set()
    depth = max((len(x) for x in lists), default=0)
    for rank in range(depth):
        for ranked in lists:
            if rank < len(ranked) and ranked[rank] not in seen:
                seen.add(ranked[rank])
                out.append(ranked[rank])
                if len(out) >= k:
                    return out
    return out


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One evaluation query: a user, what they did before, and what they did next.

    ``history`` is the user's items before the evaluation point, most recent first, as a
    source would see it at serving time; ``exclude`` holds the user's training items (never
    to be recommended again); ``relevant`` the held-out items that count as hits.
    """

    user_id: str
    history: tuple[str, ...]
    relevant: frozenset[str]
    exclude: frozenset[str]
    now_ts: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()  # what the user told us (region, locale...)

    def query(self) -> RecallQuery:
        """The query a source is asked for this case."""
        return RecallQuery(
            user_id=self.user_id,
            history=self.history,
            exclude=self.exclude,
            now_ts=self.now_ts,
            attributes=self.attributes,
        )


@dataclass(frozen=True)
class SegmentMetrics:
    """Mean metrics over one group of cases."""

    n_cases: int
    recall: dict[int, float]  # k -> mean Recall@k
    ndcg: float  # mean NDCG at the report's ``top``
    hit_rate: float  # mean HitRate at the report's ``top``
    mean_returned: float  # items a source returned per case (fewer than max(ks): it ran dry)


@dataclass(frozen=True)
class RetrievalReport:
    """Mean Recall@k for each k, NDCG and HitRate at ``top``, overall and per segment.

    ``segments`` is empty when no segment function was given. Latency is the wall time of
    each ``recall`` call, in milliseconds (NaN when the rankings came from elsewhere).
    ``excluded_returned`` counts cases where a source broke its contract and returned an
    item of ``exclude`` (those items are scored as returned: they are never relevant).
    """

    ks: tuple[int, ...]
    top: int
    overall: SegmentMetrics
    segments: dict[str, SegmentMetrics] = field(default_factory=dict)
    latency_p50_ms: float = math.nan
    latency_p99_ms: float = math.nan
    excluded_returned: int = 0

    def as_rows(self) -> list[dict[str, Any]]:
        """One row per group ("all" first, then segments), metric name to value, for a table."""
        rows: list[dict[str, Any]] = []
        for name, m in [("all", self.overall), *sorted(self.segments.items())]:
            row: dict[str, Any] = {"segment": name, "cases": m.n_cases}
            row.update({f"Recall@{k}": m.recall[k] for k in self.ks})
            row[f"NDCG@{self.top}"] = m.ndcg
            row[f"HR@{self.top}"] = m.hit_rate
            row["returned"] = m.mean_returned
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (NaN latencies become None)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "ks": list(self.ks),
            "top": self.top,
            "rows": self.as_rows(),
            "latency_p50_ms": num(self.latency_p50_ms),
            "latency_p99_ms": num(self.latency_p99_ms),
            "excluded_returned": self.excluded_returned,
        }


def _mean_metrics(
    rankings: Sequence[Sequence[str]], cases: Sequence[EvalCase], ks: tuple[int, ...], top: int
) -> SegmentMetrics:
    n = len(cases)
    if n == 0:
        return SegmentMetrics(0, dict.fromkeys(ks, math.nan), math.nan, math.nan, math.nan)
    recall = {
        k: sum(recall_at_k(r, c.relevant, k) for r, c in zip(rankings, cases, strict=True)) / n
        for k in ks
    }
    ndcg = sum(ndcg_at_k(r, c.relevant, top) for r, c in zip(rankings, cases, strict=True)) / n
    hit = sum(hit_rate_at_k(r, c.relevant, top) for r, c in zip(rankings, cases, strict=True)) / n
    returned = sum(len(r) for r in rankings) / n
    return SegmentMetrics(n, recall, ndcg, hit, returned)


def score_rankings(
    rankings: Sequence[Sequence[str]],
    cases: Sequence[EvalCase],
    ks: Sequence[int] = (10, 50, 100, 500),
    *,
    top: int = 10,
    segments: Callable[[EvalCase], str] | None = None,
    latencies_ms: Sequence[float] | None = None,
) -> RetrievalReport:
    """Score one ranked list per case (same order as ``cases``) into a report."""
    if len(rankings) != len(cases):
        raise ValueError("one ranking per case")
    ks_t = tuple(sorted(set(ks)))
    for k in (*ks_t, top):
        _check_k(k)
    by_segment: dict[str, list[int]] = {}
    if segments is not None:
        for i, case in enumerate(cases):
            by_segment.setdefault(segments(case), []).append(i)
    per_segment = {
        name: _mean_metrics([rankings[i] for i in idx], [cases[i] for i in idx], ks_t, top)
        for name, idx in by_segment.items()
    }
    excluded = sum(
        1 for r, c in zip(rankings, cases, strict=True) if any(item in c.exclude for item in r)
    )
    p50 = p99 = math.nan
    if latencies_ms is not None and len(latencies_ms) > 0:
        p50, p99 = (float(x) for x in np.percentile(np.asarray(latencies_ms), [50, 99]))
    return RetrievalReport(
        ks_t, top, _mean_metrics(rankings, cases, ks_t, top), per_segment, p50, p99, excluded
    )


def evaluate_recall(
    model_recall: Callable[[RecallQuery, int], list[Recalled]],
    cases: Sequence[EvalCase],
    ks: Sequence[int] = (10, 50, 100, 500),
    segments: Callable[[EvalCase], str] | None = None,
    *,
    top: int = 10,
    on_case: Callable[[], None] | None = None,
    rankings_out: list[list[str]] | None = None,
) -> RetrievalReport:
    """Ask ``model_recall`` once per case for ``max(ks)`` items and score the answers.

    Reports mean Recall@k for every k, NDCG@``top`` and HR@``top``, overall and per segment
    (``segments`` names a case's group), and the p50/p99 latency of the calls. ``on_case`` is
    called after each case (progress); the ranked ids are appended to ``rankings_out`` when
    given, so that lists can be merged or re-scored without asking again.
    """
    depth = max(max(ks), top)
    rankings: list[list[str]] = []
    latencies: list[float] = []
    for case in cases:
        query = case.query()
        start = time.perf_counter()
        answer = model_recall(query, depth)
        latencies.append((time.perf_counter() - start) * 1000.0)
        rankings.append([r.item_id for r in answer[:depth]])
        if on_case is not None:
            on_case()
    if rankings_out is not None:
        rankings_out.extend(rankings)
    return score_rankings(rankings, cases, ks, top=top, segments=segments, latencies_ms=latencies)

"""The ranker's gate: what serves next is whichever orders the latest data best.

On the test part of the training set (the latest time slice of served lists, and users
held out of the candidate lists recalled from interactions) every alternative orders the
same rows through the serving code itself (``LearnedRanker``, ``SourceScoreRanker``):

- ``learned``: the new ranker's heads;
- ``previous``: the ranker that serves now, if there is one;
- ``blend``: the sources' scores blended, as before any training;
- ``source:NAME``: each single source's order.

Two measures, each a mean NDCG@10 whose gain is the surface's weighted sum of the labels
(click, satisfaction):

- ``interactions``: over held-out users' candidate lists, the ideal counting every item
  they engaged with next, recalled or not (what a full ranking would find);
- ``logged``: within the served lists that had a click, on the impressions of the latest
  time slice (the order the items would have had among those shown).

The alternative best on the primary measure (``interactions`` when there are enough lists
with a positive, else ``logged``) serves; the learned ranker serves on a tie. Too few lists
to judge and the learned ranker serves, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix, source_score_feature
from recloop.features.definitions import FEATURE_NAMES
from recloop.ranking.learned import (
    BLEND,
    LEARNED,
    SOURCE_PREFIX,
    LearnedRanker,
    LearnedRankerConfig,
    RankerModel,
    RankerModels,
)
from recloop.ranking.protocols import Ranker
from recloop.ranking.source_scores import SourceScoreConfig, SourceScoreRanker

PREVIOUS = "previous"
#: Fewer test lists with a positive than this, and a measure does not judge.
MIN_LISTS = 20
NDCG_K = 10
_APP = "gate"
_LABELS = {"click": "label_click", "satisfaction": "label"}


@dataclass(frozen=True)
class GateResult:
    """What serves, by which measure, every alternative's figures, and why."""

    serve: str
    measure: str | None
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    lists: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """As JSON data, for the training report and the version's manifest."""
        return {
            "serve": self.serve,
            "measure": self.measure,
            "figures": self.figures,
            "lists": self.lists,
            "reason": self.reason,
        }


def _matrix(table: pa.Table) -> FeatureMatrix:
    names = [
        n for n in table.column_names if n in FEATURE_NAMES or n.startswith(SOURCE_SCORE_PREFIX)
    ]
    values = (
        np.column_stack(
            [
                np.nan_to_num(np.asarray(table.column(n).to_numpy(zero_copy_only=False), float))
                for n in names
            ]
        )
        if names and table.num_rows
        else np.zeros((table.num_rows, len(names)))
    )
    ids = tuple(table.column("item_id").to_pylist())
    return FeatureMatrix(ids, tuple(names), values)


SOURCE_SCORE_PREFIX = source_score_feature("")


def _gains(table: pa.Table, weights: Mapping[str, float]) -> np.ndarray:
    gains = np.zeros(table.num_rows, dtype=np.float64)
    for head, column in _LABELS.items():
        if column in table.column_names:
            labels = np.asarray(table.column(column).to_numpy(zero_copy_only=False), float)
            gains += weights.get(head, 0.0) * np.nan_to_num(labels)
    return gains


def _dcg(gains: np.ndarray) -> float:
    top = gains[:NDCG_K]
    return float(np.sum(top / np.log2(np.arange(2, len(top) + 2))))


def candidate_ndcg(
    table: pa.Table, scores: np.ndarray, weights: Mapping[str, float]
) -> tuple[float, int]:
    """Mean NDCG@10 over the candidate lists with a positive, and their number.

    The ideal ranks every item the user engaged with next at the top, recalled or not
    (``relevant_count``), so an ordering is judged against a full ranking.
    """
    if table.num_rows == 0:
        return float("nan"), 0
    gains = _gains(table, weights)
    groups = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    merge = np.asarray(table.column("merge_rank").to_numpy(zero_copy_only=False), float)
    relevant = np.asarray(table.column("relevant_count").to_numpy(zero_copy_only=False), int)
    best = max(weights.get("click", 0.0), 0.0) + max(weights.get("satisfaction", 0.0), 0.0)
    # Group rows together, best score first, the merge order breaking ties.
    order = np.lexsort((merge, -scores, groups))
    values = []
    start = 0
    for size in np.unique(groups[order], return_counts=True)[1]:
        rows = order[start : start + size]
        start += size
        if gains[rows].sum() <= 0:
            continue
        ideal = _dcg(np.full(min(int(relevant[rows[0]]), NDCG_K), best or 1.0))
        values.append(_dcg(gains[rows]) / ideal if ideal > 0 else 0.0)
    return (float(np.mean(values)) if values else float("nan")), len(values)


def logged_ndcg(
    table: pa.Table, scores: np.ndarray, weights: Mapping[str, float]
) -> tuple[float, int]:
    """Mean NDCG@10 within the served lists that had a positive, and their number."""
    if table.num_rows == 0:
        return float("nan"), 0
    gains = _gains(table, weights)
    groups = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    position = np.asarray(table.column("position").to_numpy(zero_copy_only=False), float)
    order = np.lexsort((position, -scores, groups))
    values = []
    start = 0
    for size in np.unique(groups[order], return_counts=True)[1]:
        rows = order[start : start + size]
        start += size
        if gains[rows].sum() <= 0:
            continue
        ideal = _dcg(np.sort(gains[rows])[::-1])
        values.append(_dcg(gains[rows]) / ideal)
    return (float(np.mean(values)) if values else float("nan")), len(values)


def _learned(model: RankerModel, fallback: Ranker, weights: Mapping[str, float]) -> Ranker:
    models = RankerModels()
    models.publish(_APP, model)
    return LearnedRanker(models, fallback, LearnedRankerConfig(weights=dict(weights)))


def alternatives(
    learned: RankerModel,
    previous: RankerModel | None,
    sources: Sequence[str],
    config: LearnedRankerConfig,
) -> dict[str, Ranker]:
    """Every ordering the gate weighs, as the serving code would rank with it."""
    blend = SourceScoreRanker(list(sources), SourceScoreConfig(weights=config.fallback_weights))
    out: dict[str, Ranker] = {
        LEARNED: _learned(replace(learned, serve=LEARNED), blend, config.weights)
    }
    if previous is not None:
        out[PREVIOUS] = _learned(previous, blend, config.weights)
    out[BLEND] = blend
    for source in sources:
        out[f"{SOURCE_PREFIX}{source}"] = _learned(
            replace(learned, serve=f"{SOURCE_PREFIX}{source}"), blend, config.weights
        )
    return out


def judge(
    rankers: Mapping[str, Ranker],
    *,
    candidates: pa.Table | None,
    logged: pa.Table | None,
    weights: Mapping[str, float],
) -> GateResult:
    """Order the test rows with every alternative and choose what serves."""
    ctx = RequestContext(
        app_id=_APP, request_id="gate", surface="gate", user_id="gate", now=datetime.now(UTC)
    )
    figures: dict[str, dict[str, float]] = {name: {} for name in rankers}
    lists: dict[str, int] = {}
    for kind, table, metric in (
        ("interactions", candidates, candidate_ndcg),
        ("logged", logged, logged_ndcg),
    ):
        if table is None or table.num_rows == 0:
            continue
        matrix = _matrix(table)
        for name, ranker in rankers.items():
            value, n = metric(table, ranker.score(matrix, ctx).combined, weights)
            figures[name][kind] = value
            lists[kind] = n
    judged = next((m for m in ("interactions", "logged") if lists.get(m, 0) >= MIN_LISTS), None)
    if judged is None:
        counts = ", ".join(f"{n} {m}" for m, n in lists.items()) or "none"
        return GateResult(
            LEARNED,
            None,
            figures,
            lists,
            f"too few test lists with a positive to judge ({counts}; {MIN_LISTS} needed): "
            "the learned ranker serves",
        )
    measure: str = judged
    scored = {name: f[measure] for name, f in figures.items() if not np.isnan(f[measure])}
    best = max(scored, key=lambda name: (scored[name], name == LEARNED))
    learned = scored.get(LEARNED, float("nan"))
    if best == LEARNED:
        runner_up = max((v, n) for n, v in scored.items() if n != LEARNED)
        reason = (
            f"learned NDCG@10 {learned:.4f} on {measure} ({lists[measure]} lists) against "
            f"{runner_up[1]} {runner_up[0]:.4f}, the best other ordering"
        )
    else:
        reason = (
            f"{best} NDCG@10 {scored[best]:.4f} on {measure} ({lists[measure]} lists) beats "
            f"the learned ranker's {learned:.4f}: {best} serves"
        )
    return GateResult(best, measure, figures, lists, reason)

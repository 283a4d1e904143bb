"""The ranker's gate: what serves next is whichever orders the latest data best.

On the test part of the training set (the latest time slice of served lists, and users
held out of the candidate lists recalled from interactions) every alternative orders the
same rows through the serving code itself (``LearnedRanker``, ``SourceScoreRanker``):

- ``learned``: the new ranker's heads;
- ``previous``: the ranker that serves now, if there is one;
- ``blend``: the sources' scores blended, as before any training;
- ``source:NAME``: each single source's order.

Two measures, each over the same rows for every alternative, whose gain is the surface's
weighted sum of the labels (click, satisfaction):

- ``interactions``: mean NDCG@10 over held-out users' candidate lists, the ideal counting
  every item they engaged with next, recalled or not (what a full ranking would find);
- ``logged``: mean DCG@10 of the positives within the served lists of the latest time
  slice that had one, reordered by the alternative, each positive weighted by the inverse
  of the chance that its served position was looked at (an estimate, unbiased under a
  position-based click model, of how the alternative would order what users saw), so the
  order that served the lists does not win merely because the top of the screen gets the
  clicks. That examination curve is the new ranker's own position effect (its click head
  scored at every position).

The primary measure is the one with more lists with a positive (at least ``MIN_LISTS``;
``interactions`` on a tie): an imported history has only held-out interactions, a running
service usually far more logged lists. The blend is the default: the alternative best on
the primary measure replaces it only when it beats the blend on the same lists with
one-sided confidence ``CONFIDENCE`` by a paired bootstrap over lists, Bonferroni-corrected
for the number of distinct orderings it was picked from (the best of fifteen beats the
blend by chance far more often than one does; an ordering identical to another on every
list is no further chance). Where no list was ever served (an imported history), two steps
share that error: the learned ranker, named before the test, is compared with the blend at
half of it; the best other alternative must then beat whichever serves at the other half,
corrected. Where lists were served, held-out interactions are largely what users were
shown, which flatters a ranker learned from them, and the single corrected step holds. Too
few lists to judge, a tie or a gain within the noise, and the blend serves. The report says
which and why, with the bound. A ranker learned from a few hundred positives (an imported
history's validation cases) thus serves only once it is better for sure.
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
    POSITION_FEATURE,
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
_METRIC = {"interactions": "NDCG@10", "logged": "IPS-weighted DCG@10"}


@dataclass(frozen=True)
class GateResult:
    """What serves, by which measure, every alternative's figures, and why."""

    serve: str
    measure: str | None
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    lists: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    examination: tuple[float, ...] = ()  # the logged measure's examination curve, if any

    def as_dict(self) -> dict[str, Any]:
        """As JSON data, for the training report and the version's manifest."""
        return {
            "serve": self.serve,
            "measure": self.measure,
            "figures": self.figures,
            "lists": self.lists,
            "reason": self.reason,
            "examination": [round(v, 4) for v in self.examination],
        }


SOURCE_SCORE_PREFIX = source_score_feature("")


def feature_matrix(table: pa.Table) -> FeatureMatrix:
    """A ranker's rows as the serving code hands them to it (missing values as 0)."""
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
    return FeatureMatrix(tuple(table.column("item_id").to_pylist()), tuple(names), values)


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
    values = candidate_ndcg_lists(table, scores, weights)
    return (float(np.mean(values)) if len(values) else float("nan")), len(values)


def candidate_ndcg_lists(
    table: pa.Table, scores: np.ndarray, weights: Mapping[str, float]
) -> np.ndarray:
    """NDCG@10 of each candidate list with a positive, in the order of their request ids
    (the same lists, in the same order, whatever the scores)."""
    if table.num_rows == 0:
        return np.zeros(0)
    gains = _gains(table, weights)
    groups = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    merge = np.asarray(table.column("merge_rank").to_numpy(zero_copy_only=False), float)
    relevant = np.asarray(table.column("relevant_count").to_numpy(zero_copy_only=False), int)
    best = max(weights.get("click", 0.0), 0.0) + max(weights.get("satisfaction", 0.0), 0.0)
    values = []
    # The merge order breaks ties.
    for rows in _lists_with_a_positive(groups, scores, merge, gains):
        ideal = _dcg(np.full(min(int(relevant[rows[0]]), NDCG_K), best or 1.0))
        values.append(_dcg(gains[rows]) / ideal if ideal > 0 else 0.0)
    return np.asarray(values, dtype=np.float64)


def _lists_with_a_positive(
    groups: np.ndarray, scores: np.ndarray, tiebreak: np.ndarray, gains: np.ndarray
) -> list[np.ndarray]:
    """Each list's rows, best score first (``tiebreak`` ascending on ties), for the lists
    with a positive gain, in the order of their request ids."""
    order = np.lexsort((tiebreak, -scores, groups))
    out = []
    start = 0
    for size in np.unique(groups[order], return_counts=True)[1]:
        rows = order[start : start + size]
        start += size
        if gains[rows].sum() > 0:
            out.append(rows)
    return out


def logged_dcg(
    table: pa.Table,
    scores: np.ndarray,
    weights: Mapping[str, float],
    examination: np.ndarray | None = None,
) -> tuple[float, int]:
    """Mean DCG@10 of the clicked (or satisfying) items within the served lists that had
    one, when each list is reordered by ``scores``; and the number of such lists.

    With ``examination`` (the chance that each position, 0 first, is looked at), each
    positive counts ``1 / examination[its served position]``: under a position-based click
    model that makes the figure an unbiased estimate of the reordered lists' DCG, so the
    order that served the lists gains nothing from the top of the screen being looked at
    most. Unnormalised: normalising by the lists' own best order would bring the bias back.
    """
    values = logged_dcg_lists(table, scores, weights, examination)
    return (float(np.mean(values)) if len(values) else float("nan")), len(values)


def logged_dcg_lists(
    table: pa.Table,
    scores: np.ndarray,
    weights: Mapping[str, float],
    examination: np.ndarray | None = None,
) -> np.ndarray:
    """DCG@10 of each served list with a positive (see ``logged_dcg``), in the order of
    their request ids."""
    if table.num_rows == 0:
        return np.zeros(0)
    gains = _gains(table, weights)
    groups = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    position = np.asarray(table.column("position").to_numpy(zero_copy_only=False), float)
    if examination is not None and len(examination):
        at = np.clip(np.nan_to_num(position).astype(int), 0, len(examination) - 1)
        gains = gains / examination[at]
    # The served position breaks ties.
    rows_of = _lists_with_a_positive(groups, scores, position, gains)
    return np.asarray([_dcg(gains[rows]) for rows in rows_of], dtype=np.float64)


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


def examination_curve(
    model: RankerModel, logged: pa.Table, positions: int = 50
) -> np.ndarray | None:
    """Each position's chance of being examined relative to the top, from the click head's
    learned position effect: the mean predicted click at position p over the logged rows,
    divided by the same at position 0, kept within [0.05, 1] and never rising down the list.
    None when the ranker has no click head or no position feature."""
    head = model.heads.get("click")
    if head is None or POSITION_FEATURE not in model.features or logged.num_rows == 0:
        return None
    matrix = feature_matrix(logged)
    design = model.design(matrix)
    col = model.features.index(POSITION_FEATURE)
    shown = np.asarray(logged.column("position").to_numpy(zero_copy_only=False), float)
    top = int(min(np.nanmax(shown) + 1, positions)) if len(shown) else 1
    means = []
    for p in range(top):
        design[:, col] = p
        means.append(float(np.mean(head.predict(design))))
    if means[0] <= 0:
        return None
    curve = np.clip(np.array(means) / means[0], 0.05, 1.0)
    return np.minimum.accumulate(curve)


@dataclass(frozen=True)
class ListValues:
    """Each alternative's value on every test list with a positive, by measure: the same
    lists in the same order for every alternative (what ``decide`` weighs)."""

    per_list: dict[str, dict[str, np.ndarray]]
    lists: dict[str, int]
    served: bool  # whether any list was ever served (logged lists exist)
    examination: tuple[float, ...] = ()


def row_scores(rankers: Mapping[str, Ranker], table: pa.Table) -> dict[str, np.ndarray]:
    """Each alternative's score of every row, as the serving code scores them."""
    ctx = RequestContext(
        app_id=_APP, request_id="gate", surface="gate", user_id="gate", now=datetime.now(UTC)
    )
    matrix = feature_matrix(table)
    return {name: ranker.score(matrix, ctx).combined for name, ranker in rankers.items()}


def out_of_fold_scores(
    models: Sequence[RankerModel | None],
    fold: np.ndarray,
    table: pa.Table,
    sources: Sequence[str],
    config: LearnedRankerConfig,
) -> np.ndarray:
    """The learned ranker's score of each row by the model of its fold (``models[fold]``,
    fitted without that fold's users), as the serving code scores them; NaN in the rows of
    a fold without a model."""
    out = np.full(table.num_rows, np.nan)
    for k, model in enumerate(models):
        rows = np.flatnonzero(fold == k)
        if model is None or not len(rows):
            continue
        ranker = alternatives(model, None, sources, config)[LEARNED]
        out[rows] = row_scores({LEARNED: ranker}, table.take(rows))[LEARNED]
    return out


def list_values(
    rankers: Mapping[str, Ranker],
    *,
    candidates: pa.Table | None,
    logged: pa.Table | None,
    weights: Mapping[str, float],
    examination: np.ndarray | None = None,
    scores: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> ListValues:
    """Order the test rows with every alternative and value each list with a positive.

    ``scores`` (by measure, then alternative) stands in for an alternative's own scores of
    that measure's rows: the learned ranker's out-of-fold scores when it was cross-fitted.
    """
    given = scores or {}
    per_list: dict[str, dict[str, np.ndarray]] = {name: {} for name in rankers}
    lists: dict[str, int] = {}
    for kind, table in (("interactions", candidates), ("logged", logged)):
        if table is None or table.num_rows == 0:
            continue
        own = [name for name in rankers if name not in given.get(kind, {})]
        scored = {**row_scores({n: rankers[n] for n in own}, table), **given.get(kind, {})}
        for name in rankers:
            if kind == "interactions":
                values = candidate_ndcg_lists(table, scored[name], weights)
            else:
                values = logged_dcg_lists(table, scored[name], weights, examination)
            per_list[name][kind] = values
            lists[kind] = len(values)
    curve = tuple(float(v) for v in examination) if examination is not None else ()
    served = logged is not None and logged.num_rows > 0
    return ListValues(per_list, lists, served, curve)


def judge(
    rankers: Mapping[str, Ranker],
    *,
    candidates: pa.Table | None,
    logged: pa.Table | None,
    weights: Mapping[str, float],
    examination: np.ndarray | None = None,
) -> GateResult:
    """Order the test rows with every alternative and choose what serves (``decide``)."""
    return decide(
        list_values(
            rankers,
            candidates=candidates,
            logged=logged,
            weights=weights,
            examination=examination,
        )
    )


def decide(values: ListValues, measure: str = "auto") -> GateResult:
    """Choose what serves from each alternative's value on every test list.

    The default is the blend (the learned ranker where the alternatives hold no blend):
    it serves when there are too few lists to judge, and it keeps serving unless the best
    alternative beats it on the same lists at one-sided ``CONFIDENCE``, corrected for the
    number of distinct alternatives (paired bootstraps over lists); with no served lists,
    the learned ranker is first compared alone at half that error (see the module). So
    neither a ranker learned from a few hundred positives nor the luckiest of many
    orderings replaces the blend on noise. ``measure`` names the measure judged on
    (``train.ranker.gate_measure``); ``auto``, or one with too few lists, takes the one
    with more lists.
    """
    per_list, lists, curve = values.per_list, values.lists, values.examination
    figures: dict[str, dict[str, float]] = {
        name: {kind: float(np.mean(v)) if len(v) else float("nan") for kind, v in by_kind.items()}
        for name, by_kind in per_list.items()
    }
    default = BLEND if BLEND in per_list else LEARNED
    enough = [m for m in ("interactions", "logged") if lists.get(m, 0) >= MIN_LISTS]
    judged = max(enough, key=lambda m: lists[m], default=None)  # interactions on a tie
    if measure in enough:
        judged = measure
    if judged is None:
        counts = ", ".join(f"{n} {m}" for m, n in lists.items()) or "none"
        return GateResult(
            default,
            None,
            figures,
            lists,
            f"too few test lists with a positive to judge ({counts}; {MIN_LISTS} needed): "
            f"{_NAME.get(default, default)} serves",
            curve,
        )
    measure = judged
    scored = {name: f[measure] for name, f in figures.items() if not np.isnan(f[measure])}
    by_list = {name: per_list[name][measure] for name in scored}
    metric = f"{_METRIC[measure]} on {measure} ({lists[measure]} lists)"
    best = max(scored, key=lambda name: (scored[name], name == default, name == LEARNED))
    if best == default:
        runner_up = max(((v, n) for n, v in scored.items() if n != default), default=None)
        against = f" against {runner_up[1]} {runner_up[0]:.4f}" if runner_up else ""
        reason = f"{default} {metric} {scored[default]:.4f}{against}, the best other ordering"
        return GateResult(default, measure, figures, lists, reason, curve)
    serving, steps = default, []
    alpha = 1.0 - CONFIDENCE
    # Where no list was ever served (an imported history), held-out interactions are not
    # the service's own echo, and the learned ranker, named before the test, is compared
    # with the blend alone at half the error allowed; the other half is shared among the
    # rest. Where lists were served, what users did next is largely what they were shown,
    # which flatters an ordering learned from it: one corrected step, as for any other.
    named_first = default == BLEND and LEARNED in scored and not values.served
    if named_first:
        alpha /= 2.0
        passed, text = _beats(LEARNED, BLEND, scored, by_list, alpha, metric, "named before")
        steps.append(text)
        if passed:
            serving = LEARNED
    pool = [n for n in scored if n not in (default, serving) and not (named_first and n == LEARNED)]
    others = _distinct(pool, by_list, by_list[serving])
    if others:
        challenger = max(others, key=lambda name: scored[name])
        if scored[challenger] > scored[serving]:
            passed, text = _beats(
                challenger,
                serving,
                scored,
                by_list,
                alpha / len(others),
                metric,
                f"{CONFIDENCE:.0%} over {len(others)} alternatives",
            )
            steps.append(text)
            if passed:
                serving = challenger
    verdict = (
        f"{serving} serves"
        if serving != default
        else f"no gain for sure, {_NAME.get(default, default)} keeps serving"
    )
    return GateResult(serving, measure, figures, lists, "; ".join([*steps, verdict]), curve)


def _beats(
    name: str,
    incumbent: str,
    scored: Mapping[str, float],
    values: Mapping[str, np.ndarray],
    tail: float,
    metric: str,
    why: str,
) -> tuple[bool, str]:
    """Whether ``name`` beats ``incumbent`` on the same lists with one-sided confidence
    ``1 - tail`` (a paired bootstrap), and the sentence that says so."""
    low, _ = paired_interval(values[name], values[incumbent], tail)
    text = (
        f"{name} {scored[name]:.4f} against {incumbent} {scored[incumbent]:.4f}, {metric}: "
        f"difference {scored[name] - scored[incumbent]:+.4f}, lower bound {low:+.4f} at "
        f"one-sided {1.0 - tail:.2%} ({why})"
    )
    return bool(low > 0), text


def _distinct(
    names: Sequence[str], values: Mapping[str, np.ndarray], incumbent: np.ndarray
) -> list[str]:
    """The alternatives that order the lists unlike the incumbent and unlike each other:
    one that scores every list as another does (a source that recalled nothing leaves the
    blend's order) is no further chance of a lucky win."""
    out: list[str] = []
    seen = [incumbent]
    for name in names:
        if not any(np.array_equal(values[name], other) for other in seen):
            out.append(name)
            seen.append(values[name])
    return out


#: One-sided confidence with which an alternative must beat the default to replace it,
#: before the correction for the number of alternatives.
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4000
_NAME = {BLEND: "the blend", LEARNED: "the learned ranker"}


def paired_interval(
    a: np.ndarray, b: np.ndarray, tail: float = 1.0 - CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """The ``tail`` and ``1 - tail`` quantiles of a paired bootstrap of mean(a - b) over
    lists (the same lists in the same order): the lower end is a one-sided bound at
    confidence ``1 - tail``."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if len(diff) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (BOOTSTRAP_RESAMPLES, len(diff)))].mean(axis=1)
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))

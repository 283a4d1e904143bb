"""Fit, validate and tune one trained retrieval source.

Validation holds out what users did last and asks each model to recall it (full ranking,
the user's earlier items excluded). Three ways to hold out (``train.validation_split``):

- ``time``: everything after a cut-off in time; models fit on what came before. The
  natural split for a live service, whose users come back.
- ``user``: each user's own latest share of interactions, at the user's own cut-off. For
  imported histories whose users came once each, months apart, where a cut-off in time
  would find only a handful of users on both sides of it.
- ``random``: a random share of each user's interactions, for data whose order means
  little, or an offline protocol that holds out at random.

``auto`` takes ``time`` unless it finds fewer than a quarter of the users it could ask, or
fewer than the promotion gate's floor (``train.promotion.min_validation_users``, as on a
young service's first night), then ``user`` where that finds more.

The span a ``time`` split cuts is that of the bulk of the interactions (``time_span``): one
stray event, posted today into last month's history or stamped by a clock years behind,
must not move the cut-off so far that nobody is left to ask.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from recloop.data.splits import time_span
from recloop.evaluation.retrieval_metrics import EvalCase, score_rankings
from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import (
    MAX_HISTORY,
    QueryTunable,
    RetrievalModel,
    scalar_attributes,
)
from recloop.retrieval.registry import MODEL_KINDS

log = logging.getLogger(__name__)

#: What each trainable kind is built from: the registry's classes, constructed with the
#: hyper-parameters as keywords.
FACTORIES: Mapping[str, Callable[..., RetrievalModel]] = MODEL_KINDS

#: The metric tuning maximises, and the cut-offs validation reports.
OBJECTIVE = "recall@100"
KS = (10, 50, 100, 500)


ValidationSplit = Literal["auto", "time", "user", "random"]


@dataclass(frozen=True)
class Validation:
    """A split of training data: fit on ``train``, ask for ``cases``.

    ``cutoff_ts`` is the latest time a case is asked at. ``held_out`` names the (user, item)
    pairs taken out of ``train`` when the split is not one cut-off in time (``user``,
    ``random``): what was done after the cut-off is then not all that is hidden, so point-in-
    time features must leave these pairs out too.
    """

    train: TrainingData
    cases: tuple[EvalCase, ...]
    cutoff_ts: float
    split: str = "time"
    held_out: frozenset[tuple[str, str]] = field(default_factory=frozenset)


#: The validation users the sources' metrics and tuning ask, at most.
SOURCE_CASES = 2000


def even_sample(validation: Validation, n: int) -> Validation:
    """The same split with at most ``n`` of its cases, evenly spaced (the same users every
    time)."""
    cases = validation.cases
    if len(cases) <= n:
        return validation
    picks = np.linspace(0, len(cases) - 1, n).astype(int)
    return replace(validation, cases=tuple(cases[i] for i in picks))


def make_validation(
    data: TrainingData,
    split: ValidationSplit,
    fraction: float,
    max_cases: int = SOURCE_CASES,
    min_cases: int = 0,
) -> Validation:
    """The validation ``split`` asks for (see the module's docstring); ``auto`` decides.

    ``min_cases`` is the fewest users a validation is worth anything on (the promotion
    gate's floor): ``auto`` leaves a time split that finds fewer for the user split, when
    that one finds more.
    """
    if split in ("time", "auto"):
        by_time = time_validation(data, fraction, max_cases)
        enough = max(_askable(data, max_cases) / 4, min(min_cases, _askable(data, max_cases)))
        if split == "time" or len(by_time.cases) >= enough:
            return by_time
        by_user = user_validation(data, fraction, max_cases)
        # A young service's first day: too few users on both sides of any cut-off in time,
        # while each user's own latest items still make a sound hold-out.
        return by_user if len(by_user.cases) > len(by_time.cases) else by_time
    return user_validation(data, fraction, max_cases, at_random=split == "random")


def _askable(data: TrainingData, max_cases: int) -> int:
    """How many users a split could ask: those with two items or more, at most ``max_cases``."""
    x = data.interactions
    if len(x) == 0:
        return 0
    pairs = np.unique(np.stack([x.users, x.items]), axis=1)
    per_user = np.bincount(pairs[0], minlength=x.n_users)
    return min(int((per_user >= 2).sum()), max_cases)


def user_validation(
    data: TrainingData,
    fraction: float,
    max_cases: int = SOURCE_CASES,
    *,
    at_random: bool = False,
    seed: int = 0,
) -> Validation:
    """Hold out each user's latest ``fraction`` of interactions (at least one; users with
    one interaction keep it), or a random such share with ``at_random``.

    A case is asked at its user's own cut-off (the time of the first held-out interaction);
    at random, after the last interaction of all.
    """
    x = data.interactions
    if len(x) == 0:
        return Validation(data, (), 0.0, "random" if at_random else "user")
    n = len(x)
    order_key = (
        np.random.default_rng(seed).random(n) if at_random else x.timestamps.astype(np.float64)
    )
    # Rows grouped by user, each group in hold-out order: the last rows of a group go.
    order = np.lexsort((np.arange(n), order_key, x.users))
    users_sorted = x.users[order]
    counts = np.bincount(x.users, minlength=x.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_from_end = counts[users_sorted] - 1 - (np.arange(n) - starts[users_sorted])
    keep_n = np.where(counts >= 2, np.maximum(1, np.rint(fraction * counts)), 0).astype(int)
    held = np.zeros(n, dtype=bool)
    held[order] = rank_from_end < keep_n[users_sorted]
    train = TrainingData(x.select(~held), data.items, data.shown_negatives, data.user_attributes)
    histories = train.interactions.histories(max_len=MAX_HISTORY)
    seen: list[set[int]] = [set(h) for h in histories]
    later: dict[int, set[int]] = {}
    cut: dict[int, float] = {}
    for u, it, ts in zip(
        x.users[held].tolist(), x.items[held].tolist(), x.timestamps[held].tolist(), strict=True
    ):
        cut[u] = min(cut.get(u, ts), ts)
        if histories[u] and it not in seen[u]:
            later.setdefault(u, set()).add(it)
    last = float(x.timestamps.max()) + 1.0
    held_out = frozenset(
        (x.user_ids[u], x.item_ids[it])
        for u, it in zip(x.users[held].tolist(), x.items[held].tolist(), strict=True)
    )
    cases = _cases(data, histories, later, lambda u: last if at_random else cut[u], max_cases)
    cutoff = max((c.now_ts or 0.0 for c in cases), default=last)
    return Validation(train, cases, cutoff, "random" if at_random else "user", held_out)


def _cases(
    data: TrainingData,
    histories: list[list[int]],
    later: Mapping[int, set[int]],
    now_of: Callable[[int], float],
    max_cases: int,
) -> tuple[EvalCase, ...]:
    """A case per user with held-out items (at most ``max_cases``, an even sample of them):
    their history before, what they did later, asked at ``now_of(user)``."""
    x = data.interactions
    users = sorted(later)
    if len(users) > max_cases:
        users = [users[i] for i in np.linspace(0, len(users) - 1, max_cases).astype(int)]
    ids = x.item_ids
    return tuple(
        EvalCase(
            user_id=x.user_ids[u],
            history=tuple(ids[i] for i in histories[u]),
            relevant=frozenset(ids[i] for i in later[u]),
            exclude=frozenset(ids[i] for i in histories[u]),
            now_ts=now_of(u),
            attributes=scalar_attributes(data.user_attributes.get(x.user_ids[u])),
        )
        for u in users
    )


def time_validation(
    data: TrainingData, fraction: float, max_cases: int = SOURCE_CASES
) -> Validation:
    """Hold out the latest ``fraction`` of the time span (``time_span``: a stray event at
    either end does not stretch it); cases are users seen before the cut-off.

    At most ``max_cases`` users (a fixed, even sample) are asked, which bounds tuning time.
    """
    x = data.interactions
    if len(x) == 0:
        return Validation(data, (), 0.0)
    lo, hi = time_span(x.timestamps)
    cutoff = hi - (hi - lo) * fraction
    before = x.timestamps < cutoff
    train = TrainingData(x.select(before), data.items, data.shown_negatives, data.user_attributes)
    histories = train.interactions.histories(max_len=MAX_HISTORY)
    seen: list[set[int]] = [set(h) for h in histories]
    later: dict[int, set[int]] = {}
    for u, it in zip(x.users[~before].tolist(), x.items[~before].tolist(), strict=True):
        if histories[u] and it not in seen[u]:
            later.setdefault(u, set()).add(it)
    cases = _cases(data, histories, later, lambda u: cutoff, max_cases)
    return Validation(train, cases, cutoff)


#: Cases asked per query option: enough to rank a handful of options, cheap beside a fit.
QUERY_CASES = 500


def tune_query(
    model: RetrievalModel, validation: Validation, fixed: Mapping[str, Any]
) -> tuple[RetrievalModel, dict[str, Any]]:
    """The fitted model answering with the query options (``QueryTunable``) that recall most
    on validation, and those options; the model as it is when it has none to try. Options
    the configuration fixes are not tried."""
    if not isinstance(model, QueryTunable) or not validation.cases:
        return model, {}
    options = [o for o in model.query_options() if all(fixed.get(k, v) == v for k, v in o.items())]
    if len(options) < 2:
        return model, {}
    sample = even_sample(validation, QUERY_CASES).cases
    scored = [
        (evaluate(model.with_query(option), sample).get(OBJECTIVE, 0.0), -n, option)
        for n, option in enumerate(options)
    ]
    # The best score wins; a tie goes to the earlier option (the current settings first).
    _, _, best = max(scored, key=lambda entry: (entry[0], entry[1]))
    return model.with_query(best), dict(best)


def segment_of(case: EvalCase) -> str:
    """The user segment of a case, by how many items the user engaged with before."""
    n = len(case.history)
    return "<5" if n < 5 else ("5-50" if n <= 50 else ">50")


def recall_lists(
    model: RetrievalModel, cases: tuple[EvalCase, ...]
) -> tuple[list[list[str]], list[float]]:
    """Each case's top ``max(KS)`` items from a fitted model, and the milliseconds each took."""
    rankings: list[list[str]] = []
    latencies: list[float] = []
    for case in cases:
        started = time.perf_counter()
        rankings.append([r.item_id for r in model.recall(case.query(), max(KS))])
        latencies.append((time.perf_counter() - started) * 1000.0)
    return rankings, latencies


def metrics_of(
    rankings: list[list[str]], cases: tuple[EvalCase, ...], latencies: list[float] | None = None
) -> dict[str, float]:
    """Recall@k and NDCG@10, overall and Recall@100 per user segment."""
    if not cases:
        return {}
    report = score_rankings(rankings, cases, KS, segments=segment_of, latencies_ms=latencies)
    metrics = {f"recall@{k}": float(v) for k, v in report.overall.recall.items()}
    metrics["ndcg@10"] = float(report.overall.ndcg)
    metrics["cases"] = float(len(cases))
    for name, segment in sorted(report.segments.items()):
        metrics[f"recall@100 users {name}"] = float(segment.recall[100])
        metrics[f"cases users {name}"] = float(segment.n_cases)
    if latencies:
        metrics["recall_p50_ms"] = float(np.median(latencies))
    return metrics


def evaluate(model: RetrievalModel, cases: tuple[EvalCase, ...]) -> dict[str, float]:
    """Recall@k and NDCG@10 of a fitted model on validation cases."""
    rankings, latencies = recall_lists(model, cases)
    return metrics_of(rankings, cases, latencies)


def fit(kind: str, params: Mapping[str, Any], data: TrainingData) -> tuple[RetrievalModel, float]:
    """A fitted model of ``kind`` and the seconds fitting took.

    Raises:
        ValueError: the kind is unknown, or the model refuses the data (EASE on a catalogue
            too large for it).
    """
    factory = FACTORIES.get(kind)
    if factory is None:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(sorted(FACTORIES))}")
    started = time.perf_counter()
    model = factory(**params).fit(data)
    return model, time.perf_counter() - started


def _space(kind: str, trial: Any) -> dict[str, Any]:
    """The search space of ``kind`` on ``trial`` (nothing for an unknown kind).

    benchmarks/retrieval_quality.py probes spaces through this, with a recording trial.
    """
    model = MODEL_KINDS.get(kind)
    return {} if model is None else model.search_space(trial)


def _searched(kind: str) -> set[str]:
    """The parameters the kind's search space suggests, read off one throwaway trial."""
    import optuna

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    _space(kind, trial)
    return set(trial.params)


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found, their validation score, and how many trials ran."""

    params: dict[str, Any]
    value: float
    trials: int
    seconds: float


def tune(
    kind: str,
    validation: Validation,
    *,
    trials: int,
    fixed: Mapping[str, Any] | None = None,
    start: Mapping[str, Any] | None = None,
    seed: int = 7,
    on_trial: Callable[[], None] = lambda: None,
) -> TuningResult:
    """Search hyper-parameters of ``kind`` with Optuna (TPE), maximising Recall@100.

    ``fixed`` parameters are not searched. ``start`` (the parameters in use; by default the
    model's defaults) is the first trial. A trial whose fit fails scores 0.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        params = {**_space(kind, trial), **(fixed or {})}
        try:
            model, _ = fit(kind, params, validation.train)
        except ValueError as exc:
            log.warning("trial of %s failed: %s", kind, exc)
            return 0.0
        finally:
            on_trial()
        return evaluate(model, validation.cases).get(OBJECTIVE, 0.0)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # The current parameters are the first trial, so a tuned model is never worse on
    # validation than the untuned one, however few trials run.
    current = FACTORIES[kind](**{**(start or {}), **(fixed or {})}).params()
    study.enqueue_trial({k: v for k, v in current.items() if k in _searched(kind)})
    study.optimize(objective, n_trials=trials)
    best = {**study.best_params, **(fixed or {})}
    return TuningResult(
        best, float(study.best_value), len(study.trials), time.perf_counter() - started
    )

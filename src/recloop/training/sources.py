"""Fit, validate and tune one trained retrieval source.

Validation is time-based: models fit on everything before a cut-off and are asked to recall
what each user engaged with after it (full ranking, the user's earlier items excluded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recloop.evaluation.retrieval_metrics import EvalCase, score_rankings
from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import RetrievalModel, scalar_attributes
from recloop.retrieval.registry import MODEL_KINDS

log = logging.getLogger(__name__)

#: What each trainable kind is built from: the registry's classes, constructed with the
#: hyper-parameters as keywords.
FACTORIES: Mapping[str, Callable[..., RetrievalModel]] = MODEL_KINDS

#: The metric tuning maximises, and the cut-offs validation reports.
OBJECTIVE = "recall@100"
KS = (10, 50, 100, 500)


@dataclass(frozen=True)
class Validation:
    """A time split of training data: fit on ``train``, ask for ``cases``."""

    train: TrainingData
    cases: tuple[EvalCase, ...]
    cutoff_ts: float


#: The validation users the sources' metrics and tuning ask, at most.
SOURCE_CASES = 2000


def even_sample(validation: Validation, n: int) -> Validation:
    """The same split with at most ``n`` of its cases, evenly spaced (the same users every
    time)."""
    cases = validation.cases
    if len(cases) <= n:
        return validation
    picks = np.linspace(0, len(cases) - 1, n).astype(int)
    return Validation(validation.train, tuple(cases[i] for i in picks), validation.cutoff_ts)


def time_validation(
    data: TrainingData, fraction: float, max_cases: int = SOURCE_CASES
) -> Validation:
    """Hold out the latest ``fraction`` of the time span; cases are users seen before it.

    At most ``max_cases`` users (a fixed, even sample) are asked, which bounds tuning time.
    """
    x = data.interactions
    if len(x) == 0:
        return Validation(data, (), 0.0)
    lo, hi = float(x.timestamps.min()), float(x.timestamps.max())
    cutoff = hi - (hi - lo) * fraction
    before = x.timestamps < cutoff
    train = TrainingData(x.select(before), data.items, data.shown_negatives, data.user_attributes)
    histories = train.interactions.histories(max_len=100)
    seen: list[set[int]] = [set(h) for h in histories]
    later: dict[int, set[int]] = {}
    for u, it in zip(x.users[~before].tolist(), x.items[~before].tolist(), strict=True):
        if histories[u] and it not in seen[u]:
            later.setdefault(u, set()).add(it)
    users = sorted(later)
    if len(users) > max_cases:
        users = [users[i] for i in np.linspace(0, len(users) - 1, max_cases).astype(int)]
    ids = x.item_ids
    cases = tuple(
        EvalCase(
            user_id=x.user_ids[u],
            history=tuple(ids[i] for i in histories[u]),
            relevant=frozenset(ids[i] for i in later[u]),
            exclude=frozenset(ids[i] for i in seen[u]),
            now_ts=cutoff,
            attributes=scalar_attributes(data.user_attributes.get(x.user_ids[u])),
        )
        for u in users
    )
    return Validation(train, cases, cutoff)


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

"""The gates a new model version passes before ``recloop train`` promotes it.

Each gate is a small function returning a ``Gate`` (its name, whether it passed, and why);
``Verdict`` holds them all and is recorded in the version's manifest (``extra.promotion``).
A version is promoted automatically only when every gate passed; a blocked one stays in the
registry with its reasons, and ``recloop models promote --force`` can still serve it.

- ``validated``: every trained source was validated on enough users, with finite metrics.
- ``no_regression``: the new sources against the served version's models, both asked the
  new validation users (``serving_metrics``): the best source's and the merged metric may
  not fall by more than ``train.promotion.max_regression`` of the served one's where the
  paired difference over those users is also sure (one-sided 95%): a young service
  validates on a few dozen users, whose noise alone moves recall by more than 10%.
- ``score_sanity``: the learned ranker's scores on its test lists: no NaN, not one score for
  a whole list, each head's calibration error under a bound.
- ``latency``: the new sources' recall (and the ranker's scoring of a list) timed on recorded
  requests, against the deadlines the service would give them.
- ``ranker_no_regression``: the new learned ranker (and the ordering the new version would
  serve, when the ranker's gate picked another) against the served version's ranker, every
  one scored by the same code on the same latest test lists: blocks a drop beyond
  ``train.promotion.max_ranker_regression`` that is also sure (one-sided 95%).

The ranker's own gate (``training.gate``) decides which ordering serves inside a version,
the current ranker among the alternatives; ``ranker_no_regression`` reads its figures, so a
training whose ranker came out worse than the one serving (shuffled labels, a feature lost)
is kept back, not shipped with the old ranker inside a new version.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from recloop.config import PromotionSettings, Settings, SurfaceConfig
from recloop.evaluation.retrieval_metrics import (
    EvalCase,
    ndcg_at_k,
    recall_at_k,
    round_robin_merge,
)
from recloop.experiments.assignment import variant_surfaces
from recloop.ranking.learned import LEARNED, RankerModel
from recloop.registry.artifacts import ModelRegistry
from recloop.retrieval.bundle import load_model
from recloop.retrieval.models import RecallQuery, RetrievalModel
from recloop.training.gate import (
    CONFIDENCE,
    MIN_LISTS,
    PREVIOUS,
    ListValues,
    feature_matrix,
    paired_interval,
)
from recloop.training.sources import KS, metrics_of, recall_lists

log = logging.getLogger(__name__)

T = TypeVar("T")

VALIDATED = "validated"
NO_REGRESSION = "no_regression"
SCORE_SANITY = "score_sanity"
LATENCY = "latency"
RANKER_NO_REGRESSION = "ranker_no_regression"


@dataclass(frozen=True)
class Gate:
    """One gate's outcome: its name, whether it passed, and why in words."""

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as the manifest keeps it."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    """Every gate a version went through; it may be promoted when all passed."""

    gates: tuple[Gate, ...]

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return all(g.passed for g in self.gates)

    @property
    def blocked_by(self) -> tuple[Gate, ...]:
        """The gates that failed."""
        return tuple(g for g in self.gates if not g.passed)

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``passed`` and each gate."""
        return {"passed": self.passed, "gates": [g.as_dict() for g in self.gates]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Read what :meth:`as_dict` wrote."""
        return cls(
            tuple(
                Gate(str(g["name"]), bool(g["passed"]), str(g.get("detail", "")))
                for g in data.get("gates", [])
            )
        )


# --- validated -------------------------------------------------------------------------


def validated(metrics: Mapping[str, Mapping[str, float]], min_users: int) -> Gate:
    """Every trained source (name -> validation metrics) was asked at least ``min_users``
    users and every metric it reports is finite; at least one source trained."""
    if not metrics:
        return Gate(VALIDATED, False, "no source trained")
    problems = []
    for name, values in metrics.items():
        cases = int(values.get("cases", 0))
        if cases < min_users:
            problems.append(f"{name} on {cases} users")
            continue
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            problems.append(f"{name}: {', '.join(bad)} not finite")
    if problems:
        return Gate(
            VALIDATED,
            False,
            "; ".join(problems)
            + f" (at least {min_users} users each, train.promotion.min_validation_users)",
        )
    users = min(int(v["cases"]) for v in metrics.values())
    return Gate(VALIDATED, True, f"{len(metrics)} sources, each on {users} users or more")


# --- no regression ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServedMetrics:
    """The served version's models asked the new validation users: per source, merged."""

    version: str
    sources: dict[str, dict[str, float]]
    merged: dict[str, float]
    #: Each source's and the merged ranked lists, one per case in the cases' order.
    lists: dict[str, list[list[str]]] = field(default_factory=dict)
    merged_lists: list[list[str]] = field(default_factory=list)


def serving_metrics(
    registry: ModelRegistry,
    app_id: str,
    cases: tuple[EvalCase, ...],
    cutoff_ts: float,
) -> ServedMetrics | str:
    """The served version's sources, loaded from the registry and asked ``cases`` with the
    same code that validated the new ones; or why they cannot be compared.

    A served version trained on data past ``cutoff_ts`` has seen what the cases hold out
    (its co-occurrences include them), so it would be judged on its own training data: it
    is not compared. Its end is ``trained_through_ts`` in its manifest (the bulk's last
    time), else the time its snapshot was taken.
    """
    current = registry.current(app_id)
    if current is None:
        return "nothing is served yet"
    if not cases:
        return "no validation users to ask"
    try:
        manifest = registry.manifest(app_id, current)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return f"the served version {current} has no readable manifest ({exc})"
    through = manifest.extra.get("trained_through_ts")
    if through is None and manifest.extra.get("data_as_of"):
        through = datetime.fromisoformat(str(manifest.extra["data_as_of"])).timestamp()
    if through is None or float(through) > cutoff_ts:
        return (
            f"the served version {current} was trained on data after this validation's "
            "cut-off: asked the same users it would be judged on what it learned from"
        )
    sources: dict[str, dict[str, float]] = {}
    lists: dict[str, list[list[str]]] = {}
    for entry in manifest.models:
        try:
            model = load_model(entry.kind, registry.path(app_id, current) / entry.name)
        except Exception as exc:  # a model that does not load serves nothing: no bar
            log.warning("served model %s of %s does not load: %s", entry.name, current, exc)
            continue
        rankings, latencies = recall_lists(model, cases)
        sources[entry.name] = metrics_of(rankings, cases, latencies)
        lists[entry.name] = rankings
    if not sources:
        return f"none of the served version {current}'s models loads"
    merged = merged_lists(lists)
    return ServedMetrics(current, sources, metrics_of(merged, cases), lists, merged)


def merged_lists(lists: Mapping[str, Sequence[Sequence[str]]]) -> list[list[str]]:
    """The union the service would see for each validation case: every source's list for
    it, interleaved (none without sources)."""
    if not lists:
        return []
    per_case = zip(*lists.values(), strict=True)
    return [round_robin_merge(list(case_lists), max(KS)) for case_lists in per_case]


def no_regression(
    new_sources: Mapping[str, Mapping[str, float]],
    new_merged: Mapping[str, float],
    served: ServedMetrics | str,
    metric: str,
    max_regression: float,
    *,
    cases: Sequence[EvalCase] = (),
    new_lists: Mapping[str, Sequence[Sequence[str]]] | None = None,
    new_merged_lists: Sequence[Sequence[str]] | None = None,
    confidence: float = CONFIDENCE,
) -> Gate:
    """The new version's best source and merged lists against the served version's, both
    on the new validation users: blocks when either falls by more than ``max_regression``
    of the served value (relative) and, where both versions' lists for ``cases`` are
    given, the paired bootstrap's upper bound of the difference over those users at
    one-sided ``confidence`` is below zero too."""
    if isinstance(served, str):
        return Gate(NO_REGRESSION, True, f"not compared: {served}")

    def best(sources: Mapping[str, Mapping[str, float]]) -> tuple[str, float]:
        scored = [(v.get(metric, float("nan")), n) for n, v in sources.items()]
        scored = [(v, n) for v, n in scored if math.isfinite(v)]
        if not scored:
            return "", float("nan")
        value, name = max(scored)
        return name, value

    new_name, new_best = best(new_sources)
    old_name, old_best = best(served.sources)
    new_lists = new_lists or {}
    pairs = [
        (
            "best source",
            f"{new_name} {new_best:.4f}",
            f"{old_name} {old_best:.4f}",
            new_best,
            old_best,
            new_lists.get(new_name),
            served.lists.get(old_name),
        ),
        (
            "merged",
            f"{new_merged.get(metric, float('nan')):.4f}",
            f"{served.merged.get(metric, float('nan')):.4f}",
            new_merged.get(metric, float("nan")),
            served.merged.get(metric, float("nan")),
            new_merged_lists,
            served.merged_lists or None,
        ),
    ]
    drops = []
    words = []
    for label, new_text, old_text, new, old, new_ranked, old_ranked in pairs:
        words.append(f"{label} {new_text} against {old_text}")
        if not math.isfinite(new) and math.isfinite(old):
            drops.append(f"{label}: no finite {metric}")
        elif math.isfinite(old) and old > 0 and (old - new) / old > max_regression:
            drop = (old - new) / old
            high = _paired_upper_bound(metric, cases, new_ranked, old_ranked, confidence)
            if high is None or high < 0:
                sure = "" if high is None else f", upper bound of the difference {high:+.4f}"
                drops.append(f"{label} fell {drop:.0%}{sure}")
            else:
                words[-1] += (
                    f" (fell {drop:.0%}, within the noise of {len(cases)} users: upper bound "
                    f"of the difference {high:+.4f} at one-sided {confidence:.0%})"
                )
    head = f"{metric} on the new validation users, new against served {served.version}: "
    if drops:
        return Gate(
            NO_REGRESSION,
            False,
            head + "; ".join(words) + f"; {', '.join(drops)}, more than {max_regression:.0%} "
            "(train.promotion.max_regression)",
        )
    return Gate(NO_REGRESSION, True, head + "; ".join(words))


def per_case_metric(
    metric: str, rankings: Sequence[Sequence[str]], cases: Sequence[EvalCase]
) -> np.ndarray:
    """``metric`` (``recall@K`` or ``ndcg@K``) of each case's ranked list."""
    name, _, k_text = metric.partition("@")
    if name not in ("recall", "ndcg"):
        raise ValueError(f"no per-case form of {metric!r}")
    k = int(k_text)
    score = recall_at_k if name == "recall" else ndcg_at_k
    return np.array([score(r, c.relevant, k) for r, c in zip(rankings, cases, strict=True)])


def _paired_upper_bound(
    metric: str,
    cases: Sequence[EvalCase],
    new: Sequence[Sequence[str]] | None,
    old: Sequence[Sequence[str]] | None,
    confidence: float,
) -> float | None:
    """The one-sided upper bound of mean(new - old) per case, or None without both lists."""
    if not cases or new is None or old is None or not len(new) == len(old) == len(cases):
        return None
    a, b = per_case_metric(metric, new, cases), per_case_metric(metric, old, cases)
    return paired_interval(a, b, 1.0 - confidence)[1]


# --- score sanity ----------------------------------------------------------------------


def list_tables(table: pa.Table, limit: int | None = None) -> list[pa.Table]:
    """The rows of each list (by ``request_id``), at most ``limit`` lists (the first)."""
    if table.num_rows == 0 or "request_id" not in table.column_names:
        return []
    ids = table.column("request_id").combine_chunks()
    unique = pc.unique(ids)
    if limit is not None:
        unique = unique.slice(0, limit)
    return [table.filter(pc.equal(ids, rid)) for rid in unique]


#: Test rows a head's calibration error is judged on, at least: over fewer, ten bins of a
#: few rows each measure noise (0.3 on 70 rows of a well-calibrated head is common).
MIN_ECE_ROWS = 500


def score_sanity(
    model: RankerModel | None,
    lists: Sequence[pa.Table],
    ece: Mapping[str, tuple[float, int]],
    settings: PromotionSettings,
) -> Gate:
    """The learned ranker's raw scores on its test lists: finite, and not one score for a
    whole list in more than ``max_tied_lists`` of them; each head's calibration error
    (``ece``: head -> (ECE, test rows it was measured on)) at most ``max_ece``, judged on
    ``MIN_ECE_ROWS`` rows or more."""
    if model is None:
        return Gate(SCORE_SANITY, True, "no learned ranker in this version")
    if model.serve != LEARNED:
        return Gate(
            SCORE_SANITY,
            True,
            f"the ranker's gate serves {model.serve}: the learned scores order no list",
        )
    problems = []
    scored = [t for t in lists if t.num_rows >= 2]
    for name, head in model.heads.items():
        raws = [head.uncalibrated(model.design(feature_matrix(t))) for t in scored]
        if any(not np.all(np.isfinite(r)) for r in raws):
            problems.append(f"{name}: scores not finite")
            continue
        tied = sum(float(np.ptp(r)) == 0.0 for r in raws)
        if scored and tied / len(scored) > settings.max_tied_lists:
            problems.append(
                f"{name}: one score for every row in {tied} of {len(scored)} lists "
                f"(more than train.promotion.max_tied_lists, {settings.max_tied_lists:.0%})"
            )
        error, rows = ece.get(name, (math.nan, 0))
        if rows >= MIN_ECE_ROWS and math.isfinite(error) and error > settings.max_ece:
            problems.append(
                f"{name}: calibration error {error:.3f} above train.promotion.max_ece "
                f"({settings.max_ece})"
            )
    if problems:
        return Gate(SCORE_SANITY, False, "; ".join(problems))
    errors = ", ".join(
        f"{h} {e:.3f}" + ("" if n >= MIN_ECE_ROWS else f" (not judged: {n} rows)")
        for h, (e, n) in ece.items()
        if math.isfinite(e)
    )
    return Gate(
        SCORE_SANITY,
        True,
        f"finite, ordered scores on {len(scored)} test lists"
        + (f"; calibration error {errors}" if errors else "; no calibration measured"),
    )


# --- latency ---------------------------------------------------------------------------


def recorded_queries(
    log_rows: pa.Table, histories: Mapping[str, tuple[str, ...]], n: int
) -> list[RecallQuery]:
    """The latest ``n`` served requests (rows with ``user_id`` and ``served_at``) as a
    trained source would be asked them now: each user's history as training last saw it."""
    if n <= 0 or log_rows.num_rows == 0:
        return []
    latest = log_rows.sort_by([("served_at", "descending")]).slice(0, n)
    out = []
    for user in latest.column("user_id").to_pylist():
        history = histories.get(user or "", ())
        out.append(RecallQuery(user_id=user, history=history, exclude=frozenset(history)))
    return out


def quotas(settings: Settings, default: int = 100) -> dict[str, int]:
    """How many candidates each source is asked for: its largest quota in any surface."""
    out: dict[str, int] = {}
    for surface in _surfaces(settings):
        for slot in surface.sources:
            out[slot.name] = max(out.get(slot.name, 0), slot.quota)
    return out


def _surfaces(settings: Settings) -> list[SurfaceConfig]:
    return [
        *settings.surfaces.values(),
        *variant_surfaces(settings.surfaces, settings.experiments).values(),
    ]


def deadlines(settings: Settings) -> dict[str, float]:
    """Each source's deadline in milliseconds: the smallest ``timeout_ms`` of the surfaces
    (and experiment variants) that name it, within ``serving.budget.retrieve_ms``."""
    budget = settings.serving.budget.retrieve_ms
    out: dict[str, float] = {}
    for surface in _surfaces(settings):
        for slot in surface.sources:
            out[slot.name] = min(out.get(slot.name, budget), slot.timeout_ms, budget)
    return out


def _fastest_ms(call: Callable[[T], object], arg: T, repeats: int) -> float:
    """The fastest of ``repeats`` runs, in milliseconds: a busy machine's pauses (another
    process, a collection) land on one run, not on the model's own time."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        call(arg)
        best = min(best, (time.perf_counter() - started) * 1000.0)
    return best


def time_recall(
    model: RetrievalModel,
    queries: Iterable[RecallQuery],
    k: int,
    *,
    blas_threads: int = 1,
    repeats: int = 2,
) -> list[float]:
    """Milliseconds each query's recall of ``k`` items took, the fastest of ``repeats``
    (after two untimed warm-ups: a first call may build caches the service builds once),
    with BLAS held to the service's ``blas_threads`` (many threads on a small product
    are slower, and the service runs one)."""
    queries = list(queries)
    with threadpool_limits(blas_threads, "blas"):
        for query in queries[:2]:
            model.recall(query, k)
        return [_fastest_ms(lambda q: model.recall(q, k), q, repeats) for q in queries]


def time_ranker(
    model: RankerModel, lists: Sequence[pa.Table], *, blas_threads: int = 1, repeats: int = 2
) -> list[float]:
    """Milliseconds the ranker took to score each list (its features already built), the
    fastest of ``repeats``, BLAS held to ``blas_threads`` as in ``time_recall``."""
    matrices = [feature_matrix(t) for t in lists]
    with threadpool_limits(blas_threads, "blas"):
        for matrix in matrices[:2]:
            model.predict(matrix)
        return [_fastest_ms(model.predict, m, repeats) for m in matrices]


def latency(
    source_ms: Mapping[str, Sequence[float]],
    source_deadlines: Mapping[str, float],
    ranker_ms: Sequence[float],
    rank_budget_ms: float,
    quantile: float,
) -> Gate:
    """Each source's ``quantile`` of recall time against its deadline, and the ranker's of
    scoring a list against ``rank_budget_ms``: past it, that share of requests would lose
    the source (or the ranker) to its timeout."""
    timed = {n: ms for n, ms in source_ms.items() if len(ms)}
    if not timed and not len(ranker_ms):
        return Gate(LATENCY, True, "nothing timed (no requests to replay)")
    q = f"p{quantile * 100:g}"
    words, late = [], []
    for name, ms in timed.items():
        value = float(np.quantile(ms, quantile))
        limit = source_deadlines.get(name)
        words.append(f"{name} {value:.1f}" + (f"/{limit:g}" if limit is not None else ""))
        if limit is not None and value > limit:
            late.append(f"{name} {q} {value:.1f} ms over its {limit:g} ms deadline")
    if len(ranker_ms):
        value = float(np.quantile(ranker_ms, quantile))
        words.append(f"ranker {value:.1f}/{rank_budget_ms:g}")
        if value > rank_budget_ms:
            late.append(
                f"ranker {q} {value:.1f} ms over serving.budget.rank_ms ({rank_budget_ms:g})"
            )
    count = max([len(ms) for ms in timed.values()] + [len(ranker_ms)])
    detail = f"{q} ms / deadline over {count} requests: " + ", ".join(words)
    if late:
        return Gate(LATENCY, False, "; ".join(late) + f" ({detail})")
    return Gate(LATENCY, True, detail)


# --- ranker no regression --------------------------------------------------------------

_MEASURES = {
    "interactions": "NDCG@10 on held-out interactions",
    "logged": "IPS-weighted DCG@10 on logged lists",
}


def ranker_no_regression(
    values: ListValues | str,
    serve: str,
    served_version: str,
    max_regression: float,
    confidence: float = CONFIDENCE,
    previous_serves: str = LEARNED,
) -> Gate:
    """The ordering the new version would serve (``serve``), and its learned ranker where
    the served version serves its own (``previous_serves``), against what the served
    version serves (``PREVIOUS``) on every measure the ranker's gate had enough lists for
    (``values``, or why there is nothing to compare).

    Blocks when one falls by more than ``max_regression`` of the served ordering's figure
    (relative) and the paired bootstrap's upper bound of the difference at one-sided
    ``confidence`` is below zero: a drop within the noise of a few hundred lists does not
    stop a nightly training, a broken one (labels shuffled: 70% lower) does. A learned
    ranker that serves nothing is not held against the version: where the served version
    serves the blend (its ranker lost to it), a new ranker that loses to the blend too is
    what the ranker's gate already kept from serving, not a broken training.
    """
    if isinstance(values, str):
        return Gate(RANKER_NO_REGRESSION, True, f"not compared: {values}")
    served = values.per_list.get(PREVIOUS, {})
    measures = [m for m in _MEASURES if m in served and values.lists.get(m, 0) >= MIN_LISTS]
    if not measures:
        counts = ", ".join(f"{n} {m}" for m, n in values.lists.items()) or "none"
        return Gate(
            RANKER_NO_REGRESSION,
            True,
            f"not compared: too few test lists with a positive ({counts}; {MIN_LISTS} needed)",
        )
    contenders = [LEARNED] if previous_serves == LEARNED else []
    if serve not in (LEARNED, PREVIOUS) and serve in values.per_list:
        contenders.append(serve)
    elif serve == LEARNED and LEARNED not in contenders:
        contenders.append(LEARNED)
    if not contenders:
        return Gate(
            RANKER_NO_REGRESSION,
            True,
            f"not compared: the new version serves what served {served_version} serves "
            f"({previous_serves}); its learned ranker serves nothing",
        )
    words, drops = [], []
    for measure in measures:
        old = served[measure]
        old_mean = float(np.mean(old))
        for name in contenders:
            new = values.per_list[name][measure]
            new_mean = float(np.mean(new))
            label = "the new learned ranker" if name == LEARNED else f"{name} (would serve)"
            text = (
                f"{label} {new_mean:.4f} against the served ranker {old_mean:.4f}, "
                f"{_MEASURES[measure]} ({len(old)} lists)"
            )
            words.append(text)
            if not math.isfinite(old_mean) or old_mean <= 0:
                continue
            drop = (old_mean - new_mean) / old_mean
            _, high = paired_interval(new, old, 1.0 - confidence)
            if drop > max_regression and high < 0:
                drops.append(
                    f"{text}: fell {drop:.0%}, upper bound of the difference {high:+.4f} at "
                    f"one-sided {confidence:.0%}"
                )
    head = f"the ranker against served {served_version}'s, on the same latest test lists: "
    if drops:
        return Gate(
            RANKER_NO_REGRESSION,
            False,
            head + "; ".join(drops) + f"; more than {max_regression:.0%} "
            "(train.promotion.max_ranker_regression)",
        )
    return Gate(RANKER_NO_REGRESSION, True, head + "; ".join(words))

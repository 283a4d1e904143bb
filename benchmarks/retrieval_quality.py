"""Retrieval quality of every trained candidate source on public data sets, full ranking.

For each data set, each source is fitted on the training part and asked once per test case
for its top 500 items (training items excluded); Recall@10/50/100/500, NDCG@10 and HR@10 are
reported overall and per user segment (by training interactions), beside a most-popular
baseline, a round-robin merge of all trained sources, and published reference figures.

    .venv/bin/python benchmarks/retrieval_quality.py                       # everything
    .venv/bin/python benchmarks/retrieval_quality.py --quick               # small and fast
    .venv/bin/python benchmarks/retrieval_quality.py --datasets ml-100k,lastfm \\
        --sources popular,ease,als --out                                   # writes JSON
    .venv/bin/python benchmarks/retrieval_quality.py --datasets ml-100k-random \\
        --tune 20 --tune-sources als,bpr --out                             # also tuned

With ``--tune N`` each trained source (or those of ``--tune-sources``) is also tuned with the
training job's tuner (N Optuna trials, maximising Recall@100 on the split's validation cases,
fitted on the training data that excludes them; never on the test cases), then refitted with
the best parameters on the training part and evaluated on the test cases like the default:
its row is ``<source> (tuned)``. A split without a validation part (``ml-100k-random``) is
given one from its training part: a per-user random 75/25 split of each user's training rows.

Data sets are read from ``$RECLOOP_DATASETS`` (default ``../shared/datasets``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recloop.data.datasets import (
    Split,
    leave_one_out,
    load_item_attributes,
    load_movielens_inter,
    load_movielens_items,
    load_sequences,
    random_split,
    time_split,
)
from recloop.evaluation.retrieval_metrics import (
    EvalCase,
    RetrievalReport,
    evaluate_recall,
    round_robin_merge,
    score_rankings,
)
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import Recalled, RecallQuery

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "retrieval_quality.json"
KS = (10, 50, 100, 500)
DEPTH = max(KS)
TOP = 10
TUNED = " (tuned)"  # the suffix of a tuned source's row
VALID_HOLDOUT = 0.25  # of each user's training rows, where a split has no validation part
VALID_SEED = 43

out = Console(width=170, highlight=False)
err = Console(stderr=True, highlight=False)


# --- the most-popular baseline ---------------------------------------------------------------


class MostPopular:
    """The items with the most training interactions, the same list for everyone."""

    kind: ClassVar[str] = "most-popular"

    def __init__(self) -> None:
        self.ranked_: list[tuple[str, float]] = []

    def fit(self, data: TrainingData) -> Self:
        """Count each item's training interactions."""
        x = data.interactions
        counts = np.bincount(x.items, minlength=x.n_items)
        order = np.argsort(-counts, kind="stable")
        self.ranked_ = [(x.item_ids[i], float(counts[i])) for i in order if counts[i] > 0]
        return self

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """The ``k`` most popular items the user has not had."""
        result: list[Recalled] = []
        for item_id, count in self.ranked_:
            if item_id not in query.exclude:
                result.append(Recalled(item_id, count))
                if len(result) >= k:
                    break
        return result

    def save(self, path: Path) -> None:
        """Write the ranked list."""
        (path / "popular.json").write_text(json.dumps(self.ranked_))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a list written by :meth:`save`."""
        model = cls()
        model.ranked_ = [(i, float(c)) for i, c in json.loads((path / "popular.json").read_text())]
        return model

    def params(self) -> dict[str, Any]:
        """No hyper-parameters."""
        return {}


# --- sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """A trained source: where its class lives and when it cannot run."""

    name: str
    module: str
    cls: str
    max_items: int | None = None  # skip on catalogues with more items with interactions
    needs_text: bool = False


SOURCES = [
    SourceSpec("covisitation", "recloop.retrieval.item_item", "CoVisitation"),
    SourceSpec("item-knn", "recloop.retrieval.item_item", "ItemKNN"),
    SourceSpec("ease", "recloop.retrieval.item_item", "EASE", max_items=20_000),
    SourceSpec("als", "recloop.retrieval.factors", "ALSModel"),
    SourceSpec("bpr", "recloop.retrieval.factors", "BPRModel"),
    SourceSpec("content", "recloop.retrieval.content", "ContentModel", needs_text=True),
    SourceSpec("two-tower", "recloop.retrieval.two_tower", "TwoTowerModel"),
]
BASELINE = "popular"


def import_source(spec: SourceSpec) -> tuple[type[Any] | None, str]:
    """The source's class, or None and why it is missing."""
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        return None, f"{spec.module} not importable ({exc})"
    cls = getattr(module, spec.cls, None)
    if cls is None:
        return None, f"{spec.module} has no {spec.cls}"
    return cls, ""


# --- data sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A published figure to print beside ours."""

    model: str
    metrics: dict[str, float]  # "NDCG@10", "HR@10", "Recall@10"
    compare_with: str | None = None  # our source it corresponds to, if any


@dataclass(frozen=True)
class DatasetSpec:
    """How to load and split a data set, and what to compare it with."""

    name: str
    load: Callable[[], Split]
    protocol: str
    segments: tuple[int, int]  # users with < lo, lo..hi, > hi training interactions
    references: tuple[Reference, ...] = ()
    reference_note: str = ""
    has_text: bool = True


def _ml100k_time() -> Split:
    base = DATASETS / "ml-100k"
    log = load_movielens_inter(base / "ml-100k.inter", min_rating=4.0)
    return time_split(log, items=load_movielens_items(base / "ml-100k.item"))


def _ml100k_random() -> Split:
    base = DATASETS / "ml-100k"
    log = load_movielens_inter(base / "ml-100k.inter", min_rating=None)
    items = load_movielens_items(base / "ml-100k.item")
    return random_split(log, train_fraction=0.75, seed=42, items=items)


def _s3rec(name: str) -> Callable[[], Split]:
    def load() -> Split:
        base = DATASETS / "amazon-s3rec"
        items = load_item_attributes(base / f"{name}_item2attributes.json")
        return leave_one_out(load_sequences(base / f"{name}.txt"), items=items)

    return load


def _video() -> Split:
    return leave_one_out(load_sequences(DATASETS / "amazon-videogames" / "Video.txt"))


S3REC_NOTE = (
    "S3-Rec (Zhou et al., CIKM 2020) table 2: the same files and protocol (leave-one-out, "
    "full ranking, training items masked). Their popularity baseline should match ours; "
    "SASRec/S3-Rec are sequential models trained on the order, none of our sources is one."
)

DATASET_SPECS = [
    DatasetSpec(
        "ml-100k",
        _ml100k_time,
        "ratings >= 4 as positives; global time split by interaction quantiles (train: first "
        "90%, test: last 10%; the validation 10% is in train); test users must have training "
        "history; relevant = their test-period items",
        (20, 100),
        reference_note="No published figures for this time split (see ml-100k-random).",
    ),
    DatasetSpec(
        "ml-100k-random",
        _ml100k_random,
        "all ratings as positives; per-user stratified random 75/25 split (seed 42), as the "
        "Microsoft Recommenders benchmark; relevant = the user's 25% test items",
        (30, 150),
        (
            Reference("BPR (cornac)", {"NDCG@10": 0.442, "Recall@10": 0.213}, "bpr"),
            Reference("BiVAE", {"NDCG@10": 0.475, "Recall@10": 0.219}),
            Reference("LightGCN", {"NDCG@10": 0.420}),
            Reference("SAR", {"NDCG@10": 0.383}),
        ),
        "Microsoft Recommenders benchmark (movielens 100k, top-10, seen items removed): same "
        "protocol as this split, so like for like, up to the random seed.",
    ),
    DatasetSpec(
        "beauty",
        _s3rec("Beauty"),
        "S3-Rec leave-one-out by order: last item test, second-to-last in train and history; "
        "full ranking over all items",
        (5, 20),
        (
            Reference("popularity", {"HR@10": 0.0152, "NDCG@10": 0.0068}, BASELINE),
            Reference("SASRec", {"HR@10": 0.0605, "NDCG@10": 0.0318}),
            Reference("S3-Rec", {"HR@10": 0.0647, "NDCG@10": 0.0327}),
        ),
        S3REC_NOTE,
    ),
    DatasetSpec(
        "yelp",
        _s3rec("Yelp"),
        "S3-Rec leave-one-out by order, full ranking (6.7% of test targets repeat an earlier "
        "item of the user: masked, so certain misses, as in S3-Rec)",
        (5, 20),
        (
            Reference("popularity", {"HR@10": 0.0099}, BASELINE),
            Reference("SASRec", {"HR@10": 0.0274, "NDCG@10": 0.0136}),
            Reference("S3-Rec", {"HR@10": 0.0341, "NDCG@10": 0.0168}),
        ),
        S3REC_NOTE,
    ),
    DatasetSpec(
        "lastfm",
        _s3rec("LastFM"),
        "S3-Rec leave-one-out by order, full ranking",
        (10, 100),
        (
            Reference("popularity", {"HR@10": 0.0440}, BASELINE),
            Reference("SASRec", {"HR@10": 0.0688, "NDCG@10": 0.0390}),
            Reference("S3-Rec", {"HR@10": 0.0743, "NDCG@10": 0.0427}),
        ),
        S3REC_NOTE,
    ),
    DatasetSpec(
        "video",
        _video,
        "SASRec's Video.txt, leave-one-out by order, full ranking (users with < 3 items: "
        "train only)",
        (5, 20),
        (Reference("SASRec (100 sampled negatives)", {"HR@10": 0.741, "NDCG@10": 0.536}),),
        "SASRec (Kang & McAuley 2018) ranks the target against 100 sampled negatives, which "
        "overstates full-ranking figures by far (Krichene & Rendle 2020): a sanity note only.",
        has_text=False,
    ),
]
QUICK_DATASETS = ("ml-100k", "ml-100k-random", "lastfm")


# --- running ---------------------------------------------------------------------------------


@dataclass
class SourceResult:
    """One source on one data set."""

    name: str
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    fit_s: float = math.nan
    eval_s: float = math.nan
    report: RetrievalReport | None = None
    rankings: list[list[str]] = field(default_factory=list, repr=False)
    tuning: TuningInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        doc = {
            "source": self.name,
            "status": self.status,
            "note": self.note,
            "fit_s": None if math.isnan(self.fit_s) else round(self.fit_s, 3),
            "eval_s": None if math.isnan(self.eval_s) else round(self.eval_s, 3),
            "report": None if self.report is None else self.report.to_dict(),
        }
        if self.tuning is not None:
            doc["tuning"] = self.tuning.to_dict()
        return doc


@dataclass(frozen=True)
class TuneOptions:
    """What ``--tune`` asked for."""

    trials: int
    sources: frozenset[str]
    max_cases: int
    seed: int


@dataclass
class TuningInfo:
    """How a source's tuned parameters were found, on validation cases only."""

    kind: str
    params: dict[str, Any]
    valid_recall: float  # the best trial's validation Recall@100
    default_valid_recall: float  # the default parameters' on the same cases
    trials: int
    seconds: float
    edges: list[str]  # parameters at (or within 5% of) an edge of the search space

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "kind": self.kind,
            "params": self.params,
            "valid_recall@100": round(self.valid_recall, 5),
            "default_valid_recall@100": None
            if math.isnan(self.default_valid_recall)
            else round(self.default_valid_recall, 5),
            "trials": self.trials,
            "tune_s": round(self.seconds, 1),
            "at_search_space_edge": self.edges,
        }


def segment_labels(lo: int, hi: int) -> tuple[str, str, str]:
    """The segment names, lightest users first."""
    return (f"<{lo}", f"{lo}-{hi}", f">{hi}")


def segment_fn(train: TrainingData, lo: int, hi: int) -> Callable[[EvalCase], str]:
    """Name a case's segment by its user's number of training interactions."""
    x = train.interactions
    counts = np.bincount(x.users, minlength=x.n_users)
    labels = segment_labels(lo, hi)

    def segment(case: EvalCase) -> str:
        index = x.user_index(case.user_id)
        n = 0 if index is None else int(counts[index])
        return labels[0] if n < lo else labels[1] if n <= hi else labels[2]

    return segment


def run_source(
    spec_name: str,
    make: Callable[[], Any],
    train: TrainingData,
    cases: Sequence[EvalCase],
    segments: Callable[[EvalCase], str],
    progress: Progress,
) -> SourceResult:
    """Fit one source and evaluate it; failures are recorded, not raised."""
    result = SourceResult(spec_name)
    task = progress.add_task(f"{spec_name}: fit", total=len(cases))
    try:
        start = time.perf_counter()
        model = make().fit(train)
        result.fit_s = time.perf_counter() - start
        progress.update(task, description=f"{spec_name}: recall")
        start = time.perf_counter()
        result.report = evaluate_recall(
            model.recall,
            cases,
            KS,
            segments,
            top=TOP,
            on_case=lambda: progress.advance(task),
            rankings_out=result.rankings,
        )
        result.eval_s = time.perf_counter() - start
    except Exception as exc:  # a source under development must not stop the benchmark
        result.status = "failed"
        result.note = f"{type(exc).__name__}: {exc}"
        err.print(f"[red]{spec_name} failed[/red]\n{traceback.format_exc(limit=3)}")
    finally:
        progress.remove_task(task)
    return result


# --- tuning ----------------------------------------------------------------------------------


def holdout_validation(
    data: TrainingData, fraction: float, seed: int
) -> tuple[TrainingData, list[EvalCase]]:
    """A validation split carved from training data: a per-user random ``fraction`` of each
    user's rows is held out (as ``random_split`` does to the whole log); cases are users with
    rows on both sides, relevant = their held-out items not among their kept ones."""
    x = data.interactions
    keep = np.ones(len(x), dtype=bool)
    rng = np.random.default_rng(seed)
    order = np.argsort(x.users, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(x.users[order])) + 1):
        if len(rows):
            keep[rng.permutation(rows)[round((1.0 - fraction) * len(rows)) :]] = False
    fit_on = TrainingData(x.select(keep), data.items, data.shown_negatives, data.user_attributes)
    return fit_on, heldout_cases(x, fit_on, ~keep)


def heldout_cases(
    x: Interactions, fit_on: TrainingData, held: np.ndarray, now_ts: float | None = None
) -> list[EvalCase]:
    """One case per user with history in ``fit_on`` whose ``held`` rows of ``x`` bring items
    outside it: relevant = those items; history and exclusions = the user's fitted items."""
    histories = fit_on.interactions.histories()
    later: dict[int, set[int]] = {}
    for u, it in zip(x.users[held].tolist(), x.items[held].tolist(), strict=True):
        later.setdefault(u, set()).add(it)
    ids = x.item_ids
    cases = []
    for u in sorted(later):
        history = histories[u]
        relevant = later[u] - set(history)
        if history and relevant:
            cases.append(
                EvalCase(
                    x.user_ids[u],
                    tuple(ids[i] for i in history),
                    frozenset(ids[i] for i in relevant),
                    frozenset(ids[i] for i in history),
                    now_ts,
                )
            )
    return cases


def validation_for(split: Split, options: TuneOptions) -> tuple[Any, dict[str, Any]]:
    """The tuner's ``Validation`` (never the test cases) and a description of it.

    The split's own validation part where it has one; otherwise a random per-user holdout of
    its training part. At most ``options.max_cases`` cases, a fixed random sample.
    """
    from recloop.training.sources import Validation

    if split.valid:
        train, cases = split.valid_train, list(split.valid)
        how = "the split's validation part (valid_train / valid)"
    else:
        train, cases = holdout_validation(split.train, VALID_HOLDOUT, VALID_SEED)
        how = (
            f"no validation part in the split: a per-user random {VALID_HOLDOUT:.0%} of each "
            f"user's training rows held out (seed {VALID_SEED})"
        )
    available = len(cases)
    if len(cases) > options.max_cases:
        cases = random.Random(options.seed).sample(cases, options.max_cases)
    info = {
        "how": how,
        "train_interactions": len(train.interactions),
        "cases": len(cases),
        "cases_available": available,
        "trials": options.trials,
        "objective": "recall@100",
    }
    return Validation(train, tuple(cases), 0.0), info


class _SpaceProbe:
    """Stands in for an Optuna trial to record the search space a kind defines."""

    def __init__(self) -> None:
        self.space: dict[str, tuple[Any, ...]] = {}

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        self.space[name] = ("range", low, high, bool(kw.get("log", False)))
        return low

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        self.space[name] = ("range", low, high, bool(kw.get("log", False)))
        return low

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.space[name] = ("choice", tuple(choices))
        return choices[0]


def search_space_edges(kind: str, params: dict[str, Any], margin: float = 0.05) -> list[str]:
    """The tuned parameters at, or within ``margin`` of, an edge of the kind's search space
    (on a log scale where the space is); for ordered numeric choices, the first or last."""
    try:
        from recloop.training.sources import _space

        probe = _SpaceProbe()
        _space(kind, probe)
    except Exception:  # the tuner's space is its own business: no edges then
        return []
    edges: list[str] = []
    for name, dim in probe.space.items():
        value = params.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if dim[0] == "choice":
            numbers = sorted(c for c in dim[1] if isinstance(c, int | float))
            if len(numbers) > 2 and value in (numbers[0], numbers[-1]):
                side = "lowest" if value == numbers[0] else "highest"
                edges.append(f"{name}={value:g} ({side} of {numbers})")
            continue
        _, low, high, log = dim
        if high <= low or (log and (low <= 0 or value <= 0)):
            continue
        if log:
            where = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            where = (value - low) / (high - low)
        if where <= margin:
            edges.append(f"{name}={value:.4g} at low edge {low:g}")
        elif where >= 1.0 - margin:
            edges.append(f"{name}={value:.4g} at high edge {high:g}")
    return edges


def tune_source(
    name: str,
    cls: type[Any],
    validation: Any,
    trials: int,
    train: TrainingData,
    cases: Sequence[EvalCase],
    segments: Callable[[EvalCase], str],
    progress: Progress,
) -> SourceResult:
    """Tune one source on the validation cases, then fit the best on ``train`` and evaluate
    it on the test cases exactly as the default; failures are recorded, not raised."""
    from recloop.training.sources import OBJECTIVE, tune
    from recloop.training.sources import evaluate as validate

    kind = str(cls.kind)
    task = progress.add_task(f"{name}: tune", total=trials + 1)
    try:
        default = cls().fit(validation.train)
        default_valid = validate(default, validation.cases).get(OBJECTIVE, math.nan)
        progress.advance(task)
        found = tune(kind, validation, trials=trials, on_trial=lambda: progress.advance(task))
    except Exception as exc:
        err.print(f"[red]tuning {name} failed[/red]\n{traceback.format_exc(limit=3)}")
        return SourceResult(name + TUNED, "failed", f"tuning: {type(exc).__name__}: {exc}")
    finally:
        progress.remove_task(task)
    params = dict(found.params)
    result = run_source(name + TUNED, lambda: cls(**params), train, cases, segments, progress)
    result.tuning = TuningInfo(
        kind,
        params,
        found.value,
        float(default_valid),
        found.trials,
        found.seconds,
        search_space_edges(kind, params),
    )
    return result


def merge_of(
    results: Sequence[SourceResult],
    cases: Sequence[EvalCase],
    name: str,
    segments: Callable[[EvalCase], str],
) -> SourceResult:
    """The round-robin merge of the results' lists."""
    lists = [round_robin_merge([r.rankings[i] for r in results], DEPTH) for i in range(len(cases))]
    merged = SourceResult(name, note="round-robin of " + ", ".join(r.name for r in results))
    merged.report = score_rankings(lists, cases, KS, top=TOP, segments=segments)
    return merged


def run_dataset(
    spec: DatasetSpec,
    source_names: Sequence[str],
    max_cases: int | None,
    seed: int,
    tuning: TuneOptions | None = None,
) -> dict[str, Any]:
    """Load, split, fit and evaluate every source on one data set; print its tables."""
    start = time.perf_counter()
    split = spec.load()
    load_s = time.perf_counter() - start
    train = split.train
    cases = split.test
    n_all = len(cases)
    if max_cases is not None and len(cases) > max_cases:
        cases = random.Random(seed).sample(cases, max_cases)
    lo, hi = spec.segments
    segments = segment_fn(train, lo, hi)
    x = train.interactions
    items_used = int((np.bincount(x.items, minlength=x.n_items) > 0).sum())
    unreachable = sum(1 for c in cases if c.relevant <= c.exclude)
    cold_targets = sum(1 for c in cases if all(x.item_index(i) is None for i in c.relevant))
    info = {
        "users": x.n_users,
        "items": x.n_items,
        "items_with_interactions": items_used,
        "train_interactions": len(x),
        "test_cases": len(cases),
        "test_cases_available": n_all,
        "segments": {"lo": lo, "hi": hi},
        "certain_misses": unreachable,
        "load_s": round(load_s, 2),
    }
    out.rule(f"[bold]{spec.name}")
    out.print(f"protocol: {spec.protocol}")
    out.print(
        f"train: {len(x):,} interactions, {x.n_users:,} users, {x.n_items:,} items "
        f"({items_used:,} with interactions); test cases: {len(cases):,}"
        + (f" (sampled from {n_all:,})" if len(cases) < n_all else "")
        + f"; certain misses (target among excluded training items): {unreachable:,}"
        + (f"; cold targets: {cold_targets:,}" if cold_targets else "")
        + f"; loaded in {load_s:.1f} s"
    )
    seg_counts: dict[str, int] = {}
    for case in cases:
        seg_counts[segments(case)] = seg_counts.get(segments(case), 0) + 1
    out.print(
        "segments by the user's training interactions: "
        + ", ".join(f"{k}: {seg_counts.get(k, 0):,} cases" for k in segment_labels(lo, hi))
    )

    results: list[SourceResult] = []
    validation: Any = None
    validation_info: dict[str, Any] | None = None
    with Progress(
        TextColumn(f"{spec.name} " + "{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        for name in source_names:
            if name == BASELINE:
                results.append(run_source(name, MostPopular, train, cases, segments, progress))
                continue
            src = next(s for s in SOURCES if s.name == name)
            cls, why = import_source(src)
            if cls is None:
                results.append(SourceResult(name, "skipped", why))
            elif src.max_items is not None and items_used > src.max_items:
                results.append(
                    SourceResult(
                        name,
                        "skipped",
                        f"{items_used:,} items with interactions > limit {src.max_items:,} "
                        "(a dense items x items inverse)",
                    )
                )
            elif src.needs_text and not spec.has_text:
                results.append(SourceResult(name, "skipped", "the data set has no item text"))
            else:
                results.append(run_source(name, cls, train, cases, segments, progress))
                if tuning is not None and name in tuning.sources:
                    if validation is None:
                        validation, validation_info = validation_for(split, tuning)
                        out.print(
                            f"tuning ({tuning.trials} trials each, Recall@100) on "
                            f"{validation_info['cases']:,} validation cases"
                            + (
                                f" (sampled from {validation_info['cases_available']:,})"
                                if validation_info["cases"] < validation_info["cases_available"]
                                else ""
                            )
                            + f", {validation_info['train_interactions']:,} training "
                            f"interactions: {validation_info['how']}"
                        )
                    results.append(
                        tune_source(
                            name,
                            cls,
                            validation,
                            tuning.trials,
                            train,
                            cases,
                            segments,
                            progress,
                        )
                    )

    ok = [r for r in results if r.status == "ok" and r.report is not None]
    by_name = {r.name: r for r in ok}
    trained = [r for r in ok if r.name != BASELINE and not r.name.endswith(TUNED)]
    merges: list[tuple[SourceResult, list[SourceResult]]] = []
    if len(trained) >= 2:
        merges.append((merge_of(trained, cases, "MERGED", segments), trained))
    # each trained source as tuned where it was, else as default
    after_tuning = [by_name.get(r.name + TUNED, r) for r in trained] + [
        r for r in ok if r.name.endswith(TUNED) and r.name[: -len(TUNED)] not in by_name
    ]
    tuned_any = any(r.name.endswith(TUNED) for r in after_tuning)
    if tuned_any and len(after_tuning) >= 2:
        merges.append((merge_of(after_tuning, cases, "MERGED" + TUNED, segments), after_tuning))
    print_tables(spec, results, merges, after_tuning if tuned_any else None)
    merged = next((m for m, _ in merges if m.name == "MERGED"), None)
    merged_tuned = next((m for m, _ in merges if m.name == "MERGED" + TUNED), None)
    doc: dict[str, Any] = {
        "dataset": spec.name,
        "protocol": spec.protocol,
        "info": info,
        "sources": [r.to_dict() for r in results if not r.name.endswith(TUNED)],
        "merged": None if merged is None else merged.to_dict(),
        "references": [
            {"model": ref.model, "metrics": ref.metrics, "compare_with": ref.compare_with}
            for ref in spec.references
        ],
        "reference_note": spec.reference_note,
    }
    if tuning is not None:
        doc["tuning_validation"] = validation_info
        doc["tuned_sources"] = [r.to_dict() for r in results if r.name.endswith(TUNED)]
        doc["merged_tuned"] = None if merged_tuned is None else merged_tuned.to_dict()
    return doc


# --- printing --------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def print_tables(
    spec: DatasetSpec,
    results: list[SourceResult],
    merges: list[tuple[SourceResult, list[SourceResult]]],
    after_tuning: list[SourceResult] | None = None,
) -> None:
    """The overall table, the tuning, the per-segment table, the merges and the references.

    ``merges`` are each merge with the sources it merged; ``after_tuning`` (when some source
    was tuned) is each trained source as tuned where it was, else as default.
    """
    table = Table(title=f"{spec.name}: test, full ranking (mean over cases)", title_justify="left")
    columns = ("source", "fit s", *(f"R@{k}" for k in KS), f"NDCG@{TOP}", f"HR@{TOP}")
    for col in (*columns, "p50 ms", "p99 ms", "returned", "note"):
        table.add_column(col, justify="left" if col in ("source", "note") else "right")
    rows = [*results, *(m for m, _ in merges)]
    for r in rows:
        if r.report is None:
            table.add_row(r.name, *["-"] * (len(KS) + 6), f"{r.status}: {r.note}")
            continue
        m = r.report.overall
        note = r.note
        if r.report.excluded_returned:
            note = f"{note} returned excluded items in {r.report.excluded_returned} cases".strip()
        table.add_row(
            r.name,
            _f(r.fit_s, 1),
            *(_f(m.recall[k]) for k in KS),
            _f(m.ndcg),
            _f(m.hit_rate),
            _f(r.report.latency_p50_ms, 2),
            _f(r.report.latency_p99_ms, 2),
            _f(m.mean_returned, 0),
            note,
        )
    out.print(table)
    print_tuning(spec, results)

    scored = [r for r in rows if r.report is not None]
    if scored:
        names = segment_labels(*spec.segments)
        seg = Table(title=f"{spec.name}: per segment, R@100 / NDCG@10", title_justify="left")
        seg.add_column("source")
        first = scored[0].report
        assert first is not None
        for s in names:
            n = first.segments[s].n_cases if s in first.segments else 0
            seg.add_column(f"{s} (n={n})", justify="right")
        for r in scored:
            assert r.report is not None
            cells = []
            for s in names:
                sm = r.report.segments.get(s)
                cells.append("-" if sm is None else f"{_f(sm.recall[100])} / {_f(sm.ndcg)}")
            seg.add_row(r.name, *cells)
        out.print(seg)

    for merged, members in merges:
        if merged.report is None or not members:
            continue
        best = max(members, key=lambda r: r.report.overall.recall[DEPTH])  # type: ignore[union-attr]
        assert best.report is not None
        got, single = merged.report.overall.recall[DEPTH], best.report.overall.recall[DEPTH]
        out.print(
            f"{merged.name} ({merged.note}, {DEPTH} slots): Recall@{DEPTH} {_f(got)} vs best "
            f"single source {best.name} {_f(single)} ({got / max(single, 1e-12) - 1:+.1%})"
        )

    if spec.references:
        ref = Table(title=f"{spec.name}: published figures beside ours", title_justify="left")
        ref_columns = ["published model", "metric", "published", "ours (source)", "ours"]
        if after_tuning is not None:
            ref_columns += ["tuned (source)", "tuned"]
        for col in ref_columns:
            ref.add_column(col, justify="left" if "model" in col or "source" in col else "right")
        by_name = {r.name: r for r in rows if r.report is not None}
        defaults = [
            r for r in by_name.values() if not r.name.startswith("MERGED") and TUNED not in r.name
        ]
        tuned_pool = [*(by_name[n] for n in (BASELINE,) if n in by_name), *(after_tuning or [])]
        for reference in spec.references:
            for metric, value in reference.metrics.items():
                cells = [reference.model, metric, f"{value:.4f}"]
                pools = [(defaults, "")] + (
                    [(tuned_pool, TUNED)] if after_tuning is not None else []
                )
                for pool, suffix in pools:
                    if reference.compare_with is not None:  # as tuned, else as default
                        name = reference.compare_with
                        ours = by_name.get(name + suffix) or by_name.get(name)
                        label = "-" if ours is None else ours.name
                    else:  # compare with our best on that metric
                        ours = max(pool, key=lambda r: _metric(r, metric), default=None)
                        label = f"best: {ours.name}" if ours is not None else "-"
                    cells += [label, "-" if ours is None else _f(_metric(ours, metric))]
                ref.add_row(*cells)
        out.print(ref)
    if spec.reference_note:
        out.print(f"[dim]{spec.reference_note}[/dim]")


def print_tuning(spec: DatasetSpec, results: list[SourceResult]) -> None:
    """Per tuned source: validation Recall@100 default vs tuned, test change, the parameters."""
    tuned = [r for r in results if r.name.endswith(TUNED)]
    if not tuned:
        return
    by_name = {r.name: r for r in results}
    table = Table(
        title=f"{spec.name}: tuning (validation cases only; test R@100 after refitting on train)",
        title_justify="left",
    )
    for col in ("source", "trials", "tune s", "valid R@100", "test R@100", "tuned parameters"):
        table.add_column(col, justify="left" if col in ("source", "tuned parameters") else "right")
    for r in tuned:
        t = r.tuning
        if t is None:
            table.add_row(r.name, "-", "-", "-", "-", f"{r.status}: {r.note}")
            continue
        default = by_name.get(r.name[: -len(TUNED)])
        test_default = (
            default.report.overall.recall[100]
            if default is not None and default.report is not None
            else math.nan
        )
        test_tuned = r.report.overall.recall[100] if r.report is not None else math.nan
        params = ", ".join(f"{k}={_p(v)}" for k, v in sorted(t.params.items()))
        if t.edges:
            params += " [yellow]EDGE: " + "; ".join(t.edges) + "[/yellow]"
        if t.default_valid_recall > t.valid_recall:
            params += " [yellow](defaults score higher on validation)[/yellow]"
        table.add_row(
            r.name[: -len(TUNED)],
            str(t.trials),
            _f(t.seconds, 0),
            f"{_f(t.default_valid_recall)} -> {_f(t.valid_recall)}",
            f"{_f(test_default)} -> {_f(test_tuned)}",
            params,
        )
    out.print(table)


def _p(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metric(r: SourceResult, metric: str) -> float:
    assert r.report is not None
    m = r.report.overall
    if metric == f"NDCG@{TOP}":
        return m.ndcg
    if metric == f"HR@{TOP}":
        return m.hit_rate
    return m.recall[int(metric.split("@")[1])]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the data sets."""
    names = [d.name for d in DATASET_SPECS]
    sources = [BASELINE, *(s.name for s in SOURCES)]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=None, help=f"comma-separated, of {','.join(names)}")
    parser.add_argument("--sources", default=None, help=f"comma-separated, of {','.join(sources)}")
    parser.add_argument(
        "--quick", action="store_true", help=f"{','.join(QUICK_DATASETS)}, at most 1,000 cases"
    )
    parser.add_argument("--max-cases", type=int, default=None, help="sample this many test cases")
    parser.add_argument("--seed", type=int, default=0, help="for the case sample")
    parser.add_argument(
        "--out",
        nargs="?",
        const=DEFAULT_OUT,
        default=None,
        type=Path,
        help="write the figures as JSON (default benchmarks/results/retrieval_quality.json)",
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="N",
        help="also tune each trained source with N Optuna trials on the validation cases, "
        "refit on train, and report it as '<source> (tuned)'",
    )
    parser.add_argument(
        "--tune-sources",
        default=None,
        help="comma-separated: tune only these (default: every trained source run; content "
        "and two-tower refit per trial, so they are slow)",
    )
    parser.add_argument(
        "--tune-cases",
        type=int,
        default=1000,
        help="at most this many validation cases for tuning, a fixed random sample (default 1000)",
    )
    args = parser.parse_args(argv)
    chosen = (
        args.datasets.split(",") if args.datasets else list(QUICK_DATASETS if args.quick else names)
    )
    chosen_sources = args.sources.split(",") if args.sources else sources
    for bad in [d for d in chosen if d not in names] + [
        s for s in chosen_sources if s not in sources
    ]:
        parser.error(f"unknown data set or source: {bad}")
    max_cases = args.max_cases if args.max_cases is not None else (1000 if args.quick else None)
    trained_names = [s.name for s in SOURCES]
    tune_sources = args.tune_sources.split(",") if args.tune_sources else trained_names
    for bad in [s for s in tune_sources if s not in trained_names]:
        parser.error(f"unknown trained source to tune: {bad}")
    if args.tune < 0 or args.tune_cases < 1:
        parser.error("--tune must be >= 0 and --tune-cases >= 1")
    tuning = (
        TuneOptions(args.tune, frozenset(tune_sources), args.tune_cases, args.seed)
        if args.tune
        else None
    )
    if tuning is not None:
        for name in sorted(tuning.sources - set(chosen_sources)):
            out.print(f"[yellow]note:[/yellow] {name} not tuned: not among --sources")
    if not DATASETS.is_dir():
        parser.error(f"no data sets at {DATASETS}; set RECLOOP_DATASETS")

    for name in chosen_sources:
        spec = next((s for s in SOURCES if s.name == name), None)
        if spec is not None and import_source(spec)[0] is None:
            out.print(f"[yellow]note:[/yellow] source {name} skipped: {import_source(spec)[1]}")
    started = time.perf_counter()
    figures = [
        run_dataset(
            next(d for d in DATASET_SPECS if d.name == n),
            chosen_sources,
            max_cases,
            args.seed,
            tuning,
        )
        for n in chosen
    ]
    total = time.perf_counter() - started
    out.print(f"\ntotal {total:.0f} s on {os.cpu_count()} CPUs")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "command": " ".join(sys.argv),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "max_cases": max_cases,
            "ks": list(KS),
            "tune": None
            if tuning is None
            else {
                "trials": tuning.trials,
                "sources": sorted(tuning.sources & set(chosen_sources)),
                "max_cases": tuning.max_cases,
                "objective": "validation recall@100 (Optuna TPE, seed 7)",
            },
            "total_s": round(total, 1),
            "datasets": figures,
        }
        args.out.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

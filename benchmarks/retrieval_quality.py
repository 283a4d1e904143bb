"""Retrieval quality of every trained candidate source on public data sets, full ranking.

For each data set, each source is fitted on the training part and asked once per test case
for its top 500 items (training items excluded); Recall@10/50/100/500, NDCG@10 and HR@10 are
reported overall and per user segment (by training interactions), beside a most-popular
baseline, a round-robin merge of all trained sources, and published reference figures.

    .venv/bin/python benchmarks/retrieval_quality.py                       # everything
    .venv/bin/python benchmarks/retrieval_quality.py --quick               # small and fast
    .venv/bin/python benchmarks/retrieval_quality.py --datasets ml-100k,lastfm \\
        --sources popular,ease,als --out                                   # writes JSON

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
from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import Recalled, RecallQuery

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "retrieval_quality.json"
KS = (10, 50, 100, 500)
DEPTH = max(KS)
TOP = 10

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "source": self.name,
            "status": self.status,
            "note": self.note,
            "fit_s": None if math.isnan(self.fit_s) else round(self.fit_s, 3),
            "eval_s": None if math.isnan(self.eval_s) else round(self.eval_s, 3),
            "report": None if self.report is None else self.report.to_dict(),
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


def run_dataset(
    spec: DatasetSpec, source_names: Sequence[str], max_cases: int | None, seed: int
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

    ok = [r for r in results if r.status == "ok" and r.report is not None]
    trained = [r for r in ok if r.name != BASELINE]
    merged: SourceResult | None = None
    if len(trained) >= 2:
        lists = [
            round_robin_merge([r.rankings[i] for r in trained], DEPTH) for i in range(len(cases))
        ]
        merged = SourceResult("MERGED", note="round-robin of " + ", ".join(r.name for r in trained))
        merged.report = score_rankings(lists, cases, KS, top=TOP, segments=segments)
    print_tables(spec, results, merged)
    return {
        "dataset": spec.name,
        "protocol": spec.protocol,
        "info": info,
        "sources": [r.to_dict() for r in results],
        "merged": None if merged is None else merged.to_dict(),
        "references": [
            {"model": ref.model, "metrics": ref.metrics, "compare_with": ref.compare_with}
            for ref in spec.references
        ],
        "reference_note": spec.reference_note,
    }


# --- printing --------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def print_tables(
    spec: DatasetSpec, results: list[SourceResult], merged: SourceResult | None
) -> None:
    """The overall table, the per-segment table, the merge and the references."""
    table = Table(title=f"{spec.name}: test, full ranking (mean over cases)", title_justify="left")
    columns = ("source", "fit s", *(f"R@{k}" for k in KS), f"NDCG@{TOP}", f"HR@{TOP}")
    for col in (*columns, "p50 ms", "p99 ms", "returned", "note"):
        table.add_column(col, justify="left" if col in ("source", "note") else "right")
    rows = [*results, *([merged] if merged is not None else [])]
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

    if merged is not None and merged.report is not None:
        trained = [r for r in results if r.report is not None and r.name != BASELINE]
        best = max(trained, key=lambda r: r.report.overall.recall[DEPTH])  # type: ignore[union-attr]
        assert best.report is not None
        got, single = merged.report.overall.recall[DEPTH], best.report.overall.recall[DEPTH]
        out.print(
            f"merge ({merged.note}, {DEPTH} slots): Recall@{DEPTH} {_f(got)} vs best single "
            f"source {best.name} {_f(single)} ({got / max(single, 1e-12) - 1:+.1%})"
        )

    if spec.references:
        ref = Table(title=f"{spec.name}: published figures beside ours", title_justify="left")
        for col in ("published model", "metric", "published", "ours (source)", "ours"):
            ref.add_column(col, justify="left" if "model" in col or "source" in col else "right")
        by_name = {r.name: r for r in rows if r.report is not None}
        for reference in spec.references:
            for metric, value in reference.metrics.items():
                ours = by_name.get(reference.compare_with or "")
                if ours is None:  # compare with our best on that metric
                    candidates = [r for r in by_name.values() if r.name != "MERGED"]
                    ours = max(candidates, key=lambda r: _metric(r, metric), default=None)
                    label = f"best: {ours.name}" if ours is not None else "-"
                else:
                    label = ours.name
                ref.add_row(
                    reference.model,
                    metric,
                    f"{value:.4f}",
                    label,
                    "-" if ours is None else _f(_metric(ours, metric)),
                )
        out.print(ref)
    if spec.reference_note:
        out.print(f"[dim]{spec.reference_note}[/dim]")


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
    if not DATASETS.is_dir():
        parser.error(f"no data sets at {DATASETS}; set RECLOOP_DATASETS")

    for name in chosen_sources:
        spec = next((s for s in SOURCES if s.name == name), None)
        if spec is not None and import_source(spec)[0] is None:
            out.print(f"[yellow]note:[/yellow] source {name} skipped: {import_source(spec)[1]}")
    started = time.perf_counter()
    figures = [
        run_dataset(
            next(d for d in DATASET_SPECS if d.name == n), chosen_sources, max_cases, args.seed
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
            "total_s": round(total, 1),
            "datasets": figures,
        }
        args.out.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

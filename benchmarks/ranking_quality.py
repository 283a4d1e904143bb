"""Offline full-ranking quality of the whole pipeline: retrieval sources + the learned ranker.

NDCG@10 and Recall@10 (also Recall@100, HR@10) over all items, training items excluded, of
the full pipeline (the candidate union of the retrieval sources re-ordered by the project's
learned ranker, ``recloop.training.ranker.fit_ranker``) against retrieval only (the sources'
round-robin merge, the same candidates in source order), each single source and popularity,
on MovieLens-100k (per-user random 75/25 split as in Microsoft Recommenders, and a time split)
and on a simulated run of ``recloop demo``, beside the published figures.

Two stages, no leakage: the ranker learns from the training part only (stage A: the sources
are fitted on part of it and the rest gives the labels), then the sources are refitted on the
whole training part and the ranker orders their candidates for the test users (stage B).

    .venv/bin/python benchmarks/ranking_quality.py                     # all, writes the JSON
    .venv/bin/python benchmarks/ranking_quality.py --quick             # small and fast
    .venv/bin/python benchmarks/ranking_quality.py --datasets ml-100k-random \\
        --tuned benchmarks/results/retrieval_quality_tuned.json --out /tmp/tuned.json

``--tuned`` takes each source's tuned parameters from a ``retrieval_quality.py --tune`` JSON
(tuned on a holdout of the training part, never on the test users). Data sets are read from
``$RECLOOP_DATASETS`` (default ``../shared/datasets``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recloop.config import RankerTrainSettings
from recloop.data.datasets import (
    InteractionLog,
    Split,
    load_movielens_inter,
    load_movielens_items,
    random_split,
    time_split,
)
from recloop.evaluation.retrieval_metrics import (
    EvalCase,
    ndcg_at_k,
    round_robin_merge,
    score_rankings,
)
from recloop.features.candidates import FeatureMatrix, source_score_feature
from recloop.ranking.learned import LearnedRankerConfig, RankerModel
from recloop.retrieval.interactions import TrainingData
from recloop.training.ranker import fit_ranker
from recloop.training.sources import fit as fit_source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_quality import (
    DATASETS,
    MostPopular,
    Reference,
    heldout_cases,
    holdout_validation,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ranking_quality.json"
DEFAULT_SOURCES = ("popular", "covisitation", "item-knn", "ease", "als", "bpr")
QUICK_SOURCES = ("popular", "covisitation", "ease", "als")
ALL_DATASETS = ("ml-100k-random", "ml-100k-time", "simulated")
QUICK_DATASETS = ("ml-100k-random", "ml-100k-time")
DEPTH = 100  # items asked of each source per user
KS = (10, 100)
TOP = 10
RANDOM_HOLDOUT = 0.25  # stage A on a random split: this share of each user's training rows
TIME_WINDOWS = 4  # stage A on a time split: this many label windows before the test cut
VALID_USERS = 0.15  # of stage-A users: the ranker's validation part (early stopping, calibration)
RECENT_FRACTION = 0.1  # "recent" popularity: the last 10% of the fitted data's time span
BOOTSTRAP = 2000
RR_NAME = "retrieval only (round-robin)"

out = Console(width=160, highlight=False)


# --- data sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Fit the sources on ``train``; ask for ``cases`` (one label window or holdout)."""

    name: str
    train: TrainingData
    cases: list[EvalCase]


@dataclass
class Loaded:
    """A data set's split, how stage A is carved from its training part, item tokens."""

    split: Split
    stage_a: Callable[[int], list[Stage]]  # seed -> stages
    # feature name -> item id -> tokens (genres, category, creator): the user's affinity
    tokens: dict[str, dict[str, tuple[str, ...]]]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one data set and what to compare it with."""

    name: str
    load: Callable[[Options], Loaded]
    protocol: str
    references: tuple[Reference, ...] = ()
    reference_note: str = ""
    tuned_key: str | None = None  # its name in a retrieval_quality.py JSON


def movielens_genres() -> dict[str, tuple[str, ...]]:
    """Every genre of each MovieLens-100k movie (the loader keeps only the first)."""
    genres: dict[str, tuple[str, ...]] = {}
    with (DATASETS / "ml-100k" / "ml-100k.item").open(encoding="utf-8") as f:
        cols = {n.split(":")[0]: i for i, n in enumerate(f.readline().rstrip("\n").split("\t"))}
        for line in f:
            parts = line.rstrip("\n").split("\t")
            parts += [""] * (len(cols) - len(parts))
            genres[parts[cols["item_id"]]] = tuple(parts[cols["class"]].split())
    return genres


def random_stage_a(train: TrainingData) -> Callable[[int], list[Stage]]:
    """Stage A of a random split: a per-user random holdout of each user's training rows."""

    def stages(seed: int) -> list[Stage]:
        fit_on, cases = holdout_validation(train, RANDOM_HOLDOUT, seed + 43)
        return [Stage("holdout", fit_on, cases)]

    return stages


def window_stage(data: TrainingData, start: float, end: float) -> Stage:
    """Fit on rows before ``start``; cases: users seen before it with new items in [start, end)."""
    x = data.interactions
    before = x.timestamps < start
    fit_on = TrainingData(x.select(before), data.items, None, data.user_attributes)
    window = (x.timestamps >= start) & (x.timestamps < end)
    cases = heldout_cases(x, fit_on, window, start)
    return Stage(f"window@{start:.0f}", fit_on, cases)


def time_stage_a(train: TrainingData, window: float) -> Callable[[int], list[Stage]]:
    """Stage A of a time split: ``TIME_WINDOWS`` windows, each the share ``window`` of the
    training interactions (as long as the test window, in interactions), the latest ending at
    the test cut; each window is labelled by sources fitted on everything before it."""

    def stages(seed: int) -> list[Stage]:
        ts = train.interactions.timestamps
        out_: list[Stage] = []
        for k in range(1, TIME_WINDOWS + 1):
            start = float(np.quantile(ts, 1.0 - k * window))
            end = math.inf if k == 1 else float(np.quantile(ts, 1.0 - (k - 1) * window))
            out_.append(window_stage(train, start, end))
        return out_

    return stages


def _ml100k_random(opts: Options) -> Loaded:
    base = DATASETS / "ml-100k"
    log = load_movielens_inter(base / "ml-100k.inter", min_rating=None)
    items = load_movielens_items(base / "ml-100k.item")
    split = random_split(log, train_fraction=0.75, seed=42, items=items)
    return Loaded(split, random_stage_a(split.train), {"user_genre_affinity": movielens_genres()})


def _ml100k_time(opts: Options) -> Loaded:
    base = DATASETS / "ml-100k"
    log = load_movielens_inter(base / "ml-100k.inter", min_rating=4.0)
    split = time_split(log, items=load_movielens_items(base / "ml-100k.item"))
    return Loaded(
        split, time_stage_a(split.train, 0.1 / 0.9), {"user_genre_affinity": movielens_genres()}
    )


SIM_DAYS = 7  # the demo's default
SIM_TEST = 0.15


def _simulated(opts: Options) -> Loaded:
    """A ``recloop demo`` run (in-process, no nightly training), its engagements as the log."""
    from recloop.config import Settings
    from recloop.data.snapshots import take_snapshot
    from recloop.demo.run import DemoConfig, demo_settings, run_demo
    from recloop.simulate.world import WorldConfig
    from recloop.store.bootstrap import prepare_store
    from recloop.training.job import _training_data

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        run_demo(
            DemoConfig(
                world=WorldConfig(seed=opts.seed + 7),
                days=opts.sim_days,
                transport="inprocess",
                train_nightly=False,
            ),
            settings,
            Console(file=io.StringIO()),
        )
        simulate_s = time.perf_counter() - started
        store = prepare_store(demo_settings(settings, Path(tmp) / "demo"))
        try:
            snapshot = take_snapshot(
                store, Path(tmp) / "snapshots", app_id="default", now=datetime.now(UTC)
            )
            data = _training_data(snapshot)
            item_rows = snapshot.table("items").select(["item_id", "creator_id"]).to_pylist()
        finally:
            store.close()
    x = data.interactions
    log = InteractionLog(
        np.asarray([x.user_ids[u] for u in x.users.tolist()], dtype=object),
        np.asarray([x.item_ids[i] for i in x.items.tolist()], dtype=object),
        x.timestamps.copy(),
    )
    split = time_split(log, test_fraction=SIM_TEST, valid_fraction=0.0, items=data.items)
    table = data.items
    tokens: dict[str, dict[str, tuple[str, ...]]] = {
        "user_category_affinity": {
            i: (c,) for i, c in zip(table.item_ids, table.categories, strict=True) if c
        },
        "user_creator_affinity": {
            r["item_id"]: (r["creator_id"],) for r in item_rows if r["creator_id"]
        },
    }
    info = {
        "simulated_days": opts.sim_days,
        "world_seed": opts.seed + 7,
        "engagements": len(x),
        "simulate_s": round(simulate_s, 1),
    }
    return Loaded(split, time_stage_a(split.train, SIM_TEST / (1.0 - SIM_TEST)), tokens, info)


ML100K_RANDOM_NOTE = (
    "Microsoft Recommenders benchmark (movielens 100k, per-user stratified random 75/25, top-10, "
    "seen items removed): the same protocol, up to the random seed. 'ours earlier' are "
    "retrieval_quality.py figures on this split (tuned on a training holdout, never on test)."
)

DATASET_SPECS = (
    DatasetSpec(
        "ml-100k-random",
        _ml100k_random,
        "all ratings as positives; per-user stratified random 75/25 split (seed 42), as "
        "Microsoft Recommenders; stage A: a per-user random 25% of each user's training rows "
        "are the ranker's labels, the sources fitted on the other 75%",
        (
            Reference("BPR (cornac), published", {"NDCG@10": 0.442, "Recall@10": 0.213}),
            Reference("BiVAE, published", {"NDCG@10": 0.475, "Recall@10": 0.219}),
            Reference("LightGCN, published", {"NDCG@10": 0.420}),
            Reference("SAR, published", {"NDCG@10": 0.383}),
            Reference("ALS tuned, ours earlier", {"NDCG@10": 0.429, "Recall@10": 0.2105}),
            Reference("EASE default, ours earlier", {"NDCG@10": 0.364, "Recall@10": 0.197}),
        ),
        ML100K_RANDOM_NOTE,
        tuned_key="ml-100k-random",
    ),
    DatasetSpec(
        "ml-100k-time",
        _ml100k_time,
        "ratings >= 4 as positives; global time split by interaction quantiles (test: the last "
        "10%); test users must have training history; stage A: 4 earlier windows of the same "
        "size, each labelled by sources fitted on everything before it",
        reference_note="No published figures for this time split.",
        tuned_key="ml-100k",
    ),
    DatasetSpec(
        "simulated",
        _simulated,
        "recloop demo, 7 simulated days (--sim-days) in-process, default world, engagements as "
        f"positives; time split (test: the last {SIM_TEST:.0%} of engagements); stage A: 4 "
        "earlier windows of the same size",
        reference_note="No published figures: a simulated world.",
    ),
)


# --- candidates and features -----------------------------------------------------------------


@dataclass
class Pool:
    """One stage's candidates: every case's rows (round-robin order), features and labels."""

    stage: str
    cases: list[EvalCase]
    lists: dict[str, list[list[str]]]  # source -> per case, its ranked item ids
    offsets: np.ndarray  # case i has rows offsets[i]:offsets[i + 1]
    items: list[str]
    x: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]

    def rows(self, i: int) -> slice:
        """The rows of case ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def feature_names(sources: Sequence[str], token_features: Sequence[str], ages: bool) -> list[str]:
    """The ranker's features, in order."""
    names = [source_score_feature(s) for s in sources]
    names += [f"source_rank:{s}" for s in sources]
    names += ["source_count", "item_engagement", "item_engagement_recent", "user_engagement"]
    names += list(token_features)
    if ages:
        names.append("item_age_days")
    return names


def _affinity(data: TrainingData, tokens: Mapping[str, tuple[str, ...]]) -> np.ndarray | None:
    """Users x items: the share of the user's distinct items that share a token with the item."""
    x = data.interactions
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, item in enumerate(x.item_ids):
        for t in tokens.get(item, ()):
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
    if not vocab or x.n_items > 30_000:
        return None
    g = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(x.n_items, len(vocab))
    )
    shares = (g @ g.T).astype(bool).astype(np.float32)  # items x items: any token in common
    h = x.matrix(binary=True).astype(np.float32)
    counts = np.asarray(h.sum(axis=1)).ravel()
    a = np.asarray((h @ shares).todense(), dtype=np.float32)
    a /= np.maximum(counts, 1.0)[:, None]
    return a


def per_mille(items: np.ndarray, n_items: int) -> np.ndarray:
    """Each item's share of the rows ``items``, per mille."""
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    return counts * 1000.0 / max(1, len(items))


def fit_sources(
    train: TrainingData, names: Sequence[str], params: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Each source fitted on ``train``, and the seconds each took."""
    models: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        if name == "popular":
            models[name] = MostPopular().fit(train)
        else:
            models[name] = fit_source(name, dict(params.get(name, {})), train)[0]
        seconds[name] = round(time.perf_counter() - started, 2)
    return models, seconds


def build_pool(
    stage: Stage,
    models: Mapping[str, Any],
    tokens: Mapping[str, Mapping[str, tuple[str, ...]]],
    depth: int,
) -> Pool:
    """Ask every source for ``depth`` items per case; one row per distinct candidate.

    Features are what the serving path has: each source's score over its best candidate for
    the user and its reciprocal rank (0 where it did not recall the item), how many sources
    recalled it, the item's share of engagement (all and recent), the user's engagement count,
    the user's affinity to the item's genres / category / creator, the item's age if known.
    """
    data = stage.train
    x = data.interactions
    sources = list(models)
    token_names = [n for n in tokens if tokens[n]]
    affinities = {n: _affinity(data, tokens[n]) for n in token_names}
    token_names = [n for n in token_names if affinities[n] is not None]
    created = data.item_table.created_ts
    ages = bool(np.isfinite(created).any())
    names = feature_names(sources, token_names, ages)
    col = {n: j for j, n in enumerate(names)}
    # Popularity as a share (per mille) of the interactions, not a count: stage A fits on
    # less data than stage B, and a count's scale would shift between them.
    pop = per_mille(x.items, x.n_items)
    t_end = float(x.timestamps.max()) if len(x) else 0.0
    t_start = float(x.timestamps.min()) if len(x) else 0.0
    recent = per_mille(
        x.items[x.timestamps >= t_end - RECENT_FRACTION * (t_end - t_start)], x.n_items
    )
    activity = np.bincount(x.users, minlength=x.n_users).astype(np.float64)
    lists: dict[str, list[list[str]]] = {s: [] for s in sources}
    blocks: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    all_items: list[str] = []
    offsets = [0]
    for case in stage.cases:
        query = case.query()
        recalled = {s: models[s].recall(query, depth)[:depth] for s in sources}
        for s in sources:
            lists[s].append([r.item_id for r in recalled[s]])
        pool = round_robin_merge([lists[s][-1] for s in sources], depth * len(sources))
        row = {item: r for r, item in enumerate(pool)}
        f = np.zeros((len(pool), len(names)), dtype=np.float64)
        for s in sources:
            got = recalled[s]
            if not got:
                continue
            idx = np.fromiter((row[r.item_id] for r in got), dtype=np.int64, count=len(got))
            scores = np.asarray([r.score for r in got], dtype=np.float64)
            top = scores.max()
            f[idx, col[source_score_feature(s)]] = scores / top if top > 0 else scores
            f[idx, col[f"source_rank:{s}"]] = 1.0 / (1.0 + np.arange(len(got)))
        f[:, col["source_count"]] = (f[:, [col[f"source_rank:{s}"] for s in sources]] > 0).sum(
            axis=1
        )
        item_idx = np.asarray(
            [-1 if (k := x.item_index(i)) is None else k for i in pool], dtype=np.int64
        )
        known = item_idx >= 0
        f[known, col["item_engagement"]] = pop[item_idx[known]]
        f[known, col["item_engagement_recent"]] = recent[item_idx[known]]
        user = x.user_index(case.user_id)
        if user is not None:
            f[:, col["user_engagement"]] = activity[user]
            for n in token_names:
                a = affinities[n]
                assert a is not None
                f[known, col[n]] = a[user, item_idx[known]]
        if ages:
            now = case.now_ts if case.now_ts is not None else t_end
            age = np.full(len(pool), np.nan)
            age[known] = (now - created[item_idx[known]]) / 86_400.0
            f[:, col["item_age_days"]] = age
        blocks.append(f)
        labels.append(np.fromiter((i in case.relevant for i in pool), dtype=np.float64))
        all_items += pool
        offsets.append(offsets[-1] + len(pool))
    return Pool(
        stage.name,
        list(stage.cases),
        lists,
        np.asarray(offsets, dtype=np.int64),
        all_items,
        np.vstack(blocks) if blocks else np.zeros((0, len(names))),
        np.concatenate(labels) if labels else np.zeros(0),
        tuple(names),
    )


def concat_pools(pools: Sequence[Pool]) -> Pool:
    """Several stages' pools as one (the same sources and features)."""
    if len(pools) == 1:
        return pools[0]
    offsets = [np.asarray([0])]
    base = 0
    for p in pools:
        offsets.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
    return Pool(
        "+".join(p.stage for p in pools),
        [c for p in pools for c in p.cases],
        {s: [lst for p in pools for lst in p.lists[s]] for s in pools[0].lists},
        np.concatenate(offsets),
        [i for p in pools for i in p.items],
        np.vstack([p.x for p in pools]),
        np.concatenate([p.y for p in pools]),
        pools[0].features,
    )


def request_ids(pool: Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its request id (stage and user), its position in the round-robin list, and
    its case index."""
    sizes = np.diff(pool.offsets)
    case = np.repeat(np.arange(len(pool.cases)), sizes)
    position = np.concatenate([np.arange(n) for n in sizes]) if len(sizes) else np.zeros(0)
    # One request per case: the cases of one user in several windows stay apart.
    request = np.asarray([f"{i}:{c.user_id}" for i, c in enumerate(pool.cases)], dtype=object)[case]
    return request, position.astype(np.int64), case


def ranker_table(pool: Pool, case_mask: np.ndarray) -> pa.Table:
    """The rows of the chosen cases as ``fit_ranker`` takes them (relevance in both labels)."""
    request, position, case = request_ids(pool)
    keep = case_mask[case]
    columns: dict[str, Any] = {
        "request_id": pa.array(request[keep].tolist(), pa.string()),
        "position": pa.array(position[keep], pa.int64()),
        "label_click": pa.array(pool.y[keep].astype(np.int64)),
        "label": pa.array(pool.y[keep].astype(np.int64)),
    }
    for j, name in enumerate(pool.features):
        columns[name] = pa.array(pool.x[keep, j])
    return pa.table(columns)


# --- ranking and metrics ---------------------------------------------------------------------


@dataclass
class Variant:
    """A fitted ranker variant."""

    name: str
    objective: str
    model: RankerModel | None
    report: dict[str, Any]
    fit_s: float
    skipped: str | None = None


def fit_variant(
    name: str,
    pool: Pool,
    valid_cases: np.ndarray,
    settings: RankerTrainSettings,
    seed: int,
) -> Variant:
    """Fit the project's ranker on the stage-A rows: validation users stop and calibrate."""
    train_t = ranker_table(pool, ~valid_cases)
    valid_t = ranker_table(pool, valid_cases)
    started = time.perf_counter()
    fitted = fit_ranker(
        {"train": train_t, "validation": valid_t, "test": valid_t},
        settings,
        version=f"bench-{name}",
        features=list(pool.features),
        seed=seed,
    )
    return Variant(
        name,
        settings.objective,
        fitted.model,
        fitted.report,
        time.perf_counter() - started,
        fitted.skipped,
    )


def serving_scores(model: RankerModel, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """The serving score (weighted calibrated heads, as ``LearnedRanker``) and the raw
    booster margin of every row."""
    matrix = FeatureMatrix(tuple(pool.items), pool.features, pool.x)
    heads = model.predict(matrix)
    weights = LearnedRankerConfig().weights
    combined = np.zeros(len(pool.items))
    for name, p in heads.items():
        combined += weights.get(name, 0.0) * p
    design = model.design(matrix)
    raw = np.zeros(len(pool.items))
    for head in model.heads.values():
        raw += head.raw(design)
    return combined, raw


def ordered(pool: Pool, scores: np.ndarray) -> list[list[str]]:
    """Each case's candidates by descending score; ties keep the round-robin order (a stable
    sort, as the serving pipeline's)."""
    out_: list[list[str]] = []
    for i in range(len(pool.cases)):
        rows = pool.rows(i)
        order = np.argsort(-scores[rows], kind="stable")
        items = pool.items[rows]
        out_.append([items[j] for j in order.tolist()])
    return out_


def top_ties(pool: Pool, scores: np.ndarray) -> float:
    """The share of cases whose top 10 by ``scores`` hold a tie (ordered by candidate order)."""
    tied = 0
    for i in range(len(pool.cases)):
        s = np.sort(scores[pool.rows(i)])[::-1][:TOP]
        tied += int(len(np.unique(s)) < len(s))
    return tied / max(1, len(pool.cases))


@dataclass
class Row:
    """One method's figures on the test users."""

    method: str
    ndcg: float
    recall10: float
    recall100: float
    hit10: float
    returned: float
    per_case_ndcg: np.ndarray = field(repr=False)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "method": self.method,
            "NDCG@10": round(self.ndcg, 5),
            "Recall@10": round(self.recall10, 5),
            "Recall@100": round(self.recall100, 5),
            "HR@10": round(self.hit10, 5),
            "mean_list_length": round(self.returned, 1),
            "note": self.note,
        }


def score_row(
    method: str, rankings: Sequence[Sequence[str]], cases: Sequence[EvalCase], note: str = ""
) -> Row:
    """Full-ranking metrics of one list per case."""
    report = score_rankings(rankings, cases, KS, top=TOP)
    m = report.overall
    per_case = np.asarray(
        [ndcg_at_k(r, c.relevant, TOP) for r, c in zip(rankings, cases, strict=True)]
    )
    if report.excluded_returned:  # a source broke its contract: say so, do not hide it
        note = f"{note}; training items returned in {report.excluded_returned} cases"
    return Row(
        method, m.ndcg, m.recall[10], m.recall[100], m.hit_rate, m.mean_returned, per_case, note
    )


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Mean of ``a - b`` and its 95% paired bootstrap interval over cases."""
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def pool_recall(pool: Pool) -> float:
    """The mean share of each case's relevant items among its candidates: the ranker's
    ceiling for Recall@any depth."""
    return float(
        np.mean(
            [
                pool.y[pool.rows(i)].sum() / len(c.relevant)
                for i, c in enumerate(pool.cases)
                if c.relevant
            ]
        )
    )


# --- one data set ----------------------------------------------------------------------------


def sample(cases: list[EvalCase], n: int | None, seed: int) -> list[EvalCase]:
    """At most ``n`` cases, a fixed random sample (all when ``n`` is None)."""
    if n is None or len(cases) <= n:
        return cases
    return random.Random(seed).sample(cases, n)


def validation_mask(pool: Pool, seed: int) -> np.ndarray:
    """Cases of a random ``VALID_USERS`` share of the users (all of a user's windows)."""
    users = sorted({c.user_id for c in pool.cases})
    rng = np.random.default_rng(seed)
    n_valid = max(1, round(VALID_USERS * len(users)))
    chosen = set(rng.choice(np.asarray(users, dtype=object), size=n_valid, replace=False))
    return np.asarray([c.user_id in chosen for c in pool.cases], dtype=bool)


def tuned_params(path: Path | None, key: str | None) -> dict[str, dict[str, Any]]:
    """Each source's tuned parameters for data set ``key`` from a retrieval_quality JSON."""
    if path is None or key is None:
        return {}
    doc = json.loads(path.read_text())
    for ds in doc.get("datasets", []):
        if ds.get("dataset") == key:
            return {
                s["source"].removesuffix(" (tuned)"): dict(s["tuning"]["params"])
                for s in ds.get("tuned_sources", [])
                if s.get("tuning")
            }
    return {}


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    sources: tuple[str, ...]
    objectives: tuple[str, ...]
    max_cases: int | None
    seed: int
    depth: int
    max_rounds: int
    learning_rate: float
    tuned: Path | None
    sim_days: int = SIM_DAYS


def run_dataset(spec: DatasetSpec, opts: Options) -> dict[str, Any]:
    """Both stages on one data set; prints its tables and returns its figures."""
    timings: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        timings[name] = round(time.perf_counter() - started, 2)

    out.rule(f"[bold]{spec.name}")
    out.print(f"protocol: {spec.protocol}", soft_wrap=True)
    started = time.perf_counter()
    loaded = spec.load(opts)
    timed("load", started)
    split = loaded.split
    params = tuned_params(opts.tuned, spec.tuned_key)
    if params:
        out.print(
            "sources with tuned parameters: "
            + ", ".join(f"{k} {v}" for k, v in params.items() if k in opts.sources),
            soft_wrap=True,
        )

    # Stage A: the ranker's training data, from the training part only.
    started = time.perf_counter()
    stages = loaded.stage_a(opts.seed)
    pools_a: list[Pool] = []
    fit_a: dict[str, float] = {}
    for stage in stages:
        models, seconds = fit_sources(stage.train, opts.sources, params)
        for k, secs in seconds.items():
            fit_a[k] = round(fit_a.get(k, 0.0) + secs, 2)
        cases = sample(stage.cases, opts.max_cases, opts.seed)
        pools_a.append(
            build_pool(Stage(stage.name, stage.train, cases), models, loaded.tokens, opts.depth)
        )
    pool_a = concat_pools(pools_a)
    timed("A: fit sources, recall, features", started)
    valid = validation_mask(pool_a, opts.seed)
    out.print(
        f"stage A: {len(stages)} part(s), {len(pool_a.cases):,} cases "
        f"({int(valid.sum()):,} of them validation users), {len(pool_a.items):,} candidate "
        f"rows, {int(pool_a.y.sum()):,} positive; candidate recall {pool_recall(pool_a):.3f}"
    )
    variants: list[Variant] = []
    for objective in opts.objectives:
        settings = RankerTrainSettings(
            objective=objective,
            heads=("click",),
            # Candidate lists of hundreds per user: stop on the order within each user's
            # list; AUC over all rows would reward telling users apart.
            stopping_metric="ndcg",
            max_rounds=opts.max_rounds,
            learning_rate=opts.learning_rate,
            threads=2,
        )
        started = time.perf_counter()
        variants.append(fit_variant(objective, pool_a, valid, settings, opts.seed))
        timed(f"A: fit ranker ({objective})", started)

    # Selection on the validation users of stage A, never on the test users.
    valid_idx = np.flatnonzero(valid)
    valid_cases = [pool_a.cases[i] for i in valid_idx]

    def valid_ndcg(rankings: list[list[str]]) -> float:
        picked = [rankings[i] for i in valid_idx]
        return float(
            np.mean(
                [ndcg_at_k(r, c.relevant, TOP) for r, c in zip(picked, valid_cases, strict=True)]
            )
        )

    rr_a = [
        round_robin_merge([pool_a.lists[s][i] for s in opts.sources], opts.depth)
        for i in range(len(pool_a.cases))
    ]
    validation: dict[str, float] = {RR_NAME: valid_ndcg(rr_a)}
    for s in opts.sources:
        validation[s] = valid_ndcg(pool_a.lists[s])
    for v in variants:
        if v.model is not None:
            served, _ = serving_scores(v.model, pool_a)
            validation[f"ranker ({v.name})"] = valid_ndcg(ordered(pool_a, served))
    fitted = [v for v in variants if v.model is not None]
    best = max(fitted, key=lambda v: validation[f"ranker ({v.name})"], default=None)

    # Stage B: the sources refitted on the whole training part; the test users.
    started = time.perf_counter()
    models, fit_b = fit_sources(split.train, opts.sources, params)
    test_cases = sample(split.test, opts.max_cases, opts.seed)
    pool_b = build_pool(Stage("test", split.train, test_cases), models, loaded.tokens, opts.depth)
    timed("B: fit sources, recall, features", started)

    started = time.perf_counter()
    rows: list[Row] = []
    for s in opts.sources:
        label = "popularity" if s == "popular" else s
        rows.append(score_row(label, pool_b.lists[s], test_cases, "training items excluded"))
    rr = [
        round_robin_merge([pool_b.lists[s][i] for s in opts.sources], opts.depth)
        for i in range(len(test_cases))
    ]
    rows.append(score_row(RR_NAME, rr, test_cases, f"{len(opts.sources)} sources"))
    diagnostics: dict[str, Any] = {}
    for v in fitted:
        assert v.model is not None
        served, raw = serving_scores(v.model, pool_b)
        chosen = " [selected]" if v is best else ""
        rows.append(
            score_row(
                f"full pipeline ({v.name} ranker){chosen}",
                ordered(pool_b, served),
                test_cases,
                "served score (calibrated)",
            )
        )
        rows.append(
            score_row(
                f"  ({v.name} ranker, raw booster score)",
                ordered(pool_b, raw),
                test_cases,
                "diagnostic: uncalibrated",
            )
        )
        diagnostics[v.name] = {
            "cases_with_tied_top10_served": round(top_ties(pool_b, served), 4),
            "cases_with_tied_top10_raw": round(top_ties(pool_b, raw), 4),
        }
    timed("B: rank and score", started)

    print_tables(spec, rows, loaded, split, pool_b, validation, best, variants, timings, opts)
    for name, d in diagnostics.items():
        out.print(
            f"{name} ranker: test users whose top 10 hold tied scores: served (calibrated) "
            f"{d['cases_with_tied_top10_served']:.1%}, raw {d['cases_with_tied_top10_raw']:.1%}"
        )
    by = {r.method: r for r in rows}
    comparisons: dict[str, Any] = {}
    if best is not None:
        full = next(r for r in rows if r.method.startswith(f"full pipeline ({best.name}"))
        singles = list(rows[: len(opts.sources)])
        best_single = max(singles, key=lambda r: validation.get(_source_of(r.method), -1.0))
        for other in (by[RR_NAME], best_single):
            mean, lo, hi = paired_interval(full.per_case_ndcg, other.per_case_ndcg, opts.seed)
            comparisons[f"full pipeline - {other.method}"] = {
                "NDCG@10_diff": round(mean, 5),
                "ci95": [round(lo, 5), round(hi, 5)],
            }
            out.print(
                f"NDCG@10 full pipeline ({best.name}) minus {other.method}: {mean:+.4f} "
                f"(95% paired bootstrap over test users: {lo:+.4f} .. {hi:+.4f})"
            )
    return {
        "dataset": spec.name,
        "protocol": spec.protocol,
        "info": {
            **loaded.info,
            "train_interactions": len(split.train.interactions),
            "users": split.train.interactions.n_users,
            "items": split.train.interactions.n_items,
            "test_users": len(test_cases),
            "test_users_available": len(split.test),
            "stage_a_parts": [p.stage for p in pools_a],
            "stage_a_cases": len(pool_a.cases),
            "stage_a_validation_cases": int(valid.sum()),
            "stage_a_rows": len(pool_a.items),
            "stage_a_positives": int(pool_a.y.sum()),
            "stage_a_candidate_recall": round(pool_recall(pool_a), 4),
            "test_candidates_per_user": round(len(pool_b.items) / max(1, len(test_cases)), 1),
            "test_candidate_recall": round(pool_recall(pool_b), 4),
        },
        "sources": list(opts.sources),
        "source_params": {s: params.get(s, "defaults") for s in opts.sources if s != "popular"},
        "source_fit_s": {"stage_a": fit_a, "stage_b": fit_b},
        "features": list(pool_a.features),
        "rows": [r.to_dict() for r in rows],
        "validation_ndcg@10": {k: round(n, 5) for k, n in validation.items()},
        "selected": None if best is None else best.name,
        "comparisons": comparisons,
        "ranker": {
            v.name: {
                "fit_s": round(v.fit_s, 2),
                "skipped": v.skipped,
                "heads": {
                    h: {
                        k: r.get(k)
                        for k in ("train_rows", "train_positives", "rounds", "importance")
                    }
                    | {
                        "validation_auc": r.get("test", {}).get("auc"),
                        "validation_ece": r.get("test", {}).get("ece"),
                    }
                    for h, r in v.report.get("heads", {}).items()
                },
                "validation_in_list_ndcg@10": v.report.get("test_in_list_ndcg", {}).get("click"),
            }
            for v in variants
        },
        "tie_diagnostics": diagnostics,
        "references": [{"model": r.model, "metrics": r.metrics} for r in spec.references],
        "reference_note": spec.reference_note,
        "timings_s": timings,
    }


def _source_of(method: str) -> str:
    return "popular" if method == "popularity" else method


# --- printing --------------------------------------------------------------------------------


def print_tables(
    spec: DatasetSpec,
    rows: Sequence[Row],
    loaded: Loaded,
    split: Split,
    pool_b: Pool,
    validation: Mapping[str, float],
    best: Variant | None,
    variants: Sequence[Variant],
    timings: Mapping[str, float],
    opts: Options,
) -> None:
    """The test table, the references, the ranker's importance and the stage times."""
    x = split.train.interactions
    per_user = len(pool_b.items) / max(1, len(pool_b.cases))
    out.print(
        f"train: {len(x):,} interactions, {x.n_users:,} users, {x.n_items:,} items; test users: "
        f"{len(pool_b.cases):,}; candidates per test user {per_user:.0f} "
        f"(top {opts.depth} of each source, merged); candidate recall {pool_recall(pool_b):.3f}",
        soft_wrap=True,
    )
    table = Table(
        title=f"{spec.name}: test users, full ranking (training items excluded)",
        title_justify="left",
    )
    for c in ("method", "NDCG@10", "Recall@10", "Recall@100", "HR@10", "valid NDCG@10", "note"):
        table.add_column(c, justify="left" if c in ("method", "note") else "right")
    for r in rows:
        key = _source_of(r.method)
        if r.method.startswith("full pipeline ("):
            key = "ranker (" + r.method.split("(")[1].split(" ranker")[0] + ")"
        score = validation.get(key)
        table.add_row(
            escape(r.method),
            f"{r.ndcg:.4f}",
            f"{r.recall10:.4f}",
            f"{r.recall100:.4f}",
            f"{r.hit10:.4f}",
            "" if score is None else f"{score:.4f}",
            r.note,
        )
    out.print(table)
    if spec.references:
        ref = Table(title=f"{spec.name}: published figures beside ours", title_justify="left")
        for c in ("model", "NDCG@10", "Recall@10"):
            ref.add_column(c, justify="left" if c == "model" else "right")
        for reference in spec.references:
            m = reference.metrics
            ref.add_row(
                reference.model,
                f"{m['NDCG@10']:.4f}" if "NDCG@10" in m else "-",
                f"{m['Recall@10']:.4f}" if "Recall@10" in m else "-",
            )
        for r in rows:
            if r.method.startswith("full pipeline") or r.method == RR_NAME:
                ref.add_row(escape(f"{r.method}, this run"), f"{r.ndcg:.4f}", f"{r.recall10:.4f}")
        out.print(ref)
    if spec.reference_note:
        out.print(f"[dim]{spec.reference_note}[/dim]")
    for v in variants:
        if v.model is None:
            out.print(f"ranker {v.name}: not trained ({v.skipped})")
            continue
        head = v.report["heads"]["click"]
        test = head.get("test", {})
        in_list = v.report.get("test_in_list_ndcg", {}).get("click", {})
        out.print(
            f"ranker {v.name}: {head['train_rows']:,} training rows after downsampling "
            f"({head['train_positives']:,} positive), {head['rounds']} rounds, fit "
            f"{v.fit_s:.1f} s; validation users: AUC {test.get('auc', math.nan):.4f}, ECE "
            f"{test.get('ece', math.nan):.4f}, in-list NDCG@10 "
            f"{in_list.get('ranker', math.nan):.4f}"
            f" vs round-robin order {in_list.get('logged', math.nan):.4f}"
            + (" [selected]" if v is best else ""),
            soft_wrap=True,
        )
        importance = head["importance"]
        out.print(
            "  importance (share of gain): "
            + ", ".join(f"{k} {g:.3f}" for k, g in importance.items() if g >= 0.005),
            soft_wrap=True,
        )
    out.print(
        "wall time: " + ", ".join(f"{k} {s:.1f} s" for k, s in timings.items()), soft_wrap=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run the data sets, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", default=None, help=f"comma-separated, of {','.join(ALL_DATASETS)}"
    )
    parser.add_argument(
        "--sources",
        default=None,
        help=f"comma-separated candidate sources (default {','.join(DEFAULT_SOURCES)}; "
        "also two-tower)",
    )
    parser.add_argument(
        "--objectives",
        default="binary,lambdarank",
        help="ranker objectives to fit; the one with the best validation NDCG@10 is selected",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{','.join(QUICK_DATASETS)}, sources {','.join(QUICK_SOURCES)}, 300 cases a stage",
    )
    parser.add_argument("--max-cases", type=int, default=None, help="cases per stage (sampled)")
    parser.add_argument("--depth", type=int, default=DEPTH, help="items asked of each source")
    parser.add_argument("--max-rounds", type=int, default=RankerTrainSettings().max_rounds)
    parser.add_argument("--learning-rate", type=float, default=RankerTrainSettings().learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sim-days", type=int, default=SIM_DAYS, help="days of the simulated run")
    parser.add_argument("--tuned", type=Path, default=None, help="a retrieval_quality --tune JSON")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where the JSON goes (default benchmarks/results/ranking_quality.json)",
    )
    args = parser.parse_args(argv)
    chosen = (
        args.datasets.split(",")
        if args.datasets
        else list(QUICK_DATASETS if args.quick else ALL_DATASETS)
    )
    sources = tuple(
        args.sources.split(",")
        if args.sources
        else QUICK_SOURCES
        if args.quick
        else DEFAULT_SOURCES
    )
    objectives = tuple(args.objectives.split(","))
    for bad in [d for d in chosen if d not in ALL_DATASETS]:
        parser.error(f"unknown data set {bad}")
    for bad in [s for s in sources if s != "popular" and s not in _trainable()]:
        parser.error(f"unknown source {bad}")
    for bad in [o for o in objectives if o not in ("binary", "lambdarank")]:
        parser.error(f"unknown objective {bad}")
    max_cases = args.max_cases if args.max_cases is not None else (300 if args.quick else None)
    opts = Options(
        sources,
        objectives,
        max_cases,
        args.seed,
        args.depth,
        args.max_rounds,
        args.learning_rate,
        args.tuned,
        args.sim_days,
    )
    started = time.perf_counter()
    figures = [run_dataset(next(d for d in DATASET_SPECS if d.name == n), opts) for n in chosen]
    total = time.perf_counter() - started
    out.print(f"\ntotal {total:.0f} s on {os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join(sys.argv),
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "settings": {
            "sources": list(sources),
            "objectives": list(objectives),
            "depth_per_source": args.depth,
            "max_cases": max_cases,
            "max_rounds": args.max_rounds,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "sim_days": args.sim_days,
            "tuned": None if args.tuned is None else str(args.tuned),
            "heads": ["click"],
        },
        "total_s": round(total, 1),
        "datasets": figures,
    }
    args.out.write_text(json.dumps(doc, indent=2, default=str))
    out.print(f"wrote {args.out}")
    return 0


def _trainable() -> list[str]:
    from recloop.training.sources import FACTORIES

    return list(FACTORIES)


if __name__ == "__main__":
    raise SystemExit(main())

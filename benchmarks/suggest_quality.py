"""Query suggestions against most-popular completion (MPC): offline on MS MARCO, and simulated.

MPC (the queries of the log that start with what was typed, most searched first) is the
baseline of every query-autocomplete paper. Both parts serve the real suggestion surface:
the model of ``recloop.suggest.build.build_model`` with the default ``[suggestions]``
settings, served by ``recloop.serving.suggester.Suggester`` as ``start_runtime`` builds it
(embedded SQLite store, the writer logging every list). Nothing of recloop is chosen on the
held-out searches or seeds: every setting is the default.

**Part 1, offline: MS MARCO queries and a drawn search log.** The query text is real (MS
MARCO passage dev-subset and document dev queries from ``$RECLOOP_DATASETS/queries/``,
default ``../shared/datasets``), normalized (``normalize``) and deduplicated by match key:
6,979 queries. They come with no counts, so the log is drawn, seeded (``--seed``, 0, which
also seeds the test sample and the bootstrap):

- popularity: Zipf with exponent 1.0 (``--zipf``) over a random order of the queries: the
  query at rank r is searched with probability proportional to 1/r;
- users: each search's user is drawn in proportion to an activity drawn log-normal(0, 1),
  so popular queries are searched by many users and k-anonymity (``min_users`` 3) can hold;
- time: each search at a uniform time over 28 days; days 1-21 train, days 22-28 test;
- two logs: ``global``, every query an independent Zipf draw; ``personal``, in time order a
  user with earlier searches repeats one of them (uniformly over their earlier searches)
  with probability 0.4 (``--repeat``; about the re-finding share of web search logs,
  Teevan et al. 2007), else a Zipf draw; both logs share the popularity order, the users,
  the times and the fresh draws, so they differ only by the repeats;
- each search is its own session; with probability 0.5 an engagement with the query's
  document follows 5-60 s later (the build labels it a success; a log without engagement
  would mark every query searched five times a dead end, which the rules drop).

The model is built on the train searches at the cut (no catalog: the queries have none).
Two runtimes share one fresh SQLite store: the default settings (epsilon-greedy exploration
0.05, as served) and the same with exploration off (``recloop no-explore``, a diagnostic).
Their clock is set to each test search's time; the train searches, and the test searches
as the clock passes them, are written to the store's event log, so the personal source (and
a live overlay of searches since the model's cut-off, where the suggester has one) reads
every search up to then, never the one being typed. A seeded sample of test searches is
typed character by character: for every prefix length 1..L of the normalized query, 10
suggestions are asked for (``userId``, a new session). A suggestion hits when its match key
is the query's. Per test search, averaged over its prefix lengths: reciprocal rank (MRR; 0
when absent), success@1/5/10; and keystrokes saved, (L - i) / L for the first prefix length
i whose list holds the query (0 when none does: the minimum-keystrokes measure, the click
not counted). The baselines: ``MPC`` (train counts, ties by text), ``MPC k>=3`` (only
queries of at least 3 distinct train users, the surface's k-anonymity) and ``MPC live``
(train counts plus every test search before the one typed). Intervals: 95% paired
bootstrap over test searches (2,000 resamples) of the difference and of the ratio of
means. In a Zipf world whose truth is popularity, MPC is close to the best a system
without personal history can do on the ``global`` log.

**Part 2, simulated.** ``recloop.demo.run.run_demo`` in process with
``search=SearchConfig()``, every user on ``home``, ``recloop train`` each simulated night,
on worlds drawn from ``WorldFamily`` by seed (tuning seeds below 10,000; held-out seeds
10,001-10,010, the report). The simulator judges every served suggestion list, in the
typing state it met, beside MPC (the queries submitted so far in the run) and the world's
best lists (``docs/simulator.md``, "Search"). Per seed, over the days after the first night
(day 1 is served cold): true suggestion CTR and expected list success of the served lists,
MPC's and the best lists', the ratios served/MPC, characters saved per list, and the
keystrokes users saved. Across seeds: the medians, and a bootstrap interval (over seeds) of
the median ratio. The issue's goal, at least +10% over MPC on both CTR and success, is
checked on the median seed and per seed; nothing is tuned for it.

    .venv/bin/python benchmarks/suggest_quality.py                   # full (about 75 min, 2 cores)
    .venv/bin/python benchmarks/suggest_quality.py --quick           # a few minutes
    .venv/bin/python benchmarks/suggest_quality.py --part offline    # or simulator
    .venv/bin/python benchmarks/suggest_quality.py --part simulator --seeds 10001,10002 --days 4

It prints tables and one JSON line of headline figures, and writes every figure to
``benchmarks/results/suggest_quality.json`` (``suggest_quality-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import io
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from harness.report import RESULTS_DIR, environment, json_line, table, write_json
from recloop.config import Settings
from recloop.demo.run import DemoConfig, run_demo
from recloop.domain import Event, EventType
from recloop.runtime.process import Runtime, start_runtime
from recloop.serving.suggester import SuggestionRequest, typed_key
from recloop.simulate.family import HELD_OUT_SEEDS, TUNING_SEEDS, WorldFamily
from recloop.simulate.search import SEARCH_COUNTS, SearchConfig, search_rates
from recloop.suggest.build import LogEvent, build_model
from recloop.suggest.model import SuggestionModel
from recloop.suggest.normalize import match_key, normalize

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
QUERY_FILES = ("topics.msmarco-passage.dev-subset.txt", "topics.msmarco-doc.dev.txt")
APP = "bench"
K = 10  # suggestions asked for, and the cut of every metric
START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS, TRAIN_DAYS = 28, 21
ACTIVITY_SIGMA = 1.0  # users' activity: log-normal(0, this)
CLICK_P = 0.5  # a search followed by an engagement
BOOTSTRAP = 2000
GOAL = 1.10  # the issue's goal: at least +10% over MPC on CTR and on success

# ------------------------------------------------------------------------------------------
# Part 1: offline
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the drawn log is and how many test searches are typed."""

    searches: int
    users: int
    sample: int


FULL = Sizes(searches=200_000, users=20_000, sample=2_000)
QUICK = Sizes(searches=40_000, users=4_000, sample=150)


@dataclass(frozen=True, slots=True)
class Search:
    """One search of the drawn log."""

    n: int
    user: str
    ts: float
    query: str  # normalized, as stored and typed
    key: str  # its match key
    rank: int  # its popularity rank (1 = the most searched)
    engaged_at: float | None  # the engagement after it, if any


def load_queries() -> list[tuple[str, str]]:
    """MS MARCO queries as (normalized text, match key), one per match key, in file order."""
    out: dict[str, str] = {}
    for name in QUERY_FILES:
        path = DATASETS / "queries" / name
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            _, _, raw = line.partition("\t")
            text = normalize(raw)
            key = match_key(text)
            if key and key not in out:
                out[key] = text
    return [(text, key) for key, text in out.items()]


def draw_log(
    queries: Sequence[tuple[str, str]],
    sizes: Sizes,
    *,
    personal: bool,
    zipf: float,
    repeat: float,
    seed: int,
) -> list[Search]:
    """The drawn search log, in time order (the module docstring states the law). Both logs
    draw the same users, times and fresh queries; the personal one replaces some of the
    fresh queries by repeats."""
    rng = np.random.default_rng([seed, 0])
    n = len(queries)
    ranks = np.empty(n, dtype=np.int64)
    ranks[rng.permutation(n)] = np.arange(1, n + 1)
    p = ranks.astype(float) ** -zipf
    p /= p.sum()
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, sizes.users)
    users = rng.choice(sizes.users, size=sizes.searches, p=activity / activity.sum())
    times = START.timestamp() + np.sort(rng.uniform(0.0, DAYS * 86400.0, sizes.searches))
    fresh = rng.choice(n, size=sizes.searches, p=p)
    repeats = rng.random(sizes.searches) < repeat
    picks = rng.random(sizes.searches)
    engaged = rng.random(sizes.searches) < CLICK_P
    delays = rng.uniform(5.0, 60.0, sizes.searches)
    history: dict[int, list[int]] = {}
    out: list[Search] = []
    for i in range(sizes.searches):
        user = int(users[i])
        earlier = history.setdefault(user, [])
        q = int(fresh[i])
        if personal and earlier and repeats[i]:
            q = earlier[int(picks[i] * len(earlier))]
        earlier.append(q)
        text, key = queries[q]
        ts = float(times[i])
        out.append(
            Search(
                i,
                f"u{user}",
                ts,
                text,
                key,
                int(ranks[q]),
                ts + float(delays[i]) if engaged[i] else None,
            )
        )
    return out


def log_events(searches: Sequence[Search]) -> list[LogEvent]:
    """The searches and their engagements as the builder reads a snapshot's events."""
    out: list[LogEvent] = []
    for s in searches:
        session = f"s{s.n}"
        out.append(LogEvent(s.user, s.ts, session, query=s.query))
        if s.engaged_at is not None:
            out.append(LogEvent(s.user, s.engaged_at, session, item_id=f"doc{s.rank}"))
    return out


def store_event(s: Search) -> Event:
    """A search as the store holds it (the typed-text path reads only users' searches)."""
    at = datetime.fromtimestamp(s.ts, UTC)
    return Event(
        app_id=APP,
        event_id=f"search-{s.n}",
        user_id=s.user,
        event_type=EventType.SEARCH,
        event_ts=at,
        server_ts=at,
        surface="search",
        session_id=f"s{s.n}",
        query=s.query,
    )


class MostPopularCompletion:
    """The logged queries that start with the typed match key, most searched first (ties by
    text). With ``min_users``, only queries searched by at least that many distinct users;
    ``add`` counts one more search (the live baseline, over ``universe``: every key that
    may come)."""

    def __init__(
        self,
        searches: Sequence[Search],
        min_users: int = 1,
        universe: Sequence[str] | None = None,
    ) -> None:
        counts = Counter(s.key for s in searches)
        users: dict[str, set[str]] = {}
        for s in searches:
            users.setdefault(s.key, set()).add(s.user)
        self.counts = Counter({k: c for k, c in counts.items() if len(users[k]) >= min_users})
        self._keys = sorted(set(universe or ()) | set(self.counts))
        self._cache: dict[str, list[str]] = {}

    def add(self, search: Search) -> None:
        """Count one more search (its key must be in the universe)."""
        self.counts[search.key] += 1
        self._cache.clear()

    def complete(self, key: str, k: int) -> list[str]:
        """The top ``k`` completions of ``key``, as match keys."""
        found = self._cache.get(key)
        if found is None:
            lo = bisect.bisect_left(self._keys, key)
            hi = bisect.bisect_left(self._keys, key + "\U0010ffff")
            held = (q for q in self._keys[lo:hi] if self.counts[q] > 0)
            found = heapq.nsmallest(k, held, key=lambda q: (-self.counts[q], q))
            self._cache[key] = found
        return found


#: The systems of the offline part, in table order.
NO_EXPLORE = "recloop no-explore"
SYSTEMS = ("recloop", NO_EXPLORE, "MPC", "MPC k>=3", "MPC live")
#: The comparisons printed and reported: (system, baseline).
PAIRS = (
    ("recloop", "MPC"),
    ("recloop", "MPC k>=3"),
    ("recloop", "MPC live"),
    (NO_EXPLORE, "MPC"),
)
#: Metrics per test search, in table order.
METRICS = ("MRR", "S@1", "S@5", "S@10", "saved")
#: Prefix-length groups of the per-length table.
LENGTH_GROUPS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 200))


def search_metrics(
    lists: Sequence[Sequence[str]], key: str
) -> tuple[dict[str, float], list[float]]:
    """The per-search metrics of the lists served at prefix lengths 1..L, and each length's
    reciprocal rank."""
    # The query's 1-based rank in each list, 0 when absent.
    ranks = [served.index(key) + 1 if key in served else 0 for served in lists]
    rr = [1.0 / r if r else 0.0 for r in ranks]
    length = len(lists)
    first = next((i for i, r in enumerate(ranks, start=1) if r), length)
    figures = {
        "MRR": sum(rr) / length,
        "S@1": sum(1 for r in ranks if r == 1) / length,
        "S@5": sum(1 for r in ranks if 0 < r <= 5) / length,
        "S@10": sum(1 for r in ranks if 0 < r <= K) / length,
        "saved": (length - first) / length,
    }
    return figures, rr


def counter_ids(prefix: str) -> Callable[[], str]:
    """Request ids from a counter: exploration is seeded by them, so a run repeats."""
    n = iter(range(1 << 62))
    return lambda: f"{prefix}{next(n):024x}"


def offline(
    queries: Sequence[tuple[str, str]], sizes: Sizes, personal: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """One log setting: draw, build, serve every prefix of the sampled test searches."""
    name = "personal" if personal else "global"
    started = time.perf_counter()
    log = draw_log(
        queries, sizes, personal=personal, zipf=args.zipf, repeat=args.repeat, seed=args.seed
    )
    cut = START + timedelta(days=TRAIN_DAYS)
    train = [s for s in log if s.ts < cut.timestamp()]
    test = [s for s in log if s.ts >= cut.timestamp()]
    model, report = build_model(
        log_events(train), [], Settings().suggestions, now=cut, version=f"bench-{name}"
    )
    rng = np.random.default_rng([args.seed, 99, int(personal)])
    picked = sorted(rng.choice(len(test), size=min(sizes.sample, len(test)), replace=False))
    sample = [test[int(i)] for i in picked]

    now = [cut]
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(data_dir=Path(tmp))
        greedy = base.model_copy(
            update={"suggestions": base.suggestions.model_copy(update={"exploration_epsilon": 0})}
        )
        runtimes: dict[str, Runtime] = {}
        try:
            # Two runtimes on one store: the served settings, and exploration off.
            for system, settings, ids in (("recloop", base, "a"), (NO_EXPLORE, greedy, "b")):
                runtimes[system] = start_runtime(
                    settings, clock=lambda: now[0], request_ids=counter_ids(ids)
                )
            lists = _serve(runtimes, model, train, test, sample, now)
        finally:
            for runtime in runtimes.values():
                runtime.close()
    mpc_lists, coverage = _baselines(train, test, sample, [k for _, k in queries])
    lists.update(mpc_lists)
    coverage["recloop"] = coverage[NO_EXPLORE] = _recloop_holds(log, sample, model)
    per_search: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
    by_length: dict[str, dict[int, list[float]]] = {s: {} for s in SYSTEMS}
    for n, s in enumerate(sample):
        for system in SYSTEMS:
            figures, rr = search_metrics(lists[system][n], s.key)
            per_search[system].append(figures)
            for i, value in enumerate(rr, start=1):
                by_length[system].setdefault(i, []).append(value)
    return {
        "log": name,
        "searches": len(log),
        "train_searches": len(train),
        "test_searches": len(test),
        "sampled": len(sample),
        "users": len({s.user for s in log}),
        "distinct_train_queries": len({s.key for s in train}),
        "build": report.as_dict(),
        "coverage": {system: coverage[system] / max(1, len(sample)) for system in SYSTEMS},
        "repeats_in_test": _repeats(train, test),
        "per_search": per_search,
        "by_length": {
            system: {
                f"{lo}-{hi}": _mean([v for i in range(lo, hi + 1) for v in lengths.get(i, [])])
                for lo, hi in LENGTH_GROUPS
            }
            for system, lengths in by_length.items()
        },
        "wall_s": time.perf_counter() - started,
    }


def _serve(
    runtimes: dict[str, Runtime],
    model: SuggestionModel,
    train: Sequence[Search],
    test: Sequence[Search],
    sample: Sequence[Search],
    now: list[datetime],
) -> dict[str, list[list[list[str]]]]:
    """Per runtime, per sampled search, per prefix length: the match keys it served, with
    the store holding every search before the one being typed."""
    store = runtimes["recloop"].store
    store.tenancy.create_app(APP, "suggest_quality", now[0])
    for at in range(0, len(train), 5000):
        store.events.append([store_event(s) for s in train[at : at + 5000]])
    for runtime in runtimes.values():
        assert runtime.suggester is not None
        runtime.suggester.models.publish(APP, model)
    out: dict[str, list[list[list[str]]]] = {system: [] for system in runtimes}
    written = 0
    for s in sample:
        upto = written
        while upto < len(test) and test[upto].ts < s.ts:
            upto += 1
        if upto > written:
            store.events.append([store_event(t) for t in test[written:upto]])
            written = upto
        now[0] = datetime.fromtimestamp(s.ts, UTC)
        for system, runtime in runtimes.items():
            suggester = runtime.suggester
            assert suggester is not None
            # A suggester that folds the searches since its model's cut-off into a live
            # overlay reads them on a timer: read them now, so a run does not depend on it.
            live = getattr(suggester, "live", None)
            if live is not None:
                live.step()
            typed = []
            for i in range(1, len(s.query) + 1):
                request = SuggestionRequest(
                    user_id=s.user, prefix=s.query[:i], session_id=f"typing-{s.n}", limit=K
                )
                served = suggester.suggest(APP, request)
                typed.append([match_key(x.query) for x in served.suggestions])
            out[system].append(typed)
    return out


def _baselines(
    train: Sequence[Search],
    test: Sequence[Search],
    sample: Sequence[Search],
    universe: Sequence[str],
) -> tuple[dict[str, list[list[list[str]]]], dict[str, int]]:
    """Per MPC baseline, per sampled search, per prefix length: its list; and how many of
    the sampled queries each baseline holds at all. ``MPC live`` counts the test searches
    too, each from its time on."""
    baselines = {
        "MPC": MostPopularCompletion(train),
        "MPC k>=3": MostPopularCompletion(train, 3),
        "MPC live": MostPopularCompletion(train, universe=universe),
    }
    lists: dict[str, list[list[list[str]]]] = {name: [] for name in baselines}
    held = dict.fromkeys(baselines, 0)
    added = 0
    for s in sample:
        while added < len(test) and test[added].ts < s.ts:
            baselines["MPC live"].add(test[added])
            added += 1
        typed = [typed_key(s.query[:i], None)[1] for i in range(1, len(s.query) + 1)]
        for name, baseline in baselines.items():
            lists[name].append([baseline.complete(key, K) for key in typed])
            held[name] += baseline.counts[s.key] > 0
    return lists, held


def _recloop_holds(log: Sequence[Search], sample: Sequence[Search], model: SuggestionModel) -> int:
    """How many sampled searches recloop could suggest: their query is in the model, or
    their user searched it before (the personal source). A live overlay may add more."""
    before: set[tuple[str, str]] = set()
    held, at = 0, 0
    for s in sample:
        while log[at].ts < s.ts:
            before.add((log[at].user, log[at].key))
            at += 1
        held += model.row(s.key) is not None or (s.user, s.key) in before
    return held


def _repeats(train: Sequence[Search], test: Sequence[Search]) -> float:
    """The share of test searches whose user searched the same query in the train part."""
    own = {(s.user, s.key) for s in train}
    return sum(1 for s in test if (s.user, s.key) in own) / max(1, len(test))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Mean difference a - b and ratio of means a / b, each with a 95% percentile interval
    over ``BOOTSTRAP`` resamples of the (paired) rows."""
    idx = rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))
    means_a, means_b = a[idx].mean(axis=1), b[idx].mean(axis=1)
    diffs = means_a - means_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = means_a / means_b
    return {
        "a": float(a.mean()),
        "b": float(b.mean()),
        "diff": float(a.mean() - b.mean()),
        "diff_lo": float(np.percentile(diffs, 2.5)),
        "diff_hi": float(np.percentile(diffs, 97.5)),
        "ratio": float(a.mean() / b.mean()) if b.mean() > 0 else float("nan"),
        "ratio_lo": float(np.nanpercentile(ratios, 2.5)),
        "ratio_hi": float(np.nanpercentile(ratios, 97.5)),
    }


def compare(run: dict[str, Any], seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Each of ``PAIRS``, per metric, paired over the sampled searches."""
    rng = np.random.default_rng([seed, 5])
    per = run["per_search"]
    return {
        f"{system} vs {baseline}": {
            m: paired_bootstrap(
                np.array([r[m] for r in per[system]]),
                np.array([r[m] for r in per[baseline]]),
                rng,
            )
            for m in METRICS
        }
        for system, baseline in PAIRS
    }


def print_offline(run: dict[str, Any], comparison: dict[str, Any]) -> None:
    build = run["build"]
    table(
        f"offline, {run['log']} log: {run['searches']:,} searches by {run['users']:,} users, "
        f"{run['train_searches']:,} train / {run['test_searches']:,} test, "
        f"{run['sampled']:,} test searches typed; model {build['searched_rows']:,} queries "
        f"(of {build['distinct_queries']:,} searched; {build['below_min_users']:,} below "
        f"min_users), built in {build['seconds']:.1f} s",
        ["system", *METRICS, "can suggest"],
        [
            [
                system,
                *(f"{_mean([r[m] for r in rows]):.4f}" for m in METRICS),
                f"{run['coverage'][system]:.3f}",
            ]
            for system, rows in run["per_search"].items()
        ],
        note="per test search, averaged over its prefix lengths 1..L; saved: the share of "
        "the query's characters not typed if clicked at its first appearance in the top 10; "
        "can suggest: the share of typed test searches whose query the system holds (recloop: "
        "in the model, or searched before by the same user); "
        f"{run['repeats_in_test']:.1%} of test searches repeat their user's own train query",
    )
    rows = []
    for pair, metrics in comparison.items():
        for m in ("MRR", "S@10", "saved"):
            c = metrics[m]
            rows.append(
                [
                    f"{pair}: {m}",
                    f"{c['a']:.4f}",
                    f"{c['b']:.4f}",
                    f"{c['diff']:+.4f} [{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}]",
                    f"{c['ratio']:.3f} [{c['ratio_lo']:.3f}, {c['ratio_hi']:.3f}]",
                ]
            )
    table(
        f"offline, {run['log']} log: paired differences (95% bootstrap over test searches)",
        ["comparison", "system", "baseline", "difference", "ratio"],
        rows,
    )
    groups = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in LENGTH_GROUPS]
    table(
        f"offline, {run['log']} log: MRR by prefix length (characters typed)",
        ["system", *groups],
        [[system, *(f"{v:.3f}" for v in by.values())] for system, by in run["by_length"].items()],
    )


# ------------------------------------------------------------------------------------------
# Part 2: simulator
# ------------------------------------------------------------------------------------------

#: (figure of the served lists, of MPC's, of the world's best), per suggestion list.
SIM_FIGURES = (
    ("CTR", "true_suggestion_ctr", "baseline_suggestion_ctr", "oracle_suggestion_ctr"),
    ("success", "list_success", "baseline_list_success", "oracle_list_success"),
    ("chars saved", "saved_per_list", "baseline_saved_per_list", "oracle_saved_per_list"),
)


def simulate(seed: int, family: WorldFamily, days: int) -> dict[str, Any]:
    """One world with search on, trained nightly; its search figures after the first night."""
    started = time.perf_counter()
    spec = family.draw(seed)
    config = DemoConfig(
        world=spec.world,
        behaviour=spec.behaviour,
        days=days,
        transport="inprocess",
        train_nightly=True,
        variants={"home": "home"},
        clients=spec.clients,
        service_clock=spec.service_clock,
        search=SearchConfig(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_demo(config, Settings(data_dir=Path(tmp)), Console(file=io.StringIO()))
    per_day = outcome.result.search_per_day
    # One suggestion variant unless an experiment splits the surface: pool them per day.
    n_days = max((len(d) for d in per_day.values()), default=0)
    daily = [
        {k: sum(d[day][k] for d in per_day.values() if day < len(d)) for k in SEARCH_COUNTS}
        for day in range(n_days)
    ]
    after = daily[1:] or daily

    def totals(days_: list[dict[str, float]]) -> dict[str, float]:
        counts = {k: sum(d[k] for d in days_) for k in SEARCH_COUNTS}
        return {**counts, **search_rates(counts)}

    row: dict[str, Any] = {
        "seed": seed,
        "held_out": spec.held_out,
        "clock_mode": spec.clock_mode,
        "shape": spec.describe(),
        "after_first_night": totals(after),
        "whole_run": totals(daily),
        "cold_day": totals(daily[:1]),
        "per_day": [search_rates(d) for d in daily],
        "suggestion_models": sum(1 for t in outcome.trainings if t.suggestions.path is not None),
        "nights": len(outcome.trainings),
        "wall_s": time.perf_counter() - started,
    }
    t = row["after_first_night"]
    for name, served, baseline, best in SIM_FIGURES:
        row[f"{name} served/MPC"] = t[served] / t[baseline] if t[baseline] else float("nan")
        row[f"{name} best/MPC"] = t[best] / t[baseline] if t[baseline] else float("nan")
    return row


def sim_summary(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Medians over seeds, a bootstrap interval (over seeds) of each median ratio, and the
    issue's goal on the median seed and per seed."""
    rng = np.random.default_rng([seed, 11])
    out: dict[str, Any] = {"seeds": len(rows)}
    for name, *_ in SIM_FIGURES:
        ratios = np.array([r[f"{name} served/MPC"] for r in rows])
        medians = np.median(ratios[rng.integers(0, len(ratios), (BOOTSTRAP, len(ratios)))], axis=1)
        out[f"{name} served/MPC median"] = float(np.median(ratios))
        out[f"{name} served/MPC lo"] = float(np.percentile(medians, 2.5))
        out[f"{name} served/MPC hi"] = float(np.percentile(medians, 97.5))
        out[f"{name} best/MPC median"] = float(np.median([r[f"{name} best/MPC"] for r in rows]))
        out[f"{name} wins"] = int(sum(ratios > 1.0))
        out[f"{name} at goal"] = int(sum(ratios >= GOAL))
        out[f"{name} best below goal"] = sum(1 for r in rows if r[f"{name} best/MPC"] < GOAL)
    out["keystrokes saved median"] = statistics.median(
        r["after_first_night"]["keystrokes_saved"] for r in rows
    )
    out["goal met"] = bool(
        out["CTR served/MPC median"] >= GOAL and out["success served/MPC median"] >= GOAL
    )
    return out


def print_simulator(
    rows: list[dict[str, Any]], summary: dict[str, Any], days: int, label: str
) -> None:
    header = ["seed", "lists"]
    for name, *_ in SIM_FIGURES:
        header += [f"{name} served", "MPC", "best", "served/MPC"]
    header += ["keystrokes saved", "models"]
    body = []
    for r in rows:
        t = r["after_first_night"]
        line = [f"{r['seed']}{'' if r['held_out'] else ' (tuning)'}", f"{t['lists']:,.0f}"]
        for name, served, baseline, best in SIM_FIGURES:
            line += [
                f"{t[served]:.4f}",
                f"{t[baseline]:.4f}",
                f"{t[best]:.4f}",
                f"{r[f'{name} served/MPC']:.3f}",
            ]
        line += [f"{t['keystrokes_saved']:.3f}", f"{r['suggestion_models']}/{r['nights']}"]
        body.append(line)
    table(
        f"simulated search box, days 2-{days} (per suggestion list: true CTR, expected success, "
        "expected characters saved; served lists, most-popular-completion and the world's best "
        "lists in the same typing states)",
        header,
        body,
        note="keystrokes saved: the share of the submitted queries' characters users did not "
        "type (served lists only); models: nights whose training built suggestions",
    )
    n = summary["seeds"]
    lines = []
    for name, *_ in SIM_FIGURES:
        lines.append(
            [
                name,
                f"{summary[f'{name} served/MPC median']:.3f} "
                f"[{summary[f'{name} served/MPC lo']:.3f}, {summary[f'{name} served/MPC hi']:.3f}]",
                f"{summary[f'{name} best/MPC median']:.3f}",
                f"{summary[f'{name} wins']}/{n}",
                f"{summary[f'{name} at goal']}/{n}",
                f"{summary[f'{name} best below goal']}/{n}",
            ]
        )
    table(
        f"simulated, {n} {label}: median served/MPC [95% bootstrap over seeds], the best "
        "lists' median ratio, seeds above MPC, seeds at the goal (>= +10%), seeds where even "
        "the best lists are below the goal",
        ["figure", "served/MPC", "best/MPC", "served > MPC", ">= 1.10", "best < 1.10"],
        lines,
        note=f"goal (median seed >= +10% over MPC on both CTR and success): "
        f"{'met' if summary['goal met'] else 'not met'}; median keystrokes saved "
        f"{summary['keystrokes saved median']:.3f}",
    )


# ------------------------------------------------------------------------------------------


def run_offline(sizes: Sizes, args: argparse.Namespace, headline: dict[str, Any]) -> dict[str, Any]:
    """Part 1 on both logs: printed, returned, and its headline figures added."""
    queries = load_queries()
    out: dict[str, Any] = {"queries": len(queries)}
    for personal in (False, True):
        run = offline(queries, sizes, personal, args)
        comparison = compare(run, args.seed)
        print_offline(run, comparison)
        out[run["log"]] = {**run, "comparison": comparison}
        for metric in ("MRR", "saved"):
            c = comparison["recloop vs MPC"][metric]
            headline[f"{run['log']}_{metric}_recloop"] = round(c["a"], 4)
            headline[f"{run['log']}_{metric}_mpc"] = round(c["b"], 4)
            headline[f"{run['log']}_{metric}_ratio"] = round(c["ratio"], 3)
            k3 = comparison["recloop vs MPC k>=3"][metric]
            headline[f"{run['log']}_{metric}_ratio_vs_mpc_k3"] = round(k3["ratio"], 3)
    return out


def run_simulator(args: argparse.Namespace, headline: dict[str, Any]) -> dict[str, Any]:
    """Part 2 over the chosen seeds: printed, returned, and its headline figures added (on
    the held-out seeds when there are any)."""
    days = args.days or (3 if args.quick else 5)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    else:
        split = args.split or ("tuning" if args.quick else "all")
        seeds = {
            "tuning": list(TUNING_SEEDS[: 2 if args.quick else None]),
            "held-out": list(HELD_OUT_SEEDS),
            "all": [*TUNING_SEEDS, *HELD_OUT_SEEDS],
        }[split]
    family = (
        WorldFamily(
            days=days,
            initial_items=400,
            initial_users=150,
            new_items_per_day=20,
            new_users_per_day=10,
        )
        if args.quick
        else WorldFamily(days=days)
    )
    rows = []
    for seed in seeds:
        row = simulate(seed, family, days)
        rows.append(row)
        t = row["after_first_night"]
        print(
            f"world {seed}: CTR {t['true_suggestion_ctr']:.4f} vs MPC "
            f"{t['baseline_suggestion_ctr']:.4f}, success {t['list_success']:.4f} vs "
            f"{t['baseline_list_success']:.4f}; {row['wall_s']:.0f} s",
            flush=True,
        )
    held_out = [r for r in rows if r["held_out"]]
    reported = held_out or rows
    label = "held-out seeds" if held_out else "tuning seeds"
    summaries = {"all": sim_summary(rows, args.seed), label: sim_summary(reported, args.seed)}
    summary = summaries[label]
    print_simulator(rows, summary, days, label)
    headline.update(
        sim_seeds=[r["seed"] for r in reported],
        sim_ctr_ratio_median=round(summary["CTR served/MPC median"], 3),
        sim_success_ratio_median=round(summary["success served/MPC median"], 3),
        sim_best_ctr_ratio_median=round(summary["CTR best/MPC median"], 3),
        sim_best_success_ratio_median=round(summary["success best/MPC median"], 3),
        sim_keystrokes_saved_median=round(summary["keystrokes saved median"], 3),
        sim_goal_met=summary["goal met"],
    )
    return {"days": days, "seeds": seeds, "summary": summaries, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--part", choices=("both", "offline", "simulator"), default="both")
    parser.add_argument("--searches", type=int, help="searches in the drawn log")
    parser.add_argument("--users", type=int, help="users in the drawn log")
    parser.add_argument("--sample", type=int, help="test searches typed per log")
    parser.add_argument("--zipf", type=float, default=1.0, help="popularity exponent")
    parser.add_argument("--repeat", type=float, default=0.4, help="personal log: repeat share")
    parser.add_argument("--seed", type=int, default=0, help="test sample and bootstrap seed")
    parser.add_argument("--seeds", help="simulator: comma-separated world seeds")
    parser.add_argument("--split", choices=("all", "held-out", "tuning"), help="simulator seeds")
    parser.add_argument("--days", type=int, help="simulated days (default 5; 3 with --quick)")
    parser.add_argument("--out", type=Path, help="the JSON file")
    args = parser.parse_args()
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        args.searches or base.searches, args.users or base.users, args.sample or base.sample
    )
    out = args.out or RESULTS_DIR / f"suggest_quality{'-quick' if args.quick else ''}.json"
    started = time.perf_counter()
    document: dict[str, Any] = {
        "environment": environment("in-process"),
        "quick": args.quick,
        "protocol": {
            "zipf": args.zipf,
            "repeat": args.repeat,
            "click_p": CLICK_P,
            "days": DAYS,
            "train_days": TRAIN_DAYS,
            "activity_sigma": ACTIVITY_SIGMA,
            "k": K,
            "sizes": asdict(sizes),
        },
    }
    headline: dict[str, Any] = {"quick": args.quick}

    if args.part in ("both", "offline"):
        document["offline"] = run_offline(sizes, args, headline)
    if args.part in ("both", "simulator"):
        document["simulator"] = run_simulator(args, headline)
    document["wall_s"] = time.perf_counter() - started
    write_json(document, out)
    print(f"written to {out}; {document['wall_s']:.0f} s in all")
    json_line("suggest_quality", headline)


if __name__ == "__main__":
    main()

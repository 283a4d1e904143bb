"""Quality of the lists recloop serves over HTTP after `recloop import` + `recloop train`.

Public data goes in through the command line exactly as a new user's would: ``recloop
import`` (items, then events), ``recloop train`` with the default settings, then ``recloop
serve`` (the harness's subprocess) answers ``GET /api/recommendations`` for every test user.
The lists measured are:

- ``home``: the default home surface as configured (learned ranker, or whatever training's
  gate chose, then epsilon-greedy exploration);
- ``home-no-explore``: the same pipeline without exploration;
- ``blend``: home's sources and rules ranked by their blended scores (no learned ranker),
  as before any training;
- ``only-NAME``: each single source alone (quota 100, ranked by its own scores, no
  exploration), for every source of home and every source training fits.

The extra surfaces live in a ``recloop.toml`` written for the run, which also holds the
default surfaces unchanged; nothing else is set, so training and home are the defaults.

Protocols:

- S3-Rec leave-one-out (Beauty, Yelp, LastFM; ``amazon-s3rec/<Name>.txt``): each user's last
  item is the test item; every earlier item is imported as history (the second-to-last, the
  papers' validation item, included). Full ranking over the catalogue; the service leaves
  out what a user consumed. The sequences have no timestamps, so the script stamps them:
  each user's last history item at the same moment T_end (just before the import), earlier
  ones an hour apart before a gap (``--stamps gap``, the default) so that training's latest
  time slice (``train.validation_fraction``) holds exactly each user's last history item,
  as the papers validate; ``--stamps hourly`` puts item k of n at T_end - (n - 1 - k) hours
  instead. HR@10 and NDCG@10 (log2 discount).
- ml-100k (``ml-100k/ml-100k.inter``): every rating is an interaction with its real
  timestamp; a seeded 75/25 split per user (``--ml100k-split user``) or stratified by item
  as the Microsoft Recommenders benchmark does (``item``: 75% of each item's ratings train);
  the 25% are test. NDCG@10 (binary relevance, ideal over min(10, |test|)), Precision@10
  (hits / 10), Recall@10 (hits / |test|) and MAP, the Recommenders definitions, over users
  with a training and a test rating.

Every list gets a 95% interval from a bootstrap over users (the same resamples for every
list, so differences are paired). The client is Python (httpx, a few connections): this
measures quality, not speed. Data sets are read from ``$RECLOOP_DATASETS`` (default
``../shared/datasets``); nothing is downloaded.

    .venv/bin/python benchmarks/served_quality.py --quick           # LastFM + ml-100k
    .venv/bin/python benchmarks/served_quality.py --datasets beauty --users 5000
    .venv/bin/python benchmarks/served_quality.py --datasets ml-100k --ml100k-split item
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from harness.report import (
    RESULTS_DIR,
    console,
    environment,
    exit_on_sigterm,
    json_line,
    table,
    write_json,
)
from harness.server import (
    BenchError,
    Server,
    recloop_command,
    recloop_server,
    service_env,
)
from recloop.config import Settings
from recloop.config.surfaces import default_surfaces
from recloop.config.training import TrainSettings, default_train_sources

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
S3REC = {"beauty": "Beauty", "yelp": "Yelp", "lastfm": "LastFM"}
ALL = ("lastfm", "beauty", "yelp", "ml-100k")
QUICK = ("lastfm", "ml-100k")
K = 10
HOUR = 3600.0

#: Published full-ranking figures on the same files (HR@10, NDCG@10), from the research
#: note's tables (S3-Rec repo's all_rank.PNG and the repos' logs named there).
PUBLISHED: dict[str, list[tuple[str, float, float]]] = {
    "beauty": [
        ("popularity (S3-Rec table)", 0.0152, 0.0068),
        ("SASRec, BCE 1 negative (S3-Rec table)", 0.0605, 0.0318),
        ("S3-Rec (S3-Rec table)", 0.0647, 0.0327),
        ("SASRec + sampled softmax 256 (eSASRec README)", 0.0921, 0.0531),
        ("eSASRec (eSASRec README)", 0.0928, 0.0523),
        ("BSARec (repo log)", 0.1008, 0.0611),
        ("TV-Rec (repo log)", 0.1017, 0.0608),
        ("WEARec (repo log; best published)", 0.1041, 0.0614),
    ],
    "yelp": [
        ("popularity (S3-Rec table)", 0.0099, 0.0051),
        ("SASRec, BCE 1 negative (S3-Rec table)", 0.0274, 0.0136),
        ("S3-Rec (S3-Rec table)", 0.0341, 0.0168),
        ("ICLRec checkpoint (ICLRec README)", 0.0409, 0.0207),
        ("TV-Rec (repo log; best published)", 0.0474, 0.0245),
    ],
    "lastfm": [
        ("popularity (S3-Rec table)", 0.0440, 0.0203),
        ("SASRec, BCE 1 negative (S3-Rec table)", 0.0688, 0.0390),
        ("S3-Rec (S3-Rec table)", 0.0743, 0.0427),
        ("BSARec (repo log)", 0.0807, 0.0435),
        ("TV-Rec (repo log; best NDCG@10)", 0.0853, 0.0484),
        ("WEARec (repo log; best HR@10)", 0.0899, 0.0465),
    ],
}

#: Microsoft Recommenders on ml-100k (split stratified by item, seed 42): NDCG@10,
#: Precision@10, Recall@10, MAP. README rows (2021) and the 2025 rerun of the notebook.
PUBLISHED_ML100K: list[tuple[str, float, float, float, float]] = [
    ("BiVAE (README, 2021)", 0.475077, 0.411771, 0.219145, 0.146126),
    ("BiVAE (notebook rerun, 2025)", 0.468673, 0.408165, 0.220898, 0.143562),
    ("BPR (README)", 0.441997, 0.388229, 0.212522, 0.132478),
    ("LightGCN (README)", 0.419846, 0.379626, 0.144336, 0.088526),
    ("NCF (README)", 0.396118, 0.347296, 0.180775, 0.107720),
    ("SAR (README)", 0.382461, 0.330753, 0.176385, 0.110591),
]


# ---------------------------------------------------------------------------------------
# Data: what is imported and what each user is asked about


@dataclass
class Prepared:
    """A data set ready to import: catalogue, users, events and each user's test items."""

    name: str
    items: list[dict[str, Any]]
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]
    test: dict[str, frozenset[str]]  # user -> test items (one under leave-one-out)
    history: dict[str, set[str]]  # user -> imported items
    notes: list[str] = field(default_factory=list)
    protocol: str = "loo"  # "loo" (HR/NDCG on one item) or "ratings" (the Recommenders')


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _attribute_items(path: Path) -> dict[str, tuple[str, list[str]]]:
    """item -> (category, tags): the first attribute id, and every distinct one (at most 64)."""
    raw: dict[str, list[int]] = json.loads(path.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for item, attributes in raw.items():
        distinct = list(dict.fromkeys(f"a{a}" for a in attributes))[:64]
        out[item] = (distinct[0] if distinct else "none", distinct)
    return out


def prepare_s3rec(name: str, stamps: str, event_type: str, t_end: float) -> Prepared:
    """Leave-one-out on an S3-Rec file: history imported with stamps, last item tested."""
    title = S3REC[name]
    folder = DATASETS / "amazon-s3rec"
    sequences: dict[str, list[str]] = {}
    for line in (folder / f"{title}.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            sequences[parts[0]] = parts[1:]
    attributes = _attribute_items(folder / f"{title}_item2attributes.json")
    longest = max(len(s) - 1 for s in sequences.values())
    fraction = TrainSettings().validation_fraction
    # The gap before each user's last history item that puts it, alone, in the latest
    # `fraction` of the time span: gap > fraction * (gap + (longest - 2) h).
    gap = (math.floor(fraction * max(longest - 2, 0) / (1.0 - fraction)) + 2) * HOUR
    first_ts = t_end - gap - longest * HOUR
    events: list[dict[str, Any]] = []
    test: dict[str, frozenset[str]] = {}
    history: dict[str, set[str]] = {}
    repeated = 0
    for user, sequence in sequences.items():
        past, target = sequence[:-1], sequence[-1]
        test[user] = frozenset({target})
        history[user] = set(past)
        repeated += target in history[user]
        m = len(past)
        for k, item in enumerate(past):
            back = m - 1 - k  # 0 for the last history item
            if stamps == "hourly" or back == 0:
                ts = t_end - back * HOUR
            else:
                ts = t_end - gap - (back - 1) * HOUR
            events.append(
                {
                    "eventId": f"{user}-{k}",
                    "userId": user,
                    "itemId": item,
                    "eventType": event_type,
                    "eventTs": _iso(ts),
                }
            )
    catalogue = sorted({i for s in sequences.values() for i in s} | set(attributes), key=int)
    created = _iso(first_ts - 30 * 24 * HOUR)
    items = []
    for item in catalogue:
        category, tags = attributes.get(item, ("none", []))
        items.append({"itemId": item, "category": category, "tags": tags, "createdAt": created})
    notes = [
        f"{len(sequences):,} users, {len(catalogue):,} items, {len(events):,} history events "
        f"imported as {event_type!r}; the longest history has {longest} items",
        f"stamps: {stamps}; "
        + (
            f"each user's last history item at T_end, the earlier ones 1 h apart ending "
            f"{gap / HOUR:.0f} h before it"
            if stamps == "gap"
            else "item k of n at T_end - (n - 1 - k) h"
        ),
        f"users whose test item is also in their history: {repeated:,} "
        "(kept, as the papers do; the service never serves a consumed item, so they cannot hit)",
    ]
    return Prepared(name, items, [], events, test, history, notes)


def _stratified(
    rows: Sequence[tuple[str, str, float, float]], by: int, ratio: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices of train and test: each group's rows shuffled, the first round(ratio n)
    train (the Recommenders' ``python_stratified_split``, grouped by column ``by``)."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row[by], []).append(index)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for key in sorted(groups, key=lambda g: (len(g), g)):
        members = np.asarray(groups[key])
        rng.shuffle(members)
        cut = round(ratio * len(members))
        train.extend(members[:cut].tolist())
        test.extend(members[cut:].tolist())
    return sorted(train), sorted(test)


def prepare_ml100k(split: str, event_type: str, seed: int) -> Prepared:
    """ml-100k, all ratings, 75/25 per user or per item; real timestamps."""
    folder = DATASETS / "ml-100k"
    lines = (folder / "ml-100k.inter").read_text().splitlines()
    header = lines[0].split("\t")
    col = {h.split(":")[0]: n for n, h in enumerate(header)}
    rows: list[tuple[str, str, float, float]] = []
    for line in lines[1:]:
        parts = line.split("\t")
        rows.append(
            (
                parts[col["user_id"]],
                parts[col["item_id"]],
                float(parts[col["rating"]]),
                float(parts[col["timestamp"]]),
            )
        )
    train, test_rows = _stratified(rows, 0 if split == "user" else 1, 0.75, seed)
    events = [
        {
            "eventId": f"r{n}",
            "userId": rows[n][0],
            "itemId": rows[n][1],
            "eventType": event_type,
            "eventTs": _iso(rows[n][3]),
        }
        for n in train
    ]
    history: dict[str, set[str]] = {}
    for n in train:
        history.setdefault(rows[n][0], set()).add(rows[n][1])
    test_sets: dict[str, set[str]] = {}
    for n in test_rows:
        test_sets.setdefault(rows[n][0], set()).add(rows[n][1])
    test = {u: frozenset(s) for u, s in test_sets.items() if u in history}
    created = _iso(min(r[3] for r in rows) - 30 * 24 * HOUR)
    items = []
    item_lines = (folder / "ml-100k.item").read_text().splitlines()
    item_col = {h.split(":")[0]: n for n, h in enumerate(item_lines[0].split("\t"))}
    for line in item_lines[1:]:
        parts = line.split("\t")
        genres = parts[item_col["class"]].split() if len(parts) > item_col["class"] else []
        year = parts[item_col["release_year"]] if len(parts) > item_col["release_year"] else ""
        items.append(
            {
                "itemId": parts[item_col["item_id"]],
                "title": f"{parts[item_col['movie_title']]} ({year})" if year else None,
                "category": genres[0] if genres else "none",
                "tags": genres,
                "createdAt": created,
            }
        )
    users = []
    user_lines = (folder / "ml-100k.user").read_text().splitlines()
    user_col = {h.split(":")[0]: n for n, h in enumerate(user_lines[0].split("\t"))}
    for line in user_lines[1:]:
        parts = line.split("\t")
        users.append(
            {
                "userId": parts[user_col["user_id"]],
                "attributes": {
                    "age": int(parts[user_col["age"]]),
                    "gender": parts[user_col["gender"]],
                    "occupation": parts[user_col["occupation"]],
                },
            }
        )
    notes = [
        f"{len(rows):,} ratings; split {split}-stratified 75/25 (seed {seed}): {len(train):,} "
        f"imported as {event_type!r} with their real timestamps, {len(test_rows):,} test",
        f"{len(test):,} users with a training and a test rating are measured "
        f"({len(test_sets) - len(test):,} test users have no training rating)",
    ]
    return Prepared(
        f"ml-100k-{split}", items, users, events, test, history, notes, protocol="ratings"
    )


# ---------------------------------------------------------------------------------------
# The benchmark's recloop.toml: the default surfaces, plus one surface per list measured


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def single_sources() -> list[str]:
    """Every source of the default home surface, and every trained source not in it."""
    home = [slot.name for slot in default_surfaces()["home"].sources]
    trained = [t.name for t in default_train_sources() if t.name not in home]
    return home + trained


def surfaces_config(sources: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The default surfaces unchanged, and the benchmark's extra ones."""
    surfaces = {
        name: surface.model_dump(mode="json") for name, surface in default_surfaces().items()
    }
    home = surfaces["home"]
    surfaces["home-no-explore"] = {**home, "exploration": {"name": "none", "params": {}}}
    surfaces["blend"] = {
        **home,
        "ranker": {
            "name": "source-scores",
            "params": {"weights": home["ranker"]["params"].get("fallback_weights", {})},
        },
        "exploration": {"name": "none", "params": {}},
    }
    for source in sources:
        surfaces[f"only-{source}"] = {
            "sources": [{"name": source, "quota": 100}],
            "ranker": {"name": "source-scores", "params": {}},
            "exploration": {"name": "none", "params": {}},
        }
    return surfaces


def write_config(
    path: Path, surfaces: Mapping[str, Mapping[str, Any]], train: Mapping[str, Any] | None = None
) -> None:
    """A recloop.toml with these surfaces, the ``train`` settings given and nothing else;
    checked by loading it."""
    lines = ["# written by benchmarks/served_quality.py: default settings, extra surfaces"]
    if train:
        lines.append("\n[train]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in train.items())
    for name, surface in surfaces.items():
        lines.append(f"\n[surfaces.{json.dumps(name)}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in surface.items())
    path.write_text("\n".join(lines) + "\n")
    env = {"RECLOOP_CONFIG": str(path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        loaded = Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if loaded.surfaces["home"] != default_surfaces()["home"]:
        raise BenchError("the benchmark's recloop.toml changed the home surface")
    if loaded.train != TrainSettings(**(train or {})):
        raise BenchError("the benchmark's recloop.toml changed training settings")


# ---------------------------------------------------------------------------------------
# recloop commands


def run_cli(args: list[str], data_dir: Path, config: Path, timeout: float) -> tuple[str, float]:
    """A recloop command to completion with the benchmark's config; its output and seconds."""
    env = service_env(data_dir, config=config)
    env["COLUMNS"] = "200"
    started = time.perf_counter()
    done = subprocess.run(
        [*recloop_command(), *args],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"recloop {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout, seconds


def write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


def _latest_mtime(path: Path) -> float | None:
    if not path.exists():
        return None
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    return max(times) if times else path.stat().st_mtime


def stage_times(
    data_dir: Path, version_dir: Path, started: float, ended: float, order: Sequence[str]
) -> list[tuple[str, float]]:
    """Wall seconds of each training stage, from when each one's artefacts were written.

    ``recloop train`` prints no timings per stage; each stage writes its artefacts when it
    ends (the snapshot; each source after its validation fit and its final fit; the
    impressions' training set; the ranker after its candidates, fit and gate), so the
    differences between those files' modification times are the stages' wall times.
    """
    marks: list[tuple[str, float]] = []
    snapshot = _latest_mtime(data_dir / "snapshots")
    if snapshot is not None:
        marks.append(("start-up + snapshot", snapshot))
    for name in order:
        when = _latest_mtime(version_dir / name)
        if when is not None:
            marks.append((f"source {name} (validation fit + recall, final fit)", when))
    datasets = _latest_mtime(data_dir / "datasets")
    if datasets is not None and datasets > (marks[-1][1] if marks else started):
        marks.append(("training set of impressions", datasets))
    ranker = _latest_mtime(version_dir / "ranker_report.json")
    if ranker is not None:
        marks.append(("ranker: candidates, features, fit, gate", ranker))
    marks.append(("manifest, promotion, exit", ended))
    out: list[tuple[str, float]] = []
    previous = started
    for name, when in marks:
        out.append((name, max(0.0, when - previous)))
        previous = max(previous, when)
    return out


# ---------------------------------------------------------------------------------------
# Asking the service


@dataclass
class Served:
    """What one surface served the measured users."""

    lists: dict[str, list[str]]
    fallback: int = 0
    cold: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    model_versions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def _ask_all(server: Server, surface: str, users: Sequence[str], connections: int) -> Served:
    served = Served({})
    target = server.target
    headers = {"Authorization": f"Bearer {target.key}"}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for user in users:
        queue.put_nowait(user)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                user = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            params = {"userId": user, "surface": surface, "limit": str(K)}
            for attempt in range(3):
                try:
                    response = await client.get("/api/recommendations", params=params)
                except httpx.TransportError as exc:
                    if attempt == 2:
                        served.errors[type(exc).__name__] += 1
                    continue
                if response.status_code != 200:
                    served.errors[f"HTTP {response.status_code}"] += 1
                    break
                body = response.json()
                served.lists[user] = [item["itemId"] for item in body["items"]]
                served.fallback += bool(body.get("fallback"))
                served.cold += bool(body.get("cold"))
                served.model_versions[str(body.get("modelVersion"))] += 1
                break

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=target.url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    served.seconds = time.perf_counter() - started
    return served


def ask(server: Server, surface: str, users: Sequence[str], connections: int) -> Served:
    """Every user's top 10 on one surface."""
    return asyncio.run(_ask_all(server, surface, users, connections))


# ---------------------------------------------------------------------------------------
# Metrics


def loo_metrics(ranked: list[str], target: frozenset[str]) -> dict[str, float]:
    """HR@10 and NDCG@10 of one list against the test item."""
    for rank, item in enumerate(ranked[:K]):
        if item in target:
            return {"HR@10": 1.0, "NDCG@10": 1.0 / math.log2(rank + 2)}
    return {"HR@10": 0.0, "NDCG@10": 0.0}


def rating_metrics(ranked: list[str], relevant: frozenset[str]) -> dict[str, float]:
    """The Recommenders' NDCG@10, Precision@10, Recall@10 and MAP of one list."""
    hits = 0
    dcg = 0.0
    precision_sum = 0.0
    for rank, item in enumerate(ranked[:K]):
        if item in relevant:
            hits += 1
            dcg += 1.0 / math.log(rank + 2)
            precision_sum += hits / (rank + 1)
    ideal = sum(1.0 / math.log(rank + 2) for rank in range(min(K, len(relevant))))
    return {
        "NDCG@10": dcg / ideal if ideal else 0.0,
        "Precision@10": hits / K,
        "Recall@10": hits / len(relevant),
        "MAP": precision_sum / len(relevant),
    }


def bootstrap(
    values: Mapping[str, np.ndarray], resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each mean, resampling users (the same draws for all)."""
    names = list(values)
    matrix = np.column_stack([values[n] for n in names])  # users x lists
    n = matrix.shape[0]
    rng = np.random.default_rng(seed)
    means: list[np.ndarray] = []
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)])
        means.append(weights @ matrix / n)
        done += size
    stacked = np.concatenate(means)
    low, high = np.percentile(stacked, [2.5, 97.5], axis=0)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------
# One data set


def _fmt(value: float, interval: tuple[float, float] | None = None) -> str:
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _version_dir(data_dir: Path) -> Path:
    app = data_dir / "models" / "default"
    current = app / "CURRENT"
    if current.exists():
        return app / current.read_text().strip()
    versions = sorted(p for p in app.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not versions:
        raise BenchError(f"no model version under {app}")
    return versions[-1]


def print_gate(report: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's decision and every alternative's figures, from ranker_report.json."""
    gate = report.get("gate")
    if not gate:
        console.print(f"gate: none in the report (ranker: {report.get('skipped', '?')})")
        return {}
    console.print(f"gate: serves {gate['serve']!r} (measure {gate['measure']}): {gate['reason']}")
    measures = sorted({m for f in gate["figures"].values() for m in f})
    rows = sorted(
        gate["figures"].items(),
        key=lambda kv: -(kv[1].get(gate["measure"] or "", float("nan")) or 0.0),
    )
    table(
        f"gate figures: NDCG@10 on the training's test part; lists with a positive: "
        f"{gate.get('lists')}",
        ["ordering", *measures],
        [[name, *(_fmt(f.get(m, float("nan"))) for m in measures)] for name, f in rows],
    )
    return dict(gate)


def print_ranker(report: Mapping[str, Any]) -> None:
    """The ranker's rows, heads and top features, as the report has them."""
    candidates = report.get("candidates") or {}
    if candidates:
        console.print(
            f"ranker rows from interactions: {candidates.get('cases')} cases, rows "
            f"{candidates.get('rows')}, positives {candidates.get('positives')}, candidate "
            f"recall {candidates.get('candidate_recall', float('nan')):.3f}",
            soft_wrap=True,
        )
    if report.get("impressions"):
        console.print(f"impressions: {report['impressions']}", soft_wrap=True)
    for head, figures in (report.get("heads") or {}).items():
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(figures.get("importance", {}).items())[:6])
        console.print(
            f"head {head}: {figures.get('rounds')} rounds; top features (gain share): {top}",
            soft_wrap=True,
        )


def clean_report(data_dir: Path) -> str:
    """What training's cleaning does to the imported events (bots, clocks), re-run here."""
    from recloop.data.cleaning import clean_events
    from recloop.data.snapshots import open_snapshot

    snapshots = sorted((data_dir / "snapshots").iterdir())
    events = open_snapshot(snapshots[-1]).table("events")
    _, report = clean_events(events, TrainSettings().cleaning)
    return report.render(max_bots=5)


def feature_clock(data_dir: Path, cutoff_ts: float | None) -> dict[str, Any]:
    """How many imported events count for point-in-time features before training's cut-off.

    The ranker's rows from interactions are featurized as of the validation cut-off, with
    each event counted at its feature time (``feature_time``: the client's stamp when it is
    within the tolerance of the arrival, else the arrival).
    """
    from recloop.data.snapshots import open_snapshot
    from recloop.features.definitions import feature_time

    snapshots = sorted((data_dir / "snapshots").iterdir())
    events = open_snapshot(snapshots[-1]).table("events")
    stamped = [t.timestamp() for t in events.column("event_ts").to_pylist()]
    arrived = [t.timestamp() for t in events.column("server_ts").to_pylist()]
    when = [feature_time(e, a) for e, a in zip(stamped, arrived, strict=True)]
    before = sum(w < cutoff_ts for w in when) if cutoff_ts is not None else None
    return {
        "events": len(when),
        "feature_time_before_cutoff": before,
        "counted_at_arrival": sum(
            w == a != e for w, a, e in zip(when, arrived, stamped, strict=True)
        ),
        "cutoff_ts": cutoff_ts,
    }


def debug_sample(server: Server, surface: str, users: Sequence[str]) -> Counter[str]:
    """Stage outcomes other than ok/empty over ``debug=true`` requests for a few users."""
    tally: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {server.target.key}"}
    with httpx.Client(base_url=server.target.url, headers=headers, timeout=60) as client:
        for user in users:
            params = {"userId": user, "surface": surface, "limit": str(K), "debug": "true"}
            body = client.get("/api/recommendations", params=params).json()
            tally["requests"] += 1
            tally["fallback"] += bool(body.get("fallback"))
            for stage in body.get("stages") or []:
                if stage["outcome"] not in ("ok", "empty"):
                    tally[f"{stage['stage']} {stage['outcome']}"] += 1
    return tally


def run_dataset(prepared: Prepared, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Import, train, serve and measure one data set; prints as it goes."""
    name = prepared.name
    console.rule(name)
    for note in prepared.notes:
        console.print(f"  {note}", soft_wrap=True)
    data_dir = work / name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    sources = single_sources()
    config = data_dir / "recloop.toml"
    train = {} if args.validation_split == "auto" else {"validation_split": args.validation_split}
    write_config(config, surfaces_config(sources), train)
    timings: dict[str, float] = {}

    files = {"items": prepared.items, "users": prepared.users, "events": prepared.events}
    for kind, records in files.items():
        if not records:
            continue
        path = data_dir / f"{kind}.jsonl"
        write_jsonl(path, records)
        _, timings[f"import {kind}"] = run_cli(
            ["import", str(path), "--kind", kind, "--strict"], data_dir, config, timeout=3600
        )
        console.print(
            f"  recloop import --kind {kind}: {len(records):,} rows in "
            f"{timings[f'import {kind}']:.1f} s"
        )

    started = time.time()
    train_out, timings["train"] = run_cli(["train"], data_dir, config, timeout=4 * 3600)
    ended = time.time()
    console.print(f"  recloop train: {timings['train']:.1f} s wall; its output:")
    console.print(train_out.rstrip(), soft_wrap=True, highlight=False, markup=False)
    version_dir = _version_dir(data_dir)
    report_path = version_dir / "ranker_report.json"
    ranker_report = json.loads(report_path.read_text()) if report_path.exists() else {}
    gate = print_gate(ranker_report)
    print_ranker(ranker_report)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    trained = [m["name"] for m in manifest.get("models", [])]
    for note in manifest.get("notes", []):
        console.print(f"  note: {note}", soft_wrap=True)
    train_order = [t.name for t in default_train_sources()]
    stages = stage_times(data_dir, version_dir, started, ended, train_order)
    table(
        "recloop train, wall seconds per stage (from the artefacts' write times)",
        ["stage", "seconds"],
        [*[[s, f"{v:.1f}"] for s, v in stages], ["total", f"{timings['train']:.1f}"]],
    )
    clock = feature_clock(data_dir, manifest.get("extra", {}).get("validation_cutoff_ts"))
    console.print(
        f"feature clock: of {clock['events']:,} imported events, "
        f"{clock['counted_at_arrival']:,} count for the features at their arrival (the "
        f"import), so {clock['feature_time_before_cutoff']} are folded into the ranker's "
        "point-in-time features at training's validation cut-off",
        soft_wrap=True,
    )
    cleaning = clean_report(data_dir)
    console.print("cleaning, as training ran it on this snapshot:")
    console.print(cleaning, soft_wrap=True, highlight=False, markup=False)

    users = sorted(prepared.test)
    sample_note = f"all {len(users):,} test users"
    limit = args.users if args.users else 0
    if limit and limit < len(users):
        rng = np.random.default_rng(args.seed)
        users = sorted(rng.choice(users, size=limit, replace=False).tolist())
        sample_note = (
            f"a fixed random sample of {limit:,} of {len(prepared.test):,} test users "
            f"(seed {args.seed}), the same for every list"
        )
    surfaces = ["home", "home-no-explore", "blend", *(f"only-{s}" for s in sources)]
    if args.lists:
        wanted = set(args.lists.split(","))
        surfaces = [s for s in surfaces if s in wanted or s.removeprefix("only-") in wanted]
    served: dict[str, Served] = {}
    consumed_served = Counter[str]()
    with recloop_server(data_dir, config=config, start_timeout_s=300) as server:
        console.print(f"  recloop serve up in {server.startup_s:.1f} s; asking {sample_note}")
        for surface in surfaces:
            got = ask(server, surface, users, args.connections)
            served[surface] = got
            for user, ranked in got.lists.items():
                consumed_served[surface] += sum(i in prepared.history.get(user, ()) for i in ranked)
            errors = f", errors {dict(got.errors)}" if got.errors else ""
            console.print(
                f"  {surface}: {len(got.lists):,} lists in {got.seconds:.0f} s "
                f"({len(got.lists) / max(got.seconds, 1e-9):.0f}/s){errors}"
            )
            sys.stdout.flush()
        probe = users[: min(len(users), 200)]
        diagnosis = debug_sample(server, "home", probe) if "home" in surfaces else Counter()
        console.print(
            f"  home with debug=true for {len(probe)} users: stage outcomes other than "
            f"ok/empty: {dict(diagnosis)}",
            soft_wrap=True,
        )

    metric = loo_metrics if prepared.protocol == "loo" else rating_metrics
    names = ["HR@10", "NDCG@10"] if prepared.protocol == "loo" else list(rating_metrics([], {"x"}))
    per_list: dict[str, dict[str, np.ndarray]] = {}
    for surface, got in served.items():
        rows = [metric(got.lists.get(user, []), prepared.test[user]) for user in users]
        per_list[surface] = {m: np.array([r[m] for r in rows]) for m in names}
    flat = {f"{s}|{m}": v for s, d in per_list.items() for m, v in d.items()}
    intervals = bootstrap(flat, args.resamples, args.seed) if flat else {}

    results: dict[str, Any] = {}
    rows = []
    for surface, got in served.items():
        lengths = [len(got.lists.get(u, [])) for u in users]
        figures = {m: float(per_list[surface][m].mean()) for m in names}
        results[surface] = {
            **figures,
            "ci95": {m: intervals[f"{surface}|{m}"] for m in names},
            "lists": len(got.lists),
            "fallback_share": got.fallback / max(len(got.lists), 1),
            "cold_share": got.cold / max(len(got.lists), 1),
            "mean_length": float(np.mean(lengths)) if lengths else 0.0,
            "consumed_items_served": consumed_served[surface],
            "errors": dict(got.errors),
            "model_versions": dict(got.model_versions.most_common(3)),
            "seconds": got.seconds,
        }
        source = surface.removeprefix("only-")
        trained_note = (
            " (not trained)"
            if surface.startswith("only-") and source in train_order and source not in trained
            else ""
        )
        rows.append(
            [
                surface + trained_note,
                *(_fmt(figures[m], intervals[f"{surface}|{m}"]) for m in names),
                f"{results[surface]['fallback_share']:.0%}",
                f"{results[surface]['mean_length']:.1f}",
                str(got.model_versions.most_common(1)[0][0] if got.model_versions else "-"),
            ]
        )
    published_rows: list[list[str]] = []
    if prepared.protocol == "loo":
        published_rows = [
            [f"published: {label}", _fmt(hr), _fmt(nd), "", "", ""]
            for label, hr, nd in PUBLISHED[name]
        ]
    else:
        published_rows = [
            [f"published: {label}", _fmt(nd), _fmt(p), _fmt(r), _fmt(mp), "", "", ""]
            for label, nd, p, r, mp in PUBLISHED_ML100K
        ]
    table(
        f"{name}: served lists ({sample_note}; 95% bootstrap intervals over users, "
        f"{args.resamples} resamples)",
        [
            "list",
            *[f"{m} [95% CI]" for m in names],
            "fallback",
            "mean length",
            "model version (most common)",
        ],
        rows + published_rows,
        note=(
            "published figures: full ranking on the same files (S3-Rec leave-one-out), from "
            "the research note's tables"
            if prepared.protocol == "loo"
            else "published figures: Microsoft Recommenders, ml-100k split stratified by item "
            "(seed 42); compare the item split with them"
        ),
    )
    singles = {
        s: results[s]["NDCG@10"] for s in results if s.startswith("only-") and results[s]["lists"]
    }
    paired: dict[str, Any] = {}
    if singles and "home-no-explore" in per_list:
        best = max(singles, key=lambda s: singles[s])
        key = "NDCG@10"
        pairs = {
            "home - home-no-explore": per_list["home"][key] - per_list["home-no-explore"][key]
            if "home" in per_list
            else None,
            f"home-no-explore - {best}": per_list["home-no-explore"][key] - per_list[best][key],
            f"home - {best}": per_list["home"][key] - per_list[best][key]
            if "home" in per_list
            else None,
            f"blend - {best}": per_list["blend"][key] - per_list[best][key]
            if "blend" in per_list
            else None,
        }
        diffs = {k: v for k, v in pairs.items() if v is not None}
        diff_ci = bootstrap(diffs, args.resamples, args.seed + 1)
        paired = {
            k: {"mean": float(v.mean()), "ci95": diff_ci[k], "best_single": best}
            for k, v in diffs.items()
        }
        table(
            f"{name}: paired NDCG@10 differences (best single source on this test: {best})",
            ["difference", "mean [95% CI]"],
            [[k, _fmt(v["mean"], tuple(v["ci95"]))] for k, v in paired.items()],
        )
    consumed = {s: n for s, n in consumed_served.items() if n}
    if consumed:
        console.print(f"  consumed (imported) items served, per list: {consumed}")
    else:
        console.print("  no list served an item the user had consumed")
    return {
        "dataset": name,
        "protocol": prepared.protocol,
        "notes": prepared.notes,
        "users_measured": len(users),
        "users_total": len(prepared.test),
        "sample": sample_note,
        "timings": timings,
        "train_stages": dict(stages),
        "train_output": train_out,
        "trained_sources": trained,
        "manifest_notes": manifest.get("notes", []),
        "source_params": {m["name"]: m.get("params", {}) for m in manifest.get("models", [])},
        "validation_split": manifest.get("extra", {}).get("validation_split"),
        "gate": gate,
        "ranker_report": {k: v for k, v in ranker_report.items() if k != "gate"},
        "cleaning": cleaning,
        "feature_clock": clock,
        "home_debug_sample": dict(diagnosis),
        "lists": results,
        "paired": paired,
        "published": PUBLISHED.get(name, PUBLISHED_ML100K if prepared.protocol != "loo" else []),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(ALL), help=f"of {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="LastFM and ml-100k only")
    parser.add_argument(
        "--users", type=int, default=0, help="measure a fixed random sample of N users (0: all)"
    )
    parser.add_argument("--ml100k-split", default="user,item", help="user, item or user,item")
    parser.add_argument("--stamps", choices=("gap", "hourly"), default="gap")
    parser.add_argument(
        "--validation-split",
        choices=("auto", "time", "user", "random"),
        default="auto",
        help="train.validation_split in the benchmark's recloop.toml (auto: the default)",
    )
    parser.add_argument(
        "--event-type",
        default="purchase",
        help="the eventType of imported interactions (click: see benchmarks/README.md)",
    )
    parser.add_argument("--lists", default="", help="only these surfaces or sources (comma list)")
    parser.add_argument(
        "--connections", type=int, default=1, help="concurrent requests (more: more timeouts)"
    )
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--data-dir", type=Path, help="where each data set's recloop data goes (kept)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "served_quality.json")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    names = list(QUICK) if args.quick else [n.strip().lower() for n in args.datasets.split(",")]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown data sets {unknown}; known: {', '.join(ALL)}")
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="served-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"environment: {environment('httpx, ' + str(args.connections) + ' connections')}")
    console.print(f"recloop data under {work}; data sets from {DATASETS}")
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            # T_end a minute before the import: every stamp lies in the server clock's past.
            t_end = math.floor(time.time()) - 60
            if name == "ml-100k":
                for split in [s.strip() for s in args.ml100k_split.split(",")]:
                    prepared = prepare_ml100k(split, args.event_type, args.seed)
                    results.append(run_dataset(prepared, args, work))
            else:
                prepared = prepare_s3rec(name, args.stamps, args.event_type, t_end)
                results.append(run_dataset(prepared, args, work))
            write_json({"environment": environment("httpx"), "results": results}, args.out)
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    console.print(f"wrote {args.out}")
    headline = {
        r["dataset"]: {
            s: {m: round(v, 4) for m, v in f.items() if "@" in m or m == "MAP"}
            for s, f in r["lists"].items()
            if s in ("home", "home-no-explore", "blend")
        }
        | {"gate": (r.get("gate") or {}).get("serve")}
        for r in results
    }
    json_line("served_quality", headline)


if __name__ == "__main__":
    main()

"""Ranker rows from interactions alone: what a surface would have recalled, labelled by what
the user did next.

For each validation case (a user seen before the validation cut-off, with engagement after
it) the surface's own sources are built from models fitted on the data before the cut-off
and a popularity snapshot as of the cut-off, and asked for candidates as a request at the
cut-off would ask them: the same names, quotas, merge and per-request score normalisation
as serving. An item the user engaged with after the cut-off is a positive (``label_click``;
``label`` when the engagement was a satisfying one by the label rules); every other
candidate is a negative. Features are added later by the same point-in-time replay as for
logged impressions, at the cut-off.

A positive the sources did not recall is not added: the ranker only ever orders what
retrieval found, and adding what it missed would teach it a world it never sees. Cases
are split by user into train, validation and test parts; train and validation keep every
positive and a sample of the negatives (the rate is reported; ``sampling_weight`` is how
many negatives each kept one stands for, which calibration counts), test keeps every
candidate, so that the gate compares orderings of the lists serving would rank.

Cross-fitted (``CandidateRowsConfig.folds`` above 1), every case keeps every candidate, a
``sampled`` column marks the rows it trains on (every positive and the same sample of
negatives), and a ``fold`` column its user's fold; there is no test part, and the parts
are the train and validation (early-stopping) shares of users.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import LabelRules, SurfaceConfig
from recloop.domain import EventRecord, EventType, RequestContext
from recloop.evaluation.retrieval_metrics import EvalCase
from recloop.features.candidates import merge_candidates, source_score_features
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.models import RetrievalModel
from recloop.retrieval.popularity import PopularityConfig, PopularityIndex, PopularityModel
from recloop.retrieval.source_table import SourceInputs, build_source
from recloop.store.protocols import CatalogChange

#: The app id the offline sources are published under.
_APP = "training"
_EVENT_TYPES = frozenset(t.value for t in EventType)
#: The column of how many of its list's negatives a sampled negative stands for (1 for a
#: positive and where nothing was left out).
SAMPLING_WEIGHT = "sampling_weight"
#: Shares of the cases that validate and test the ranker; the rest train it.
VALIDATION_SHARE = 0.15
TEST_SHARE = 0.2


@dataclass(frozen=True)
class CandidateRowsConfig:
    """How many candidate rows to make."""

    max_negatives: int = 100  # per train or validation case; test cases keep every candidate
    seed: int = 0
    #: Above 1: every case keeps every candidate and is marked with its user's fold of this
    #: many (``fold_of``); the parts are then train and validation only (``stopping_part_of``).
    folds: int = 1


@dataclass(frozen=True)
class CandidateRows:
    """Candidate rows split by user into parts, and what making them found."""

    parts: dict[str, pa.Table]
    report: dict[str, Any] = field(default_factory=dict)


def _point(user_id: str, salt: bytes = b"") -> float:
    """A stable point in [0, 1) for a user id (a different one for each ``salt``)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def part_of(user_id: str) -> str:
    """The part a user's case belongs to, by a stable hash of the user id."""
    point = _point(user_id)
    if point < TEST_SHARE:
        return "test"
    if point < TEST_SHARE + VALIDATION_SHARE:
        return "validation"
    return "train"


def fold_of(user_id: str, folds: int) -> int:
    """The fold of ``folds`` a user belongs to, by the same hash as ``part_of`` (with five
    folds, fold 0 is the users ``part_of`` puts in test)."""
    return min(int(_point(user_id) * folds), folds - 1)


def stopping_part_of(user_id: str) -> str:
    """Cross-fitted, the part a user's case belongs to: ``validation`` (early stopping and
    calibration, for whichever model trains on the user's fold) for ``VALIDATION_SHARE`` of
    users, by a hash independent of the fold's; else ``train``."""
    return "validation" if _point(user_id, b"stopping") < VALIDATION_SHARE else "train"


def popularity_at(
    events: pa.Table, items: pa.Table, cutoff: datetime, config: PopularityConfig
) -> PopularityIndex:
    """The popularity snapshot serving would have held at ``cutoff``: events and items
    before it (cleaned events, whose ``event_ts`` is on the server's timeline)."""
    model = PopularityModel(config)
    created = items.column("created_at").to_pylist()
    model.apply_catalog(
        CatalogChange(
            _APP,
            row["item_id"],
            row["category"],
            row["status"] == "active" and (when is None or when <= cutoff),
            cutoff,
            when,
            row["creator_id"],
        )
        for row, when in zip(
            items.select(["item_id", "category", "status", "creator_id"]).to_pylist(),
            created,
            strict=True,
        )
    )
    before = events.filter(
        pc.less(events.column("event_ts"), pa.scalar(cutoff, events.column("event_ts").type))
    )
    model.update(
        EventRecord(0, _APP, row["item_id"], EventType(row["event_type"]), row["event_ts"])
        for row in before.select(["item_id", "event_type", "event_ts"]).to_pylist()
        if row["event_type"] in _EVENT_TYPES
    )
    index = PopularityIndex()
    index.publish(_APP, model.snapshot(cutoff))
    return index


def held_out_mask(events: pa.Table, held_out: frozenset[tuple[str, str]]) -> pa.Array:
    """Which events belong to a held-out (user, item) pair."""
    return pa.array(
        [
            (user, item) in held_out
            for user, item in zip(
                events.column("user_id").to_pylist(),
                events.column("item_id").to_pylist(),
                strict=True,
            )
        ],
        pa.bool_(),
    )


def satisfied_pairs(events: pa.Table, after: datetime, rules: LabelRules) -> set[tuple[str, str]]:
    """(user, item) pairs with a satisfying engagement (by ``rules``) after ``after``."""
    later = events.filter(
        pc.greater_equal(
            events.column("event_ts"), pa.scalar(after, events.column("event_ts").type)
        )
    )
    positive = set(rules.positive_events)
    out: set[tuple[str, str]] = set()
    for row in later.select(["user_id", "item_id", "event_type", "value"]).to_pylist():
        kind, value = row["event_type"], row["value"]
        if row["item_id"] is None:
            continue
        if kind in positive or (
            kind == "view" and value is not None and value >= rules.view_positive_min_ms
        ):
            out.add((row["user_id"], row["item_id"]))
    return out


def candidate_rows(
    surface_name: str,
    surface: SurfaceConfig,
    models: Mapping[str, RetrievalModel],
    popularity: PopularityIndex,
    cases: Sequence[EvalCase],
    satisfied: set[tuple[str, str]],
    config: CandidateRowsConfig | None = None,
) -> CandidateRows:
    """One row per candidate the surface's sources recall for each case, labelled.

    Args:
        surface_name: the surface whose sources and quotas recall.
        surface: its configuration.
        models: trained models fitted before the cases' cut-off, by their source name.
        popularity: the popularity snapshot as of the cut-off (``popularity_at``).
        cases: validation cases (``training.sources.make_validation``).
        satisfied: (user, item) pairs whose later engagement satisfied (``satisfied_pairs``).
        config: how many negatives to keep.
    """
    config = config or CandidateRowsConfig()
    index = ModelIndex()
    index.publish(_APP, ModelBundle(version="validation", models=dict(models)))
    inputs = SourceInputs(popularity, index)
    slots = [
        (build_source(s.name, s.params, inputs, f"surfaces.{surface_name}.sources[{i}]"), s.quota)
        for i, s in enumerate(surface.sources)
    ]
    names = [source.name for source, _ in slots]
    rng = np.random.default_rng(config.seed)
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    recalled_positive = 0
    relevant_total = 0
    sampled_out = 0
    for number, case in enumerate(cases):
        now = datetime.fromtimestamp(case.now_ts or 0.0, UTC)
        ctx = RequestContext(
            app_id=_APP,
            request_id=f"candidates-{number}",
            surface=surface_name,
            user_id=case.user_id,
            now=now,
            excluded_item_ids=case.exclude,
            history=case.history,
            user_attributes=dict(case.attributes) or None,
        )
        merged = merge_candidates([source.retrieve(ctx, quota) for source, quota in slots])
        merged = [c for c in merged if c.item_id not in case.exclude]
        if not merged:
            continue
        scores = source_score_features(merged, names)
        positive = np.array([c.item_id in case.relevant for c in merged])
        recalled_positive += int(positive.sum())
        relevant_total += len(case.relevant)
        crossed = config.folds > 1
        part = stopping_part_of(case.user_id) if crossed else part_of(case.user_id)
        keep = np.arange(len(merged))
        sampled = np.ones(len(merged), dtype=bool)
        weight = np.ones(len(merged), dtype=np.float64)
        negatives = np.flatnonzero(~positive)
        if part != "test" and len(negatives) > config.max_negatives:
            chosen = rng.choice(negatives, config.max_negatives, replace=False)
            sampled_out += len(negatives) - config.max_negatives
            # Each kept negative stands for those left out, so calibration on the sample
            # matches the click rate over every candidate, which is what serving scores.
            weight[chosen] = len(negatives) / config.max_negatives
            keep = np.sort(np.concatenate([np.flatnonzero(positive), chosen]))
            if crossed:
                # Every candidate is scored out of fold; the sample alone is trained on.
                sampled[:] = False
                sampled[keep] = True
                keep = np.arange(len(merged))
        fold = fold_of(case.user_id, config.folds) if crossed else None
        for row in keep.tolist():
            candidate = merged[row]
            values = scores.values[row]
            logged = {
                names[col]: round(float(values[col]), 4) for col in np.flatnonzero(values).tolist()
            }
            columns["request_id"].append(ctx.request_id)
            columns["user_id"].append(case.user_id)
            columns["item_id"].append(candidate.item_id)
            columns["surface"].append(surface_name)
            columns["served_at"].append(now)
            columns["session_id"].append(None)
            columns["device"].append(None)
            # Serving scores every candidate at one position; the merge order is kept apart.
            columns["position"].append(0)
            columns["merge_rank"].append(row)
            columns["propensity"].append(1.0)
            columns["source_scores"].append(json.dumps(logged))
            columns["label_click"].append(int(positive[row]))
            columns["label"].append(int((case.user_id, candidate.item_id) in satisfied))
            columns["relevant_count"].append(len(case.relevant))
            columns["part"].append(part)
            columns["sampled"].append(bool(sampled[row]))
            columns[SAMPLING_WEIGHT].append(float(weight[row]))
            columns["fold"].append(fold)
    table = pa.table(
        {name: pa.array(values, type=_COLUMNS[name]) for name, values in columns.items()}
    )
    if config.folds <= 1:
        table = table.drop_columns(["sampled", "fold"])
    kept = ("train", "validation") if config.folds > 1 else ("train", "validation", "test")
    parts = {
        name: table.filter(pc.equal(table.column("part"), name)).drop_columns(["part"])
        for name in kept
    }
    report = {
        "surface": surface_name,
        "cases": len(cases),
        "rows": {name: part.num_rows for name, part in parts.items()},
        "positives": {
            name: int(pc.sum(part.column("label_click")).as_py() or 0)
            for name, part in parts.items()
        },
        **(
            {
                "folds": config.folds,
                "sampled_rows": {
                    name: int(pc.sum(part.column("sampled")).as_py() or 0)
                    for name, part in parts.items()
                },
            }
            if config.folds > 1
            else {}
        ),
        # The share of what users did next that retrieval found: the ranker's ceiling.
        "candidate_recall": recalled_positive / relevant_total if relevant_total else 0.0,
        "negatives_sampled_out": sampled_out,
        "max_negatives": config.max_negatives,
    }
    return CandidateRows(parts, report)


_COLUMNS: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "user_id": pa.string(),
    "item_id": pa.string(),
    "surface": pa.string(),
    "served_at": pa.timestamp("us", tz="UTC"),
    "session_id": pa.string(),
    "device": pa.string(),
    "position": pa.int32(),
    "merge_rank": pa.int32(),
    "propensity": pa.float64(),
    "source_scores": pa.string(),
    "label_click": pa.int64(),
    "label": pa.int64(),
    "relevant_count": pa.int64(),
    "part": pa.string(),
    "sampled": pa.bool_(),
    SAMPLING_WEIGHT: pa.float64(),
    "fold": pa.int32(),
}

"""``recloop train``: snapshot → training data → fit and validate each source → training
set of labelled impressions → learned ranker and LinUCB's evidence → the suggestion model
→ a new model version, its promotion gates (``training.promotion``), and when every gate
passed, promoted so that running services load it without a restart.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import (
    PromotionSettings,
    RankerTrainSettings,
    Settings,
    SurfaceConfig,
    TrainSourceConfig,
)
from recloop.data.cleaning import clean_events
from recloop.data.interactions import retrieval_data
from recloop.data.snapshots import Snapshot, open_snapshot, take_snapshot
from recloop.data.splits import time_span
from recloop.data.training import (
    TrainingSet,
    TrainingSetConfig,
    build_training_set,
    item_impressions,
    point_in_time_features,
)
from recloop.errors import RecloopError, SnapshotExists
from recloop.evaluation.drift_reference import save_drift_reference
from recloop.experiments.assignment import variant_surfaces
from recloop.features.bandit_context import EVIDENCE_FILE
from recloop.features.definitions import FEATURE_NAMES
from recloop.ranking.learned import LEARNED, RANKER_DIR, LearnedRankerConfig, RankerModel
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.bundle import load_model
from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import MAX_HISTORY, RecallQuery, RetrievalModel
from recloop.retrieval.popularity import PopularityConfig
from recloop.store import Store
from recloop.training.candidates import (
    SAMPLING_WEIGHT,
    CandidateRowsConfig,
    candidate_rows,
    held_out_mask,
    part_of,
    popularity_at,
    satisfied_pairs,
)
from recloop.training.crossfit import FOLD, CrossFit, cross_fit
from recloop.training.gate import (
    PREVIOUS,
    GateResult,
    ListValues,
    alternatives,
    decide,
    examination_curve,
    list_values,
    out_of_fold_scores,
)
from recloop.training.linucb import LinUCBFit, fit_linucb
from recloop.training.promotion import (
    Gate,
    ServedMetrics,
    Verdict,
    deadlines,
    latency,
    list_tables,
    merged_lists,
    no_regression,
    quotas,
    ranker_no_regression,
    recorded_queries,
    score_sanity,
    serving_metrics,
    time_ranker,
    time_recall,
    validated,
)
from recloop.training.ranker import (
    DEFAULT_FEATURES,
    RankerFit,
    fit_ranker,
    ips_weights,
    with_source_scores,
)
from recloop.training.sources import (
    OBJECTIVE,
    SOURCE_CASES,
    Validation,
    even_sample,
    fit,
    make_validation,
    metrics_of,
    recall_lists,
    tune,
    tune_query,
)
from recloop.training.suggestions import SuggestionsFit, train_suggestions

log = logging.getLogger(__name__)

#: Called as work proceeds: (stage, units done since the last call, total units or None).
Progress = Callable[[str, int, int | None], None]


def _quiet(stage: str, advance: int, total: int | None) -> None:
    return None


class NotEnoughData(RecloopError):
    """Too few interactions to train on."""


@dataclass
class SourceResult:
    """What happened to one configured source."""

    name: str
    kind: str
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    tuned: bool = False
    skipped: str | None = None  # why the source was not trained
    latency_ms: list[float] = field(default_factory=list)  # recall of recorded requests


@dataclass
class TrainResult:
    """A finished training run."""

    version: str
    path: Path
    snapshot_version: str
    interactions: int
    users: int
    items: int
    validation_cases: int
    validation_split: str
    sources: list[SourceResult]
    merged: dict[str, float]  # validation of every trained source's lists interleaved
    promoted: bool
    ranker: RankerFit = field(default_factory=lambda: RankerFit(None, skipped="not trained"))
    linucb: LinUCBFit = field(default_factory=lambda: LinUCBFit(None, skipped="not fitted"))
    suggestions: SuggestionsFit = field(
        default_factory=lambda: SuggestionsFit(None, skipped="not built")
    )
    verdict: Verdict = field(default_factory=lambda: Verdict(()))  # the promotion gates


@dataclass
class RankerChecks:
    """What the promotion gates need of the ranker: its sanity, its time per list, and
    how it compares with the served version's ranker."""

    sanity: Gate
    latency_ms: list[float] = field(default_factory=list)
    regression: Gate = field(
        default_factory=lambda: ranker_no_regression("no learned ranker in this version", "", "", 0)
    )


_NO_RANKER = RankerChecks(score_sanity(None, [], {}, PromotionSettings()))


def _tuning_path(registry: ModelRegistry, app_id: str) -> Path:
    return registry.root / app_id / "tuning.json"


def _read_tuning(registry: ModelRegistry, app_id: str) -> dict[str, Any]:
    path = _tuning_path(registry, app_id)
    return dict(json.loads(path.read_text())) if path.exists() else {}


def train(
    settings: Settings,
    store: Store,
    *,
    app_id: str = "default",
    retune: bool = False,
    trials: int | None = None,
    promote: bool = True,
    now: datetime | None = None,
    progress: Progress = _quiet,
) -> TrainResult:
    """Train every configured retrieval source on a fresh snapshot and publish a version.

    Each source is validated on the latest ``train.validation_fraction`` of time, then refit
    on all the data for serving. Hyper-parameters come from the last tuning (recorded per
    app), overridden by the source's configured ``params``; ``retune`` searches them again
    with Optuna first and records the result.

    The version is promoted (with ``promote``) only when every promotion gate passed
    (``training.promotion``); the verdict is in its manifest either way.

    Raises:
        SnapshotRefused: the app has no events, or the store is not migrated.
        NotEnoughData: fewer than ``train.min_interactions`` engagements.
    """
    now = now or datetime.now(UTC)
    registry = ModelRegistry(settings.resolved_model_dir())
    progress("snapshot", 0, None)
    root = settings.data_dir / "snapshots"
    try:
        snapshot = take_snapshot(store, root, app_id=app_id, now=now)
    except SnapshotExists as exc:
        # The same data at the same second: train on the snapshot already written.
        snapshot = open_snapshot(root / exc.version)
    progress("snapshot", 1, 1)
    data, events = _training_data(snapshot, settings)
    x = data.interactions
    if len(x) < settings.train.min_interactions:
        raise NotEnoughData(
            f"{len(x)} engagements in app {app_id!r}; training needs at least "
            f"{settings.train.min_interactions} (train.min_interactions)"
        )
    ranker_cases = (
        settings.train.ranker.max_cases
        if settings.train.ranker.enabled and settings.train.ranker.from_interactions
        else 0
    )
    # The ranker learns from up to ranker.max_cases validation users; the sources' metrics
    # and tuning ask an even sample of SOURCE_CASES of them, which bounds their time.
    gates = settings.train.promotion
    validation = make_validation(
        data,
        settings.train.validation_split,
        settings.train.validation_fraction,
        max(SOURCE_CASES, ranker_cases),
        min_cases=gates.min_validation_users,
    )
    sample = even_sample(validation, SOURCE_CASES)
    queries = _latency_queries(snapshot, data, sample, gates.latency_requests)
    tuning = _read_tuning(registry, app_id)
    version = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    results: list[SourceResult] = []
    validation_lists: dict[str, list[list[str]]] = {}
    # Each source fitted before the validation cut-off: the ranker's candidate rows are
    # what these recall for the validation users, as a request at the cut-off would.
    validation_models: dict[str, RetrievalModel] = {}
    with registry.writing(app_id, version) as directory:
        for config in settings.train.sources:
            result = _train_source(
                validation_lists,
                validation_models,
                config,
                data,
                sample,
                tuning,
                retune,
                trials or settings.train.tune_trials,
                directory,
                progress,
                queries,
                quotas(settings).get(config.name, 100),
                settings.serving.blas_threads,
            )
            results.append(result)
        trained = [r for r in results if r.skipped is None]
        merged_case_lists = merged_lists(validation_lists)
        merged = metrics_of(merged_case_lists, sample.cases) if merged_case_lists else {}
        ranker, linucb, checks = _train_ranker(
            settings,
            snapshot,
            directory,
            version,
            progress,
            events=events,
            validation=validation,
            validation_models=validation_models,
            previous=_previous_ranker(registry, app_id),
            served_version=registry.current(app_id) or "",
        )
        validation_models.clear()
        if retune:
            _tuning_path(registry, app_id).write_text(json.dumps(tuning, indent=2))
        titles = {
            item_id: title
            for item_id, title in zip(data.items.item_ids, data.items.titles, strict=True)
            if title
        }
        (directory / "titles.json").write_text(json.dumps(titles))
        progress("suggestions", 0, 1)
        suggestions = train_suggestions(
            events,
            snapshot.table("items"),
            settings.suggestions,
            directory,
            now=now,
            version=version,
        )
        progress("suggestions", 1, 1)
        progress("promotion gates", 0, 1)
        verdict = Verdict(
            (
                validated({r.name: r.metrics for r in trained}, gates.min_validation_users),
                no_regression(
                    {r.name: r.metrics for r in trained},
                    merged,
                    _served_metrics(registry, app_id, sample),
                    gates.metric,
                    gates.max_regression,
                    cases=sample.cases,
                    new_lists=validation_lists,
                    new_merged_lists=merged_case_lists,
                ),
                checks.sanity,
                latency(
                    {r.name: r.latency_ms for r in trained},
                    deadlines(settings),
                    checks.latency_ms,
                    settings.serving.budget.rank_ms,
                    gates.latency_quantile,
                ),
                checks.regression,
            )
        )
        progress("promotion gates", 1, 1)
        registry.write_manifest(
            directory,
            VersionManifest(
                version=version,
                app_id=app_id,
                created_at=now,
                snapshot_version=snapshot.version,
                models=tuple(
                    ModelEntry(r.name, r.kind, r.params, r.metrics, r.fit_seconds) for r in trained
                ),
                notes=tuple(f"{r.name}: {r.skipped}" for r in results if r.skipped)
                + ((f"ranker: {ranker.skipped}",) if ranker.skipped else ())
                + ((f"linucb: {linucb.skipped}",) if linucb.skipped else ())
                + ((f"suggestions: {suggestions.skipped}",) if suggestions.skipped else ())
                + tuple(f"blocked by {g.name}: {g.detail}" for g in verdict.blocked_by),
                extra={
                    "data_as_of": snapshot.manifest.created_at.isoformat(),
                    "interactions": len(x),
                    "validation_cases": len(sample.cases),
                    "validation_cutoff_ts": validation.cutoff_ts,
                    # Where the bulk of what the models learned from ends: a later version
                    # validated after it can ask these models its users (no_regression).
                    "trained_through_ts": time_span(x.timestamps)[1],
                    "validation_split": validation.split,
                    "merged_validation": merged,
                    "ranker": ranker.report.get("summary", {}),
                    "linucb": linucb.report,
                    "suggestions": suggestions.report,
                    "promotion": verdict.as_dict(),
                },
            ),
        )
    for gate in verdict.blocked_by:
        log.warning("model version %s blocked by %s: %s", version, gate.name, gate.detail)
    if promote and verdict.passed:
        registry.promote(app_id, version)
    return TrainResult(
        version=version,
        path=registry.path(app_id, version),
        snapshot_version=snapshot.version,
        interactions=len(x),
        users=x.n_users,
        items=x.n_items,
        validation_cases=len(sample.cases),
        validation_split=validation.split,
        sources=results,
        merged=merged,
        promoted=promote and verdict.passed,
        ranker=ranker,
        linucb=linucb,
        suggestions=suggestions,
        verdict=verdict,
    )


def _latency_queries(
    snapshot: Snapshot, data: TrainingData, validation: Validation, n: int
) -> list[RecallQuery]:
    """What the latency gate replays: the latest ``n`` served requests, asked with each
    user's history as it is now; validation users' queries when nothing was served."""
    if n <= 0:
        return []
    served = snapshot.table("recommendation_log").select(["user_id", "served_at"])
    if served.num_rows:
        x = data.interactions
        ids = x.item_ids
        histories = {
            x.user_ids[u]: tuple(ids[i] for i in history)
            for u, history in enumerate(x.histories(max_len=MAX_HISTORY))
        }
        return recorded_queries(served, histories, n)
    return [case.query() for case in validation.cases[:n]]


def _served_metrics(
    registry: ModelRegistry, app_id: str, validation: Validation
) -> ServedMetrics | str:
    """The served version's models on the new validation users, when that is a fair
    comparison (``promotion.serving_metrics``): they may have learned from nothing after
    the earliest time a case is asked at."""
    if validation.split == "random":
        return "validation held out at random: the served version learned from those pairs"
    asked = [c.now_ts for c in validation.cases if c.now_ts is not None]
    if not asked:
        return "no validation users to ask"
    return serving_metrics(registry, app_id, validation.cases, min(asked))


def _train_ranker(
    settings: Settings,
    snapshot: Snapshot,
    directory: Path,
    version: str,
    progress: Progress,
    *,
    events: pa.Table,
    validation: Validation,
    validation_models: Mapping[str, RetrievalModel],
    previous: RankerModel | None,
    served_version: str = "",
) -> tuple[RankerFit, LinUCBFit, RankerChecks]:
    """The learned ranker and LinUCB's evidence, saved beside the sources.

    The ranker learns from two kinds of lists: served lists whose impressions are labelled
    (weighted by inverse propensity), and the candidates the surface's sources recall for
    users before the validation cut-off, labelled by what they did next. Either alone is
    enough; an imported history has only the second. The gate then decides what serves.

    While the test part would hold fewer than ``cross_fit_below_lists`` lists, the ranker is
    cross-fitted over ``cross_fit_folds`` folds of users (``training.crossfit``): the gate
    judges every user's candidate list, scored out of fold.
    """
    config = settings.train.ranker
    # The impressions' training set is the costly part: built for the ranker, or for a
    # surface that explores with LinUCB; the evidence is fitted whenever it exists.
    if not config.enabled and not _explores_with_linucb(settings):
        return (
            RankerFit(None, skipped="disabled (train.ranker.enabled)"),
            LinUCBFit(
                None,
                skipped="no training set (train.ranker.enabled is false, no surface uses it)",
            ),
            _NO_RANKER,
        )
    progress("training set", 0, None)
    impressions: Mapping[str, pa.Table] = {}
    no_impressions = ""
    built: TrainingSet | None = None
    try:
        built = build_training_set(
            snapshot,
            settings.data_dir / "datasets",
            TrainingSetConfig(cleaning=settings.train.cleaning, labels=settings.train.labels),
            on_progress=lambda n: progress("training set", n, None),
        )
        impressions = built.parts
    except ValueError as exc:
        no_impressions = f"no labelled impressions: {exc}"
    progress("training set", 1, 1)
    linucb = (
        _fit_linucb(built.parts, directory, progress)
        if built is not None
        else LinUCBFit(None, skipped=no_impressions)
    )
    if not config.enabled:
        return RankerFit(None, skipped="disabled (train.ranker.enabled)"), linucb, _NO_RANKER
    surface_name, surface = _ranked_surface(settings)
    report: dict[str, Any] = {"surface": surface_name}
    candidates: dict[str, pa.Table] = {}
    folds = 1
    if config.from_interactions and surface is not None and validation.cases:
        folds, report["cross_fit"] = _folds(config, impressions, validation)
        progress("candidates", 0, len(validation.cases))
        candidates, report["candidates"] = _candidate_rows(
            settings, snapshot, surface_name, surface, events, validation, validation_models, folds
        )
        progress("candidates", len(validation.cases), None)
    elif not validation.cases:
        report["candidates"] = {"skipped": "no validation users (too little history)"}
    lists: pa.Table | None = None
    if folds > 1 and any(p.num_rows for p in candidates.values()):
        # Every candidate of every user is scored out of fold; the sample is trained on.
        lists = _kept(pa.concat_tables(candidates.values()))
        candidates = {n: p.filter(p.column("sampled")) for n, p in candidates.items()}
    parts, report["ips"] = _combined_parts(impressions, candidates, config.ips_clip)
    if not any(part.num_rows for part in parts.values()):
        why = [no_impressions or "no labelled impressions"]
        why.append(
            "no candidate lists: "
            + str(report.get("candidates", {}).get("skipped", "train.ranker.from_interactions"))
        )
        return RankerFit(None, report, "; ".join(why)), linucb, _NO_RANKER
    ranking = any(p.num_rows for p in candidates.values())
    crossed: CrossFit | None = None
    if lists is not None:
        progress("ranker folds", 0, folds)
        with_lists, scored_by = with_source_scores({**parts, "lists": lists})
        lists = with_lists.pop("lists")
        parts = with_lists
        crossed = cross_fit(
            parts,
            lists,
            config,
            folds,
            version=version,
            features=(*DEFAULT_FEATURES, *scored_by),
            ranking=ranking,
            on_fold=lambda k: progress("ranker folds", 1, None),
        )
    else:
        parts, scored_by = with_source_scores(parts)
    progress("ranker", 0, len(config.heads))
    # Cross-fitted, the ranker that serves is fitted as each fold's was, on every fold's
    # users: early stopping and calibration keep the early-stopping share, so the rounds
    # and the calibrator are its own, each from users it did not fit (taking the folds'
    # median rounds would fit on that share too, but calibrate on other models' scores).
    fitted = fit_ranker(
        parts,
        config,
        version=version,
        features=(*DEFAULT_FEATURES, *scored_by),
        ranking=ranking,
        on_head=lambda name: progress("ranker", 1, None),
    )
    if crossed is not None:
        report["cross_fit"] = {**report["cross_fit"], **crossed.report}
        # The serving model has no held-out candidate lists; the folds' are out of fold.
        fitted.report["summary"] = {
            **crossed.report["summary"],
            **fitted.report.get("summary", {}),
        }
    fitted.report.update(report)
    if no_impressions:
        fitted.report["impressions"] = no_impressions
    if built is not None:
        fitted.report["training_set"] = str(built.path)
    # What the ranker_no_regression promotion gate compares, or why it cannot.
    compared: ListValues | str = "the ranker's gate is off (train.ranker.gate)"
    serve = LEARNED
    if previous is None:
        compared = (
            "the served version has no learned ranker"
            if served_version
            else ("nothing is served yet")
        )
    if fitted.model is not None and surface is not None:
        model = fitted.model
        if config.gate:
            gate, values = _judged(
                model, previous, surface, parts["test"], crossed, config.gate_measure
            )
            serve = gate.serve
            if previous is not None:
                compared = values
            fitted.report["gate"] = gate.as_dict()
            if gate.serve == PREVIOUS and previous is not None:
                model = previous
            else:
                model = replace(model, serve=gate.serve)
            fitted.model = model
        model.save(directory / RANKER_DIR, extra={"gate": fitted.report.get("gate")})
        weights = LearnedRankerConfig.model_validate(surface.ranker.params).weights
        try:
            save_drift_reference(directory, model, parts, weights)
        except Exception as exc:  # the reference only feeds monitoring: the version stands
            log.exception("no drift reference for version %s", version)
            fitted.report["drift_reference"] = f"not written: {type(exc).__name__}: {exc}"
    (directory / "ranker_report.json").write_text(json.dumps(fitted.report, indent=2, default=str))
    checks = _ranker_checks(settings, fitted, parts["test"], lists)
    if fitted.model is not None:
        checks.regression = ranker_no_regression(
            compared,
            serve,
            served_version,
            settings.train.promotion.max_ranker_regression,
            previous_serves=previous.serve if previous is not None else LEARNED,
        )
    return fitted, linucb, checks


def _ranker_checks(
    settings: Settings, fitted: RankerFit, test: pa.Table, lists: pa.Table | None
) -> RankerChecks:
    """The shipped ranker's score sanity and its time per list, on the test part's lists
    (the cross-fitted candidate lists when the test part has none); its comparison with
    the served ranker is the caller's."""
    gates = settings.train.promotion
    if fitted.model is None:
        return _NO_RANKER
    table = test if test.num_rows or lists is None else lists
    sample = list_tables(table, max(gates.latency_requests, 50))
    summary = fitted.report.get("summary", {})
    heads = fitted.report.get("heads", {})
    # Each head's ECE and the rows it was measured on: its test rows, or cross-fitted, the
    # lists scored out of fold.
    ece = {
        head: (
            float(summary[f"{head}_ece"]),
            int(heads.get(head, {}).get("test", {}).get("rows", table.num_rows)),
        )
        for head in fitted.model.heads
        if f"{head}_ece" in summary
    }
    sanity = score_sanity(fitted.model, sample, ece, gates)
    timed = time_ranker(
        fitted.model,
        sample[: gates.latency_requests],
        blas_threads=settings.serving.blas_threads,
    )
    return RankerChecks(sanity, timed)


def _ranked_surface(settings: Settings) -> tuple[str, SurfaceConfig | None]:
    """The surface the learned ranker is trained for: ``home``, else the first that uses it."""
    learned = {n: s for n, s in settings.surfaces.items() if s.ranker.name == "learned"}
    if "home" in learned:
        return "home", learned["home"]
    for name, surface in learned.items():
        return name, surface
    return "", None


def _candidate_rows(
    settings: Settings,
    snapshot: Snapshot,
    surface_name: str,
    surface: SurfaceConfig,
    events: pa.Table,
    validation: Validation,
    models: Mapping[str, RetrievalModel],
    folds: int = 1,
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """Candidate lists recalled at the validation cut-off, labelled and featurized (with
    every candidate kept and each row's fold, over ``folds`` above 1)."""
    config = settings.train.ranker
    cutoff = datetime.fromtimestamp(validation.cutoff_ts, UTC)
    items = snapshot.table("items")
    rules = settings.train.labels.rules_for(surface_name)
    if validation.held_out:
        # Each user has a cut-off of their own (or none, at random): features and labels
        # are told apart by the held-out pairs, not by one time.
        held = held_out_mask(events, validation.held_out)
        labelled = events.filter(held)
        events = events.filter(pc.invert(held))
        satisfied = satisfied_pairs(labelled, datetime.fromtimestamp(0, UTC), rules)
    else:
        satisfied = satisfied_pairs(events, cutoff, rules)
    popularity = popularity_at(
        events,
        items,
        cutoff,
        PopularityConfig(half_life_hours=settings.serving.trending_half_life_h),
    )
    rows = candidate_rows(
        surface_name,
        surface,
        models,
        popularity,
        validation.cases[: config.max_cases],
        satisfied,
        CandidateRowsConfig(max_negatives=config.max_negatives, folds=folds),
    )
    marked = [
        part.append_column("part", pa.array([name] * part.num_rows, pa.string()))
        for name, part in rows.parts.items()
    ]
    featured = point_in_time_features(pa.concat_tables(marked), events, items)
    parts = {
        name: featured.filter(pc.equal(featured.column("part"), name)).drop_columns(["part"])
        for name in rows.parts
    }
    return parts, rows.report


def _folds(
    config: RankerTrainSettings, impressions: Mapping[str, pa.Table], validation: Validation
) -> tuple[int, dict[str, Any]]:
    """How many folds to cross-fit the ranker over (1: none), and why.

    Cross-fitting pays while the test part is small: its candidate lists (the validation
    users ``part_of`` puts in test) and the latest slice's served lists with a click.
    """
    cases = validation.cases[: config.max_cases]
    test_lists = sum(part_of(case.user_id) == "test" for case in cases)
    served = impressions.get("test")
    if served is not None and served.num_rows:
        clicked = served.filter(pc.greater(served.column("label_click"), 0))
        test_lists += len(pc.unique(clicked.column("request_id")))
    if config.cross_fit_folds <= 1:
        return 1, {"folds": 1, "why": "train.ranker.cross_fit_folds is 1"}
    if test_lists >= config.cross_fit_below_lists:
        return 1, {
            "folds": 1,
            "why": f"the test part holds {test_lists} lists, at least "
            f"train.ranker.cross_fit_below_lists ({config.cross_fit_below_lists})",
        }
    return config.cross_fit_folds, {
        "why": f"the test part would hold {test_lists} lists, fewer than "
        f"train.ranker.cross_fit_below_lists ({config.cross_fit_below_lists})",
    }


def _kept(table: pa.Table) -> pa.Table:
    """A ranker row's columns (``_KEEP``) and its fold."""
    return table.select([c for c in table.column_names if c in _KEEP or c == FOLD])


def _combined_parts(
    impressions: Mapping[str, pa.Table], candidates: Mapping[str, pa.Table], clip: float
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """Each part's impressions (weighted by inverse propensity) and candidate rows together."""
    parts: dict[str, pa.Table] = {}
    report: dict[str, Any] = {}
    for name in ("train", "validation", "test"):
        tables = []
        if name in impressions and impressions[name].num_rows:
            weighted, report[name] = ips_weights(impressions[name], clip)
            tables.append(weighted.select([c for c in weighted.column_names if c in _KEEP]))
        if name in candidates and candidates[name].num_rows:
            table = candidates[name]
            table = table.append_column("weight", pa.array([1.0] * table.num_rows, pa.float64()))
            tables.append(_kept(table))
        parts[name] = (
            pa.concat_tables(tables, promote_options="permissive") if tables else _EMPTY_PART
        )
    # A part with no rows keeps the columns of the others, so every head reads its features.
    schema = next((p.schema for p in parts.values() if p.num_rows), None)
    if schema is not None:
        parts = {n: p if p.num_rows else schema.empty_table() for n, p in parts.items()}
    return parts, report


#: What a ranker training row keeps: its list, item, time, labels, weight and features.
_KEEP = frozenset(
    {
        "request_id",
        "user_id",
        "item_id",
        "surface",
        "served_at",
        "position",
        "propensity",
        "source_scores",
        "label",
        "label_click",
        "weight",
        SAMPLING_WEIGHT,
        "merge_rank",
        "relevant_count",
        *FEATURE_NAMES,
    }
)
_EMPTY_PART = pa.table(
    {
        "request_id": pa.array([], pa.string()),
        "item_id": pa.array([], pa.string()),
        "label": pa.array([], pa.int64()),
        "label_click": pa.array([], pa.int64()),
        "position": pa.array([], pa.int32()),
        **{name: pa.array([], pa.float64()) for name in FEATURE_NAMES},
    }
)


def _gate(
    model: RankerModel,
    previous: RankerModel | None,
    surface: SurfaceConfig,
    test: pa.Table,
    crossed: CrossFit | None = None,
) -> GateResult:
    """What serves: the learned ranker, or the ordering that beat it on the test part
    (``_judged``)."""
    return _judged(model, previous, surface, test, crossed)[0]


def _judged(
    model: RankerModel,
    previous: RankerModel | None,
    surface: SurfaceConfig,
    test: pa.Table,
    crossed: CrossFit | None = None,
    measure: str = "auto",
) -> tuple[GateResult, ListValues]:
    """What serves: the learned ranker, or the ordering that beat it on the test part; and
    every alternative's value on each test list (what the promotion gates compare).

    Cross-fitted, the candidate lists are every user's, the learned ranker's scores of each
    fold's lists those of the fold's model; a fold without a model leaves its lists out
    for every alternative. The other alternatives do not depend on the fold.
    """
    config = LearnedRankerConfig.model_validate(surface.ranker.params)
    sources = [slot.name for slot in surface.sources]
    has_candidates = "relevant_count" in test.column_names
    is_candidate = (
        pc.is_valid(test.column("relevant_count"))
        if has_candidates
        else pa.array([False] * test.num_rows)
    )
    logged = test.filter(pc.invert(is_candidate))
    candidates = test.filter(is_candidate) if has_candidates else None
    scores: dict[str, dict[str, np.ndarray]] = {}
    if crossed is not None:
        out_of_fold = out_of_fold_scores(
            crossed.models, crossed.fold, crossed.lists, sources, config
        )
        scored = ~np.isnan(out_of_fold)
        candidates = crossed.lists.filter(pa.array(scored))
        scores["interactions"] = {LEARNED: out_of_fold[scored]}
    values = list_values(
        alternatives(model, previous, sources, config),
        candidates=candidates,
        logged=logged,
        weights=config.weights,
        examination=examination_curve(model, logged),
        scores=scores,
    )
    return decide(values, measure), values


def _fit_linucb(parts: Mapping[str, pa.Table], directory: Path, progress: Progress) -> LinUCBFit:
    """LinUCB's evidence, saved in the version as ``linucb.json``."""
    progress("linucb", 0, 1)
    fitted = fit_linucb(parts)
    if fitted.evidence is not None:
        fitted.evidence.save(directory / EVIDENCE_FILE)
    progress("linucb", 1, 1)
    return fitted


def _explores_with_linucb(settings: Settings) -> bool:
    """Whether a surface, or an experiment's variant of one, explores with LinUCB."""
    surfaces = [
        *settings.surfaces.values(),
        *variant_surfaces(settings.surfaces, settings.experiments).values(),
    ]
    return any(surface.exploration.name == "linucb" for surface in surfaces)


def _training_data(snapshot: Snapshot, settings: Settings) -> tuple[TrainingData, pa.Table]:
    """Retrieval's training data, and the cleaned events it came from."""
    events, _ = clean_events(snapshot.table("events"), settings.train.cleaning)
    data = retrieval_data(
        events,
        snapshot.table("items"),
        snapshot.table("users"),
        item_impressions(snapshot.impressions()),
    )
    return data, events


def _previous_ranker(registry: ModelRegistry, app_id: str) -> RankerModel | None:
    """The ranker of the version that serves now, if it has one that loads."""
    current = registry.current(app_id)
    if current is None:
        return None
    path = registry.path(app_id, current) / RANKER_DIR
    if not (path / "ranker.json").exists():
        return None
    try:
        return RankerModel.load(path)
    except Exception:  # an unreadable ranker cannot serve: it is no alternative either
        log.warning("the serving ranker of %s does not load; the gate leaves it out", current)
        return None


def _train_source(
    validation_lists: dict[str, list[list[str]]],
    validation_models: dict[str, RetrievalModel],
    config: TrainSourceConfig,
    data: TrainingData,
    validation: Validation,
    tuning: dict[str, Any],
    retune: bool,
    trials: int,
    directory: Path,
    progress: Progress,
    queries: list[RecallQuery],
    quota: int,
    blas_threads: int,
) -> SourceResult:
    kind = config.kind or config.name
    params: dict[str, Any] = {**tuning.get(config.name, {}).get("params", {}), **config.params}
    result = SourceResult(config.name, kind, params)
    try:
        if retune and validation.cases:
            stage = f"tune {config.name}"
            progress(stage, 0, trials)
            tuned = tune(
                kind,
                validation,
                trials=trials,
                fixed=config.params,
                start=params,
                on_trial=lambda: progress(stage, 1, trials),
            )
            tuning[config.name] = {
                "params": tuned.params,
                OBJECTIVE: tuned.value,
                "trials": tuned.trials,
                "seconds": round(tuned.seconds, 1),
            }
            result.params = params = dict(tuned.params)
            result.tuned = True
        progress(f"validate {config.name}", 0, 1)
        if validation.cases:
            model, _ = fit(kind, params, validation.train)
            # Settings that shape answers but not the fit (how much history, how fast it
            # fades) are picked here on validation, once, for the version serving loads.
            model, chosen = tune_query(model, validation, config.params)
            if chosen:
                result.params = params = {**params, **chosen}
            rankings, latencies = recall_lists(model, validation.cases)
            result.metrics = metrics_of(rankings, validation.cases, latencies)
            validation_lists[config.name] = rankings
            validation_models[config.name] = model
        progress(f"validate {config.name}", 1, 1)
        progress(f"fit {config.name}", 0, 1)
        model, seconds = fit(kind, params, data)
        result.fit_seconds = round(seconds, 2)
        target = directory / config.name
        target.mkdir()
        model.save(target)
        if queries:
            # The model as the service will load it, asked what the service was asked (the
            # latency gate); a freshly fitted one may hold what loading drops or rebuilds.
            del model
            result.latency_ms = time_recall(
                load_model(kind, target), queries, quota, blas_threads=blas_threads
            )
        progress(f"fit {config.name}", 1, 1)
    except (ValueError, RuntimeError, ImportError) as exc:
        # A source that cannot train here (EASE on a huge catalogue, two-tower without
        # torch) is left out of this version; the others still ship.
        log.warning("source %s not trained: %s", config.name, exc)
        result.skipped = f"{type(exc).__name__}: {exc}"
    return result

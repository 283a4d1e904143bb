"""``recloop train``: snapshot → training data → fit and validate each source → training
set of labelled impressions → learned ranker and LinUCB's evidence → a new model version,
promoted so that running services load it without a restart.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from recloop.config import Settings, TrainSourceConfig
from recloop.data.cleaning import clean_events
from recloop.data.interactions import retrieval_data
from recloop.data.snapshots import Snapshot, open_snapshot, take_snapshot
from recloop.data.training import TrainingSetConfig, build_training_set
from recloop.errors import RecloopError, SnapshotExists
from recloop.evaluation.retrieval_metrics import round_robin_merge
from recloop.experiments.assignment import variant_surfaces
from recloop.features.bandit_context import EVIDENCE_FILE
from recloop.ranking.learned import RANKER_DIR
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.interactions import TrainingData
from recloop.store import Store
from recloop.training.linucb import LinUCBFit, fit_linucb
from recloop.training.ranker import (
    DEFAULT_FEATURES,
    RankerFit,
    fit_ranker,
    with_source_scores,
)
from recloop.training.sources import (
    KS,
    OBJECTIVE,
    Validation,
    fit,
    metrics_of,
    recall_lists,
    time_validation,
    tune,
)

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
    sources: list[SourceResult]
    merged: dict[str, float]  # validation of every trained source's lists interleaved
    promoted: bool
    ranker: RankerFit = field(default_factory=lambda: RankerFit(None, skipped="not trained"))
    linucb: LinUCBFit = field(default_factory=lambda: LinUCBFit(None, skipped="not fitted"))


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
    data = _training_data(snapshot, settings)
    x = data.interactions
    if len(x) < settings.train.min_interactions:
        raise NotEnoughData(
            f"{len(x)} engagements in app {app_id!r}; training needs at least "
            f"{settings.train.min_interactions} (train.min_interactions)"
        )
    validation = time_validation(data, settings.train.validation_fraction)
    tuning = _read_tuning(registry, app_id)
    version = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    results: list[SourceResult] = []
    validation_lists: dict[str, list[list[str]]] = {}
    with registry.writing(app_id, version) as directory:
        for config in settings.train.sources:
            result = _train_source(
                validation_lists,
                config,
                data,
                validation,
                tuning,
                retune,
                trials or settings.train.tune_trials,
                directory,
                progress,
            )
            results.append(result)
        trained = [r for r in results if r.skipped is None]
        merged = _merged_metrics(validation_lists, validation)
        ranker, linucb = _train_ranker(settings, snapshot, directory, version, progress)
        if retune:
            _tuning_path(registry, app_id).write_text(json.dumps(tuning, indent=2))
        titles = {
            item_id: title
            for item_id, title in zip(data.items.item_ids, data.items.titles, strict=True)
            if title
        }
        (directory / "titles.json").write_text(json.dumps(titles))
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
                + ((f"linucb: {linucb.skipped}",) if linucb.skipped else ()),
                extra={
                    "data_as_of": snapshot.manifest.created_at.isoformat(),
                    "interactions": len(x),
                    "validation_cases": len(validation.cases),
                    "validation_cutoff_ts": validation.cutoff_ts,
                    "merged_validation": merged,
                    "ranker": ranker.report.get("summary", {}),
                    "linucb": linucb.report,
                },
            ),
        )
    if promote and any(r.skipped is None for r in results):
        registry.promote(app_id, version)
    return TrainResult(
        version=version,
        path=registry.path(app_id, version),
        snapshot_version=snapshot.version,
        interactions=len(x),
        users=x.n_users,
        items=x.n_items,
        validation_cases=len(validation.cases),
        sources=results,
        merged=merged,
        promoted=promote and any(r.skipped is None for r in results),
        ranker=ranker,
        linucb=linucb,
    )


def _train_ranker(
    settings: Settings, snapshot: Snapshot, directory: Path, version: str, progress: Progress
) -> tuple[RankerFit, LinUCBFit]:
    """The learned ranker and LinUCB's evidence on the snapshot's labelled impressions,
    saved beside the sources."""
    config = settings.train.ranker
    disabled = RankerFit(None, skipped="disabled (train.ranker.enabled)")
    # The training set is the costly part: built for the ranker, or for a surface that
    # explores with LinUCB; the evidence is fitted whenever it exists (a few matrix sums).
    if not config.enabled and not _explores_with_linucb(settings):
        return disabled, LinUCBFit(
            None, skipped="no training set (train.ranker.enabled is false, no surface uses it)"
        )
    progress("training set", 0, None)
    try:
        built = build_training_set(
            snapshot,
            settings.data_dir / "datasets",
            TrainingSetConfig(cleaning=settings.train.cleaning, labels=settings.train.labels),
            on_progress=lambda n: progress("training set", n, None),
        )
    except ValueError as exc:
        # Nothing labelled yet (a new app, or lists too young): the sources still ship,
        # ranked by their scores, and LinUCB explores uniformly until the next training.
        skipped = f"no labelled impressions: {exc}"
        return RankerFit(None, skipped=skipped), LinUCBFit(None, skipped=skipped)
    progress("training set", 1, 1)
    linucb = _fit_linucb(built.parts, directory, progress)
    if not config.enabled:
        return disabled, linucb
    progress("ranker", 0, len(config.heads))
    parts, scored_by = with_source_scores(built.parts)
    fitted = fit_ranker(
        parts,
        config,
        version=version,
        features=(*DEFAULT_FEATURES, *scored_by),
        on_head=lambda name: progress("ranker", 1, None),
    )
    fitted.report["training_set"] = str(built.path)
    if fitted.model is not None:
        fitted.model.save(directory / RANKER_DIR)
    (directory / "ranker_report.json").write_text(json.dumps(fitted.report, indent=2, default=str))
    return fitted, linucb


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


def _training_data(snapshot: Snapshot, settings: Settings) -> TrainingData:
    events, _ = clean_events(snapshot.table("events"), settings.train.cleaning)
    return retrieval_data(
        events, snapshot.table("items"), snapshot.table("users"), snapshot.impressions()
    )


def _merged_metrics(lists: dict[str, list[list[str]]], validation: Validation) -> dict[str, float]:
    """Validation of the union the service would see: every source's list, interleaved."""
    if not lists or not validation.cases:
        return {}
    per_case = zip(*lists.values(), strict=True)
    merged = [round_robin_merge(case_lists, max(KS)) for case_lists in per_case]
    return metrics_of(merged, validation.cases)


def _train_source(
    validation_lists: dict[str, list[list[str]]],
    config: TrainSourceConfig,
    data: TrainingData,
    validation: Validation,
    tuning: dict[str, Any],
    retune: bool,
    trials: int,
    directory: Path,
    progress: Progress,
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
            rankings, latencies = recall_lists(model, validation.cases)
            result.metrics = metrics_of(rankings, validation.cases, latencies)
            validation_lists[config.name] = rankings
        progress(f"validate {config.name}", 1, 1)
        progress(f"fit {config.name}", 0, 1)
        model, seconds = fit(kind, params, data)
        result.fit_seconds = round(seconds, 2)
        target = directory / config.name
        target.mkdir()
        model.save(target)
        progress(f"fit {config.name}", 1, 1)
    except (ValueError, RuntimeError, ImportError) as exc:
        # A source that cannot train here (EASE on a huge catalogue, two-tower without
        # torch) is left out of this version; the others still ship.
        log.warning("source %s not trained: %s", config.name, exc)
        result.skipped = f"{type(exc).__name__}: {exc}"
    return result

"""Fits the learned ranker on a training set of labelled impressions.

Its features are the training-data features, the shown position, and the normalised
score each retrieval source gave the item when it was served (logged with the list).

Each head is a LightGBM model on the train part, its negatives downsampled, stopped early
on the validation part; the validation part then fits its calibrator, and the test part,
which neither saw, reports how good and how calibrated it is: AUC, log loss, a reliability
table before and after calibration, NDCG@10 within served lists against the logged order,
and each feature's share of the gain.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import RankerTrainSettings
from recloop.evaluation.calibration import (
    auc,
    expected_calibration_error,
    log_loss,
    reliability_table,
)
from recloop.features.candidates import source_score_feature
from recloop.features.definitions import CATEGORICAL, FEATURE_NAMES
from recloop.ranking.calibration import Calibrator, fit_calibrator
from recloop.ranking.category_codes import CategoryCodes
from recloop.ranking.learned import (
    POSITION_FEATURE,
    SCORE_SUM_FEATURE,
    Head,
    LearnedRankerConfig,
    Objective,
    RankerModel,
)
from recloop.training.candidates import SAMPLING_WEIGHT

#: The label column of each head.
LABELS: Mapping[str, str] = {"click": "label_click", "satisfaction": "label"}
#: Default features: the training-data features and the shown position.
DEFAULT_FEATURES: tuple[str, ...] = (*FEATURE_NAMES, POSITION_FEATURE)
NDCG_K = 10
#: The share of training rows a source must have scored to become a ranker feature.
SOURCE_MIN_SHARE = 0.01
#: The optional column of per-row training weights.
WEIGHT = "weight"


@dataclass
class RankerFit:
    """The fitted ranker (None when it could not be trained) and its report."""

    model: RankerModel | None
    report: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


def _matrix(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, len(features)))
    return np.column_stack(
        [
            np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64)
            for name in features
        ]
    )


def _labels(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)


def _weights(table: pa.Table) -> np.ndarray | None:
    """Per-row training weights (inverse propensity), or None when every row weighs 1."""
    if WEIGHT not in table.column_names:
        return None
    return _labels(table, WEIGHT)


def _sampling_weights(table: pa.Table) -> np.ndarray | None:
    """How many rows each row stands for (``SAMPLING_WEIGHT``; NaN where the column was
    absent from the row's source), or None when no row was sampled."""
    if SAMPLING_WEIGHT not in table.column_names:
        return None
    return _labels(table, SAMPLING_WEIGHT)


def ips_weights(table: pa.Table, clip: float) -> tuple[pa.Table, dict[str, float]]:
    """Logged impressions weighted by the inverse of the probability that the serving policy
    showed each item where it did, clipped at ``clip``: an item the policy rarely showed
    (an exploration slot) stands for the many times it was not shown.

    Returns the table with a ``weight`` column, and what clipping cost: the share of rows
    clipped and the share of the unclipped total weight that clipping removed.
    """
    propensity = np.nan_to_num(_labels(table, "propensity"), nan=1.0)
    raw = 1.0 / np.clip(propensity, 1e-9, 1.0)
    weights = np.minimum(raw, clip)
    total = float(raw.sum())
    report = {
        "rows": float(len(raw)),
        "clip": clip,
        "clipped_rows_share": float(np.mean(raw > clip)) if len(raw) else 0.0,
        "clipped_weight_share": float((raw - weights).sum() / total) if total else 0.0,
        "mean_weight": float(weights.mean()) if len(raw) else 0.0,
    }
    return table.append_column(WEIGHT, pa.array(weights, pa.float64())), report


def labelled(table: pa.Table, label: str) -> pa.Table:
    """The rows whose ``label`` is known (satisfaction is unknown after a short click)."""
    column = table.column(label)
    return table.filter(pc.is_valid(column)) if column.null_count else table


def _groups(request_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order that makes each request's rows contiguous, and the group sizes."""
    order = np.argsort(request_ids, kind="stable")
    _, sizes = np.unique(request_ids[order], return_counts=True)
    return order, sizes


def _downsample(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Row indices to keep: every positive, each negative with probability ``rate``."""
    keep = (labels > 0.5) | (rng.random(len(labels)) < rate)
    return np.flatnonzero(keep)


def _params(settings: RankerTrainSettings, objective: str, seed: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "objective": objective,
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        # ``item_category`` and ``item_creator`` are hashed codes with hundreds of values,
        # most with few rows: LightGBM's defaults let a split pick out a handful of them
        # and fit noise. Stronger smoothing and bigger groups keep the common ones.
        "cat_smooth": settings.cat_smooth,
        "cat_l2": settings.cat_smooth,
        "min_data_per_group": settings.min_data_per_group,
        "num_threads": settings.threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    metric = settings.stopping_metric
    if metric == "auto":
        metric = "ndcg" if objective == "lambdarank" else "auc"
    # NDCG within lists is what serving needs, but on served lists of 10-20 items with a
    # click or two it is noisy enough to stop a binary head after its first tree; AUC over
    # all rows is steadier there. Candidate lists (hundreds per user, some users far more
    # active than others) are the opposite case: AUC rewards telling users apart.
    params["metric"] = metric
    if metric == "ndcg":
        params["eval_at"] = [NDCG_K]
    return params


def _fit_head(
    name: str,
    parts: Mapping[str, pa.Table],
    features: Sequence[str],
    settings: RankerTrainSettings,
    seed: int,
) -> tuple[Head, dict[str, Any]]:
    label = LABELS[name]
    train, valid = labelled(parts["train"], label), labelled(parts["validation"], label)
    x, y = _matrix(train, features), _labels(train, label)
    w = _weights(train)
    rng = np.random.default_rng(seed)
    categorical = [i for i, f in enumerate(features) if f in CATEGORICAL]
    # LightGBM's names may not hold the colons of ``source_score:*``.
    names = [f.replace(":", "__") for f in features]
    started = time.perf_counter()
    keep = _downsample(y, settings.negative_rate, rng)
    xv, yv = _matrix(valid, features), _labels(valid, label)
    # Rows grouped by served list: lambdarank learns within them, and both objectives are
    # evaluated within them (LightGBM's NDCG needs the groups on every dataset).
    rid = np.asarray(train.column("request_id").to_pylist(), dtype=object)[keep]
    order, sizes = _groups(rid)
    rows = keep[order]
    codes = CategoryCodes.fit(x[rows], categorical)
    train_set = lgb.Dataset(
        codes.apply(x[rows]),
        y[rows],
        weight=None if w is None else w[rows],
        group=sizes,
        categorical_feature=categorical,
        feature_name=names,
        free_raw_data=True,
    )
    vorder, vsizes = _groups(np.asarray(valid.column("request_id").to_pylist(), dtype=object))
    wv = _weights(valid)
    valid_set = lgb.Dataset(
        codes.apply(xv[vorder]),
        yv[vorder],
        weight=None if wv is None else wv[vorder],
        group=vsizes,
        reference=train_set,
        categorical_feature=categorical,
    )
    callbacks: list[Callable[..., Any]] = []
    has_valid = len(yv) > 0 and 0 < yv.sum() < len(yv)
    if has_valid:
        callbacks.append(lgb.early_stopping(settings.early_stopping_rounds, verbose=False))
    booster = lgb.train(
        _params(settings, settings.objective, seed),
        train_set,
        num_boost_round=settings.max_rounds,
        valid_sets=[valid_set] if has_valid else None,
        callbacks=callbacks,
    )
    if has_valid and booster.best_iteration > 0:
        booster = booster.model_from_string(
            booster.model_to_string(num_iteration=booster.best_iteration)
        )
    fit_seconds = time.perf_counter() - started
    identity = Calibrator("none")
    objective: Objective = "lambdarank" if settings.objective == "lambdarank" else "binary"
    uncalibrated = Head(name, booster, objective, settings.negative_rate, identity, codes)
    # Calibrated on the validation rows, each sampled negative counting for those left out
    # of its list: unweighted, the map would promise the click rate of the sample.
    sampling = _sampling_weights(valid)
    calibrator = (
        fit_calibrator(uncalibrated.uncalibrated(xv), yv, settings.calibration, weights=sampling)
        if has_valid
        else identity
    )
    head = Head(name, booster, objective, settings.negative_rate, calibrator, codes)
    gains = booster.feature_importance(importance_type="gain")
    total_gain = float(gains.sum()) or 1.0
    report: dict[str, Any] = {
        "label": label,
        "objective": settings.objective,
        "weighted": w is not None,
        "train_rows": len(keep),
        "train_positives": int(y.sum()),
        "negative_rate": settings.negative_rate,
        "rounds": int(booster.current_iteration()),
        "fit_seconds": round(fit_seconds, 2),
        "calibration": settings.calibration if has_valid else "none",
        "calibration_weighted": bool(
            sampling is not None and np.nanmax(sampling, initial=1.0) > 1.0
        ),
        "importance": {
            f: round(float(g) / total_gain, 4)
            for f, g in sorted(zip(features, gains, strict=True), key=lambda fg: -fg[1])
        },
    }
    return head, report


def _same_labels(parts: Mapping[str, pa.Table], head: str, other: str) -> bool:
    """Whether two heads' label columns agree on every row of the train and validation
    parts (nulls included), so that fitting both would fit the same model twice."""
    for part in ("train", "validation"):
        table = parts[part]
        a, b = table.column(LABELS[head]), table.column(LABELS[other])
        if not a.equals(b):
            return False
    return True


def _evaluate_head(head: Head, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    raw = head.uncalibrated(x)
    calibrated = head.calibrator.apply(raw)
    before = reliability_table(raw, y)
    after = reliability_table(calibrated, y)
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "auc": auc(calibrated, y),
        "log_loss": log_loss(calibrated, y),
        "log_loss_uncalibrated": log_loss(raw, y),
        "ece": expected_calibration_error(after),
        "ece_uncalibrated": expected_calibration_error(before),
        "reliability": [b.__dict__ for b in after],
    }


def _ndcg(gains: np.ndarray, k: int) -> float:
    top = gains[:k]
    dcg = float(np.sum(top / np.log2(np.arange(2, len(top) + 2))))
    ideal_gains = np.sort(gains)[::-1][:k]
    ideal = float(np.sum(ideal_gains / np.log2(np.arange(2, len(ideal_gains) + 2))))
    return dcg / ideal if ideal > 0 else 0.0


def in_list_ndcg(
    table: pa.Table, scores: np.ndarray, label: str, k: int = NDCG_K
) -> dict[str, float]:
    """NDCG@k within each served list that had a positive: the ranker's order against the
    order it was served in. Both see the same items, so this measures ordering alone."""
    requests = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    # Without a shown position (candidates that were never served), the given order stands in.
    positions = (
        _labels(table, "position")
        if "position" in table.column_names
        else np.arange(table.num_rows, dtype=np.float64)
    )
    labels = np.nan_to_num(_labels(table, label))
    order, sizes = _groups(requests)
    ranker, logged = [], []
    start = 0
    for size in sizes:
        rows = order[start : start + size]
        start += size
        y = labels[rows]
        if y.sum() == 0:
            continue
        ranker.append(_ndcg(y[np.argsort(-scores[rows], kind="stable")], k))
        logged.append(_ndcg(y[np.argsort(positions[rows], kind="stable")], k))
    return {
        "lists": len(ranker),
        "ranker": float(np.mean(ranker)) if ranker else float("nan"),
        "logged": float(np.mean(logged)) if logged else float("nan"),
    }


def with_source_scores(
    parts: Mapping[str, pa.Table], min_share: float = SOURCE_MIN_SHARE
) -> tuple[dict[str, pa.Table], list[str]]:
    """Each served item's logged source scores as feature columns ``source_score:<name>``.

    A source becomes a feature when it scored at least ``min_share`` of the training rows;
    rows it did not score (or logged before scores were) hold 0, as at serving. With any
    source, their sum (``SCORE_SUM_FEATURE``, the unweighted blend) is a feature too.
    """
    parsed = {
        name: [json.loads(raw) if raw else {} for raw in part.column("source_scores").to_pylist()]
        if "source_scores" in part.column_names
        else [{} for _ in range(part.num_rows)]
        for name, part in parts.items()
    }
    train = parsed.get("train", [])
    counts: dict[str, int] = {}
    for row in train:
        for source in row:
            counts[source] = counts.get(source, 0) + 1
    sources = sorted(s for s, n in counts.items() if n >= min_share * max(1, len(train)))
    out: dict[str, pa.Table] = {}
    for name, part in parts.items():
        table = part
        total = np.zeros(part.num_rows, dtype=np.float64)
        for source in sources:
            values = np.array([float(row.get(source, 0.0)) for row in parsed[name]], np.float64)
            total += values
            table = table.append_column(source_score_feature(source), pa.array(values))
        # What ``RankerModel.design`` derives at serving from the same columns.
        out[name] = table.append_column(SCORE_SUM_FEATURE, pa.array(total))
    features = [source_score_feature(s) for s in sources]
    return out, [*features, SCORE_SUM_FEATURE] if features else []


def fit_ranker(
    parts: Mapping[str, pa.Table],
    settings: RankerTrainSettings,
    *,
    version: str,
    features: Sequence[str] = DEFAULT_FEATURES,
    seed: int = 0,
    ranking: bool = False,
    on_head: Callable[[str], None] = lambda name: None,
) -> RankerFit:
    """Fit every configured head on ``parts`` (train, validation, test) and report on test.

    A head with fewer than ``min_positives`` positive training rows is left out; with no
    head left there is no ranker, and ``skipped`` says why. An ``auto`` objective is
    ``ranking`` (lambdarank within each list) when ``ranking`` is true, else binary.
    """
    if settings.objective == "auto":
        settings = settings.model_copy(update={"objective": "lambdarank" if ranking else "binary"})
    train = parts["train"]
    missing = [f for f in features if f not in train.column_names]
    if missing:
        raise ValueError(f"training set lacks features {missing}")
    heads: dict[str, Head] = {}
    report: dict[str, Any] = {
        "objective": settings.objective,
        "features": list(features),
        "rows": {name: part.num_rows for name, part in parts.items()},
        "heads": {},
    }
    notes = []
    for head_name in settings.heads:
        name = str(head_name)
        positives = int(pc.sum(train.column(LABELS[name])).as_py() or 0)
        if positives < settings.min_positives:
            notes.append(
                f"{name}: {positives} positive training rows, fewer than "
                f"train.ranker.min_positives ({settings.min_positives})"
            )
            continue
        twin = next((other for other in heads if _same_labels(parts, other, name)), None)
        if twin is not None:
            # An imported history labels a click and a satisfying click alike: the same
            # fit would come out twice, so the head is shared under both names.
            heads[name] = replace(heads[twin], name=name)
            report["heads"][name] = {**report["heads"][twin], "same_labels_as": twin}
        else:
            head, head_report = _fit_head(name, parts, features, settings, seed)
            heads[name] = head
            report["heads"][name] = head_report
        on_head(name)
    if notes:
        report["notes"] = notes
    if not heads:
        return RankerFit(None, report, "; ".join(notes) or "no heads configured")
    model = RankerModel(version=version, features=tuple(features), heads=heads)
    test = parts["test"]
    if test.num_rows:
        x = _matrix(test, features)
        weights = LearnedRankerConfig().weights
        for name, head in heads.items():
            known = labelled(test, LABELS[name])
            report["heads"][name]["test"] = _evaluate_head(
                head, _matrix(known, features), _labels(known, LABELS[name])
            )
        # The serving score puts every row at the same position, as serving does.
        served = model.at_serving_position(x)
        combined_served = np.zeros(test.num_rows)
        for name, head in heads.items():
            combined_served += weights.get(name, 0.0) * head.predict(served)
        report["test_in_list_ndcg"] = {
            label: in_list_ndcg(test, combined_served, column) for label, column in LABELS.items()
        }
    report["summary"] = _summary(report)
    return RankerFit(model, report)


def _summary(report: Mapping[str, Any]) -> dict[str, float]:
    """A few flat numbers for the manifest and the CLI table."""
    out: dict[str, float] = {}
    for name, head in report.get("heads", {}).items():
        test = head.get("test")
        if test:
            out[f"{name}_auc"] = test["auc"]
            out[f"{name}_ece"] = test["ece"]
    for label, ndcg in report.get("test_in_list_ndcg", {}).items():
        if not math.isnan(ndcg["ranker"]):
            out[f"{label}_ndcg@10"] = ndcg["ranker"]
            out[f"{label}_ndcg@10_logged"] = ndcg["logged"]
    return out

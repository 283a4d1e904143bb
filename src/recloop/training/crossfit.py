"""Cross-fitting the learned ranker over user folds.

Split once into train, validation and test users, an imported history's ranker learns from
two thirds of its users and the gate judges on a fifth of their lists: on a thousand users,
too few to tell a learned order from a single source's. Cross-fitted, every user belongs
to one of ``folds`` folds (``candidates.fold_of``, a stable hash of the user id), and each
fold's candidate lists are scored by a ranker fitted on the other folds' users alone, so
the gate judges every user's list, each scored by a model that never saw its user.

Each fold model stops early and calibrates on the early-stopping share of its training
users (``candidates.stopping_part_of``), as the model without cross-fitting does on the
validation part; served impressions (split by time, not by user) train and stop every fold
model alike. The model that is saved and served is fitted the same way on every fold's
users (see ``job._train_ranker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import RankerTrainSettings
from recloop.ranking.learned import RankerModel
from recloop.training.ranker import fit_ranker

#: The column of a candidate row's fold (null in served impressions, which every fold keeps).
FOLD = "fold"


@dataclass
class CrossFit:
    """The fold models (None where a fold's model could not be trained), every list row
    with its fold, and what each fold's model did on its own fold."""

    models: list[RankerModel | None]
    lists: pa.Table
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def fold(self) -> np.ndarray:
        """Each list row's fold."""
        return np.asarray(self.lists.column(FOLD).to_numpy(zero_copy_only=False), dtype=int)


def fold_parts(parts: Mapping[str, pa.Table], lists: pa.Table, fold: int) -> dict[str, pa.Table]:
    """The parts fold ``fold``'s model learns from and is tested on: the train and
    validation rows of every other fold's users (and every impression), and the fold's own
    lists as the test part."""
    out: dict[str, pa.Table] = {}
    for name in ("train", "validation"):
        part = parts[name]
        if FOLD in part.column_names:
            other = pc.fill_null(pc.not_equal(part.column(FOLD), fold), True)
            part = part.filter(other)
        out[name] = part
    out["test"] = lists.filter(pc.equal(lists.column(FOLD), fold))
    return out


def cross_fit(
    parts: Mapping[str, pa.Table],
    lists: pa.Table,
    settings: RankerTrainSettings,
    folds: int,
    *,
    version: str,
    features: Sequence[str],
    seed: int = 0,
    ranking: bool = False,
    on_fold: Callable[[int], None] = lambda fold: None,
) -> CrossFit:
    """Fit one ranker per fold on the other folds' users and test it on the fold's lists.

    Args:
        parts: the train and validation parts of every user (candidate rows with a ``fold``
            column, impressions without one).
        lists: every candidate row of every user, with its ``fold``.
        settings: as for ``fit_ranker``.
        folds: how many folds.
    """
    models: list[RankerModel | None] = []
    per_fold: list[dict[str, Any]] = []
    started = time.perf_counter()
    for k in range(folds):
        own = fold_parts(parts, lists, k)
        fitted = fit_ranker(
            own,
            settings,
            version=f"{version}-fold{k}",
            features=features,
            seed=seed,
            ranking=ranking,
        )
        models.append(fitted.model)
        per_fold.append(_fold_report(k, own, fitted.report, fitted.skipped))
        on_fold(k)
    report: dict[str, Any] = {
        "folds": folds,
        "seconds": round(time.perf_counter() - started, 2),
        "per_fold": per_fold,
        "summary": _mean_summary([f.get("summary", {}) for f in per_fold]),
    }
    return CrossFit(models, lists, report)


def _fold_report(
    fold: int, parts: Mapping[str, pa.Table], report: Mapping[str, Any], skipped: str | None
) -> dict[str, Any]:
    """A fold's figures: its users, rows, each head's rounds and test figures."""
    test = parts["test"]
    out: dict[str, Any] = {
        "fold": fold,
        "test_users": len(pc.unique(test.column("user_id"))) if test.num_rows else 0,
        "rows": {name: part.num_rows for name, part in parts.items()},
        "heads": {
            name: {
                "rounds": head.get("rounds"),
                "train_positives": head.get("train_positives"),
                **{
                    key: head["test"][key]
                    for key in ("auc", "log_loss", "ece")
                    if key in head.get("test", {})
                },
            }
            for name, head in report.get("heads", {}).items()
        },
        "summary": report.get("summary", {}),
    }
    if skipped:
        out["skipped"] = skipped
    return out


def _mean_summary(summaries: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each figure's mean over the folds that have it."""
    keys = sorted({k for s in summaries for k in s})
    return {k: float(np.mean([s[k] for s in summaries if k in s])) for k in keys}

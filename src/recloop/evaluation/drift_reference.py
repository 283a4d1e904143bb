"""The drift reference a model version carries: its ranker's training distributions.

``recloop train`` calls ``save_drift_reference`` once the ranker is fitted; the service
loads the file with the version and compares its sampled ranked requests against it
(``monitoring.drift``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.features.definitions import CATEGORICAL
from recloop.monitoring.drift import DRIFT_REFERENCE, SCORE, DriftReference, fit_binning
from recloop.ranking.learned import LEARNED, POSITION_FEATURE, LearnedRankerConfig, RankerModel

#: The most rows a reference is fitted on (a uniform sample beyond: quantiles need no more).
MAX_ROWS = 200_000
#: Features that move with the clock by construction: the serving hour and weekday cover
#: a few hours of one day where training covered weeks, and ages only grow. Their shift
#: between training and serving says nothing of the world, so they are not compared.
CLOCK_FEATURES = frozenset(
    {"context_hour", "context_day_of_week", "user_days_since_first_seen", "item_age_hours"}
)
#: Training's columns of a candidate row (every candidate the surface's sources recalled
#: for a user, as at serving, sampled): its rank in the merged list, and how many rows a
#: sampled row stands for. Served impressions have neither.
MERGE_RANK = "merge_rank"
SAMPLING_WEIGHT = "sampling_weight"
#: Features of a user or session with one candidate: they vary within a request.
CROSS_FEATURES = frozenset(
    {
        "user_category_affinity",
        "user_creator_affinity",
        "session_same_category_share",
        "session_has_item",
    }
)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _sample(table: pa.Table, seed: int = 0) -> pa.Table:
    if table.num_rows <= MAX_ROWS:
        return table
    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, MAX_ROWS, replace=False))
    return table.take(pa.array(rows))


def _per_request(name: str) -> bool:
    """Whether a feature describes the request (its user, context or session) alone, the
    same for every candidate of it."""
    return name.startswith(("user_", "context_", "session_")) and name not in CROSS_FEATURES


@dataclass(frozen=True)
class _Rows:
    """Training rows split as serving's sample is made (``serving_like``)."""

    table: pa.Table
    candidates: np.ndarray | None  # which rows are candidate rows; None: one kind only
    weights: np.ndarray  # how many rows each candidate row stands for

    @classmethod
    def of(cls, table: pa.Table) -> _Rows:
        if MERGE_RANK not in table.column_names or not table.num_rows:
            return cls(table, None, np.ones(table.num_rows))
        candidates = np.asarray(pc.is_valid(table.column(MERGE_RANK)).to_numpy(False), bool)
        if candidates.all() or not candidates.any():
            return cls(table, None, np.ones(table.num_rows))
        weights = (
            np.nan_to_num(_column(table, SAMPLING_WEIGHT), nan=1.0)
            if SAMPLING_WEIGHT in table.column_names
            else np.ones(table.num_rows)
        )
        return cls(table, candidates, weights)

    def serving_like(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The values of ``name`` that look like what serving samples, and how many rows
        each stands for.

        Serving samples the candidates of live requests. Training has two kinds of rows:
        served impressions, whose requests are live ones (their users, devices, sessions)
        but whose items are the few a ranker put on top; and candidate rows, every
        candidate the sources recalled (sampled, weighted back here), but for the users
        training validates on, at its cut-off, with no live request's context. A feature
        of the request is taken from the impressions, any other from the candidate rows;
        with one kind only, from every row.
        """
        values = _column(self.table, name)
        if self.candidates is None:
            return values, None
        if _per_request(name):
            return values[~self.candidates], None
        return values[self.candidates], self.weights[self.candidates]


def drift_reference(
    model: RankerModel,
    train: pa.Table,
    test: pa.Table,
    weights: Mapping[str, float] | None = None,
) -> DriftReference:
    """The reference of ``model``: each of its features binned on the ``train`` rows, and
    its serving score (the heads' calibrated probabilities at the serving position, summed
    by ``weights``, the surface's) binned on the ``test`` rows (the train rows when there
    are none); of each, the rows like serving's (``serving_like``). The shown position and
    the clock features (``CLOCK_FEATURES``) are left out. A ranker that serves the sources'
    blend or one source's order has no score reference: its heads do not rank."""
    rows = _Rows.of(_sample(train))
    features = []
    for name in model.features:
        if name == POSITION_FEATURE or name in CLOCK_FEATURES:
            continue
        if name in rows.table.column_names:
            values, weights_of = rows.serving_like(name)
            features.append(
                fit_binning(name, values, weights=weights_of, categorical=name in CATEGORICAL)
            )
    score = None
    # Serving scores every candidate: the score of candidate rows.
    scored = _Rows.of(_sample(test if test.num_rows else train))
    if model.serve == LEARNED and scored.table.num_rows:
        table = scored.table
        x = np.zeros((table.num_rows, len(model.features)), dtype=np.float64)
        for col, name in enumerate(model.features):
            if name in table.column_names:
                x[:, col] = _column(table, name)
        x = model.at_serving_position(x)
        weights = weights if weights is not None else LearnedRankerConfig().weights
        combined = np.zeros(table.num_rows, dtype=np.float64)
        for name, head in model.heads.items():
            combined += weights.get(name, 0.0) * head.predict(x)
        if scored.candidates is not None:
            combined_w: np.ndarray | None = scored.weights[scored.candidates]
            combined = combined[scored.candidates]
        else:
            combined_w = None
        score = fit_binning(SCORE, combined, weights=combined_w)
    return DriftReference(model.version, tuple(features), score, rows.table.num_rows)


def save_drift_reference(
    directory: Path,
    model: RankerModel,
    parts: Mapping[str, pa.Table],
    weights: Mapping[str, float] | None = None,
) -> None:
    """Write ``model``'s drift reference (``drift_reference``) from the training ``parts``
    (``train`` and ``test``) into the model version being written at ``directory``."""
    empty = pa.table({})
    reference = drift_reference(model, parts.get("train", empty), parts.get("test", empty), weights)
    reference.save(directory / DRIFT_REFERENCE)

"""The drift reference a model version carries: its ranker's training distributions.

``recloop train`` calls ``save_drift_reference`` once the ranker is fitted; the service
loads the file with the version and compares its sampled ranked requests against it
(``monitoring.drift``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from recloop.features.definitions import CATEGORICAL
from recloop.monitoring.drift import DRIFT_REFERENCE, SCORE, DriftReference, fit_binning
from recloop.ranking.learned import LEARNED, POSITION_FEATURE, LearnedRankerConfig, RankerModel

#: The most rows a reference is fitted on (a uniform sample beyond: quantiles need no more).
MAX_ROWS = 200_000


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _sample(table: pa.Table, seed: int = 0) -> pa.Table:
    if table.num_rows <= MAX_ROWS:
        return table
    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, MAX_ROWS, replace=False))
    return table.take(pa.array(rows))


def drift_reference(
    model: RankerModel,
    train: pa.Table,
    test: pa.Table,
    weights: Mapping[str, float] | None = None,
) -> DriftReference:
    """The reference of ``model``: each of its features binned on the ``train`` rows, and
    its serving score (the heads' calibrated probabilities at the serving position, summed
    by ``weights``, the surface's) binned on the ``test`` rows (the train rows when there
    are none). The shown position is left out: serving fixes it. A ranker that serves the
    sources' blend or one source's order has no score reference: its heads do not rank."""
    train = _sample(train)
    features = tuple(
        fit_binning(name, _column(train, name), categorical=name in CATEGORICAL)
        for name in model.features
        if name != POSITION_FEATURE and name in train.column_names
    )
    score = None
    scored = _sample(test if test.num_rows else train)
    if model.serve == LEARNED and scored.num_rows:
        names = [f for f in model.features if f in scored.column_names]
        x = np.zeros((scored.num_rows, len(model.features)), dtype=np.float64)
        for name in names:
            x[:, model.features.index(name)] = _column(scored, name)
        x = model.at_serving_position(x)
        weights = weights if weights is not None else LearnedRankerConfig().weights
        combined = np.zeros(scored.num_rows, dtype=np.float64)
        for name, head in model.heads.items():
            combined += weights.get(name, 0.0) * head.predict(x)
        score = fit_binning(SCORE, combined)
    return DriftReference(model.version, features, score, train.num_rows)


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

"""Fits LinUCB's evidence on a training set of labelled impressions.

Every served impression of every part (train, validation and test: the evidence is not
evaluated here, and serving should know all of it, as the sources are refit on all the
data) is one observation: its context (``recloop.features.bandit_context.context`` of its
point-in-time features and the position it was served at) and whether it was clicked.
The result is the sums ``sum x x'`` and ``sum r x``; the surface's ridge prior and
confidence width are applied at serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from recloop.features.bandit_context import INPUT_FEATURES, ContextEvidence, context

#: The label LinUCB's reward is: clicked when shown.
REWARD = "label_click"


@dataclass
class LinUCBFit:
    """The fitted evidence (None when there was nothing to fit) and a short report."""

    evidence: ContextEvidence | None
    report: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def training_context(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The context rows of a training-set table's impressions, and their click rewards.

    Raises:
        ValueError: the table lacks a feature, the position or the click label.
    """
    missing = [c for c in (*INPUT_FEATURES, "position", REWARD) if c not in table.column_names]
    if missing:
        raise ValueError(f"training set lacks columns {missing}")
    if table.num_rows == 0:
        return context(np.zeros((0, len(INPUT_FEATURES)))), np.zeros(0)
    inputs = np.column_stack([_column(table, name) for name in INPUT_FEATURES])
    x = context(inputs, positions=_column(table, "position"))
    # A click label is never null; should one be, it says nothing was clicked.
    return x, np.nan_to_num(_column(table, REWARD))


def fit_linucb(parts: Mapping[str, pa.Table]) -> LinUCBFit:
    """LinUCB's evidence from every part of a training set."""
    blocks = [training_context(part) for part in parts.values()]
    x = np.vstack([b[0] for b in blocks])
    rewards = np.concatenate([b[1] for b in blocks])
    if len(rewards) == 0:
        return LinUCBFit(None, skipped="no labelled impressions")
    evidence = ContextEvidence.fit(x, rewards)
    report = {
        "rows": evidence.rows,
        "clicks": evidence.clicks,
        "features": list(evidence.names),
        # The ridge estimate at the default prior (ridge 1), for a look at what it learned.
        "theta_ridge_1": dict(
            zip(evidence.names, np.round(evidence.posterior(1.0)[1], 5).tolist(), strict=True)
        ),
    }
    return LinUCBFit(evidence, report)

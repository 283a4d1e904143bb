"""How good a predicted probability is: AUC, log loss, and calibration by bins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative
    (ties count half). NaN when one class is missing."""
    y = np.asarray(labels) > 0.5
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(y), dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


@dataclass(frozen=True)
class ReliabilityBin:
    """Rows whose prediction fell in one bin: how many, what was predicted, what happened."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


def reliability_table(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> list[ReliabilityBin]:
    """Rows split into ``bins`` groups of equal size by prediction; each group's mean
    prediction against its observed rate. Equal-count bins, because predicted CTRs crowd
    near zero and equal-width bins would leave most of them empty."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return []
    order = np.argsort(p, kind="stable")
    table = []
    for chunk in np.array_split(order, min(bins, len(p))):
        if len(chunk) == 0:
            continue
        table.append(
            ReliabilityBin(
                low=float(p[chunk].min()),
                high=float(p[chunk].max()),
                count=len(chunk),
                mean_predicted=float(p[chunk].mean()),
                observed_rate=float(y[chunk].mean()),
            )
        )
    return table


def expected_calibration_error(table: list[ReliabilityBin]) -> float:
    """The count-weighted mean gap between predicted and observed rates."""
    total = sum(b.count for b in table)
    if total == 0:
        return float("nan")
    return sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in table) / total

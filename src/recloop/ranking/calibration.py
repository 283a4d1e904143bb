"""Calibration: maps a ranker's score to a probability that matches observed rates.

Both maps are fitted offline on held-out rows and applied at serving with numpy alone:
- isotonic: the pool-adjacent-violators fit, stored as knots and interpolated linearly;
- Platt: a logistic regression on the score's logit, two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["isotonic", "platt", "none"]

_EPS = 1e-6
#: How much of the uncalibrated score isotonic calibration adds back, to break its ties.
TIE_BREAK = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities, clipped away from 0 and 1."""
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q / (1.0 - q))
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))
    return out


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from score to probability."""

    method: Method
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for ``scores``."""
        if self.method == "isotonic":
            # The step function is flat between knots and past the last one; a millionth of
            # the input keeps its order there, so the best candidates do not tie.
            out: np.ndarray = np.interp(scores, self.knots_x, self.knots_y) + TIE_BREAK * scores
            clipped: np.ndarray = np.clip(out, 0.0, 1.0)
            return clipped
        if self.method == "platt":
            return sigmoid(self.slope * logit(scores) + self.intercept)
        return np.asarray(scores, dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {
            "method": self.method,
            "knots_x": list(self.knots_x),
            "knots_y": list(self.knots_y),
            "slope": self.slope,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        """The calibrator ``as_dict`` wrote."""
        return cls(
            method=data["method"],
            knots_x=tuple(float(x) for x in data.get("knots_x", ())),
            knots_y=tuple(float(y) for y in data.get("knots_y", ())),
            slope=float(data.get("slope", 1.0)),
            intercept=float(data.get("intercept", 0.0)),
        )


def _row_weights(labels: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Each row's weight: ``weights`` (a missing or non-positive one counts 1), or 1s."""
    if weights is None:
        return np.ones(len(labels), dtype=np.float64)
    w = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=1.0)
    out: np.ndarray = np.where(w > 0, w, 1.0)
    return out


def fit_isotonic(
    scores: np.ndarray,
    labels: np.ndarray,
    max_knots: int = 200,
    weights: np.ndarray | None = None,
) -> Calibrator:
    """Pool-adjacent-violators: the non-decreasing step function closest to the labels.

    The steps become knots (block centres) for linear interpolation; ``max_knots`` bounds
    what is stored by merging neighbouring blocks, weighted by their sizes. ``weights``
    count a row as that many rows (a sampled negative standing for those left out).
    """
    order = np.argsort(scores, kind="stable")
    x = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    w = _row_weights(y, None if weights is None else np.asarray(weights)[order])
    # Blocks as (weighted sum of y, weight, weighted sum of x); merged while a block's mean
    # is below the previous one's.
    sums: list[float] = []
    counts: list[float] = []
    xs: list[float] = []
    for xi, yi, wi in zip(x.tolist(), y.tolist(), w.tolist(), strict=True):
        sums.append(wi * yi)
        counts.append(wi)
        xs.append(wi * xi)
        while len(sums) > 1 and sums[-2] / counts[-2] >= sums[-1] / counts[-1]:
            s, c, sx = sums.pop(), counts.pop(), xs.pop()
            sums[-1] += s
            counts[-1] += c
            xs[-1] += sx
    means = np.array(sums) / np.array(counts)
    centres = np.array(xs) / np.array(counts)
    weights = np.array(counts)
    if len(means) > max_knots:
        groups = np.array_split(np.arange(len(means)), max_knots)
        means = np.array([np.average(means[g], weights=weights[g]) for g in groups])
        centres = np.array([np.average(centres[g], weights=weights[g]) for g in groups])
    return Calibrator("isotonic", tuple(centres.tolist()), tuple(means.tolist()))


# Per unit of row weight: far too small to move a fit on varied scores.
_SLOPE_RIDGE = 1e-6


def _smoothed_log_loss(
    x: np.ndarray, target: np.ndarray, r: np.ndarray, a: float, b: float
) -> float:
    """Weighted cross-entropy of ``sigmoid(a * x + b)`` against the smoothed targets."""
    z = a * x + b
    # log(1 + e^z) - t * z, written stably for large |z|; the slope's small ridge term
    # makes the optimum unique when every score is the same.
    ridge = _SLOPE_RIDGE * float(np.sum(r)) * a * a / 2.0
    return float(np.sum(r * (np.logaddexp(0.0, z) - target * z))) + ridge


def fit_platt(
    scores: np.ndarray,
    labels: np.ndarray,
    iterations: int = 100,
    weights: np.ndarray | None = None,
) -> Calibrator:
    """Logistic regression of the labels on the scores' logit (Newton's method).

    Labels are smoothed as Platt proposed, so that a separable set does not diverge.
    ``weights`` count a row as that many rows.
    """
    x = logit(np.asarray(scores, dtype=np.float64))
    y = np.asarray(labels, dtype=np.float64)
    r = _row_weights(y, weights)
    positives = float(np.sum(r * (y > 0.5)))
    negatives = float(np.sum(r)) - positives
    target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))
    a, b = 1.0, 0.0
    loss = _smoothed_log_loss(x, target, r, a, b)
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        w = r * (p * (1.0 - p) + 1e-12)
        ridge = _SLOPE_RIDGE * float(np.sum(r))
        g = np.array([np.sum(r * (p - target) * x) + ridge * a, np.sum(r * (p - target))])
        h = np.array([[np.sum(w * x * x) + ridge, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        h += 1e-12 * np.eye(2)
        step = np.linalg.solve(h, g)
        # A full Newton step can overshoot far from the optimum (a set of one label
        # sent it to a slope of -6e8); halving until the loss falls keeps it converging.
        scale = 1.0
        while scale > 1e-10:
            na, nb = a - scale * float(step[0]), b - scale * float(step[1])
            new_loss = _smoothed_log_loss(x, target, r, na, nb)
            if new_loss <= loss:
                break
            scale /= 2.0
        else:
            break
        a, b, loss = na, nb, new_loss
        if float(np.abs(scale * step).max()) < 1e-10:
            break
    return Calibrator("platt", slope=a, intercept=b)


def fit_calibrator(
    scores: np.ndarray,
    labels: np.ndarray,
    method: Method,
    weights: np.ndarray | None = None,
) -> Calibrator:
    """The calibrator of ``method`` fitted on held-out ``scores`` and 0/1 ``labels``, each
    row counting ``weights`` times (default once)."""
    if method == "isotonic":
        return fit_isotonic(scores, labels, weights=weights)
    if method == "platt":
        return fit_platt(scores, labels, weights=weights)
    return Calibrator("none")

"""LinUCB's context: a small fixed vector per (request, item), and the click evidence on it.

The context is computed from a few of the ranker's features (``FEATURE_NAMES``) by one
function, ``context``, on both paths:
- offline, ``recloop train`` reads the training set's point-in-time feature columns and the
  position each impression was served at;
- online, the pipeline hands the policy the feature matrix it ranked with
  (``serving_context``), and every candidate is scored as if shown at the top.

Only features that differ between the items of one request are used: a user's or the
context's own features shift every candidate's score by the same amount, which a shared
linear model cannot turn into a preference. ``examination`` is the served position's
discount: in training it absorbs the clicks an item got for being shown high, so that the
item's own features are not credited with them; at serving it is 1 for every candidate
(the learned ranker fixes its position feature the same way).

``ContextEvidence`` is what a nightly fit keeps: the sums ``sum x x'`` and ``sum r x`` over
the logged impressions (``r`` = clicked), the sufficient statistics of a ridge regression
of clicks on the context. The policy adds its own ridge prior when it reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import PRIOR_CTR

#: The context vector's entries, in order.
CONTEXT_FEATURES: tuple[str, ...] = (
    "bias",
    "item_ctr_lift",  # log(item_ctr_30d / PRIOR_CTR): 0 for an item with no evidence yet
    "item_popularity_7d",  # log1p(item_engagement_7d) / log(1001): 1 at 1,000 a week
    "item_freshness",  # 0.5 ** (item_age_hours / 168); 0 when the age is unknown
    "user_category_affinity",
    "user_creator_affinity",
    "session_same_category_share",
    "examination",  # 1 / log2(2 + position); 1 at serving (position 0)
)
#: The context's dimension.
CONTEXT_DIM = len(CONTEXT_FEATURES)
#: The features (of ``FEATURE_NAMES``) the context is computed from, in the order
#: ``context`` takes them.
INPUT_FEATURES: tuple[str, ...] = (
    "item_ctr_30d",
    "item_engagement_7d",
    "item_age_hours",
    "user_category_affinity",
    "user_creator_affinity",
    "session_same_category_share",
)
#: Where a model version keeps the evidence (beside ``ranker/``).
EVIDENCE_FILE = "linucb.json"

_CTR_LIFT_CAP = 5.0  # |log lift|; a smoothed CTR never gets near it, a default 0 would
_POPULARITY_SCALE = math.log(1001.0)
_FRESHNESS_HALF_LIFE_H = 168.0


def context(inputs: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """The context rows (n, ``CONTEXT_DIM``) of ``inputs`` (n, ``len(INPUT_FEATURES)``).

    ``positions`` are the 0-based served positions (training); None scores every row at
    position 0 (serving). A missing input (NaN) counts as "no evidence": its entry is 0.
    """
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(INPUT_FEATURES):
        raise ValueError(f"expected inputs of shape (n, {len(INPUT_FEATURES)})")
    ctr, engagement, age, category, creator, session = x.T
    out = np.empty((x.shape[0], CONTEXT_DIM), dtype=np.float64)
    out[:, 0] = 1.0
    # Comparisons with NaN are False, so a missing input takes the "no evidence" branch.
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(ctr > 0.0, np.log(np.where(ctr > 0.0, ctr, 1.0) / PRIOR_CTR), 0.0)
        out[:, 1] = np.clip(lift, -_CTR_LIFT_CAP, _CTR_LIFT_CAP)
        out[:, 2] = np.where(engagement > 0.0, np.log1p(engagement), 0.0) / _POPULARITY_SCALE
        out[:, 3] = np.where(age >= 0.0, 0.5 ** (np.abs(age) / _FRESHNESS_HALF_LIFE_H), 0.0)
    out[:, 4] = np.clip(np.nan_to_num(category), 0.0, 1.0)
    out[:, 5] = np.clip(np.nan_to_num(creator), 0.0, 1.0)
    out[:, 6] = np.clip(np.nan_to_num(session), 0.0, 1.0)
    if positions is None:
        out[:, 7] = 1.0
    else:
        shown = np.clip(np.nan_to_num(np.asarray(positions, dtype=np.float64)), 0.0, None)
        out[:, 7] = 1.0 / np.log2(2.0 + shown)
    return out


def serving_context(matrix: FeatureMatrix | None, item_ids: Sequence[str]) -> np.ndarray:
    """The context of each of ``item_ids`` from the request's feature matrix, at position 0.

    An item the matrix lacks, or a feature it lacks (a surface without online features),
    reads as missing: every such candidate then has the same context.
    """
    inputs = np.full((len(item_ids), len(INPUT_FEATURES)), np.nan)
    if matrix is not None and item_ids:
        names = matrix.names
        pairs = [(j, names.index(name)) for j, name in enumerate(INPUT_FEATURES) if name in names]
        if pairs:
            # One dict over the request's candidates (a few hundred): cheaper than a scan per
            # pool item.
            index = {item_id: row for row, item_id in enumerate(matrix.item_ids)}
            rows = np.fromiter((index.get(i, -1) for i in item_ids), np.intp, len(item_ids))
            found = np.flatnonzero(rows >= 0)
            dst = [j for j, _ in pairs]
            src = [c for _, c in pairs]
            inputs[found[:, None], dst] = matrix.values[rows[found][:, None], src]
    return context(inputs)


@dataclass(frozen=True)
class ContextEvidence:
    """Clicks against the context, summed over logged impressions: ``gram = sum x x'``,
    ``moments = sum r x``. Immutable; a new version brings a new one."""

    names: tuple[str, ...]
    gram: np.ndarray  # (d, d)
    moments: np.ndarray  # (d,)
    rows: int
    clicks: float

    @classmethod
    def fit(cls, x: np.ndarray, rewards: np.ndarray) -> ContextEvidence:
        """The evidence of context rows ``x`` (n, ``CONTEXT_DIM``) with rewards (n,)."""
        x = np.asarray(x, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != CONTEXT_DIM or r.shape != (x.shape[0],):
            raise ValueError(f"expected context rows (n, {CONTEXT_DIM}) and rewards (n,)")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
            raise ValueError("context rows and rewards must be finite")
        return cls(CONTEXT_FEATURES, x.T @ x, x.T @ r, int(x.shape[0]), float(r.sum()))

    def posterior(self, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """``A^-1`` and ``theta = A^-1 b`` for ``A = ridge * I + gram``, ``b = moments``."""
        a = ridge * np.eye(len(self.names)) + self.gram
        a_inv = np.linalg.inv(a)
        # Symmetric by construction; inversion round-off would make x' A^-1 x drift.
        a_inv = (a_inv + a_inv.T) / 2.0
        theta: np.ndarray = a_inv @ self.moments
        return a_inv, theta

    def save(self, path: Path) -> None:
        """Write the JSON file ``load`` reads."""
        path.write_text(
            json.dumps(
                {
                    "kind": "linucb-context-evidence",
                    "names": list(self.names),
                    "gram": self.gram.tolist(),
                    "moments": self.moments.tolist(),
                    "rows": self.rows,
                    "clicks": self.clicks,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> ContextEvidence:
        """The evidence saved at ``path``.

        Raises:
            ValueError: the file is not evidence, or its shapes disagree.
        """
        data = json.loads(path.read_text())
        names = tuple(str(n) for n in data["names"])
        gram = np.asarray(data["gram"], dtype=np.float64)
        moments = np.asarray(data["moments"], dtype=np.float64)
        d = len(names)
        if gram.shape != (d, d) or moments.shape != (d,):
            raise ValueError(f"{path}: evidence shapes disagree with its {d} names")
        return cls(names, gram, moments, int(data["rows"]), float(data["clicks"]))

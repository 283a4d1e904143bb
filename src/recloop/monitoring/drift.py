"""Drift between what a model was trained on and what it sees while serving.

A model version carries a *reference* (``DRIFT_REFERENCE``): for each ranker feature the
bins of its training distribution (quantile edges for a quantity, the commonest codes for a
category) and each bin's share of the training rows, and the same for the ranker's serving
score on the held-out rows. While serving, a sample of ranked requests is folded into per-bin
counts (``DriftWindow``), so nothing scans the log and memory is features x bins. Read at
scrape time:

- the population stability index, ``PSI = sum((a - e) ln(a / e))`` over the bins, with ``e``
  the reference share and ``a`` the live one (0 for the same distribution; 0.1 is a small
  shift, 0.25 a large one, by the usual reading);
- a chi-square test of the live counts against the reference shares. The candidates of one
  request share the user's and the context's values, so the rows are not independent: the
  statistic is taken over the number of sampled *requests*, not rows, which is conservative
  (a p-value too large, never too small).

Beside them: the cosine shift of the same ids' embeddings between two model versions, after
an orthogonal (Procrustes) alignment, since two trainings of a factor model agree only up
to a rotation.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

#: The reference's file in a model version.
DRIFT_REFERENCE = "drift_reference.json"
#: Bins of a quantity's reference (deciles).
DEFAULT_BINS = 10
#: Codes of a category kept as bins of their own; the rest share one "other" bin.
DEFAULT_CATEGORIES = 20
#: A bin share below this counts as this in PSI (an empty bin would make it infinite).
SHARE_FLOOR = 1e-4
#: The feature name the ranker's serving score is reported under.
SCORE = "score"
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Binning:
    """How one feature's values fall into bins, and the reference share of each bin.

    A quantity's bins are split by ``edges`` (bin ``i`` holds values in
    ``(edges[i-1], edges[i]]``, the infinities in the first and the last; NaN, a missing
    value, goes to a bin of its own after them). A category's bins are its ``codes`` in
    order, then one bin for every other code.
    """

    name: str
    kind: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    _array: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Read on every sampled request: converted once.
        object.__setattr__(self, "_array", np.asarray(self.edges, dtype=np.float64))

    @property
    def bins(self) -> int:
        """How many bins the values fall into."""
        return len(self.shares)

    def index(self, values: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        """The bin of each of ``values`` (``missing``: where they are NaN, when known)."""
        edges = self._array
        if self.kind == CATEGORICAL:
            if not len(edges):
                return np.zeros(len(values), dtype=np.intp)
            at = np.minimum(np.searchsorted(edges, values), len(edges) - 1)
            return np.where(edges[at] == values, at, len(edges))
        # NaN sorts after every edge: into the top bin, unless moved to its own.
        at = np.searchsorted(edges, values, side="left")
        if missing is None:
            missing = np.isnan(values)
        return np.where(missing, len(edges) + 1, at) if missing.any() else at

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of ``values`` fall into each bin."""
        index = self.index(np.asarray(values, dtype=np.float64))
        return np.bincount(index, minlength=self.bins)[: self.bins].astype(np.float64)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form ``from_dict`` reads."""
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": list(self.edges),
            "shares": list(self.shares),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binning:
        """A binning written by ``as_dict``."""
        kind = str(data["kind"])
        if kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"unknown binning kind {kind!r}")
        edges = tuple(float(e) for e in data["edges"])
        shares = tuple(float(s) for s in data["shares"])
        expected = len(edges) + (1 if kind == CATEGORICAL else 2)
        if len(shares) != expected:
            raise ValueError(f"{data['name']}: {len(shares)} shares for {expected} bins")
        return cls(str(data["name"]), kind, edges, shares)


def fit_binning(
    name: str,
    values: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    categorical: bool = False,
    bins: int = DEFAULT_BINS,
    categories: int = DEFAULT_CATEGORIES,
) -> Binning:
    """The bins of ``values`` (training rows, each standing for ``weights`` rows when
    given) and each bin's share of them.

    A quantity is cut at its quantiles (repeated edges merged, so a feature that is mostly
    0 has a bin for 0 alone); a category keeps its ``categories`` commonest codes.
    """
    values = np.asarray(values, dtype=np.float64)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(values) & (w > 0)
    finite, kept = values[keep], w[keep]
    if categorical:
        codes, at = np.unique(finite, return_inverse=True)
        mass = np.bincount(at, weights=kept, minlength=len(codes))
        top = np.sort(codes[np.argsort(-mass, kind="stable")[:categories]])
        binning = Binning(name, CATEGORICAL, tuple(float(c) for c in top), (0.0,) * (len(top) + 1))
    else:
        if finite.size:
            cuts = np.linspace(0, 1, bins + 1)[1:-1]
            quantiles = np.quantile(finite, cuts, weights=kept, method="inverted_cdf")
            edges = np.unique(np.concatenate([quantiles, [finite.min()]]))
        else:
            edges = np.zeros(0)
        binning = Binning(name, NUMERIC, tuple(float(e) for e in edges), (0.0,) * (len(edges) + 2))
    index = binning.index(values)
    counts = np.bincount(index, weights=w, minlength=binning.bins)[: binning.bins]
    total = float(counts.sum())
    shares = tuple(float(c / total) for c in counts) if total else binning.shares
    return Binning(name, binning.kind, binning.edges, shares)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """The population stability index of ``actual`` (counts or shares) against the
    ``expected`` shares: 0 when they match, larger the further they move."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if a.sum() <= 0 or e.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), SHARE_FLOOR)
    a = np.maximum(a / a.sum(), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, n: float
) -> tuple[float, float]:
    """The chi-square statistic and p-value of ``actual`` (counts or shares) against the
    ``expected`` shares, taken as ``n`` independent draws (the effective sample size)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if a.sum() <= 0 or e.sum() <= 0 or n <= 0:
        return 0.0, 1.0
    e = np.maximum(e / e.sum(), SHARE_FLOOR)
    e = e / e.sum()
    a = a / a.sum()
    statistic = float(n * np.sum((a - e) ** 2 / e))
    dof = max(1, int(np.count_nonzero(np.asarray(expected) > 0) - 1))
    return statistic, float(stats.chi2.sf(statistic, dof))


@dataclass(frozen=True)
class DriftReference:
    """A model version's training distributions: its ranker's features and serving score."""

    version: str
    features: tuple[Binning, ...]
    score: Binning | None = None
    rows: int = 0

    def save(self, path: Path) -> None:
        """Write the JSON ``load`` reads."""
        path.write_text(
            json.dumps(
                {
                    "version": self.version,
                    "rows": self.rows,
                    "features": [b.as_dict() for b in self.features],
                    "score": self.score.as_dict() if self.score is not None else None,
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        """The reference saved at ``path``."""
        data = json.loads(path.read_text())
        score = data.get("score")
        return cls(
            str(data["version"]),
            tuple(Binning.from_dict(b) for b in data["features"]),
            Binning.from_dict(score) if score else None,
            int(data.get("rows", 0)),
        )


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the score's) live distribution against its reference."""

    name: str
    psi: float
    p_value: float
    rows: float


@dataclass(frozen=True)
class _Layout:
    """Where a request's columns fall in a window's bins, all features at once: a value's
    bin is the number of its feature's edges below it (the edges padded with +inf), or the
    position of its category's code (padded with NaN, equal to nothing)."""

    names: tuple[str, ...]
    features: np.ndarray  # the reference feature of each matched column
    numeric: np.ndarray  # columns of quantities
    edges: np.ndarray  # their edges, one row each
    numeric_base: np.ndarray  # their first bin in the window; NaN's bin after their edges
    numeric_nan: np.ndarray
    categorical: np.ndarray
    codes: np.ndarray
    categorical_base: np.ndarray
    categorical_other: np.ndarray

    @classmethod
    def of(
        cls, binnings: Sequence[Binning], names: tuple[str, ...], offsets: np.ndarray
    ) -> _Layout:
        """The layout of columns ``names`` against ``binnings``."""
        position = {b.name: i for i, b in enumerate(binnings)}
        matched = [(col, position[n]) for col, n in enumerate(names) if n in position]
        numeric = [(c, f) for c, f in matched if binnings[f].kind == NUMERIC]
        categorical = [(c, f) for c, f in matched if binnings[f].kind == CATEGORICAL]

        def padded(pairs: list[tuple[int, int]], fill: float) -> np.ndarray:
            width = max([len(binnings[f].edges) for _, f in pairs] + [1])
            out = np.full((len(pairs), width), fill)
            for row, (_, f) in enumerate(pairs):
                out[row, : len(binnings[f].edges)] = binnings[f].edges
            return out

        def ints(values: Sequence[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.intp)

        return cls(
            names,
            ints([f for _, f in matched]),
            ints([c for c, _ in numeric]),
            padded(numeric, np.inf),
            ints([offsets[f] for _, f in numeric]),
            ints([offsets[f] + len(binnings[f].edges) + 1 for _, f in numeric]),
            ints([c for c, _ in categorical]),
            padded(categorical, np.nan),
            ints([offsets[f] for _, f in categorical]),
            ints([offsets[f] + len(binnings[f].edges) for _, f in categorical]),
        )

    def bins(self, rows: np.ndarray) -> np.ndarray:
        """The window bin of every matched cell of ``rows``."""
        values = rows[:, self.numeric]
        below = (values[:, :, None] > self.edges[None, :, :]).sum(axis=2)
        numeric = np.where(np.isnan(values), self.numeric_nan, self.numeric_base + below)
        codes = rows[:, self.categorical]
        equal = codes[:, :, None] == self.codes[None, :, :]
        categorical = np.where(
            equal.any(axis=2), self.categorical_base + equal.argmax(axis=2), self.categorical_other
        )
        return np.concatenate([numeric.ravel(), categorical.ravel()])


@dataclass
class DriftWindow:
    """Live bin counts of one model version's features and score, against its reference.

    Counts decay: when the rows folded in exceed ``window_rows``, every count is halved, so
    the window weighs the last one to two ``window_rows`` rows and memory stays bins x
    features whatever the traffic.
    """

    reference: DriftReference
    window_rows: int = 20_000
    requests: float = 0.0
    rows: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        features = self.reference.features
        self._index = {b.name: i for i, b in enumerate(features)}
        # Every feature's bins, then the score's, side by side in one array: a sampled
        # request is counted with one ``bincount``.
        sizes = [b.bins for b in features]
        self._offsets = np.cumsum([0, *sizes])
        self._counts = np.zeros(int(self._offsets[-1]))
        score = self.reference.score
        self._score = np.zeros(score.bins if score is not None else 0)
        self._score_rows = 0.0
        self._seen = np.zeros(len(features), dtype=bool)
        self._columns: _Layout | None = None

    def _layout(self, names: Sequence[str]) -> _Layout:
        names = tuple(names)
        if self._columns is None or self._columns.names != names:
            self._columns = _Layout.of(self.reference.features, names, self._offsets)
        return self._columns

    def observe(
        self, names: Sequence[str], rows: np.ndarray, scores: np.ndarray | None = None
    ) -> None:
        """Fold one sampled request's ranked rows (columns named ``names``) and, when the
        ranker's own score ordered them, their scores."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] == 0:
            return
        layout = self._layout(names)
        found = np.bincount(layout.bins(rows), minlength=len(self._counts))
        features = layout.features
        score = None
        if scores is not None and self.reference.score is not None:
            score = self.reference.score.counts(np.asarray(scores, dtype=np.float64))
        with self._lock:
            self._counts += found
            self._seen[features] = True
            self.rows += rows.shape[0]
            if score is not None:
                self._score += score
                self._score_rows += float(score.sum())
            self.requests += 1
            if self.rows > self.window_rows:
                for array in (self._counts, self._score):
                    array *= 0.5
                self.rows *= 0.5
                self._score_rows *= 0.5
                self.requests *= 0.5

    def features(self) -> list[FeatureDrift]:
        """Each reference feature seen so far: its PSI and chi-square p-value."""
        with self._lock:
            counts, seen = self._counts.copy(), self._seen.copy()
            rows, requests = self.rows, self.requests
        out = []
        for i, binning in enumerate(self.reference.features):
            if seen[i]:
                bins = counts[self._offsets[i] : self._offsets[i + 1]]
                out.append(self._drift(binning, bins, rows, requests))
        return out

    def score(self) -> FeatureDrift | None:
        """The serving score's drift, once any score was folded in."""
        reference = self.reference.score
        with self._lock:
            if reference is None or not self._score_rows:
                return None
            bins, rows, requests = self._score.copy(), self._score_rows, self.requests
        return self._drift(reference, bins, rows, requests)

    @staticmethod
    def _drift(reference: Binning, bins: np.ndarray, rows: float, requests: float) -> FeatureDrift:
        # Rows of one request are not independent draws: the requests are the sample size.
        _, p_value = chi_square(reference.shares, bins, min(rows, requests))
        return FeatureDrift(reference.name, psi(reference.shares, bins), p_value, rows)


def aligned_cosine_shift(
    before: tuple[Sequence[str], np.ndarray],
    after: tuple[Sequence[str], np.ndarray],
    *,
    max_ids: int = 20_000,
    seed: int = 0,
) -> tuple[float, int] | None:
    """The mean cosine distance (1 - cos) of the same ids' vectors in two embeddings, after
    rotating ``before`` onto ``after`` (orthogonal Procrustes on the shared ids), and how
    many ids were compared (at most ``max_ids``, drawn at random). None when fewer than two
    ids are shared.

    Two trainings of a factor model agree only up to a rotation: without the alignment two
    equally good models would look entirely shifted. 0 means the same geometry; 1 means
    unrelated.
    """
    ids_a, vectors_a = before
    ids_b, vectors_b = after
    row_b = {item: row for row, item in enumerate(ids_b)}
    pairs = [(row, row_b[item]) for row, item in enumerate(ids_a) if item in row_b]
    if len(pairs) < 2:
        return None
    if len(pairs) > max_ids:
        picked = np.random.default_rng(seed).choice(len(pairs), size=max_ids, replace=False)
        pairs = [pairs[i] for i in np.sort(picked)]
    a = _unit(np.asarray(vectors_a, dtype=np.float64)[[p[0] for p in pairs]])
    b = _unit(np.asarray(vectors_b, dtype=np.float64)[[p[1] for p in pairs]])
    u, _, vt = np.linalg.svd(a.T @ b, full_matrices=False)
    rotated = _unit(a @ (u @ vt))
    cosine = np.sum(rotated * b, axis=1)
    return float(np.mean(1.0 - np.clip(cosine, -1.0, 1.0))), len(pairs)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = x / np.where(norms > 0, norms, 1.0)
    return out


def highest(drifts: Sequence[FeatureDrift], n: int) -> Iterator[FeatureDrift]:
    """The ``n`` drifts with the highest PSI, highest first."""
    yield from sorted(drifts, key=lambda d: (-d.psi, d.name))[:n]


def finite(value: float) -> float:
    """``value``, or 0 where it is not finite (a gauge must be a number)."""
    return value if math.isfinite(value) else 0.0

"""Merged candidates and the feature matrix built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from recloop.domain import Candidate


@dataclass(slots=True)
class MergedCandidate:
    """One item as recalled by one or more sources, with every source's score kept."""

    item_id: str
    source: str
    reason: str
    source_scores: dict[str, float] = field(default_factory=dict)
    # Each recalling source's reason, so the one that most supported the item can speak.
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source that recalled the item, first finder first."""
        return tuple(self.source_scores)


def merge_candidates(per_source: Sequence[Sequence[Candidate]]) -> list[MergedCandidate]:
    """Merge source lists in order, keeping every source's score and reason for each item."""
    merged: dict[str, MergedCandidate] = {}
    find = merged.get
    for candidates in per_source:
        for candidate in candidates:
            entry = find(candidate.item_id)
            if entry is None:
                merged[candidate.item_id] = MergedCandidate(
                    candidate.item_id,
                    candidate.source,
                    candidate.reason,
                    {candidate.source: candidate.score},
                    {candidate.source: candidate.reason},
                )
            else:
                entry.source_scores.setdefault(candidate.source, candidate.score)
                entry.reasons.setdefault(candidate.source, candidate.reason)
    return list(merged.values())


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Rows are candidates (in ``item_ids`` order), columns are named features."""

    item_ids: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """One feature for every candidate; zeros when the feature is absent."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            return np.zeros(len(self.item_ids), dtype=np.float32)


def source_score_feature(source: str) -> str:
    """The feature name of a source's normalised score."""
    return f"source_score:{source}"


#: The normalised score of a source's worst candidate: above 0, which means "not recalled".
SCORE_FLOOR = 0.01


def source_score_features(
    candidates: Sequence[MergedCandidate], sources: Sequence[str]
) -> FeatureMatrix:
    """Each source's scores scaled within the request to (0, 1]; 0 where it did not recall.

    Positive scores are divided by the source's best. A source that scored any candidate at
    or below zero (matrix factorisation's inner products) is scaled min-max instead, its
    worst candidate at SCORE_FLOOR, so that a recalled item never looks unrecalled."""
    values = np.zeros((len(candidates), len(sources)), dtype=np.float32)
    recalled = np.zeros((len(candidates), len(sources)), dtype=bool)
    column = {source: col for col, source in enumerate(sources)}
    # One pass over what was recalled, not candidates x sources: most cells are empty.
    # The cells are gathered first and written in one assignment.
    rows: list[int] = []
    cols: list[int] = []
    scores: list[float] = []
    for row, candidate in enumerate(candidates):
        for source, score in candidate.source_scores.items():
            col = column.get(source)
            if col is not None:
                rows.append(row)
                cols.append(col)
                scores.append(score)
    if rows:
        values[rows, cols] = scores
        recalled[rows, cols] = True
    for col in range(len(sources)):
        mask = recalled[:, col]
        if not mask.any():
            continue
        scored = values[mask, col]
        low, high = float(scored.min()), float(scored.max())
        if low > 0:
            values[mask, col] = scored / high
        elif high > low:
            values[mask, col] = SCORE_FLOOR + (1.0 - SCORE_FLOOR) * (scored - low) / (high - low)
        else:
            values[mask, col] = 1.0
    return FeatureMatrix(
        item_ids=tuple(c.item_id for c in candidates),
        names=tuple(source_score_feature(s) for s in sources),
        values=values,
    )


def join_columns(left: FeatureMatrix, right: FeatureMatrix) -> FeatureMatrix:
    """The columns of both matrices side by side (same rows, in the same order)."""
    if left.item_ids != right.item_ids:
        raise ValueError("feature matrices describe different rows")
    return FeatureMatrix(
        left.item_ids, left.names + right.names, np.hstack([left.values, right.values])
    )


class FeatureReader(Protocol):
    """Reads the online features of a request's candidates."""

    def matrix(
        self,
        app_id: str,
        user_id: str,
        item_ids: Sequence[str],
        *,
        session_id: str | None,
        device: str | None,
        surface: str | None,
        now: datetime,
    ) -> FeatureMatrix:
        """One row per item."""
        ...

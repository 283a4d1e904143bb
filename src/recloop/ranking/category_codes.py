"""Dense codes for the ranker's categorical columns.

Features store a category as a stable hash (``features.definitions.code``): the same in
every process, but spread over a million values. LightGBM wants categories as small
integers, and warns on every training when they are not. A head therefore keeps, per
categorical column, the sorted hashes it was trained on, and feeds LightGBM each value's
index among them; a hash it never saw becomes missing (NaN), which LightGBM sends down its
"other" branch, as it would an unseen category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CategoryCodes:
    """Per categorical column (by index), the sorted distinct hashes seen in training."""

    columns: tuple[int, ...]
    values: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, x: np.ndarray, columns: Sequence[int]) -> CategoryCodes:
        """The codes of ``columns`` of the training matrix ``x``."""
        return cls(
            tuple(columns),
            tuple(np.unique(x[:, c][np.isfinite(x[:, c])]) for c in columns),
        )

    def apply(self, x: np.ndarray) -> np.ndarray:
        """A copy of ``x`` with each categorical hash replaced by its dense code."""
        out = np.array(x, dtype=np.float64, copy=True)
        for column, seen in zip(self.columns, self.values, strict=True):
            values = out[:, column]
            if len(seen) == 0:
                out[:, column] = np.nan
                continue
            at = np.clip(np.searchsorted(seen, values), 0, len(seen) - 1)
            out[:, column] = np.where(seen[at] == values, at, np.nan)
        return out

    def as_dict(self) -> dict[str, Any]:
        """As JSON types (hashes are integers stored as floats)."""
        return {
            "columns": list(self.columns),
            "values": [[int(v) for v in seen] for seen in self.values],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CategoryCodes:
        """The inverse of ``as_dict``."""
        return cls(
            tuple(int(c) for c in raw["columns"]),
            tuple(np.asarray(v, dtype=np.float64) for v in raw["values"]),
        )

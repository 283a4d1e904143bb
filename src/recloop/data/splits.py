"""Time-based splits: train on the past, validate and test on what came after, never at random."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The share of times at each end (at least one) left out of the span a time split cuts:
#: up to this many stray events (or served lists) cannot move the cut-off.
SPAN_TRIM = 0.01


def time_span(timestamps: np.ndarray, trim: float = SPAN_TRIM) -> tuple[float, float]:
    """The first and last time of the bulk of ``timestamps``: the ``k``-th earliest and
    ``k``-th latest, ``k`` the ``trim`` share of them and at least one (the span itself
    with fewer than three). One event posted today into last month's history, or stamped
    by a clock years behind, does not stretch it."""
    n = len(timestamps)
    if n == 0:
        return 0.0, 0.0
    if n < 3:
        return float(timestamps.min()), float(timestamps.max())
    k = min(max(1, int(n * trim)), (n - 1) // 2)
    bounds = np.partition(np.asarray(timestamps, dtype=np.float64), (k, n - 1 - k))
    return float(bounds[k]), float(bounds[n - 1 - k])


class SplitConfig(BaseModel):
    """The share of the time span (not of the rows) each later part gets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    validation_share: float = Field(default=0.1, ge=0, lt=1)
    test_share: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training(self) -> SplitConfig:
        if self.validation_share + self.test_share >= 1:
            raise ValueError("validation_share + test_share must leave time for training")
        return self


@dataclass(frozen=True)
class SplitBoundaries:
    """Rows before ``validation_start`` train; before ``test_start`` validate; the rest test."""

    start: datetime
    validation_start: datetime
    test_start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        """ISO times, for the dataset's metadata."""
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def time_split(
    rows: pa.Table, column: str, config: SplitConfig
) -> tuple[dict[str, pa.Table], SplitBoundaries]:
    """Split rows by the time in ``column`` into train, validation and test.

    The span split is that of the bulk of the distinct times (``time_span``): a stray list
    served today into last month's log is tested with the rest of the latest share, and
    does not become the whole test part.

    Raises:
        ValueError: there are no rows to split.
    """
    if rows.num_rows == 0:
        raise ValueError("no rows to split")
    times = rows.column(column)
    ticks = pc.cast(times, pa.int64()).to_numpy()
    lo, hi = time_span(np.unique(ticks))
    start, end = (pa.array([int(t)], pa.int64()).cast(times.type)[0].as_py() for t in (lo, hi))
    span = end - start
    test_start = end - span * config.test_share
    validation_start = test_start - span * config.validation_share
    boundaries = SplitBoundaries(start, validation_start, test_start, end)
    is_train = pc.less(times, pa.scalar(validation_start, type=times.type))
    is_test = pc.greater_equal(times, pa.scalar(test_start, type=times.type))
    is_validation = pc.and_(pc.invert(is_train), pc.invert(is_test))
    parts = {
        "train": rows.filter(is_train),
        "validation": rows.filter(is_validation),
        "test": rows.filter(is_test),
    }
    return parts, boundaries

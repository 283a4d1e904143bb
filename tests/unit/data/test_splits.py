"""The training set's split in time: a stray served list does not become the test part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from recloop.data.splits import SplitConfig, time_span, time_split

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


def _served(lists: list[datetime], per_list: int = 10) -> pa.Table:
    """Impressions: ``per_list`` rows per served list, all at the list's time."""
    return pa.table(
        {
            "request_id": [f"r{i}" for i, _ in enumerate(lists) for _ in range(per_list)],
            "served_at": pa.array(
                [at for at in lists for _ in range(per_list)], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_a_list_served_months_later_is_tested_with_the_latest_days_not_alone() -> None:
    days = [START + timedelta(hours=h) for h in range(0, 24 * 20, 2)]  # 240 lists, 20 days
    healthy, at = time_split(_served(days), "served_at", SplitConfig())
    stray = START + timedelta(days=300)  # the README's curl example, posted today
    parts, bounds = time_split(_served([*days, stray]), "served_at", SplitConfig())
    # The last two days' lists and the stray one (the span's end moves by a list at most).
    assert parts["test"].num_rows > 10 * 20
    assert abs(parts["test"].num_rows - (healthy["test"].num_rows + 10)) <= 10
    assert abs(parts["validation"].num_rows - healthy["validation"].num_rows) <= 10
    assert abs(bounds.test_start - at.test_start) < timedelta(hours=3)
    early, _ = time_split(_served([START - timedelta(days=400), *days]), "served_at", SplitConfig())
    assert abs(early["train"].num_rows - (healthy["train"].num_rows + 10)) <= 10
    assert abs(early["test"].num_rows - healthy["test"].num_rows) <= 10


def test_the_span_leaves_out_a_share_of_times_at_each_end_and_at_least_one() -> None:
    times = np.arange(1000, dtype=np.float64)
    assert time_span(times) == (10.0, 989.0)  # 1% at each end
    assert time_span(np.array([0.0, 1.0, 2.0, 1e9])) == (1.0, 2.0)
    assert time_span(np.array([5.0, 7.0])) == (5.0, 7.0)
    assert time_span(np.array([])) == (0.0, 0.0)

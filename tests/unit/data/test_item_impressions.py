"""The ranker's and retrieval's impressions leave out the suggestion API's lists."""

from __future__ import annotations

import pyarrow as pa
import pytest

from recloop.data.training import item_impressions

pytestmark = pytest.mark.unit


def test_suggestion_lists_are_left_out_and_item_lists_kept() -> None:
    table = pa.table(
        {
            "request_id": ["r1", "r1", "r2", "r3", "r4", "r5", "r6"],
            "item_id": ["i1", "i2", "fashion sneakers", "climate", "news", "i3", "i4"],
            "surface": [
                "home",
                "home",
                "suggest",
                "suggest:related",
                "suggest:feed",
                "similar",
                None,
            ],
        }
    )

    kept = item_impressions(table)

    assert kept.column("item_id").to_pylist() == ["i1", "i2", "i3", "i4"]
    # A surface merely starting with the word is an item surface of its own.
    other = pa.table({"item_id": ["i9"], "surface": ["suggested-for-you"]})
    assert item_impressions(other).num_rows == 1
    assert item_impressions(table.slice(0, 0)).num_rows == 0

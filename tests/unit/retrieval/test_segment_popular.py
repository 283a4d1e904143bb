"""Segment popularity: what people of a new user's region or locale engage with."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import RecallQuery
from recloop.retrieval.segment_popular import SegmentPopularModel

pytestmark = pytest.mark.unit


def _data() -> TrainingData:
    users, items, ts = [], [], []
    attributes: dict[str, dict[str, object]] = {}
    for u in range(12):
        region = "north" if u < 6 else "south"
        attributes[f"u{u}"] = {"region": region, "locale": "en-GB"}
        for item in ("n1", "n2") if region == "north" else ("s1", "s2", "s1"):
            users.append(f"u{u}")
            items.append(item)
            ts.append(float(u))
    attributes["lonely"] = {"region": "east"}
    users.append("lonely")
    items.append("e1")
    ts.append(0.0)
    return TrainingData(Interactions.from_records(users, items, ts), user_attributes=attributes)


def test_a_new_user_gets_what_their_region_engages_with() -> None:
    model = SegmentPopularModel(min_users=3).fit(_data())
    found = model.recall(RecallQuery(attributes=(("region", "south"),)), 5)
    assert [r.item_id for r in found] == ["s1", "s2"]
    assert found[0].reason == "Popular in south"


def test_segments_interleave_most_specific_first_and_skip_what_was_seen() -> None:
    model = SegmentPopularModel(min_users=3).fit(_data())
    query = RecallQuery(
        attributes=(("region", "north"), ("locale", "en-GB")), exclude=frozenset({"n1"})
    )
    found = [r.item_id for r in model.recall(query, 10)]
    assert found[0] == "n2"
    assert set(found) == {"n2", "s1", "s2"}  # en-GB holds both regions


def test_small_segments_users_with_history_and_strangers_get_nothing() -> None:
    model = SegmentPopularModel(min_users=3, max_history=2).fit(_data())
    assert model.recall(RecallQuery(attributes=(("region", "east"),)), 5) == []
    assert model.recall(RecallQuery(attributes=(("region", "mars"),)), 5) == []
    assert model.recall(RecallQuery(attributes=(("region", "south"),), history=("a", "b")), 5) == []


def test_a_saved_model_recalls_the_same(tmp_path: Path) -> None:
    model = SegmentPopularModel(min_users=3).fit(_data())
    model.save(tmp_path)
    query = RecallQuery(attributes=(("region", "north"), ("locale", "en-GB")))
    assert SegmentPopularModel.load(tmp_path).recall(query, 5) == model.recall(query, 5)

"""Cold start: onboarding interests for new users, a freshness quota for new items."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from recloop.domain import RequestContext
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.cold_start import FreshSource, InterestsSource, interests_of
from recloop.retrieval.content import ContentModel
from recloop.retrieval.interactions import Interactions, ItemTable, TrainingData
from recloop.retrieval.popularity import PopularityIndex, PopularitySnapshot

pytestmark = pytest.mark.unit

APP = "app"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _ctx(**kwargs: Any) -> RequestContext:
    return RequestContext(
        app_id=APP, request_id="r", surface="home", user_id="u", now=NOW, **kwargs
    )


def _popularity() -> PopularityIndex:
    index = PopularityIndex()
    index.publish(
        APP,
        PopularitySnapshot(
            trending_by_category={
                "jazz": (("j1", "j2", "j3"), (3.0, 2.0, 1.0)),
                "rock": (("r1", "r2"), (2.0, 1.0)),
            },
            popular_by_category={"folk": (("f1",), (5.0,))},
            # Recency scores 1 / (1 + age in days): n1 is half a day old, old1 ten days.
            newest=(("n-jazz", "n-rock", "old1"), (1 / 1.5, 1 / 1.6, 1 / 11)),
            category_of={"n-jazz": "jazz", "n-rock": "rock", "old1": "jazz"},
        ),
    )
    return index


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"interests": ["jazz", "rock"]}, ["jazz", "rock"]),
        ({"interests": "jazz, rock,"}, ["jazz", "rock"]),
        ({"interests": 3}, []),
        ({}, []),
        (None, []),
    ],
)
def test_interests_are_read_from_a_list_or_a_comma_separated_string(
    attributes: dict[str, Any] | None, expected: list[str]
) -> None:
    assert interests_of(attributes) == expected


def test_a_cold_user_gets_trending_items_of_each_chosen_category_in_turn() -> None:
    source = InterestsSource(_popularity())
    found = source.retrieve(_ctx(user_attributes={"interests": ["jazz", "rock", "folk"]}), 5)
    assert [c.item_id for c in found] == ["j1", "r1", "f1", "j2", "r2"]
    assert found[0].reason == "Trending in jazz"
    assert found[2].reason == "Trending in folk"  # popular stands in when nothing trends


def test_interests_match_categories_ignoring_case() -> None:
    found = InterestsSource(_popularity()).retrieve(_ctx(user_attributes={"interests": "JAZZ"}), 2)
    assert [(c.item_id, c.reason) for c in found] == [
        ("j1", "Trending in jazz"),
        ("j2", "Trending in jazz"),
    ]


def test_a_user_with_history_or_without_interests_gets_nothing_from_interests() -> None:
    source = InterestsSource(_popularity(), max_history=2)
    attributes = {"interests": ["jazz"]}
    assert source.retrieve(_ctx(user_attributes=attributes, history=("a", "b")), 5) == []
    assert source.retrieve(_ctx(user_attributes={}), 5) == []
    excluded = source.retrieve(
        _ctx(user_attributes=attributes, excluded_item_ids=frozenset({"j1"})), 5
    )
    assert [c.item_id for c in excluded] == ["j2", "j3"]


def _content() -> ModelIndex:
    texts = {
        "h-jazz": "smooth jazz saxophone night",
        "n-jazz": "late night jazz saxophone trio",
        "n-rock": "loud guitar rock anthem",
        "old1": "jazz saxophone classic",
    }
    ids = list(texts)
    data = TrainingData(
        Interactions.from_records(["u"], ["h-jazz"], [0.0], item_vocabulary=ids),
        ItemTable(
            tuple(ids),
            tuple(t.title() for t in ids),
            tuple(texts.values()),
            (None,) * len(ids),
            np.zeros(len(ids)),
        ),
    )
    index = ModelIndex()
    model = ContentModel(embedder="hashing").fit(data)
    index.publish(APP, ModelBundle("v1", {"content": model}, {"h-jazz": "Smooth Jazz"}))
    return index


def test_fresh_items_are_ordered_by_closeness_to_the_history() -> None:
    source = FreshSource(_popularity(), _content(), max_age_days=3)
    found = source.retrieve(_ctx(history=("h-jazz",)), 5)
    # old1 is ten days old: outside the freshness window whatever its text.
    assert [c.item_id for c in found] == ["n-jazz", "n-rock"]
    assert found[0].reason == "New, like Smooth Jazz"


def test_without_history_or_content_model_fresh_items_come_newest_first() -> None:
    found = FreshSource(_popularity(), ModelIndex(), max_age_days=3).retrieve(_ctx(), 5)
    assert [c.item_id for c in found] == ["n-jazz", "n-rock"]
    assert [c.reason for c in found] == ["New in jazz", "New in rock"]
    excluded = FreshSource(_popularity(), _content()).retrieve(
        _ctx(history=("h-jazz",), excluded_item_ids=frozenset({"n-jazz"})), 5
    )
    assert [c.item_id for c in excluded] == ["n-rock"]

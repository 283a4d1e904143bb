"""Rerank rules: creator and category caps, MMR, freshness, business rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.rerank.boosts import BusinessConfig, BusinessRules, FreshnessBoost, FreshnessConfig
from recloop.rerank.diversity import MMR, AttributeCap, CapConfig, MMRConfig
from recloop.rerank.recently_shown import RecentlyShownConfig, RecentlyShownDemotion
from tests.factories import ServedListsStub

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
CTX = RequestContext(app_id="app", request_id="r", surface="home", user_id="u", now=NOW)


class _Attributes:
    def __init__(
        self,
        creator: dict[str, str] | None = None,
        category: dict[str, str] | None = None,
        age_days: dict[str, float] | None = None,
    ) -> None:
        self.tables = {"creator": creator or {}, "category": category or {}}
        self.age_days = age_days or {}

    def attribute(self, app_id: str, item_id: str, name: str) -> str | None:
        return self.tables[name].get(item_id)

    def created_ts(self, app_id: str, item_id: str) -> float | None:
        age = self.age_days.get(item_id)
        return None if age is None else NOW.timestamp() - age * 86_400.0


class _Vectors:
    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = {k: np.asarray(v, np.float32) for k, v in vectors.items()}

    def vector(self, app_id: str, item_id: str) -> npt.NDArray[np.float32] | None:
        return self.vectors.get(item_id)


def _slate(*ids: str) -> Slate:
    n = len(ids)
    return Slate(tuple(ScoredItem(i, float(n - k), "src", "why") for k, i in enumerate(ids)))


def test_a_creator_cap_defers_items_past_the_cap_within_the_window() -> None:
    creators = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}
    rule = AttributeCap(
        CapConfig(attribute="creator", max_items=2, window=4), _Attributes(creators)
    )
    out = rule.apply(_slate("a1", "a2", "a3", "b1", "c1"), CTX).item_ids()
    # a3 would be the third A among four consecutive items: it waits until the window allows.
    assert out == ["a1", "a2", "b1", "c1", "a3"]
    assert sorted(out) == sorted(creators)


def test_items_without_the_attribute_are_never_capped() -> None:
    rule = AttributeCap(CapConfig(attribute="category", max_items=1), _Attributes())
    assert rule.apply(_slate("x", "y", "z"), CTX).item_ids() == ["x", "y", "z"]


def test_mmr_moves_a_near_duplicate_down_and_keeps_every_item() -> None:
    vectors = _Vectors({"a": [1, 0], "a-twin": [1, 0], "b": [0, 1], "c": [0.7, 0.7]})
    rule = MMR(MMRConfig.model_validate({"lambda": 0.5}), vectors)
    out = rule.apply(_slate("a", "a-twin", "b", "c"), CTX).item_ids()
    assert out[0] == "a"
    assert out.index("a-twin") > out.index("b")
    assert sorted(out) == ["a", "a-twin", "b", "c"]


def test_mmr_with_lambda_one_keeps_the_ranked_order() -> None:
    vectors = _Vectors({"a": [1, 0], "a-twin": [1, 0], "b": [0, 1]})
    rule = MMR(MMRConfig.model_validate({"lambda": 1.0}), vectors)
    assert rule.apply(_slate("a", "a-twin", "b"), CTX).item_ids() == ["a", "a-twin", "b"]


def test_freshness_lifts_new_items_and_fades_with_age() -> None:
    ages = {"old": 30.0, "new": 0.0, "week": 7.0}
    rule = FreshnessBoost(FreshnessConfig(max_age_days=3.0, boost=1.5), _Attributes(age_days=ages))
    out = rule.apply(_slate("old", "week", "new"), CTX)
    assert out.item_ids() == ["new", "old", "week"]
    assert out.items[0].score > 3.0  # the new score is carried


def test_business_rules_exclude_boost_and_pin() -> None:
    attributes = _Attributes(category={"n1": "news", "s1": "sport", "s2": "sport", "m1": "music"})
    config = BusinessConfig.model_validate(
        {
            "exclude": [{"attribute": "category", "value": "news"}],
            "boost": [{"attribute": "category", "value": "music", "factor": 3.0}],
            "pin": [{"item_id": "s2", "position": 0}],
        }
    )
    rule = BusinessRules(config, attributes)
    out = rule.apply(_slate("n1", "s1", "s2", "m1"), CTX).item_ids()
    assert "n1" not in out
    assert out[0] == "s2"
    assert out.index("m1") < out.index("s1")
    assert rule.mandatory


def test_a_pin_never_brings_back_an_item_that_is_not_in_the_slate() -> None:
    config = BusinessConfig.model_validate({"pin": [{"item_id": "gone", "position": 0}]})
    rule = BusinessRules(config, _Attributes())
    assert rule.apply(_slate("a", "b"), CTX).item_ids() == ["a", "b"]


def test_items_shown_again_and_again_go_last_in_their_order() -> None:
    log = ServedListsStub({"a": 3, "c": 5, "b": 1})
    rule = RecentlyShownDemotion(RecentlyShownConfig(window_h=12, max_shown=3), log)  # type: ignore[arg-type]
    assert rule.apply(_slate("a", "b", "c", "d"), CTX).item_ids() == ["b", "d", "a", "c"]
    # Only lists served before this request count (a shadow run must not count its own).
    assert log.asked == [(NOW - timedelta(hours=12), NOW)]
    # By default only this surface's own lists count.
    assert log.surfaces == [CTX.surface]


def test_every_surfaces_lists_count_when_asked() -> None:
    log = ServedListsStub({"a": 1})
    config = RecentlyShownConfig(window_h=12, max_shown=1, surfaces="all")
    rule = RecentlyShownDemotion(config, log)  # type: ignore[arg-type]

    assert rule.apply(_slate("a", "b"), CTX).item_ids() == ["b", "a"]
    assert log.surfaces == [None]

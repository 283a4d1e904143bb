"""The response cache: a repeat request gets its list again, logged as served again, until
the user does something."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.config import Settings
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path / "data", serving={"response_cache_ttl_s": 60.0})


@pytest.fixture
def api_with_items(api: Api) -> Api:
    api.put_items({f"i{n}": "Drama" for n in range(30)})
    api.engage({f"i{n}": n % 5 + 1 for n in range(30)})
    api.refresh()
    return api


def stage_names(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [s["stage"] for s in body["stages"]]


def test_a_repeat_request_is_served_from_the_cache_and_logged_again(api_with_items: Api) -> None:
    first = api_with_items.recommend(userId="ann", surface="home", debug="true")
    again = api_with_items.recommend(userId="ann", surface="home", debug="true")

    assert stage_names(again) == ["cache"]
    assert "cache" not in stage_names(first)
    assert [i["itemId"] for i in again["items"]] == [i["itemId"] for i in first["items"]]
    assert again["requestId"] != first["requestId"]
    runtime = api_with_items.runtime
    runtime.writer.flush()
    for body in (first, again):
        logged = runtime.store.rec_log.get("default", body["requestId"])
        assert logged is not None
        assert [i.item_id for i in logged.items] == [i["itemId"] for i in body["items"]]


def test_an_event_from_the_user_drops_their_cached_lists(api_with_items: Api) -> None:
    first = api_with_items.recommend(userId="ann", surface="home", debug="true")
    clicked = first["items"][0]["itemId"]

    api_with_items.post_events([{"userId": "ann", "itemId": clicked, "eventType": "click"}])
    after = api_with_items.recommend(userId="ann", surface="home", debug="true")

    assert "cache" not in stage_names(after)
    assert clicked not in [i["itemId"] for i in after["items"]]


def test_another_user_surface_or_limit_is_not_served_from_the_cache(api_with_items: Api) -> None:
    api_with_items.recommend(userId="ann", surface="home")

    for params in (
        {"userId": "bob", "surface": "home"},
        {"userId": "ann", "surface": "trending"},
        {"userId": "ann", "surface": "home", "limit": 7},
    ):
        body = api_with_items.recommend(debug="true", **params)
        assert "cache" not in stage_names(body), params


def test_feedback_drops_the_users_cached_lists_so_the_item_is_never_served_again(
    api_with_items: Api,
) -> None:
    first = api_with_items.recommend(userId="ann", surface="home", debug="true")
    dismissed = first["items"][0]["itemId"]

    response = api_with_items.client.post(
        "/api/recommendations/feedback",
        json={"userId": "ann", "itemId": dismissed, "feedback": "not_interested"},
    )
    assert response.status_code == 202, response.text
    after = api_with_items.recommend(userId="ann", surface="home", debug="true")

    assert "cache" not in stage_names(after)
    assert dismissed not in [i["itemId"] for i in after["items"]]


def test_hits_and_misses_are_counted(api_with_items: Api) -> None:
    for _ in range(3):
        api_with_items.recommend(userId="ann", surface="home")

    registry = api_with_items.runtime.metrics.registry
    labels = {"app": "default", "surface": "home"}
    assert (
        registry.get_sample_value("recloop_response_cache_total", {**labels, "result": "miss"}) == 1
    )
    assert (
        registry.get_sample_value("recloop_response_cache_total", {**labels, "result": "hit"}) == 2
    )

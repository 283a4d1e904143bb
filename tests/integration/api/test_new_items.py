"""A new item is servable on the next request of the process that stored it, not at the
next timed refresh of the catalog views."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.config import Settings
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A timed refresh an hour away: only the write itself can make the item servable.
    return settings_with(tmp_path / "data", serving={"popularity_refresh_s": 3600.0})


def _home(api: Api, user: str) -> list[str]:
    return [i["itemId"] for i in api.recommend(userId=user, surface="home", limit=10)["items"]]


def test_an_item_put_into_a_new_store_is_served_on_the_next_request(api: Api) -> None:
    assert _home(api, "u1") == []
    api.put_item("v1", category="Travel", title="Quiet Harbor")
    assert _home(api, "u1") == ["v1"]


def test_items_posted_in_a_batch_are_served_on_the_next_request(api: Api) -> None:
    api.put_items({"v1": "Travel", "v2": "Drama", "v3": None})
    assert sorted(_home(api, "u2")) == ["v1", "v2", "v3"]
    api.put_items({"v4": "Drama"})
    assert "v4" in _home(api, "u3")

"""An interleaving experiment in the real service: one drafted list, teams credited."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.config import Settings
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(30)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        experiments=[
            {
                "name": "newest-interleaved",
                "surface": "trending",
                "kind": "interleave",
                "variants": [
                    {"name": "popular"},
                    {"name": "newest", "overrides": {"sources": [{"name": "newest", "quota": 50}]}},
                ],
            }
        ],
    )


@pytest.fixture
def api_with_items(api: Api) -> Api:
    return api.old_and_new_items(new=10)


def test_users_see_both_teams_items_and_clicks_on_the_better_team_make_it_win(
    api_with_items: Api,
) -> None:
    events = []
    for user in USERS:
        body = api_with_items.recommend(userId=user, surface="trending", limit=6)
        assert (body["experiment"], body["variant"]) == ("newest-interleaved", "interleaved")
        ids = [i["itemId"] for i in body["items"]]
        assert sum(i.startswith("new") for i in ids) == 3  # three drafted by each team
        assert "popular:" in body["modelVersion"]
        assert "newest:" in body["modelVersion"]
        # These users only like new items: the first new one shown is clicked.
        clicked = next(i for i in ids if i.startswith("new"))
        events.append(
            {
                "userId": user,
                "itemId": clicked,
                "eventType": "click",
                "requestId": body["requestId"],
            }
        )
    api_with_items.post_events(events)
    api_with_items.runtime.writer.flush()
    record = api_with_items.runtime.store.rec_log.get("default", body["requestId"])
    assert record is not None
    for item in record.items:
        assert item.team == ("newest" if item.item_id.startswith("new") else "popular")
        assert 0 < item.propensity <= 1

    report = api_with_items.client.get("/api/admin/experiments/newest-interleaved/report").json()

    assert report["kind"] == "interleave"
    assert report["lists"] == len(USERS)
    assert report["slots"] == {"popular": 90, "newest": 90, "shared": 0}
    assert report["clicks"] == {"popular": 0, "newest": 30, "shared": 0}
    assert report["result"]["users_prefer_b"] == len(USERS)
    assert report["result"]["p_value"] < 1e-6
    assert report["winner"] == "newest"

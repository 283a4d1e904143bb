"""Experiments in serving: each user gets their variant's pipeline, and the log says which."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.experiments.assignment import Assigner
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(40)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        serving={"popularity_refresh_s": 0.05},
        experiments=[
            {
                "name": "newest-first",
                "surface": "trending",
                "variants": [
                    {"name": "control", "share": 0.5},
                    # Only the newest items: a list the control would not serve.
                    {
                        "name": "newest",
                        "share": 0.5,
                        "overrides": {"sources": [{"name": "newest", "quota": 50}]},
                    },
                ],
            }
        ],
    )


@pytest.fixture
def api_with_items(api: Api) -> Api:
    # Old items are the popular ones; the newest have no engagement at all.
    api.put_items({f"old{n}": "Drama" for n in range(10)})
    api.engage({f"old{n}": 10 - n for n in range(10)})
    for n in range(5):
        api.put_item(f"new{n}", category="Drama")
    api.refresh()
    return api


def test_each_user_is_served_and_logged_under_their_variant(
    api_with_items: Api, settings: Settings
) -> None:
    assigner = Assigner(settings.experiments)
    bodies = {u: api_with_items.recommend(userId=u, surface="trending", limit=5) for u in USERS}
    now = datetime.now(UTC)
    expected = {u: assigner.assign(u, "trending", now) for u in USERS}

    assert {b["variant"] for b in bodies.values()} == {"control", "newest"}
    runtime = api_with_items.runtime
    runtime.writer.flush()
    for user, body in bodies.items():
        assert body["experiment"] == "newest-first"
        assert body["variant"] == expected[user].variant
        ids = [i["itemId"] for i in body["items"]]
        if body["variant"] == "newest":
            assert all(i.startswith("new") for i in ids)
        else:
            assert ids[0] == "old0"
        logged = runtime.store.rec_log.get("default", body["requestId"])
        assert logged is not None
        assert (logged.experiment, logged.variant) == ("newest-first", body["variant"])


def test_a_surface_without_an_experiment_says_default(api_with_items: Api) -> None:
    body = api_with_items.recommend(userId="user-1", surface="home")
    assert (body["experiment"], body["variant"]) == (None, "default")

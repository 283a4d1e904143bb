"""Shadow mode in the real service: scored and logged on live requests, never served."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.domain import RequestContext
from recloop.serving.pipeline import ServedSlate
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(20)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        shadows=[
            {
                "name": "newest-shadow",
                "surface": "trending",
                # Only the newest items: a list the served pipeline would not make.
                "overrides": {"sources": [{"name": "newest", "quota": 50}]},
            }
        ],
    )


@pytest.fixture
def api_with_items(api: Api) -> Api:
    return api.old_and_new_items(new=10)


def _serve_all(api: Api) -> dict[str, list[str]]:
    served = {}
    for user in USERS:
        body = api.recommend(userId=user, surface="trending", limit=5)
        served[body["requestId"]] = [i["itemId"] for i in body["items"]]
        api.post_events(
            [
                {
                    "userId": user,
                    "itemId": served[body["requestId"]][0],
                    "eventType": "click",
                    "requestId": body["requestId"],
                }
            ]
        )
    runtime = api.runtime
    assert runtime.shadows is not None
    assert runtime.shadows.wait_idle()
    runtime.writer.flush()
    return served


def test_a_shadow_logs_its_own_list_for_each_request_and_users_see_the_served_one(
    api_with_items: Api,
) -> None:
    served = _serve_all(api_with_items)
    store = api_with_items.runtime.store

    shadows = store.shadow_log.scan("default", "newest-shadow", None, 100)

    assert {s.request_id for s in shadows} == set(served)
    for record in shadows:
        assert all(i.item_id.startswith("new") for i in record.items)
        assert len(record.items) == 5
        assert all(i.propensity == 1.0 for i in record.items)  # shadows never explore
        # Trending serves its ranked head: the new items could never be shown where the
        # shadow puts them.
        assert record.support == (0.0,) * 5
        assert record.latency_ms > 0
    for request_id, items in served.items():
        assert items[0] == "old0"  # the served pipeline, untouched by its shadow
        logged = store.rec_log.get("default", request_id)
        assert logged is not None
        assert [i.item_id for i in logged.items] == items
    metrics = api_with_items.client.get("/metrics").text
    assert 'recloop_shadow_runs_total{outcome="ok",shadow="newest-shadow"} 20.0' in metrics


def test_the_admin_report_compares_the_shadow_with_what_was_served(api_with_items: Api) -> None:
    _serve_all(api_with_items)

    listed = api_with_items.client.get("/api/admin/shadows").json()
    response = api_with_items.client.get("/api/admin/shadows/newest-shadow/report")

    assert listed == [
        {
            "name": "newest-shadow",
            "surface": "trending",
            "traffic": 1.0,
            "pipeline": "trending",
            "overrides": {"sources": [{"name": "newest", "quota": 50}]},
            "modelVersion": None,
        }
    ]
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["requests"] == len(USERS)
    assert report["overlap"] == 0.0
    assert report["sameSlot"] == 0.0
    # Every served list clicked once, at its first of five slots.
    assert report["servedCtr"] == pytest.approx(1 / 5)
    # Trending does not explore: the shadow's different items could never have been shown,
    # so its estimate (zero) is flagged rather than trusted.
    assert report["unsupportedShare"] == 1.0
    assert report["shadowCtr"]["value"] == 0.0
    assert any("could never have shown" in w for w in report["warnings"])
    missing = api_with_items.client.get("/api/admin/shadows/nope/report")
    assert missing.status_code == 404
    assert "nope" in missing.text


def test_a_failing_shadow_never_touches_the_served_response(
    api_with_items: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: RequestContext, k: int) -> ServedSlate:
        raise RuntimeError("the shadow's model is broken")

    runtime = api_with_items.runtime
    assert runtime.shadows is not None
    (shadow,) = runtime.shadows.shadows
    monkeypatch.setattr(shadow.pipeline, "run", broken)

    body = api_with_items.recommend(userId="user-1", surface="trending", limit=5)
    assert runtime.shadows.wait_idle()

    assert body["items"][0]["itemId"] == "old0"
    metrics = api_with_items.client.get("/metrics").text
    assert 'recloop_shadow_runs_total{outcome="error",shadow="newest-shadow"} 1.0' in metrics

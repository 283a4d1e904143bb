"""Experiments in serving: each user gets their variant's pipeline, and the log says which."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recloop.analysis.guard import ExperimentGuard, StoppedExperiments
from recloop.analysis.planning import plan_experiment
from recloop.analysis.power import minimum_detectable_effect
from recloop.config import Settings
from recloop.experiments.assignment import Assigner
from recloop.runtime.process import start_runtime, stopped_experiments_path
from recloop.serving.recommender import RecommendationRequest
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(40)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        experiments=[
            {
                "name": "newest-first",
                "surface": "trending",
                # Latency is not what this test is about: 20 requests per arm are noise.
                "guardrails": [{"metric": "hide_rate", "bad_direction": "up"}],
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
    return api.old_and_new_items(new=5)


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


def _serve_and_click(api: Api) -> dict[str, dict[str, float]]:
    """Every user gets a list of 5; users of 'newest' click twice, control users once.

    Returns the expected per-variant totals."""
    totals: dict[str, dict[str, float]] = {}
    events = []
    for user in USERS:
        body = api.recommend(userId=user, surface="trending", limit=5)
        clicks = 2 if body["variant"] == "newest" else 1
        figures = totals.setdefault(body["variant"], {"users": 0, "impressions": 0, "clicks": 0})
        figures["users"] += 1
        figures["impressions"] += len(body["items"])
        figures["clicks"] += clicks
        for item in body["items"][:clicks]:
            events.append(
                {
                    "userId": user,
                    "itemId": item["itemId"],
                    "eventType": "click",
                    "requestId": body["requestId"],
                }
            )
        # A long view of the first item: a satisfied click.
        events.append(
            {
                "userId": user,
                "itemId": body["items"][0]["itemId"],
                "eventType": "view",
                "value": 60_000,
                "requestId": body["requestId"],
            }
        )
    api.post_events(events)
    api.runtime.writer.flush()
    return totals


def test_the_admin_report_reads_each_variants_outcomes_from_the_logs(api_with_items: Api) -> None:
    expected = _serve_and_click(api_with_items)

    response = api_with_items.client.get("/api/admin/experiments/newest-first/report")

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["control"] == "control"
    by_name = {v["variant"]: v for v in report["variants"]}
    for name, figures in expected.items():
        assert by_name[name]["users"] == figures["users"]
        assert by_name[name]["impressions"] == figures["impressions"]
        assert by_name[name]["ctr"] == pytest.approx(figures["clicks"] / figures["impressions"])
        assert by_name[name]["satisfaction"] == pytest.approx(
            figures["users"] / figures["impressions"]
        )
    (treatment,) = report["treatments"]
    ctr = treatment["metrics"]["ctr"]
    assert ctr["relative_diff"] == pytest.approx(
        by_name["newest"]["ctr"] / by_name["control"]["ctr"] - 1
    )
    assert ctr["p_value"] < 0.05  # two clicks a list against one, for every user
    assert treatment["decision"]["decision"] == "ship"
    assert treatment["decision"]["guardrails"][0]["status"] == "pass"  # no hides in either
    assert report["srm"]["mismatch"] is False


def test_the_admin_experiments_list_says_what_runs(api_with_items: Api) -> None:
    response = api_with_items.client.get("/api/admin/experiments")
    assert response.status_code == 200
    (experiment,) = response.json()
    assert (experiment["name"], experiment["state"], experiment["control"]) == (
        "newest-first",
        "running",
        "control",
    )
    assert [v["name"] for v in experiment["variants"]] == ["control", "newest"]


def test_a_report_on_an_unknown_experiment_is_a_404_naming_it(api_with_items: Api) -> None:
    response = api_with_items.client.get("/api/admin/experiments/nope/report")
    assert response.status_code == 404
    assert "nope" in response.text


def test_a_tripped_guardrail_stops_the_experiment_and_everyone_gets_the_default(
    api_with_items: Api, settings: Settings
) -> None:
    runtime = api_with_items.runtime
    events = []
    for user in USERS:
        body = api_with_items.recommend(userId=user, surface="trending", limit=5)
        # The treatment's users hide everything they are shown; the control's hide one item.
        hidden = body["items"] if body["variant"] == "newest" else body["items"][:1]
        events += [
            {
                "userId": user,
                "itemId": item["itemId"],
                "eventType": "hide",
                "requestId": body["requestId"],
            }
            for item in hidden
        ]
    api_with_items.post_events(events)
    runtime.writer.flush()
    guarded = [e.model_copy(update={"auto_stop": True}) for e in settings.experiments]
    guard = ExperimentGuard(
        guarded,
        runtime.store.rec_log,
        runtime.store.events,
        StoppedExperiments(stopped_experiments_path(settings)),
        runtime.recommender.assigner.stop,
        min_users=5,
    )

    assert guard.step() == ["newest-first"]

    after = [api_with_items.recommend(userId=u, surface="trending", limit=5) for u in USERS[:10]]
    assert {(b["experiment"], b["variant"]) for b in after} == {(None, "default")}
    listed = api_with_items.client.get("/api/admin/experiments").json()
    assert listed[0]["state"] == "stopped"
    assert "hide_rate" in listed[0]["stoppedReason"]
    # Stopped is stopped: a second check finds nothing more to do.
    assert guard.step() == []


def test_a_stop_recorded_before_start_up_applies_from_the_first_request(
    settings: Settings, dev_key: str
) -> None:
    StoppedExperiments(stopped_experiments_path(settings)).stop(
        "newest-first", "stopped by hand", datetime.now(UTC)
    )
    runtime = start_runtime(settings)
    try:
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id="user-1", surface="trending", limit=5)
        )
        assert (served.experiment, served.variant) == (None, "default")
        assert b"recloop_experiments_stopped_total 1.0" in runtime.metrics.render()
    finally:
        runtime.close()


def test_an_unreadable_stop_record_is_counted_and_the_service_still_starts(
    settings: Settings, dev_key: str
) -> None:
    path = stopped_experiments_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    runtime = start_runtime(settings)
    try:
        served = runtime.recommender.recommend(
            "default", RecommendationRequest(user_id="user-1", surface="trending", limit=5)
        )
        assert served.experiment == "newest-first"
        assert b"recloop_experiment_check_errors_total 1.0" in runtime.metrics.render()
    finally:
        runtime.close()


def test_an_experiment_is_planned_from_the_surfaces_own_logs(api_with_items: Api) -> None:
    expected = _serve_and_click(api_with_items)
    store = api_with_items.runtime.store

    plan = plan_experiment(
        store.rec_log,
        store.events,
        "default",
        "trending",
        now=datetime.now(UTC) + timedelta(seconds=1),
        days=1,
        share=0.5,
        effect=0.1,
    )

    users = sum(v["users"] for v in expected.values())
    clicks = sum(v["clicks"] for v in expected.values())
    impressions = sum(v["impressions"] for v in expected.values())
    assert plan.users == users
    assert plan.baseline == pytest.approx(clicks / impressions)
    assert plan.users_per_variant == users // 2
    mde = minimum_detectable_effect(plan.baseline, users // 2, variance=plan.unit_variance)
    assert plan.mde_relative == pytest.approx(mde.mde_relative)
    assert plan.users_needed is not None
    assert plan.users_needed > plan.users_per_variant  # 10% needs more than 20 users
    with pytest.raises(ValueError, match="fewer than two users"):
        plan_experiment(
            store.rec_log, store.events, "default", "home", now=datetime.now(UTC), days=1, share=0.5
        )

"""A staged canary in the real service: it moves up a stage when one passes, completes, and
rolls back when a guardrail trips."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recloop.analysis.guard import ExperimentGuard, StoppedExperiments
from recloop.analysis.rollout import RampRecord
from recloop.config import Settings
from recloop.runtime.process import ramps_path, stopped_experiments_path
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(40)]
#: A stage lasts this long here (0.36 s), so a test can wait one out.
STAGE_HOURS = 1e-4


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        experiments=[
            {
                "name": "newest-canary",
                "surface": "trending",
                "guardrails": [{"metric": "hide_rate", "bad_direction": "up"}],
                "ramp": [0.25, 0.5, 1.0],
                "stage_hours": STAGE_HOURS,
                "stage_min_users": 5,
                "variants": [
                    {"name": "stable"},
                    {"name": "newest", "overrides": {"sources": [{"name": "newest", "quota": 50}]}},
                ],
            }
        ],
    )


@pytest.fixture
def api_with_items(api: Api) -> Api:
    # Enough new items that the canary's lists stay new after each round's hides and clicks.
    return api.old_and_new_items(new=15)


def _guard(api: Api, settings: Settings) -> ExperimentGuard:
    """A guard like the service's own, judging guardrails from 5 users per variant."""
    runtime = api.runtime
    assigner = runtime.recommender.assigner
    return ExperimentGuard(
        settings.experiments,
        runtime.store.rec_log,
        runtime.store.events,
        StoppedExperiments(stopped_experiments_path(settings)),
        assigner.stop,
        min_users=5,
        ramps=RampRecord(ramps_path(settings)),
        on_stage=assigner.set_stage,
    )


def _serve(api: Api, hide_on_canary: bool = False) -> dict[str, str]:
    """Every user gets a list; returns each user's variant (canary users may hide it all)."""
    variants = {}
    events = []
    for user in USERS:
        body = api.recommend(userId=user, surface="trending", limit=5)
        variants[user] = body["variant"]
        ids = [i["itemId"] for i in body["items"]]
        if body["variant"] == "newest":
            assert all(i.startswith("new") for i in ids)
        hidden = ids if (hide_on_canary and body["variant"] == "newest") else ids[:1]
        events += [
            {"userId": user, "itemId": i, "eventType": "hide", "requestId": body["requestId"]}
            for i in hidden
        ]
        events.append(
            {"userId": user, "itemId": ids[1], "eventType": "click", "requestId": body["requestId"]}
        )
    api.post_events(events)
    api.runtime.writer.flush()
    return variants


def _canary(variants: dict[str, str]) -> set[str]:
    return {u for u, v in variants.items() if v == "newest"}


def test_the_canary_moves_up_stage_by_stage_keeping_its_users_then_completes(
    api_with_items: Api, settings: Settings
) -> None:
    guard = _guard(api_with_items, settings)
    guard.step()  # the service's guard began the ramp at start-up; this one reads it
    first = _serve(api_with_items)
    assert 5 <= len(_canary(first)) <= 15  # 25% of 40

    time.sleep(STAGE_HOURS * 3600 * 1.2)
    assert guard.step() == []
    listed = api_with_items.client.get("/api/admin/experiments").json()[0]
    assert listed["rampStage"] == 1
    assert {v["name"]: v["share"] for v in listed["variants"]} == {"stable": 0.5, "newest": 0.5}
    assert "passed" in listed["rampHistory"][-1]["reason"]

    second = _serve(api_with_items)
    assert _canary(first) < _canary(second)  # more users, and every earlier one kept
    report = api_with_items.client.get("/api/admin/experiments/newest-canary/report").json()
    assert any("stage 2 of 3 (50% canary)" in note for note in report["notes"])
    served = sum(v["requests"] for v in report["variants"])
    assert served == len(USERS)  # the first stage's lists are left out

    time.sleep(STAGE_HOURS * 3600 * 1.2)
    guard.step()  # stage 2 passes: every user on the canary
    assert set(_serve(api_with_items).values()) == {"newest"}
    guard.step()
    state = RampRecord(ramps_path(settings)).read()["newest-canary"]
    assert (state.stage, state.complete) == (2, True)


def test_hides_on_the_canary_roll_it_back_and_everyone_gets_the_stable_surface(
    api_with_items: Api, settings: Settings
) -> None:
    guard = _guard(api_with_items, settings)
    guard.step()
    _serve(api_with_items)
    time.sleep(STAGE_HOURS * 3600 * 1.2)
    guard.step()
    assert RampRecord(ramps_path(settings)).read()["newest-canary"].stage == 1

    _serve(api_with_items, hide_on_canary=True)
    assert guard.step() == ["newest-canary"]

    after = [api_with_items.recommend(userId=u, surface="trending", limit=5) for u in USERS]
    assert {(b["experiment"], b["variant"]) for b in after} == {(None, "default")}
    listed = api_with_items.client.get("/api/admin/experiments").json()[0]
    assert listed["state"] == "stopped"
    assert "stage 2/3 (50% canary)" in listed["stoppedReason"]
    assert "hide_rate" in listed["stoppedReason"]


def test_an_unreadable_ramp_record_is_a_503_naming_the_file(
    api_with_items: Api, settings: Settings
) -> None:
    ramps_path(settings).write_text("{not json")

    listed = api_with_items.client.get("/api/admin/experiments")
    report = api_with_items.client.get("/api/admin/experiments/newest-canary/report")

    assert listed.status_code == report.status_code == 503
    assert "ramps.json" in listed.json()["detail"]
    # Serving goes on at the stage last applied.
    assert api_with_items.recommend(userId="user-1", surface="trending", limit=5)["items"]


def test_a_following_process_applies_the_leaders_stages_and_stops_and_judges_nothing(
    api_with_items: Api, settings: Settings
) -> None:
    leader = _guard(api_with_items, settings)
    leader.step()
    stages: list[tuple[str, int]] = []
    stopped: list[str] = []
    follower = ExperimentGuard(
        settings.experiments,
        api_with_items.runtime.store.rec_log,
        api_with_items.runtime.store.events,
        StoppedExperiments(stopped_experiments_path(settings)),
        stopped.append,
        min_users=5,
        ramps=RampRecord(ramps_path(settings)),
        on_stage=lambda name, stage: stages.append((name, stage)),
    )
    _serve(api_with_items)
    time.sleep(STAGE_HOURS * 3600 * 1.2)
    follower.follow()  # the stage has passed, but only the leader moves the ramp on
    assert stages == [("newest-canary", 0)]
    assert RampRecord(ramps_path(settings)).read()["newest-canary"].stage == 0

    leader.step()
    follower.follow()
    assert stages[-1] == ("newest-canary", 1)
    _serve(api_with_items, hide_on_canary=True)
    follower.follow()
    assert stopped == []  # the hides trip the guardrail, but a follower does not judge
    assert leader.step() == ["newest-canary"]
    follower.follow()
    assert stopped == ["newest-canary"]

"""LinUCB in the real service: a surface explores with it before any training (uniformly,
with logged propensities), `recloop train` fits its evidence on the logged lists and their
clicks, and the service, once it loads the new version, serves each user the items whose
features went with clicks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import (
    ComponentConfig,
    PromotionSettings,
    RankerTrainSettings,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
    TrainSettings,
    TrainSourceConfig,
)
from recloop.features.bandit_context import EVIDENCE_FILE, ContextEvidence
from recloop.registry.artifacts import ModelRegistry
from recloop.runtime.process import Runtime, start_runtime
from recloop.training.job import train
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

# Served three hours ago: old enough for every impression to be labelled (label delay 1 h).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
COMEDY = [f"c{n}" for n in range(12)]
DRAMA = [f"d{n}" for n in range(12)]
GENRE = {**dict.fromkeys(COMEDY, "Comedy"), **dict.fromkeys(DRAMA, "Drama")}
HISTORY = {"Comedy": ["hc0", "hc1", "hc2"], "Drama": ["hd0", "hd1", "hd2"]}


class Clock:
    """The service's clock: a request a second, from T0."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(params=[False, True], ids=["ranker-off", "ranker-on"])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    bandit = SurfaceConfig(
        sources=[SourceSlotConfig(name="popular", quota=50)],
        exploration=ComponentConfig(
            name="linucb", params={"pool": 30, "alpha": 0.3, "temperature": 0.03}
        ),
        online_features=True,
    )
    return settings_with(
        tmp_path / "data",
        surfaces={"bandit": bandit},
        # With the ranker off, the training set is built because a surface uses LinUCB.
        train=TrainSettings(
            sources=[TrainSourceConfig(name="covisitation")],
            ranker=RankerTrainSettings(enabled=request.param, min_positives=5),
            # Thirty fans' clicks fit a ranker that gives every candidate one score; the
            # promotion gate's score sanity would keep the version back, and LinUCB is what
            # is tested here.
            promotion=PromotionSettings(max_tied_lists=1.0),
        ),
    )


@pytest.fixture
def runtime(settings: Settings, dev_key: str) -> Iterator[Runtime]:
    started = start_runtime(settings, clock=Clock())
    yield started
    started.close()


@pytest.fixture
def api(settings: Settings, runtime: Runtime, dev_key: str) -> Iterator[Api]:
    with TestClient(create_app(settings, runtime)) as client:
        client.headers["Authorization"] = f"Bearer {dev_key}"
        yield Api(client)


def _at(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _fans(api: Api, prefix: str, n: int) -> dict[str, str]:
    """``n`` fans of each genre, each with three views of that genre an hour before T0."""
    fans = {f"{prefix}-{g[0].lower()}{m}": g for g in HISTORY for m in range(n)}
    api.post_events(
        {
            "userId": user,
            "itemId": item,
            "eventType": "view",
            "eventTs": _at(T0 - timedelta(hours=1)),
        }
        for user, genre in fans.items()
        for item in HISTORY[genre]
    )
    api.runtime.features.step()
    return fans


def _serve(api: Api, fans: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    return [(user, api.recommend(userId=user, surface="bandit", limit=6)) for user in fans]


def _in_genre_share(
    lists: list[tuple[str, dict[str, Any]]], fans: dict[str, str], top: int
) -> float:
    hits = [
        GENRE.get(item["itemId"], "") == fans[user] or item["itemId"] in HISTORY[fans[user]]
        for user, body in lists
        for item in body["items"][:top]
    ]
    return sum(hits) / len(hits)


def _check_logged(api: Api, lists: list[tuple[str, dict[str, Any]]]) -> None:
    api.runtime.writer.flush()
    for _, body in lists:
        assert len({item["itemId"] for item in body["items"]}) == 6
        logged = api.runtime.store.rec_log.get("default", body["requestId"])
        assert logged is not None
        assert [i.item_id for i in logged.items] == [i["itemId"] for i in body["items"]]
        assert all(0.0 < item.propensity <= 1.0 for item in logged.items)


def test_linucb_explores_then_learns_from_the_logged_clicks_after_training(
    api: Api, settings: Settings
) -> None:
    api.put_items({**GENRE, **{i: g for g, items in HISTORY.items() for i in items}})
    # Every item a little popular (so the popular source recalls it), with co-views for the
    # nightly covisitation source.
    catalog = [*GENRE, *HISTORY["Comedy"], *HISTORY["Drama"]]
    api.post_events(
        {
            "userId": f"filler{m}",
            "itemId": item,
            "eventType": "view",
            "eventTs": _at(T0 - timedelta(hours=2)),
        }
        for m in range(3)
        for item in catalog
    )
    api.refresh()
    fans = _fans(api, "fan", 30)

    # Before any training: no evidence, a uniform draw from the pool, propensities logged.
    before = _serve(api, fans)
    _check_logged(api, before)
    assert 0.25 < _in_genre_share(before, fans, top=2) < 0.75
    # Every fan clicks what they were shown of their genre, a few minutes later.
    api.post_events(
        {
            "userId": user,
            "itemId": item["itemId"],
            "eventType": "click",
            "requestId": body["requestId"],
            "eventTs": _at(T0 + timedelta(minutes=5)),
        }
        for user, body in before
        for item in body["items"]
        if GENRE.get(item["itemId"]) == fans[user]
    )
    # Life goes on: labels wait an hour after an impression for late conversions, on the
    # service's clock.
    clock = api.runtime.clock
    assert isinstance(clock, Clock)
    clock.now = T0 + timedelta(hours=2)
    api.post_events(
        [
            {
                "userId": "later",
                "itemId": "c0",
                "eventType": "view",
                "eventTs": _at(T0 + timedelta(hours=2)),
            }
        ]
    )
    api.runtime.writer.flush()

    result = train(settings, api.runtime.store, now=datetime.now(UTC))

    assert result.promoted
    assert result.linucb.evidence is not None
    assert result.linucb.evidence.rows == 6 * len(before)
    if settings.train.ranker.enabled:
        assert result.ranker.model is not None  # both fit on the same training set
    else:
        assert result.ranker.skipped == "disabled (train.ranker.enabled)"
    registry = ModelRegistry(settings.resolved_model_dir())
    saved = ContextEvidence.load(registry.path("default", result.version) / EVIDENCE_FILE)
    assert saved.rows == result.linucb.evidence.rows
    assert registry.manifest("default", result.version).extra["linucb"]["rows"] == saved.rows
    theta = result.linucb.report["theta_ridge_1"]
    assert theta["user_category_affinity"] > 0.3

    # The service loads the new version (its periodic check, run now) and learns nothing
    # else in between: new fans are served by the fitted evidence alone.
    api.runtime.model_loader.step()
    newcomers = _fans(api, "new", 10)
    after = _serve(api, newcomers)
    _check_logged(api, after)
    assert _in_genre_share(after, newcomers, top=2) >= 0.9
    firsts = [
        (user, api.runtime.store.rec_log.get("default", body["requestId"])) for user, body in after
    ]
    # The fan's genre is all but certain at the top; within it, the dozen items are alike to
    # the model and share the top position, well above a uniform draw's 1/27 each.
    for user, logged in firsts:
        assert logged is not None
        assert GENRE.get(logged.items[0].item_id) == newcomers[user]
    first = [logged.items[0].propensity for _, logged in firsts if logged is not None]
    assert sum(first) / len(first) > 0.06

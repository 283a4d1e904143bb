"""Thompson sampling in serving: the online counters are its evidence, every position has a
propensity."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.config import ComponentConfig, Settings, SourceSlotConfig, SurfaceConfig
from tests.factories import settings_with
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    bandit = SurfaceConfig(
        sources=[SourceSlotConfig(name="popular", quota=50)],
        # A prior of a low click rate, as real items have: unseen items are tried, but do
        # not outrank a measured winner.
        exploration=ComponentConfig(
            name="thompson", params={"pool": 20, "alpha": 1.0, "beta": 20.0}
        ),
    )
    return settings_with(tmp_path / "data", surfaces={"bandit": bandit})


def test_thompson_serves_the_item_its_evidence_favours_and_logs_propensities(api: Api) -> None:
    api.put_items({f"i{n}": "Drama" for n in range(20)})
    api.engage({f"i{n}": 3 for n in range(20)}, event_type="view")
    # i7 was seen 40 times and clicked 30; i3 was seen 200 times and never clicked.
    events = [{"userId": f"v{n}", "itemId": "i7", "eventType": "impression"} for n in range(40)]
    events += [{"userId": f"v{n}", "itemId": "i7", "eventType": "click"} for n in range(30)]
    events += [{"userId": f"w{n}", "itemId": "i3", "eventType": "impression"} for n in range(200)]
    api.post_events(events)
    api.refresh()
    api.runtime.features.step()

    lists = [api.recommend(userId=f"reader{n}", surface="bandit", limit=5) for n in range(30)]

    firsts = [body["items"][0]["itemId"] for body in lists]
    assert firsts.count("i7") >= 27
    assert all("i3" not in [i["itemId"] for i in body["items"][:3]] for body in lists)
    api.runtime.writer.flush()
    for body in lists:
        assert len({i["itemId"] for i in body["items"]}) == 5
        logged = api.runtime.store.rec_log.get("default", body["requestId"])
        assert logged is not None
        assert all(0 < item.propensity <= 1 for item in logged.items)
        # i7 at the top is all but certain, and the log says so.
        if logged.items[0].item_id == "i7":
            assert logged.items[0].propensity > 0.9

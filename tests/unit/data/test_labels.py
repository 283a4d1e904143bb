"""Labels on one clock: engagement joins its impression whatever the client's clock says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from recloop.config import LabelConfig
from recloop.data.cleaning import clean_events
from recloop.data.labels import label_impressions
from recloop.data.snapshots import EVENTS_SCHEMA, IMPRESSIONS_SCHEMA

pytestmark = pytest.mark.unit

#: The server's clock when the lists were served.
SERVER = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Log:
    """Served lists (server clock) and the client's events (client clock, arrival time)."""

    def __init__(self) -> None:
        self.impressions: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def serve(
        self, request: str, items: list[str], at: datetime, user: str = "u1", session: str = "s1"
    ) -> None:
        for position, item in enumerate(items):
            self.impressions.append(
                {
                    "request_id": request,
                    "user_id": user,
                    "surface": "home",
                    "served_at": at,
                    "session_id": session,
                    "device": "ios",
                    "item_id": item,
                    "position": position,
                    "score": 1.0,
                    "source": "popular",
                    "propensity": 1.0,
                    "source_scores": None,
                    "model_version": "v",
                    "variant": "default",
                }
            )

    def event(
        self,
        kind: str,
        item: str,
        *,
        stamped: datetime,
        arrived: datetime,
        request: str | None = None,
        user: str = "u1",
        session: str = "s1",
        value: float | None = None,
    ) -> None:
        n = len(self.events) + 1
        self.events.append(
            {
                "seq": n,
                "app_id": "a",
                "event_id": f"e{n}",
                "user_id": user,
                "item_id": item,
                "event_type": kind,
                "value": value,
                "surface": "home",
                "session_id": session,
                "device": "ios",
                "position": None,
                "request_id": request,
                "event_ts": stamped,
                "server_ts": arrived,
                "context": None,
            }
        )

    def label(self, config: LabelConfig | None = None) -> tuple[pa.Table, Any]:
        events, _ = clean_events(pa.Table.from_pylist(self.events, schema=EVENTS_SCHEMA))
        impressions = pa.Table.from_pylist(self.impressions, schema=IMPRESSIONS_SCHEMA)
        return label_impressions(impressions, events, config or LabelConfig())


def clicked(table: pa.Table) -> dict[str, int]:
    return {f"{r['request_id']}/{r['item_id']}": r["label_click"] for r in table.to_pylist()}


def test_a_client_months_behind_the_server_still_credits_its_clicks() -> None:
    log = Log()
    behind = 120 * DAY
    log.serve("r1", ["a", "b", "c"], SERVER)
    # The client's clock says four months ago; the events arrive seconds after serving.
    log.event("click", "b", stamped=SERVER - behind + timedelta(seconds=5),
              arrived=SERVER + timedelta(seconds=5), request="r1")  # fmt: skip
    log.event("like", "b", stamped=SERVER - behind + timedelta(seconds=60),
              arrived=SERVER + timedelta(seconds=61), request="r1")  # fmt: skip
    # Two days later on the server: the impression is old enough to label.
    log.event("click", "z", stamped=SERVER - behind + 2 * DAY, arrived=SERVER + 2 * DAY)

    table, report = log.label()

    assert clicked(table) == {"r1/a": 0, "r1/b": 1, "r1/c": 0}
    assert [r["label"] for r in table.to_pylist()] == [0, 1, 0]
    assert report.too_recent == 0
    assert report.attributed_by_request == 1


def test_a_client_months_ahead_on_its_own_clock_is_credited_too() -> None:
    log = Log()
    log.serve("r1", ["a", "b"], SERVER)
    # A clock 250 s ahead (inside what ingestion accepts); the click names the request.
    log.event("click", "a", stamped=SERVER + timedelta(seconds=253),
              arrived=SERVER + timedelta(seconds=3), request="r1")  # fmt: skip
    log.event("click", "z", stamped=SERVER + 2 * DAY, arrived=SERVER + 2 * DAY)
    table, _ = log.label()
    assert clicked(table) == {"r1/a": 1, "r1/b": 0}


def test_engagement_past_the_window_after_the_requests_first_event_is_not_credited() -> None:
    log = Log()
    behind = 30 * DAY
    log.serve("r1", ["a", "b"], SERVER)
    start = SERVER - behind
    log.event("impression", "a", stamped=start, arrived=SERVER + timedelta(seconds=1),
              request="r1")  # fmt: skip
    log.event("click", "a", stamped=start + timedelta(minutes=10),
              arrived=SERVER + timedelta(minutes=10), request="r1")  # fmt: skip
    # Two hours later on the client's clock: past a 30-minute window.
    log.event("click", "b", stamped=start + timedelta(hours=2),
              arrived=SERVER + timedelta(hours=2), request="r1")  # fmt: skip
    log.event("click", "z", stamped=start + 3 * DAY, arrived=SERVER + 3 * DAY)
    table, _ = log.label(LabelConfig(attribution_window_s=1800))
    assert clicked(table) == {"r1/a": 1, "r1/b": 0}


def test_an_upload_hours_late_is_still_credited_to_its_request() -> None:
    log = Log()
    log.serve("r1", ["a", "b"], SERVER)
    late = timedelta(hours=6)
    # An offline client: right clock, every event of the session sent six hours later.
    log.event("impression", "a", stamped=SERVER + timedelta(seconds=1),
              arrived=SERVER + late, request="r1")  # fmt: skip
    log.event("click", "b", stamped=SERVER + timedelta(seconds=40),
              arrived=SERVER + late, request="r1")  # fmt: skip
    log.event("click", "z", stamped=SERVER + 2 * DAY, arrived=SERVER + 2 * DAY, session="s2")
    table, _ = log.label()
    assert clicked(table) == {"r1/a": 0, "r1/b": 1}


def test_events_without_a_request_join_the_latest_impression_on_the_servers_timeline() -> None:
    log = Log()
    behind = 60 * DAY
    log.serve("r1", ["a", "b"], SERVER)
    log.serve("r2", ["a", "c"], SERVER + timedelta(minutes=20))
    # No requestId: the session's clock is two months behind; the click came 5 minutes
    # after the second list, so it belongs to r2.
    log.event("impression", "c", stamped=SERVER - behind + timedelta(minutes=20, seconds=1),
              arrived=SERVER + timedelta(minutes=20, seconds=1))  # fmt: skip
    log.event("click", "a", stamped=SERVER - behind + timedelta(minutes=25),
              arrived=SERVER + timedelta(minutes=25, seconds=1))  # fmt: skip
    log.event("click", "z", stamped=SERVER - behind + 2 * DAY, arrived=SERVER + 2 * DAY)
    table, report = log.label()
    assert clicked(table) == {"r1/a": 0, "r1/b": 0, "r2/a": 1, "r2/c": 0}
    assert report.attributed_by_window == 2  # the impression event of c, and the click on a


def test_a_replay_faster_than_real_time_labels_by_the_users_own_clock() -> None:
    log = Log()
    # The server's clock moved ten minutes while the user's moved two days: a replay.
    log.serve("r1", ["a", "b"], SERVER)
    log.event("click", "a", stamped=SERVER + timedelta(seconds=30),
              arrived=SERVER + timedelta(seconds=1), request="r1")  # fmt: skip
    log.event("click", "z", stamped=SERVER + 2 * DAY, arrived=SERVER + timedelta(minutes=10),
              session="s2")  # fmt: skip
    # A second user served at the end, with no later activity: too recent on both clocks.
    log.serve("r2", ["a"], SERVER + timedelta(minutes=9), user="u2", session="t1")

    table, report = log.label(LabelConfig(label_delay_s=3600))

    assert clicked(table) == {"r1/a": 1, "r1/b": 0}
    assert report.mature_by_server_clock == 0
    assert report.mature_by_user_clock == 2
    assert report.too_recent == 1


def test_an_impression_younger_than_the_delay_on_both_clocks_is_left_out() -> None:
    log = Log()
    log.serve("r1", ["a"], SERVER)
    log.event("click", "a", stamped=SERVER + timedelta(seconds=5),
              arrived=SERVER + timedelta(seconds=5), request="r1")  # fmt: skip
    log.event("view", "b", stamped=SERVER + timedelta(minutes=30),
              arrived=SERVER + timedelta(minutes=30))  # fmt: skip
    table, report = log.label(LabelConfig(label_delay_s=3600))
    assert table.num_rows == 0
    assert (report.impressions, report.too_recent, report.label_delay_s) == (1, 1, 3600.0)

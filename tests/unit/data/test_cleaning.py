"""Event cleaning on crafted tables where every filter's count is known exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pydantic
import pytest

from recloop.config import CleaningConfig
from recloop.data.cleaning import BotUser, clean_events
from recloop.data.snapshots import EVENTS_SCHEMA
from recloop.errors import InvalidInput

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Events:
    """Rows of a snapshot's events table, each unique unless told otherwise."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        *,
        user: str = "u1",
        item: str | None = "i1",
        kind: str = "click",
        at: float = 0.0,
        session: str | None = "s1",
        value: float | None = None,
        event_id: str | None = None,
        app: str = "a",
        lag: float = 1.0,
        seq: int | None = None,
    ) -> None:
        number = len(self.rows) + 1
        self.rows.append(
            {
                "seq": number if seq is None else seq,
                "app_id": app,
                "event_id": event_id or f"e{number}",
                "user_id": user,
                "item_id": item,
                "event_type": kind,
                "value": value,
                "surface": "home",
                "session_id": session,
                "device": None,
                "position": None,
                "request_id": None,
                "event_ts": T0 + timedelta(seconds=at),
                "server_ts": T0 + timedelta(seconds=at + lag),
                "context": None,
            }
        )

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=EVENTS_SCHEMA)


def seqs(table: pa.Table) -> list[int]:
    return sorted(table.column("seq").to_pylist())


def test_repeated_event_ids_are_dropped_keeping_the_lowest_seq() -> None:
    ev = Events()
    ev.add(event_id="x", item="i1", seq=5)
    ev.add(event_id="x", item="i2", at=60, seq=2)
    ev.add(event_id="x", item="i3", at=120, seq=9)
    ev.add(event_id="y", item="i4", seq=3)
    ev.add(event_id="y", item="i5", seq=4)
    ev.add(event_id="z", item="i6", seq=6)
    ev.add(event_id="x", item="i7", app="b", seq=7)  # the same id in another app is another event
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    step = report.step("dedupe_event_id")
    assert (step.rows_in, step.rows_dropped) == (7, 3)
    assert seqs(cleaned) == [2, 3, 6, 7]
    assert report.rows_out == 4


def test_repeats_within_the_window_are_dropped_keeping_the_earliest() -> None:
    ev = Events()
    # One (user, item, type, session): 0, 2, 4, 9 are each within 5 s of the one before;
    # 14.5 is 5.5 s after 9. The event at 4 arrives first, which does not matter.
    ev.add(at=4.0, seq=1)
    for seq, at in ((2, 0.0), (3, 2.0), (4, 9.0), (5, 14.5)):
        ev.add(at=at, seq=seq)
    ev.add(at=1.0, session="s2")  # another session
    ev.add(at=1.0, kind="view")  # another type
    ev.add(at=1.0, item="i2")  # another item
    ev.add(at=1.0, user="u2")  # another user
    ev.add(at=0.0, session=None, item="i9", seq=20)
    ev.add(at=1.0, session=None, item="i9", seq=21)  # no session twice: still one session
    ev.add(at=0.0, item=None, kind="search", seq=30)
    ev.add(at=0.5, item=None, kind="search", seq=31)  # no item (searches): never a repeat
    cleaned, report = clean_events(ev.table(), CleaningConfig(repeat_window_s=5))
    step = report.step("dedupe_repeats")
    assert (step.rows_in, step.rows_dropped) == (13, 4)
    kept = set(cleaned.column("seq").to_pylist())
    assert {1, 3, 4, 21}.isdisjoint(kept)
    assert {2, 5, 20, 30, 31} <= kept
    assert cleaned.num_rows == 9


def test_every_event_of_a_user_over_the_peak_rate_is_dropped() -> None:
    ev = Events()
    for k in range(61):  # 61 events in the minute from 12:00:00, on distinct items
        ev.add(user="fast", item=f"f{k}", kind="view", at=k * 0.5)
    for k in range(5):  # and a few on another day
        ev.add(user="fast", item=f"g{k}", at=86_400 + k * 60)
    for k in range(60):  # exactly the limit
        ev.add(user="busy", item=f"b{k}", kind="view", at=k * 0.5)
    ev.add(user="calm", item="c1")
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    step = report.step("bot_filter")
    assert (step.rows_in, step.rows_dropped) == (127, 66)
    assert report.bot_users == (BotUser("a", "fast", 61, 5, 0, "rate"),)
    assert set(cleaned.column("user_id").to_pylist()) == {"busy", "calm"}


def test_users_clicking_nearly_everything_they_see_are_bots() -> None:
    ev = Events()
    plan = {  # user: (clicks, impressions)
        "clicky": (30, 30),  # CTR 1.0 above 0.8 with 30 clicks: a bot
        "blind": (30, 0),  # clicks without impressions: a bot
        "few": (29, 0),  # under 30 clicks: not judged
        "fair": (30, 40),  # CTR 0.75
        "edge": (32, 40),  # CTR 0.8 exactly is not above 0.8
    }
    for user, (clicks, impressions) in plan.items():
        for k in range(impressions):
            ev.add(user=user, item=f"i{k}", kind="impression", at=k * 2.0)
        for k in range(clicks):
            ev.add(user=user, item=f"i{k}", kind="click", at=k * 2.0 + 1)
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    assert [(b.user_id, b.clicks, b.impressions, b.reason) for b in report.bot_users] == [
        ("blind", 30, 0, "ctr"),
        ("clicky", 30, 30, "ctr"),
    ]
    assert report.step("bot_filter").rows_dropped == 90
    assert set(cleaned.column("user_id").to_pylist()) == {"few", "fair", "edge"}


def test_bots_are_judged_on_events_left_by_the_deduplication() -> None:
    ev = Events()
    for k in range(59):
        ev.add(user="u", item=f"i{k}", kind="view", at=k * 0.5)
    ev.add(user="u", item="i0", kind="view", at=0.5)  # a repeat of the first within 5 s
    ev.add(user="u", event_id="e1", item="z", kind="view", at=1.0)  # a repeated event id
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    assert report.bot_users == ()
    assert cleaned.num_rows == 59
    tighter, tight_report = clean_events(ev.table(), CleaningConfig(max_events_per_minute=58))
    assert [b.user_id for b in tight_report.bot_users] == ["u"]
    assert tighter.num_rows == 0


def test_view_values_are_capped_at_a_multiple_of_the_items_median() -> None:
    ev = Events()
    for n, value in enumerate([10.0, 10.0, 10.0, 100.0, 1000.0]):  # median 10: cap at 100
        ev.add(user=f"a{n}", item="A", kind="view", value=value)
    ev.add(user="a9", item="A", kind="view", value=None)
    ev.add(user="p1", item="A", kind="purchase", value=5000.0)  # not a view
    for n, value in enumerate([0.0, 0.0, 7.0]):  # median 0: nothing to scale a cap by
        ev.add(user=f"b{n}", item="B", kind="view", value=value)
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    step = report.step("dwell_cap")
    assert (step.rows_in, step.rows_dropped, step.rows_changed) == (10, 0, 1)
    values = {(row["user_id"], row["item_id"]): row["value"] for row in cleaned.to_pylist()}
    assert values[("a4", "A")] == 100.0
    assert values[("a3", "A")] == 100.0
    assert values[("a9", "A")] is None
    assert values[("p1", "A")] == 5000.0
    assert values[("b2", "B")] == 7.0
    halved, halved_report = clean_events(ev.table(), CleaningConfig(dwell_cap_multiple=5))
    assert halved_report.step("dwell_cap").rows_changed == 2
    capped = {row["user_id"]: row["value"] for row in halved.to_pylist() if row["item_id"] == "A"}
    assert [capped[f"a{n}"] for n in range(5)] == [10.0, 10.0, 10.0, 50.0, 50.0]


def test_lag_is_measured_and_the_output_sorted_by_event_time_then_seq() -> None:
    ev = Events()
    for k in range(100):  # lags 1..100 s; arrival order is the reverse of event time
        ev.add(user=f"u{k}", at=1000.0 - k * 10, lag=k + 1.0, seq=k + 1)
    ev.add(user="tie", at=1000.0, seq=0)  # the same event time as seq 1, and a lower seq
    cleaned, report = clean_events(ev.table(), CleaningConfig(late_after_s=90))
    lag = report.lag
    assert lag.max_s == 100.0
    assert lag.p50_s == pytest.approx(50.0)  # 101 lags: 1..100 and the tie's 1
    assert lag.p95_s == pytest.approx(95.0)
    assert lag.p99_s == pytest.approx(99.0)
    assert lag.late_share == pytest.approx(10 / 101)
    assert "10 arrived over 90 s late" in report.step("late_events").reason
    order = cleaned.column("seq").to_pylist()
    assert order[:3] == [100, 99, 98]
    assert order[-2:] == [0, 1]
    stamps = cleaned.column("event_ts").to_pylist()
    assert stamps == sorted(stamps)


def test_output_keeps_the_input_schema_and_extra_columns_and_adds_the_client_time() -> None:
    ev = Events()
    ev.add()
    ev.add(item="i2", value=3.5)
    table = ev.table().append_column("note", pa.array(["a", "b"]))
    cleaned, _ = clean_events(table, CleaningConfig())
    assert cleaned.schema == table.schema.append(pa.field("client_ts", pa.timestamp("us", "UTC")))
    assert cleaned.column("note").to_pylist() == ["a", "b"]
    assert cleaned.column("event_ts").type == pa.timestamp("us", tz="UTC")


def test_a_table_without_a_needed_column_is_refused() -> None:
    ev = Events()
    ev.add()
    with pytest.raises(InvalidInput, match="missing columns: seq"):
        clean_events(ev.table().drop_columns(["seq"]), CleaningConfig())


def test_an_empty_table_gives_an_empty_result_and_no_lag() -> None:
    cleaned, report = clean_events(EVENTS_SCHEMA.empty_table(), CleaningConfig())
    assert cleaned.num_rows == 0
    assert report.lag.p50_s is None
    assert report.lag.late_share is None
    assert "no events" in report.render()


def test_report_renders_every_step_and_serialises_to_json() -> None:
    ev = Events()
    ev.add(event_id="x")
    ev.add(event_id="x", at=30)
    ev.add(at=2)
    for k in range(61):
        ev.add(user="bot", item=f"i{k}", kind="view")
    cleaned, report = clean_events(ev.table())
    text = report.render()
    lines = text.splitlines()
    assert lines[0].split() == ["step", "rows", "in", "dropped", "changed", "reason"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[2:8]}
    assert rows == {
        "dedupe_event_id": ["64", "1", "0"],
        "dedupe_repeats": ["63", "1", "0"],
        "bot_filter": ["62", "61", "0"],
        "dwell_cap": ["1", "0", "0"],
        "align_clocks": ["1", "0", "0"],
        "late_events": ["1", "0", "0"],
    }
    assert "rows in 64, rows out 1" in text
    assert "bot users (1): bot (rate)" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["rows_out"] == cleaned.num_rows == 1
    assert [s["name"] for s in data["steps"]] == list(rows)
    assert data["bot_users"][0]["user_id"] == "bot"
    assert data["lag"]["max_s"] == 1.0


def test_config_is_frozen_and_refuses_unknown_settings() -> None:
    config = CleaningConfig()
    assert (config.repeat_window_s, config.max_events_per_minute) == (5.0, 60)
    assert (config.bot_min_clicks, config.bot_max_ctr, config.dwell_cap_multiple) == (30, 0.8, 10)
    with pytest.raises(pydantic.ValidationError):
        CleaningConfig(max_events_per_min=10)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        config.repeat_window_s = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        CleaningConfig(dwell_cap_multiple=0)


def test_a_session_whose_clock_is_months_behind_moves_onto_the_servers_timeline() -> None:
    behind = 90 * 86400.0
    ev = Events()
    # A session stamped 90 days behind the server, one event of it uploaded a minute late.
    ev.add(user="slow", session="s-slow", item="i1", at=0.0, lag=behind + 0.5)
    ev.add(user="slow", session="s-slow", item="i2", at=10.0, lag=behind + 0.2)
    ev.add(user="slow", session="s-slow", item="i3", at=20.0, lag=behind + 60.0)
    # A session whose clock is right: latency only, left where it is.
    ev.add(user="ok", session="s-ok", item="i1", at=5.0, lag=0.3)

    cleaned, report = clean_events(ev.table(), CleaningConfig(clock_tolerance_s=2.0))

    by_item_user = {(r["user_id"], r["item_id"]): r for r in cleaned.to_pylist()}
    slow = [by_item_user[("slow", f"i{k}")] for k in (1, 2, 3)]
    # One offset for the session (its least delay, 90 days + 0.2 s): order and gaps kept.
    shift = timedelta(seconds=behind + 0.2)
    assert [r["event_ts"] for r in slow] == [r["client_ts"] + shift for r in slow]
    assert [r["client_ts"] for r in slow] == [
        T0,
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=20),
    ]
    ok = by_item_user[("ok", "i1")]
    assert ok["event_ts"] == ok["client_ts"] == T0 + timedelta(seconds=5)
    clock = report.clock
    assert (clock.sessions, clock.corrected_sessions, clock.corrected_events) == (2, 1, 3)
    assert clock.max_abs_offset_s == pytest.approx(behind + 0.2)
    assert report.step("align_clocks").rows_changed == 3
    assert "1 of 2 sessions (3 events)" in report.render()
    # Sorted on the server's timeline: the corrected session comes after the other.
    assert cleaned.column("user_id").to_pylist() == ["ok", "slow", "slow", "slow"]


def test_a_clock_ahead_of_the_server_is_corrected_too() -> None:
    ev = Events()
    ev.add(user="fast", session="s", item="i1", at=0.0, lag=-120.0)
    ev.add(user="fast", session="s", item="i2", at=30.0, lag=-119.0)
    cleaned, report = clean_events(ev.table(), CleaningConfig())
    assert [r["event_ts"] for r in cleaned.to_pylist()] == [
        T0 - timedelta(seconds=120),
        T0 + timedelta(seconds=30 - 120),
    ]
    assert report.clock.offset_p50_s == pytest.approx(-120.0)

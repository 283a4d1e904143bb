"""Event rules: each rule names its field; arbitrary input never crashes the validator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.domain import Event, EventType
from recloop.ingest.validate import Rejection, validate_event
from recloop.ingest.wire import MAX_CONTEXT_BYTES

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
BASE: dict[str, Any] = {"userId": "u1", "itemId": "i1", "eventType": "click"}


def validate(raw: Any, *, now: datetime = NOW, skew: timedelta = SKEW) -> Event | Rejection:
    return validate_event(raw, app_id="app", now=now, max_future_skew=skew, index=7)


def accepted(raw: Any) -> Event:
    outcome = validate(raw)
    assert isinstance(outcome, Event), outcome
    return outcome


def rejected_field(raw: Any) -> str:
    outcome = validate(raw)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.index == 7
    assert outcome.reason
    return outcome.field


def test_valid_event_is_stamped_with_app_server_time_and_fields() -> None:
    event = accepted(
        {
            **BASE,
            "eventId": "e1",
            "value": 1.5,
            "surface": "home",
            "sessionId": "s1",
            "device": "ios",
            "position": 3,
            "requestId": "r1",
            "context": {"query": "jazz"},
        }
    )
    assert event == Event(
        app_id="app",
        event_id="e1",
        user_id="u1",
        event_type=EventType.CLICK,
        event_ts=NOW,
        server_ts=NOW,
        item_id="i1",
        value=1.5,
        surface="home",
        session_id="s1",
        device="ios",
        position=3,
        request_id="r1",
        context={"query": "jazz"},
    )


def test_missing_user_id_is_rejected_on_user_id() -> None:
    assert rejected_field({"itemId": "i1", "eventType": "click"}) == "userId"


def test_unknown_event_type_is_rejected_on_event_type() -> None:
    assert rejected_field({**BASE, "eventType": "teleport"}) == "eventType"


def test_negative_position_is_rejected_on_position() -> None:
    assert rejected_field({**BASE, "position": -1}) == "position"
    assert accepted({**BASE, "position": 0}).position == 0


def test_negative_value_is_rejected_on_value() -> None:
    assert rejected_field({**BASE, "value": -0.5}) == "value"


def test_event_ts_too_far_in_the_future_is_rejected_on_event_ts() -> None:
    late = NOW + SKEW + timedelta(microseconds=1)
    assert rejected_field({**BASE, "eventTs": late.isoformat()}) == "eventTs"
    assert rejected_field({**BASE, "eventTs": (NOW + timedelta(days=1)).isoformat()}) == "eventTs"


def test_event_ts_exactly_at_the_skew_limit_is_accepted() -> None:
    limit = NOW + SKEW
    assert accepted({**BASE, "eventTs": limit.isoformat()}).event_ts == limit


def test_event_ts_in_the_past_is_kept() -> None:
    past = NOW - timedelta(days=400)
    assert accepted({**BASE, "eventTs": past.isoformat()}).event_ts == past


def test_naive_event_ts_is_treated_as_utc() -> None:
    event = accepted({**BASE, "eventTs": "2024-05-01T10:30:00"})
    assert event.event_ts == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert event.event_ts.utcoffset() == timedelta(0)
    # A naive time within the skew of now is not shifted by the machine's zone.
    near = accepted({**BASE, "eventTs": (NOW + SKEW).replace(tzinfo=None).isoformat()})
    assert near.event_ts == NOW + SKEW


def test_event_ts_with_an_offset_is_converted_to_utc() -> None:
    event = accepted({**BASE, "eventTs": "2024-05-01T14:00:00+05:30"})
    assert event.event_ts == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    assert event.event_ts.tzinfo is UTC


@pytest.mark.parametrize("seconds", [1714564800, 1714564800.5, "1714564800"])
def test_a_number_as_event_ts_is_seconds_since_the_epoch(seconds: Any) -> None:
    event = accepted({**BASE, "eventTs": seconds})
    assert event.event_ts == datetime.fromtimestamp(float(seconds), UTC)


@pytest.mark.parametrize("number", [1714564800000, 2.5e10, "1714564800000", -2e10])
def test_a_number_too_large_to_be_seconds_is_refused_not_read_as_milliseconds(
    number: Any,
) -> None:
    outcome = validate({**BASE, "eventTs": number})
    assert isinstance(outcome, Rejection), outcome
    assert outcome.field == "eventTs"
    assert "seconds since 1970" in outcome.reason


def test_absent_event_ts_defaults_to_arrival() -> None:
    assert accepted(BASE).event_ts == NOW


@pytest.mark.parametrize("event_type", [t for t in EventType if t is not EventType.SEARCH])
def test_item_id_is_required_for_every_type_but_search(event_type: EventType) -> None:
    assert rejected_field({"userId": "u1", "eventType": event_type.value}) == "itemId"


def test_search_needs_no_item_id() -> None:
    event = accepted({"userId": "u1", "eventType": "search", "context": {"query": "jazz"}})
    assert event.item_id is None
    assert event.event_type is EventType.SEARCH


def test_extra_field_is_rejected_with_its_name() -> None:
    assert rejected_field({**BASE, "rating": 5}) == "rating"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"userId": "u\x001"}, "userId"),
        ({"itemId": "\x00"}, "itemId"),
        ({"eventId": "e\x00"}, "eventId"),
        ({"surface": "ho\x00me"}, "surface"),
        ({"context": {"q": "a\x00b"}}, "context"),
        ({"context": {"k\x00": 1}}, "context"),
        ({"context": {"deep": [{"x": ["\x00"]}]}}, "context"),
    ],
)
def test_nul_character_is_rejected_on_its_field(extra: dict[str, Any], field: str) -> None:
    assert rejected_field({**BASE, **extra}) == field


def test_oversized_context_is_rejected_on_context() -> None:
    assert rejected_field({**BASE, "context": {"blob": "x" * MAX_CONTEXT_BYTES}}) == "context"
    fits = {"blob": "x" * (MAX_CONTEXT_BYTES - 20)}
    assert accepted({**BASE, "context": fits}).context == fits


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_value_is_rejected(number: float) -> None:
    assert rejected_field({**BASE, "value": number}) == "value"
    assert rejected_field({**BASE, "context": {"score": number}}) == "context"
    assert rejected_field({**BASE, "context": {"scores": [1.0, number]}}) == "context"


def test_absent_event_id_is_made_by_the_server_and_unique() -> None:
    first, second = accepted(BASE), accepted(BASE)
    assert first.event_id
    assert second.event_id
    assert first.event_id != second.event_id
    assert accepted({**BASE, "eventId": "client-1"}).event_id == "client-1"


@pytest.mark.parametrize("raw", [None, [], "event", 3, [BASE]])
def test_non_object_is_rejected_on_event(raw: Any) -> None:
    assert rejected_field(raw) == "event"


def test_overlong_id_is_rejected_on_its_field() -> None:
    assert rejected_field({**BASE, "userId": "u" * 257}) == "userId"
    assert accepted({**BASE, "userId": "u" * 256}).user_id == "u" * 256


def test_context_integer_beyond_64_bits_is_a_rejection_not_a_crash() -> None:
    # Python's json (and so any JSON-like caller) yields big integers; orjson cannot encode them.
    assert rejected_field({**BASE, "context": {"id": 2**70}}) == "context"


def test_event_ts_that_cannot_be_expressed_in_utc_is_a_rejection_not_a_crash() -> None:
    # 0001-01-01T00:00+05:00 is before datetime.min once converted to UTC.
    assert rejected_field({**BASE, "eventTs": "0001-01-01T00:00:00+05:00"}) == "eventTs"


# --- properties ------------------------------------------------------------------------------

# Integers as a JSON decoder hands them over (orjson: 64-bit; bigger ones are tested above).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "eventId",
        "userId",
        "itemId",
        "eventType",
        "value",
        "surface",
        "sessionId",
        "device",
        "position",
        "requestId",
        "eventTs",
        "context",
    ]
)
event_types = st.sampled_from([t.value for t in EventType])
# Objects that look like events, so that generated input gets past the first rules.
event_like = st.dictionaries(
    field_names, json_values | event_types | st.just("u1"), max_size=8
).map(lambda d: {**BASE, **d})


@given(raw=json_values | event_like)
def test_validate_event_returns_an_event_or_a_rejection_for_any_json(raw: Any) -> None:
    outcome = validate(raw)
    assert isinstance(outcome, Event | Rejection)
    if isinstance(outcome, Rejection):
        assert outcome.index == 7
        assert outcome.field
        assert outcome.reason


offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
client_times = st.datetimes(
    min_value=datetime(2, 1, 1),  # year-1 conversions are covered by their own test above
    max_value=datetime(9998, 12, 31),
    timezones=st.none() | offsets,
)


@given(
    client_ts=client_times,
    as_text=st.booleans(),
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    skew=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
    event_type=event_types,
)
def test_accepted_event_ts_is_utc_and_never_later_than_now_plus_skew(
    client_ts: datetime, as_text: bool, now: datetime, skew: timedelta, event_type: str
) -> None:
    now = now.replace(tzinfo=UTC)
    sent: Any = client_ts.isoformat() if as_text else client_ts
    outcome = validate({**BASE, "eventType": event_type, "eventTs": sent}, now=now, skew=skew)
    instant = client_ts if client_ts.tzinfo is not None else client_ts.replace(tzinfo=UTC)
    if isinstance(outcome, Rejection):
        assert outcome.field == "eventTs"
        assert instant > now + skew
    else:
        assert outcome.event_ts.tzinfo is not None
        assert outcome.event_ts.utcoffset() == timedelta(0)
        assert outcome.event_ts <= now + skew
        assert outcome.event_ts == instant
        assert outcome.server_ts == now


def test_a_search_query_is_normalized_and_its_personal_data_scrubbed_before_storage() -> None:
    event = accepted(
        {
            "userId": "u1",
            "eventType": "search",
            "query": "  Refund  for ORDER from jane.doe@example.com ",
        }
    )
    assert event.query == "refund for order from <email>"


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("   ", "must not be empty after normalization"),
        ("x" * 201, "must be at most 200 characters after normalization (has 201)"),
    ],
)
def test_a_query_that_breaks_a_rule_is_refused_naming_the_field(query: str, rule: str) -> None:
    outcome = validate_event(
        {"userId": "u1", "eventType": "search", "query": query},
        app_id="a",
        now=NOW,
        max_future_skew=timedelta(minutes=5),
    )
    assert isinstance(outcome, Rejection)
    assert (outcome.field, outcome.reason) == ("query", rule)

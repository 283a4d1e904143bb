"""What makes an event sent again under a stored id a conflict rather than a retry."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from recloop.ingest.accept import differences
from tests.factories import T0, make_event

pytestmark = pytest.mark.unit

LATER = T0 + timedelta(seconds=30)


def test_a_retry_of_the_same_event_differs_in_nothing_but_its_arrival() -> None:
    stored = make_event()  # no eventTs from the client: event_ts == server_ts
    retry = dataclasses.replace(stored, event_ts=LATER, server_ts=LATER)
    assert differences(retry, stored) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("item_id", "i2"), ("user_id", "u2"), ("value", 3.0), ("context", {"a": 1}), ("position", 4)],
)
def test_a_changed_client_field_is_named(field: str, value: object) -> None:
    stored = make_event()
    assert differences(dataclasses.replace(stored, **{field: value}), stored) == [field]


def test_event_ts_is_compared_only_when_the_client_stamped_both() -> None:
    stamped = make_event(event_ts=T0 - timedelta(hours=1))
    other_time = dataclasses.replace(stamped, event_ts=T0 - timedelta(hours=2))
    unstamped_retry = dataclasses.replace(stamped, event_ts=LATER, server_ts=LATER)
    assert differences(other_time, stamped) == ["event_ts"]
    assert differences(unstamped_retry, stamped) == []

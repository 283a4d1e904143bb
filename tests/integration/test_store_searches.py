"""The store's read of a user's searches, for the suggestion surface: on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recloop.domain import EventType
from recloop.store import Store
from recloop.store.protocols import SearchRecord
from tests.factories import APP, OTHER_APP, T0, make_event

pytestmark = pytest.mark.integration


def search(event_id: str, query: str | None, minutes: int, **fields: object) -> object:
    return make_event(
        event_id,
        event_type=EventType.SEARCH,
        item_id=None,
        query=query,
        event_ts=T0 + timedelta(minutes=minutes),
        **fields,
    )


def test_recent_searches_are_the_users_latest_queries_most_recent_first(apps: Store) -> None:
    apps.events.append(
        [
            search("e1", "running shoes", 0, session_id="s1"),
            search("e2", "trail shoes", 5, session_id="s2"),
            search("e3", None, 6),  # a search without a query is not one to suggest
            search("e4", "red dress", 7, session_id=None),
            make_event("e5", item_id="i1", event_ts=T0 + timedelta(minutes=8)),  # a click
            search("e6", "theirs", 9, user_id="u2"),
            search("e7", "elsewhere", 9, app_id=OTHER_APP),
        ]
    )
    assert apps.events.recent_searches(APP, "u1", 10) == [
        SearchRecord("red dress", None, T0 + timedelta(minutes=7)),
        SearchRecord("trail shoes", "s2", T0 + timedelta(minutes=5)),
        SearchRecord("running shoes", "s1", T0),
    ]
    assert [s.query for s in apps.events.recent_searches(APP, "u1", 2)] == [
        "red dress",
        "trail shoes",
    ]
    assert apps.events.recent_searches(APP, "u1", 0) == []
    assert apps.events.recent_searches(APP, "nobody", 10) == []

"""The live overlay's follower (``serving.suggest_live``): it reads the store by ``seq``, so
it counts what another replica wrote; it starts again from a new model's cut-off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from recloop.config import SuggestionSettings
from recloop.domain import Event, EventType
from recloop.serving.suggest_live import LiveSearches
from recloop.store import Store, open_store
from recloop.store.migrate import upgrade
from tests.factories import APP, OTHER_APP, T0, make_event

pytestmark = pytest.mark.unit


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two handles on one store: the replica that takes the events and the one that reads."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    writer = open_store(url)
    upgrade(writer.engine)
    for app in (APP, OTHER_APP):
        writer.tenancy.create_app(app, app, T0)
    reader = open_store(url)
    yield writer, reader
    reader.close()
    writer.close()


class Cutoffs:
    """The cut-off of each app's model, as a test sets it."""

    def __init__(self) -> None:
        self.at: dict[str, datetime | None] = {}

    def __call__(self, app_id: str) -> datetime | None:
        return self.at.get(app_id)


_ids = iter(range(1_000_000))


def searched(user: str, query: str, at: datetime, **fields: object) -> Event:
    return make_event(
        f"e{next(_ids)}",
        user_id=user,
        event_type=EventType.SEARCH,
        item_id=None,
        query=query,
        event_ts=at,
        server_ts=at,
        **fields,
    )


def follower(
    reader: Store, cutoffs: Cutoffs, settings: SuggestionSettings | None = None
) -> LiveSearches:
    return LiveSearches(
        reader.events, settings or SuggestionSettings(), cutoffs, start=T0 - timedelta(days=1)
    )


def test_searches_another_replica_stored_are_counted_per_app(
    stores: tuple[Store, Store],
) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    cutoffs.at[APP] = T0
    live = follower(reader, cutoffs)
    assert live.step() == 0
    assert live.get(APP) is None
    at = T0 + timedelta(minutes=1)
    writer.events.append([searched(f"u{n}", "marathon shoes", at) for n in range(3)])
    writer.events.append([searched("solo", "marathon plan", at) for _ in range(10)])
    writer.events.append([searched("x", "marathon shoes", at, app_id=OTHER_APP)])
    assert live.step() == 14
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.since == T0
    assert [q.key for q, _ in overlay.complete("mara", 10)] == ["marathon shoes"]
    assert (overlay.users("marathon shoes"), overlay.users("marathon plan")) == (3, 1)
    other = live.get(OTHER_APP)
    assert other is not None
    assert other.users("marathon shoes") == 1
    # Nothing new: nothing is published again.
    assert live.step() == 0
    assert live.get(APP) is overlay


def test_what_the_model_counted_already_is_left_out(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    cutoffs.at[APP] = T0
    live = follower(reader, cutoffs)
    writer.events.append([searched(f"u{n}", "dune", T0 - timedelta(minutes=5)) for n in range(3)])
    writer.events.append([searched("late", "dune", T0 + timedelta(seconds=1))])
    live.step()
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.users("dune") == 1


def test_a_new_cut_off_counts_the_kept_searches_again_with_their_outcomes(
    stores: tuple[Store, Store],
) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    cutoffs.at[APP] = T0
    live = follower(reader, cutoffs)
    for minute, user in enumerate(["a", "b", "c", "d"], start=1):
        at = T0 + timedelta(minutes=minute)
        writer.events.append(
            [
                searched(user, "trail shoes", at, session_id=f"{user}-s"),
                make_event(
                    f"e{next(_ids)}",
                    user_id=user,
                    session_id=f"{user}-s",
                    event_ts=at + timedelta(seconds=5),
                    server_ts=at + timedelta(seconds=5),
                ),
            ]
        )
    live.step()
    before = live.get(APP)
    assert before is not None
    first = before.get("trail shoes")
    assert first is not None
    assert (first.users, first.searches, first.successes) == (4, 4, 4)
    # A model built after the first two searches is swapped in.
    cutoffs.at[APP] = T0 + timedelta(minutes=2, seconds=30)
    assert live.step() == 0
    after = live.get(APP)
    assert after is not None
    assert after is not before
    assert after.since == cutoffs.at[APP]
    again = after.get("trail shoes")
    assert again is not None
    assert (again.users, again.searches, again.successes) == (2, 2, 2)
    assert after.complete("trail", 10) == []  # two users since this model: not suggestible
    # A rollback to the first model counts from its cut-off again.
    cutoffs.at[APP] = T0
    live.step()
    rolled = live.get(APP)
    assert rolled is not None
    assert rolled.users("trail shoes") == 4
    assert before.users("trail shoes") == 4  # a published overlay never changes


def test_only_the_last_live_max_events_searches_are_counted_again(
    stores: tuple[Store, Store],
) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    cutoffs.at[APP] = T0
    live = follower(reader, cutoffs, SuggestionSettings(live_max_events=2))
    at = T0 + timedelta(minutes=1)
    writer.events.append([searched(f"u{n}", "dune", at) for n in range(5)])
    live.step()
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.users("dune") == 5  # the overlay itself counts past the bound
    cutoffs.at[APP] = T0 + timedelta(seconds=1)
    live.step()
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.users("dune") == 2


def test_before_an_app_has_a_model_its_searches_wait_for_one(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    live = follower(reader, cutoffs)
    writer.events.append([searched(f"u{n}", "dune", T0 + timedelta(minutes=n)) for n in range(3)])
    live.step()
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.since is None
    cutoffs.at[APP] = T0 + timedelta(seconds=90)  # the cold model, built then
    live.step()
    overlay = live.get(APP)
    assert overlay is not None
    assert overlay.users("dune") == 1


def test_events_received_before_the_start_are_not_read(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    cutoffs = Cutoffs()
    live = LiveSearches(reader.events, SuggestionSettings(), cutoffs, start=T0)
    writer.events.append([searched("early", "dune", T0 - timedelta(seconds=1))])
    writer.events.append([searched("late", "dune", T0)])
    assert live.step() == 1

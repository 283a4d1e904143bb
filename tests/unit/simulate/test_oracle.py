"""The oracle: the world's own best list for a session's state, by the same truth as any list."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.clients import Served
from recloop.simulate.driver import DriverConfig, Simulation
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


def _world(items: int = 200) -> World:
    config = WorldConfig(seed=9, initial_items=items, initial_users=30, bot_share=0.0)
    return World(config, START)


def test_no_list_of_the_catalog_beats_the_oracle() -> None:
    world = _world(items=16)
    behaviour = Behaviour(world)
    session = Session("s", world.users[0], START)
    # Earlier in the session: seen items and a category already shown and clicked.
    first = world.items[0]
    world.users[0].seen[first.item_id] = 2
    session.shown_categories[first.category] = 3
    session.clicked_categories[first.category] = 1
    best_click, best_satisfied = behaviour.best_lists(session, 3, START)
    clicks = behaviour.truth(session, best_click).expected_clicks
    satisfied = float(behaviour.truth(session, best_satisfied).satisfaction.sum())
    for ids in itertools.permutations([i.item_id for i in world.items], 3):
        truth = behaviour.truth(session, list(ids))
        assert truth.expected_clicks <= clicks + 1e-12
        assert float(truth.satisfaction.sum()) <= satisfied + 1e-12


def test_the_oracle_serves_only_what_is_published() -> None:
    world = _world()
    behaviour = Behaviour(world)
    session = Session("s", world.users[1], START)
    later = START - timedelta(days=20)
    best_click, best_satisfied = behaviour.best_lists(session, 10, later)
    for item_id in (*best_click, *best_satisfied):
        assert world.item_by_id[item_id].published_at <= later
    assert len(best_click) == len(set(best_click)) == 10


def test_new_items_join_the_oracles_catalog() -> None:
    world = _world()
    behaviour = Behaviour(world)
    behaviour.best_lists(Session("s", world.users[0], START), 10, START)
    world.advance_day(START)
    best, _ = behaviour.best_lists(
        Session("s", world.users[0], START), 10_000, START + timedelta(days=2)
    )
    assert len(best) == len(world.items)


class FirstItems:
    """Serves everyone the first items of the catalog."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.n = 0

    def put_items(self, items: object) -> None:
        pass

    def put_user(self, user_id: str, attributes: object) -> None:
        pass

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        self.n += 1
        return Served(f"r{self.n}", [i.item_id for i in self.world.items[:limit]], False, 1.0)

    def post_events(self, events: object) -> None:
        pass


def test_every_run_reports_the_oracle_beside_what_was_served() -> None:
    world = _world()
    result = Simulation(world, Behaviour(world), FirstItems(world), DriverConfig(days=2)).run()
    for day in result.per_day["home"]:
        assert day["oracle_true_ctr"] > 1.5 * day["true_ctr"]
        assert day["oracle_true_satisfaction"] > 1.5 * day["true_satisfaction"]
    people = result.per_user["home"]
    totals = result.totals("home")
    expected = sum(f["oracle_clicks"] for f in people.values()) / totals["impressions"]
    assert expected == pytest.approx(totals["oracle_true_ctr"])
    assert np.isfinite(totals["oracle_true_satisfaction"])

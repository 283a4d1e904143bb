"""The driver: twin runs of one world face the same users and sessions, whatever is served."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from recloop.simulate.behaviour import Behaviour
from recloop.simulate.clients import Served
from recloop.simulate.driver import DriverConfig, Simulation, SimulationResult
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


class ListClient:
    """A service that serves each user a list chosen by ``pick`` and records the sessions."""

    def __init__(self, world: World, pick: Callable[[World, str], list[str]]) -> None:
        self.world = world
        self.pick = pick
        self.requests: list[tuple[str, str]] = []  # (session id, user id)
        self.served = 0

    def put_items(self, items: list[dict[str, Any]]) -> None:
        pass

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        pass

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        self.requests.append((session_id, user_id))
        self.served += 1
        return Served(f"r{self.served}", self.pick(self.world, user_id)[:limit], False, 1.0)

    def post_events(self, events: list[dict[str, Any]]) -> None:
        pass


def _popular(world: World, user_id: str) -> list[str]:
    return [item.item_id for item in world.items[:10]]


def _tasteful(world: World, user_id: str) -> list[str]:
    user = next(u for u in world.users if u.user_id == user_id)
    ranked = sorted(world.items, key=lambda item: -float(item.vector @ user.taste))
    return [item.item_id for item in ranked[:10]]


def _run(pick: Callable[[World, str], list[str]]) -> tuple[World, ListClient, SimulationResult]:
    config = WorldConfig(seed=5, initial_items=150, initial_users=40, new_users_per_day=5)
    world = World(config, START)
    client = ListClient(world, pick)
    result = Simulation(world, Behaviour(world), client, DriverConfig(days=2)).run()
    return world, client, result


def test_twin_runs_face_the_same_items_users_and_sessions() -> None:
    world_a, client_a, _ = _run(_popular)
    world_b, client_b, _ = _run(_tasteful)
    assert [i.item_id for i in world_a.items] == [i.item_id for i in world_b.items]
    assert [u.user_id for u in world_a.users] == [u.user_id for u in world_b.users]
    # Sessions are the same; how long each lasts is up to what it was served.
    assert dict(client_a.requests) == dict(client_b.requests)
    assert client_a.served != client_b.served


def test_per_user_figures_add_up_to_the_totals() -> None:
    _, _, result = _run(_tasteful)
    people = result.per_user["home"]
    totals = result.totals("home")
    assert sum(f["requests"] for f in people.values()) == totals["requests"]
    assert sum(f["impressions"] for f in people.values()) == totals["impressions"]
    expected = sum(f["expected_clicks"] for f in people.values()) / totals["impressions"]
    assert expected == pytest.approx(totals["true_ctr"])


def test_a_better_list_earns_more_expected_clicks_from_the_same_users() -> None:
    _, _, popular = _run(_popular)
    _, _, tasteful = _run(_tasteful)
    assert tasteful.totals("home")["true_ctr"] > popular.totals("home")["true_ctr"]

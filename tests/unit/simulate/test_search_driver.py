"""The driver's search sessions: deterministic, valid events, honest figures, and with search
off the item sessions of a run without it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from recloop.demo.inprocess import InProcessClient
from recloop.ingest.validate import Rejection, validate_event
from recloop.simulate.behaviour import Behaviour
from recloop.simulate.clients import HttpClient, Served, Suggested
from recloop.simulate.driver import DriverConfig, Simulation, SimulationResult
from recloop.simulate.search import MostPopularCompletion, SearchConfig, TypingState
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


class ItemClient:
    """A service with item lists only (no ``suggest``): the clients written before search."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.served = 0
        self.requests: list[tuple[str, str, int]] = []  # (session, user, items)
        self.events: list[dict[str, Any]] = []

    def put_items(self, items: list[dict[str, Any]]) -> None:
        pass

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        pass

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        self.served += 1
        user = next(u for u in self.world.users if u.user_id == user_id)
        # Taste-ranked lists, so that item behaviour depends on what users have seen.
        ranked = sorted(self.world.items[:200], key=lambda i: -float(i.vector @ user.taste))
        ids = [i.item_id for i in ranked[:limit]]
        self.requests.append((session_id, user_id, len(ids)))
        return Served(f"r{self.served}", ids, False, 1.0)

    def post_events(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


class SuggestingClient(ItemClient):
    """Also suggests: most-popular-completion over the searches it has received, so it
    learns from the run like a service would."""

    def __init__(self, world: World, variant: Callable[[str], str] = lambda user: "mpc") -> None:
        super().__init__(world)
        self.log = MostPopularCompletion()
        self.variant = variant
        self.suggested: dict[str, list[str]] = {}

    def post_events(self, events: list[dict[str, Any]]) -> None:
        super().post_events(events)
        for event in events:
            if event["eventType"] == "search":
                self.log.add(event["query"])

    def suggest(
        self,
        user_id: str,
        prefix: str,
        *,
        locale: str | None = None,
        session_id: str | None = None,
        limit: int = 8,
        surface: str | None = None,
        item_id: str | None = None,
    ) -> Suggested:
        request_id = f"s{len(self.suggested) + 1}"
        queries = self.log.complete(prefix, limit)
        self.suggested[request_id] = queries
        return Suggested(request_id, queries, False, 0.5, self.variant(user_id))


def _world() -> World:
    return World(
        WorldConfig(seed=5, initial_items=200, initial_users=50, new_users_per_day=5), START
    )


def _run(
    client_type: Callable[[World], ItemClient], search: SearchConfig | None, **hooks: Any
) -> tuple[ItemClient, SimulationResult, Simulation]:
    world = _world()
    client = client_type(world)
    simulation = Simulation(
        world, Behaviour(world), client, DriverConfig(days=2, search=search), **hooks
    )
    return client, simulation.run(), simulation


def test_search_off_leaves_item_behaviour_unchanged() -> None:
    # Search off (the default) against a client with no suggest at all...
    plain, off, _ = _run(ItemClient, None)
    # ...and search on with no searches: the search machinery touches no item stream.
    silent, on, _ = _run(SuggestingClient, SearchConfig(searches_per_session=0.0))
    assert plain.requests == silent.requests
    assert plain.events == silent.events
    assert off.per_day == on.per_day
    assert off.search_per_day == {}
    assert all(d["searches"] == 0 for d in on.search_per_day.get("mpc", []))


def test_search_on_keeps_the_same_item_sessions() -> None:
    plain, _, _ = _run(ItemClient, None)
    searching, result, _ = _run(SuggestingClient, SearchConfig())
    assert result.search_totals("mpc")["searches"] > 20
    # The same sessions for the same users; what they do in them may change with what
    # they found by searching (an item seen is less clicky).
    assert {s: u for s, u, _ in plain.requests} == {s: u for s, u, _ in searching.requests}


def test_runs_are_deterministic_under_the_seed() -> None:
    first, a, _ = _run(SuggestingClient, SearchConfig())
    second, b, _ = _run(SuggestingClient, SearchConfig())
    assert first.events == second.events
    assert a.search_per_day == b.search_per_day
    assert a.per_day == b.per_day


def test_search_events_are_valid_and_join_their_suggestions() -> None:
    client, _, _ = _run(SuggestingClient, SearchConfig())
    assert isinstance(client, SuggestingClient)
    searches = [e for e in client.events if e["eventType"] == "search"]
    assert searches
    now = START + timedelta(days=30)
    for event in client.events:
        checked = validate_event(event, app_id="a", now=now, max_future_skew=timedelta(0))
        assert not isinstance(checked, Rejection), (event, checked)
    from_suggestion = [e for e in searches if "requestId" in e]
    assert from_suggestion
    for event in from_suggestion:
        assert client.suggested[event["requestId"]][event["position"]] == event["query"]
    for event in searches:
        assert event["query"].startswith(event["context"]["prefix"]) or "requestId" in event
    # A success is engagement on surface search in the same session, after the search.
    engaged = [e for e in client.events if e["surface"] == "search" and "itemId" in e]
    sessions = {e["sessionId"] for e in searches}
    assert engaged
    assert all(e["sessionId"] in sessions for e in engaged)


def test_figures_agree_with_the_ground_truth_and_with_each_other() -> None:
    _, result, _ = _run(SuggestingClient, SearchConfig(searches_per_session=1.0))
    t = result.search_totals("mpc")
    assert t["clicks"] == t["from_suggestion"]
    assert t["saved_chars"] + t["typed_chars"] >= t["query_chars"]
    lists, searches = t["lists"], t["searches"]
    ctr_sd = (t["true_suggestion_ctr"] * (1 - t["true_suggestion_ctr"]) / lists) ** 0.5
    assert abs(t["suggestion_ctr"] - t["true_suggestion_ctr"]) <= 4 * ctr_sd
    success_sd = (t["true_success_rate"] * (1 - t["true_success_rate"]) / searches) ** 0.5
    assert abs(t["success_rate"] - t["true_success_rate"]) <= 4 * success_sd
    # The oracle is a ceiling of both; the client's MPC is the world's, up to late events.
    assert t["oracle_suggestion_ctr"] >= t["true_suggestion_ctr"]
    assert t["oracle_list_success"] >= t["list_success"]
    assert t["baseline_suggestion_ctr"] == pytest.approx(t["true_suggestion_ctr"], rel=0.2)
    assert 0.2 < t["success_rate"] < 0.8
    assert 0.0 < t["keystrokes_saved"] < 1.0
    assert len(result.search_per_day["mpc"]) == 2


def test_figures_are_filed_under_the_variant_the_service_names() -> None:
    def split(user_id: str) -> str:
        return "a" if int(user_id[1:]) % 2 else "b"

    _, result, _ = _run(lambda world: SuggestingClient(world, split), SearchConfig())
    assert set(result.search_per_day) == {"a", "b"}
    assert all(len(days) == 2 for days in result.search_per_day.values())


def test_the_observer_sees_every_suggestion_list_before_the_user() -> None:
    seen: list[tuple[TypingState, Suggested]] = []
    _, result, _ = _run(
        SuggestingClient,
        SearchConfig(),
        on_suggested=lambda state, served: seen.append((state, served)),
    )
    assert len(seen) == result.search_totals("mpc")["lists"]
    assert all(state.episode.typed.startswith(state.prefix) for state, _ in seen)


def test_the_http_client_suggests_nothing_where_the_route_is_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("prefix") == "pa":
            return httpx.Response(
                200,
                json={
                    "requestId": "r1",
                    "suggestions": [
                        {"query": "pasta", "score": 0.9, "reason": "r", "source": "prefix"}
                    ],
                    "modelVersion": "v",
                    "experiment": None,
                    "variant": "learned",
                    "fallback": False,
                    "cold": True,
                },
            )
        return httpx.Response(404, json={"detail": "Not Found", "errors": []})

    client = HttpClient("http://service", "key", transport=httpx.MockTransport(handler))
    served = client.suggest("u1", "pa", locale="en-US", session_id="q1", limit=8)
    assert (served.request_id, served.queries, served.variant, served.cold) == (
        "r1",
        ["pasta"],
        "learned",
        True,
    )
    assert client.suggest("u1", "x").queries == []


def test_the_in_process_client_suggests_nothing_without_a_suggester() -> None:
    class Bare:
        suggester = None

    client = InProcessClient(Bare())  # type: ignore[arg-type]
    assert client.suggest("u1", "pa").queries == []

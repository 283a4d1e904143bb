"""Clocks: clients stamp events with their own clocks, offline sessions arrive late, and the
service's clock runs from its anchor at its own rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recloop.simulate.behaviour import Behaviour
from recloop.simulate.clients import Served
from recloop.simulate.clocks import (
    ClientClockConfig,
    ClientClocks,
    ServiceClock,
    ServiceClockConfig,
)
from recloop.simulate.driver import DriverConfig, Simulation, SimulationResult
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400.0


class RecordingClient:
    """Serves the first items to everyone; records every batch with its arrival time."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.arrival = START
        self.batches: list[tuple[datetime, list[dict[str, Any]]]] = []
        self.served = 0

    def deliver(self, at: datetime) -> None:
        self.arrival = at

    def put_items(self, items: list[dict[str, Any]]) -> None:
        pass

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        pass

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        self.served += 1
        return Served(f"r{self.served}", [i.item_id for i in self.world.items[:limit]], False, 1.0)

    def post_events(self, events: list[dict[str, Any]]) -> None:
        self.batches.append((self.arrival, events))

    def events(self) -> list[dict[str, Any]]:
        return [e for _, batch in self.batches for e in batch]


def _run(clients: ClientClockConfig) -> tuple[RecordingClient, SimulationResult]:
    world = World(WorldConfig(seed=8, initial_items=120, initial_users=40), START)
    client = RecordingClient(world)
    config = DriverConfig(days=2, late_share=0.0, duplicate_share=0.0, clients=clients)
    result = Simulation(world, Behaviour(world), client, config, on_deliver=client.deliver).run()
    return client, result


def _ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["eventTs"])


def test_offsets_follow_their_shares_and_never_run_far_ahead() -> None:
    config = ClientClockConfig(
        jitter_s=1.0, skewed_share=0.3, months_behind_share=0.2, max_ahead_s=200.0
    )
    clocks = ClientClocks(config, seed=1)
    offsets = [clocks.offset(f"u{n:06d}").total_seconds() for n in range(3000)]
    months = sum(1 for o in offsets if o <= -30 * DAY)
    skewed = sum(1 for o in offsets if -6 * 3600 - 10 <= o <= -50 or o >= 50)
    assert months / 3000 == pytest.approx(0.2, abs=0.03)
    assert skewed / 3000 == pytest.approx(0.3, abs=0.03)
    assert max(offsets) <= 200.0
    assert min(offsets) >= -180 * DAY - 10
    # One client, one clock: the same offset every time, from the seed.
    assert ClientClocks(config, seed=1).offset("u000007") == clocks.offset("u000007")
    assert ClientClocks(config, seed=2).offset("u000007") != clocks.offset("u000007")


def test_synced_clients_stamp_true_time_and_send_at_once() -> None:
    clocks = ClientClocks(ClientClockConfig(), seed=1)
    assert clocks.offset("u000001") == timedelta(0)
    assert clocks.upload_delay(1) is None


def test_each_event_is_stamped_with_its_clients_clock() -> None:
    synced, _ = _run(ClientClockConfig())
    config = ClientClockConfig(skewed_share=0.5, months_behind_share=0.5)
    skewed, _ = _run(config)
    clocks = ClientClocks(config, seed=8)
    # The same events in the same batches; only the stamps moved, by the user's offset.
    assert [len(b) for _, b in synced.batches] == [len(b) for _, b in skewed.batches]
    months_behind = 0
    for true, stamped in zip(synced.events(), skewed.events(), strict=True):
        assert {**true, "eventTs": None} == {**stamped, "eventTs": None}
        offset = clocks.offset(true["userId"])
        assert _ts(stamped) - _ts(true) == offset
        months_behind += offset <= timedelta(days=-30)
    assert months_behind > 0
    # Every batch arrives once its last event has happened (on true time).
    for arrival, batch in synced.batches:
        assert arrival >= max(_ts(e) for e in batch)


def test_offline_sessions_arrive_hours_later_all_at_once() -> None:
    config = ClientClockConfig(late_upload_share=0.5, late_upload_hours=(2.0, 3.0))
    client, result = _run(config)
    synced, _ = _run(ClientClockConfig())
    assert result.late_uploads > 0
    assert sorted(e["eventId"] for e in client.events()) == sorted(
        e["eventId"] for e in synced.events()
    )
    late = [
        (arrival, batch)
        for arrival, batch in client.batches
        if arrival - max(_ts(e) for e in batch) >= timedelta(hours=2)
    ]
    assert len(late) >= result.late_uploads * 0.9
    for arrival, batch in late:
        # One session per upload, sent no later than the delay allows.
        assert len({e["sessionId"] for e in batch}) == 1
        assert arrival - max(_ts(e) for e in batch) <= timedelta(hours=3)


def test_the_service_clock_runs_from_its_anchor_at_its_own_rate() -> None:
    clock = ServiceClock(START, ServiceClockConfig(lead_days=90, compression=100))
    assert clock() == START + timedelta(days=90)
    clock.set(START + timedelta(seconds=1000))
    assert clock() == START + timedelta(days=90, seconds=10)
    clock.deliver(START + timedelta(days=1))
    assert clock.received() == START + timedelta(days=90, seconds=864)
    assert clock() == START + timedelta(days=90, seconds=10)
    # A server behind HTTP stamps arrivals with its own clock: an arrival moves it.
    http = ServiceClock(START, arrivals_move_clock=True)
    http.deliver(START + timedelta(minutes=5))
    assert http() == http.received() == START + timedelta(minutes=5)
    # By default it is the world's own time.
    same = ServiceClock(START)
    same.set(START + timedelta(hours=5))
    assert same() == START + timedelta(hours=5)


def test_a_replay_must_start_behind_the_service() -> None:
    assert ServiceClockConfig(compression=100).min_lead_days(5) == pytest.approx(4.95)
    assert ServiceClockConfig().min_lead_days(5) == 0
    with pytest.raises(ValueError, match="at most 1"):
        ClientClockConfig(skewed_share=0.7, months_behind_share=0.5)

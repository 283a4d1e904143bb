"""Worlds whose clocks are not the service's must train the ranker and learn like a normal one.

The service runs on its own clock; the world's clients stamp events with theirs. In one world
the service's clock is four months ahead of every client (history replayed long after it
happened); in the other the world is replayed 100 times faster than the service's clock runs.
Each runs a few simulated days through the real service (in-process), with `recloop train`
every night at the service's time, and the service's own experiment splitting users between
``home`` and ``popular-only``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from recloop.config import Settings
from recloop.demo.run import DemoConfig, DemoOutcome, run_demo
from recloop.simulate.clocks import ServiceClockConfig
from recloop.simulate.world import WorldConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = WorldConfig(
    seed=11, initial_items=400, initial_users=150, new_items_per_day=20, new_users_per_day=10
)
DAYS = 3


def _run(data_dir: Path, service_clock: ServiceClockConfig) -> DemoOutcome:
    config = DemoConfig(
        world=WORLD,
        days=DAYS,
        transport="inprocess",
        service_clock=service_clock,
    )
    # A day of this small world has a few dozen clicks: let the ranker train on them.
    settings = Settings(data_dir=data_dir, train={"ranker": {"min_positives": 10}})
    return run_demo(config, settings, Console(file=io.StringIO()))


def _learns_like_a_normal_world(outcome: DemoOutcome) -> None:
    assert len(outcome.trainings) == DAYS
    skipped = [t.ranker.skipped for t in outcome.trainings]
    # Every night has a day's impressions to learn from, whatever the clocks said.
    assert all(t.ranker.model is not None for t in outcome.trainings), skipped
    result = outcome.result
    home, popular = result.per_day["home"], result.per_day["popular"]
    # After the first night, home is served by the trained ranker...
    assert all(day["fallback_share"] < 0.5 for day in home[1:])

    # ...and its lists are better than popularity's, by the world's truth.
    def after_first_night(days: list[dict[str, float]]) -> float:
        later = days[1:]
        return sum(d["true_ctr"] * d["impressions"] for d in later) / sum(
            d["impressions"] for d in later
        )

    assert after_first_night(home) > after_first_night(popular)


def test_a_world_whose_clients_run_months_behind_the_service_learns(tmp_path: Path) -> None:
    outcome = _run(tmp_path, ServiceClockConfig(lead_days=120))
    _learns_like_a_normal_world(outcome)


def test_a_world_replayed_100_times_faster_than_real_time_learns(tmp_path: Path) -> None:
    compression = ServiceClockConfig(compression=100)
    # The replayed history ends before the service's clock starts, as a replay's does.
    outcome = _run(
        tmp_path,
        compression.model_copy(update={"lead_days": compression.min_lead_days(DAYS) + 1}),
    )
    _learns_like_a_normal_world(outcome)

"""The family of worlds: seeds draw valid worlds, the same ones every time, split as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.simulate.behaviour import BehaviourConfig
from recloop.simulate.clocks import ClientClockConfig, ServiceClockConfig
from recloop.simulate.family import (
    HELD_OUT_CLOCK_MODES,
    HELD_OUT_FROM,
    HELD_OUT_RANGES,
    HELD_OUT_SEEDS,
    TUNING_CLOCK_MODES,
    TUNING_RANGES,
    TUNING_SEEDS,
    Ranges,
    WorldFamily,
    WorldSpec,
    is_held_out,
)
from recloop.simulate.world import CATEGORIES, World, WorldConfig, category_names

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = WorldFamily(days=3, initial_items=60, initial_users=12, new_items_per_day=5)


def _inside(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _within(spec: WorldSpec, ranges: Ranges) -> None:
    w, b = spec.world, spec.behaviour
    assert _inside(w.categories, ranges.categories)
    assert _inside(w.category_skew, ranges.category_skew)
    assert _inside(w.item_spread, ranges.item_spread)
    assert w.favourite_counts in ranges.favourite_counts
    assert _inside(w.taste_concentration, ranges.taste_concentration)
    assert _inside(w.taste_noise, ranges.taste_noise)
    assert _inside(w.clickbait_share, ranges.clickbait_share)
    assert _inside(w.clickbait_pull, ranges.clickbait_pull)
    assert _inside(b.position_decay, ranges.position_decay)
    assert _inside(b.seen_penalty, ranges.seen_penalty)
    assert _inside(b.category_fatigue, ranges.category_fatigue)
    assert _inside(w.activity_sigma, ranges.activity_sigma)
    assert _inside(w.taste_drift_per_day, ranges.taste_drift_per_day)
    assert spec.clock_mode in ranges.clock_modes


def test_a_seed_draws_the_same_world_every_time() -> None:
    for seed in (*TUNING_SEEDS, HELD_OUT_SEEDS[0]):
        assert SMALL.draw(seed) == SMALL.draw(seed)
        a = World(SMALL.draw(seed).world, START)
        b = World(SMALL.draw(seed).world, START)
        assert [i.as_json() for i in a.items] == [i.as_json() for i in b.items]
    assert SMALL.draw(1) != SMALL.draw(2)


@pytest.mark.parametrize("seeds", [range(1, 60), range(HELD_OUT_FROM, HELD_OUT_FROM + 60)])
def test_every_drawn_world_is_valid_and_inside_its_splits_ranges(seeds: range) -> None:
    for seed in seeds:
        spec = SMALL.draw(seed)
        assert spec.held_out == is_held_out(seed)
        _within(spec, HELD_OUT_RANGES if spec.held_out else TUNING_RANGES)
        service = spec.service_clock
        # A replayed world starts far enough behind that no client on true time is ahead.
        assert service.lead_days >= service.min_lead_days(SMALL.days)
    world = World(SMALL.draw(seeds[0]).world, START)
    assert {i.category for i in world.items} <= set(world.categories)


def test_held_out_clock_modes_are_never_drawn_for_tuning_worlds() -> None:
    tuning = {SMALL.draw(seed).clock_mode for seed in range(1, 200)}
    held_out = {SMALL.draw(seed).clock_mode for seed in range(HELD_OUT_FROM, HELD_OUT_FROM + 200)}
    assert tuning == set(TUNING_CLOCK_MODES)
    assert held_out == set(TUNING_CLOCK_MODES) | set(HELD_OUT_CLOCK_MODES)
    assert all(is_held_out(s) for s in HELD_OUT_SEEDS)
    assert not any(is_held_out(s) for s in TUNING_SEEDS)


def test_a_forced_clock_mode_keeps_the_seeds_structure() -> None:
    drawn = SMALL.draw(HELD_OUT_SEEDS[0])
    replay = SMALL.draw(HELD_OUT_SEEDS[0], clock_mode="replay")
    assert replay.world == drawn.world
    assert replay.behaviour == drawn.behaviour
    assert replay.service_clock.compression > 1


def test_the_demos_world_sits_inside_the_tuning_ranges() -> None:
    spec = WorldSpec(
        seed=1,
        held_out=False,
        clock_mode="synced",
        world=WorldConfig(),
        behaviour=BehaviourConfig(),
        clients=ClientClockConfig(),
        service_clock=ServiceClockConfig(),
    )
    _within(spec, TUNING_RANGES)


def test_more_categories_get_their_own_names_and_words() -> None:
    assert category_names(12) == CATEGORIES
    assert category_names(5) == CATEGORIES[:5]
    world = World(WorldConfig(seed=2, categories=40, initial_items=400, initial_users=5), START)
    assert len(set(world.categories)) == 40
    used = {item.category for item in world.items}
    assert len(used) > 30
    # Each item's title words come from its own category's vocabulary, and no word is shared.
    owners: dict[str, str] = {}
    for k, category in enumerate(world.categories):
        for word in world._vocabulary[k]:
            assert owners.setdefault(word, category) == category
    for item in world.items:
        assert all(owners[tag] == item.category for tag in item.tags[1:])


def test_category_skew_makes_the_first_categories_larger() -> None:
    def sizes(skew: float) -> np.ndarray:
        config = WorldConfig(seed=4, categories=10, category_skew=skew, initial_items=2000)
        world = World(config.model_copy(update={"initial_users": 1}), START)
        counts = dict.fromkeys(world.categories, 0)
        for item in world.items:
            counts[item.category] += 1
        return np.array([counts[c] for c in world.categories])

    flat, skewed = sizes(0.0), sizes(1.2)
    assert flat.max() < 2 * flat.min()
    assert skewed[0] > 5 * skewed[-1]


def test_taste_concentration_decides_how_peaked_a_users_mix_is() -> None:
    def peak(concentration: float) -> float:
        config = WorldConfig(
            seed=6,
            initial_items=20,
            initial_users=400,
            favourite_counts=(3,),
            taste_concentration=concentration,
            taste_noise=0.0,
        )
        world = World(config, START)
        index = {c: k for k, c in enumerate(world.categories)}
        shares = []
        for user in world.users:
            sims = [
                float(world.centroids[index[c]] @ user.taste) for c in user.favourite_categories
            ]
            shares.append(max(sims) - min(sims))
        return float(np.mean(shares))

    assert peak(0.2) > 1.5 * peak(20.0)


def test_a_world_refuses_more_favourites_than_categories() -> None:
    with pytest.raises(ValueError, match="favourite_counts"):
        WorldConfig(categories=2, favourite_counts=(3,))

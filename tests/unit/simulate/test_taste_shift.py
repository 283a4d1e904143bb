"""A world whose tastes shift abruptly on one day: before it the world is the seed's world
without a shift, from it users want other categories, the oracle's lists change, and what
was learned from the old days serves worse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.family import TUNING_RANGES, WorldFamily
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SHIFT_DAY = 4
VISITS = 4  # lists a day each user is shown while the ranker learns


def _world(shift_day: int | None = SHIFT_DAY, strength: float = 1.0) -> World:
    config = WorldConfig(
        seed=21,
        initial_items=400,
        initial_users=60,
        new_items_per_day=10,
        new_users_per_day=3,
        bot_share=0.0,
        taste_shift_day=shift_day,
        taste_shift=strength,
    )
    return World(config, START)


def _tastes(world: World) -> np.ndarray:
    return np.stack([u.taste for u in world.users])


def _run_to(world: World, day: int) -> None:
    """Advance the world through the start of simulated day ``day`` (1 is the first)."""
    for d in range(day):
        world.advance_day(START + d * DAY)


def test_before_the_day_the_world_is_the_unshifted_one_and_from_it_tastes_differ() -> None:
    shifted, control = _world(), _world(shift_day=None)
    for day in range(1, SHIFT_DAY):
        shifted.advance_day(START + (day - 1) * DAY)
        control.advance_day(START + (day - 1) * DAY)
        np.testing.assert_array_equal(_tastes(shifted), _tastes(control))
    shifted.advance_day(START + (SHIFT_DAY - 1) * DAY)
    control.advance_day(START + (SHIFT_DAY - 1) * DAY)
    # The items, users and their number are the same: only tastes moved.
    assert [i.item_id for i in shifted.items] == [i.item_id for i in control.items]
    assert len(shifted.users) == len(control.users)
    similarity = np.sum(_tastes(shifted) * _tastes(control), axis=1)[:60]
    assert np.median(similarity) < 0.5
    # The users there at the shift (not those who join later that day) moved away from
    # their old favourite categories towards new ones.
    index = {c: k for k, c in enumerate(control.categories)}
    shift_start = START + (SHIFT_DAY - 1) * DAY
    pairs = [
        (old, new)
        for old, new in zip(control.users, shifted.users, strict=True)
        if old.joined_at < shift_start
    ]
    assert len(pairs) >= 60
    for old_user, new_user in pairs:
        assert not set(old_user.favourite_categories) & set(new_user.favourite_categories)
    old_match = [
        max(float(shifted.centroids[index[c]] @ new.taste) for c in old.favourite_categories)
        for old, new in pairs
    ]
    kept_match = [
        max(float(control.centroids[index[c]] @ old.taste) for c in old.favourite_categories)
        for old, _ in pairs
    ]
    assert np.mean(old_match) < np.mean(kept_match) - 0.3


def test_the_true_utilities_and_the_oracle_change_on_the_day() -> None:
    shifted, control = _world(), _world(shift_day=None)
    _run_to(shifted, SHIFT_DAY - 1)
    _run_to(control, SHIFT_DAY - 1)
    some = [i.item_id for i in control.items[:50]]
    now = START + (SHIFT_DAY - 1) * DAY - timedelta(minutes=1)

    def truths(world: World) -> tuple[list[np.ndarray], list[list[str]]]:
        behaviour = Behaviour(world)
        clicks, oracles = [], []
        for user in world.users[:30]:
            session = Session("s", user, now)
            clicks.append(behaviour.truth(session, some).click_probability)
            oracles.append(behaviour.best_lists(session, 10, now)[0])
        return clicks, oracles

    before_shifted, before_control = truths(shifted), truths(control)
    for a, b in zip(before_shifted[0], before_control[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert before_shifted[1] == before_control[1]

    shifted.advance_day(START + (SHIFT_DAY - 1) * DAY)
    control.advance_day(START + (SHIFT_DAY - 1) * DAY)
    now += 2 * DAY
    after_shifted, after_control = truths(shifted), truths(control)
    changed = [
        not np.allclose(a, b) for a, b in zip(after_shifted[0], after_control[0], strict=True)
    ]
    assert all(changed)
    overlap = [
        len(set(a) & set(b)) / 10 for a, b in zip(after_shifted[1], after_control[1], strict=True)
    ]
    assert np.mean(overlap) < 0.2  # the world's best lists are others now


def test_strength_zero_changes_nothing() -> None:
    shifted, control = _world(strength=0.0), _world(shift_day=None)
    _run_to(shifted, SHIFT_DAY + 1)
    _run_to(control, SHIFT_DAY + 1)
    np.testing.assert_allclose(_tastes(shifted), _tastes(control))


def _category_ranker(world: World, behaviour: Behaviour, days: int) -> dict[str, np.ndarray]:
    """What a ranker learns in the old days: each user's click rate per category on random
    lists shown to them. The labels are the world's click probabilities (given examined),
    not sampled clicks: noise-free, so that a few days of a small world suffice."""
    rng = np.random.default_rng(4)
    index = {c: k for k, c in enumerate(world.categories)}
    shown = {u.user_id: np.zeros(len(index)) for u in world.users}
    clicked = {u.user_id: np.zeros(len(index)) for u in world.users}
    for day in range(days):
        now = START + day * DAY + timedelta(hours=12)
        published = [i for i in world.items if i.published_at <= now]
        for n, user in enumerate(world.users):
            for visit in range(VISITS):
                items = [published[int(k)] for k in rng.choice(len(published), 10, False)]
                truth = behaviour.truth(
                    Session(f"{day}-{n}-{visit}", user, now), [i.item_id for i in items]
                )
                given_examined = truth.click_probability / truth.examination
                for item, p in zip(items, given_examined, strict=True):
                    shown[user.user_id][index[item.category]] += 1
                    clicked[user.user_id][index[item.category]] += p
    overall = sum(clicked.values()).sum() / sum(shown.values()).sum()
    return {u: (clicked[u] + 2 * overall) / (shown[u] + 2) for u in shown}


def _served_ctr(world: World, rates: dict[str, np.ndarray], now: datetime) -> float:
    """The world's expected CTR of the top ten by the learned rates, for every user."""
    behaviour = Behaviour(world)
    index = {c: k for k, c in enumerate(world.categories)}
    published = [i for i in world.items if i.published_at <= now]
    clicks = items = 0.0
    for user in world.users:
        if user.user_id not in rates:
            continue
        scores = np.array([rates[user.user_id][index[i.category]] for i in published])
        top = [published[int(k)].item_id for k in np.argsort(-scores, kind="stable")[:10]]
        truth = behaviour.truth(Session("s", user, now), top)
        clicks += truth.expected_clicks
        items += len(top)
    return clicks / items


def test_a_ranker_trained_on_the_old_days_loses_true_ctr_after_the_shift() -> None:
    shifted, control = _world(), _world(shift_day=None)
    ctr: dict[str, dict[str, float]] = {}
    for name, world in (("shifted", shifted), ("control", control)):
        behaviour = Behaviour(world)
        world.advance_day(START)
        rates = _category_ranker(world, behaviour, days=SHIFT_DAY - 1)
        for day in range(1, SHIFT_DAY - 1):
            world.advance_day(START + day * DAY)
        ctr[name] = {"before": _served_ctr(world, rates, START + (SHIFT_DAY - 1) * DAY)}
        world.advance_day(START + (SHIFT_DAY - 1) * DAY)
        ctr[name]["after"] = _served_ctr(world, rates, START + SHIFT_DAY * DAY)
    # The same learned ranker, the same world until the shift.
    assert ctr["shifted"]["before"] == pytest.approx(ctr["control"]["before"])
    # After it, the shifted world's users click its lists far less than the control's.
    assert ctr["shifted"]["after"] < 0.7 * ctr["control"]["after"], ctr


def test_a_family_draws_the_shift_apart_from_the_rest_of_the_world() -> None:
    plain, shifting = WorldFamily(), WorldFamily(taste_shift_day=SHIFT_DAY)
    for seed in (1, 2, 3, 10_001):
        a, b = plain.draw(seed), shifting.draw(seed)
        assert a.world.taste_shift_day is None
        assert b.world.taste_shift_day == SHIFT_DAY
        low, high = (shifting.held_out if b.held_out else TUNING_RANGES).taste_shift
        assert low <= b.world.taste_shift <= high
        unshifted = b.world.model_copy(update={"taste_shift_day": None, "taste_shift": 1.0})
        assert unshifted == a.world
        assert b.behaviour == a.behaviour
        assert f"tastes shift {b.world.taste_shift:.2f} on day {SHIFT_DAY}" in b.describe()

"""The response model: examination by position, ground truth that matches sampling."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.simulate.behaviour import Behaviour, BehaviourConfig, Session
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


def _world(**overrides: object) -> World:
    fields: dict[str, object] = {
        "seed": 3,
        "initial_items": 200,
        "initial_users": 50,
        "bot_share": 0.0,
    }
    return World(WorldConfig.model_validate(fields | overrides), START)


def test_examination_falls_with_position() -> None:
    world = _world()
    behaviour = Behaviour(world)
    session = Session("s", world.users[0], START)
    truth = behaviour.truth(session, [item.item_id for item in world.items[:10]])
    assert np.all(np.diff(truth.examination) < 0)
    assert truth.examination[0] == pytest.approx(1.0)


def test_same_item_is_clicked_less_the_lower_it_is_shown() -> None:
    world = _world()
    behaviour = Behaviour(world)
    user = world.users[0]
    best = max(world.items, key=lambda i: float(i.vector @ user.taste))
    top = behaviour.truth(Session("s", user, START), [best.item_id])
    filler = [i.item_id for i in world.items if i.item_id != best.item_id][:9]
    bottom = behaviour.truth(Session("s", user, START), [*filler, best.item_id])
    assert top.click_probability[0] > 2 * bottom.click_probability[-1]


def test_sampled_clicks_match_the_ground_truth() -> None:
    world = _world()
    behaviour = Behaviour(world, BehaviourConfig(seen_penalty=0.0, category_fatigue=0.0))
    user = world.users[1]
    items = [item.item_id for item in world.items[:10]]
    expected = behaviour.truth(Session("s", user, START), items).click_probability
    clicks = np.zeros(len(items))
    trials = 4000
    for n in range(trials):
        session = Session(f"s{n}", user, START)
        response = behaviour.respond(session, items, request_id="r", surface="home", now=START)
        for position in response.clicks:
            clicks[position] += 1
    observed = clicks / trials
    # Binomial standard error is at most 0.008 here; 4 of them is a generous band.
    assert np.max(np.abs(observed - expected)) < 0.032


def test_clickbait_is_clicked_more_and_satisfies_less() -> None:
    world = _world(initial_items=2000, clickbait_share=0.2)
    behaviour = Behaviour(world)
    bait = [i for i in world.items if i.is_clickbait]
    honest = [i for i in world.items if not i.is_clickbait]
    assert np.mean([i.attractiveness for i in bait]) > np.mean([i.attractiveness for i in honest])
    assert np.mean([i.quality for i in bait]) < np.mean([i.quality for i in honest]) - 0.3
    session = Session("s", world.users[0], START)
    truth_bait = behaviour.truth(session, [i.item_id for i in bait[:200]])
    truth_honest = behaviour.truth(session, [i.item_id for i in honest[:200]])
    ratio_bait = truth_bait.satisfaction.sum() / truth_bait.click_probability.sum()
    ratio_honest = truth_honest.satisfaction.sum() / truth_honest.click_probability.sum()
    assert ratio_bait < ratio_honest


def test_seen_items_and_repeated_categories_tire_the_user() -> None:
    world = _world()
    behaviour = Behaviour(world)
    user = world.users[2]
    item = world.items[0]
    fresh = behaviour.truth(Session("s", user, START), [item.item_id]).click_probability[0]
    user.seen[item.item_id] = 3
    tired = Session("s", user, START, shown_categories={item.category: 5})
    assert behaviour.truth(tired, [item.item_id]).click_probability[0] < fresh / 2


def test_events_carry_position_request_id_and_simulated_time() -> None:
    world = _world()
    behaviour = Behaviour(world)
    session = Session("s1", world.users[3], START)
    items = [item.item_id for item in world.items[:10]]
    response = behaviour.respond(session, items, request_id="req-1", surface="home", now=START)
    assert response.events, "the top position is always examined"
    for event in response.events:
        assert event["requestId"] == "req-1"
        assert event["sessionId"] == "s1"
        assert items[event["position"]] == event["itemId"]
        assert datetime.fromisoformat(event["eventTs"]) >= START


def test_one_seed_makes_one_world() -> None:
    a, b = _world(), _world()
    assert [i.title for i in a.items] == [i.title for i in b.items]
    assert np.allclose(a.users[5].taste, b.users[5].taste)
    other = World(WorldConfig(seed=4, initial_items=200, initial_users=50), START)
    assert [i.title for i in a.items] != [i.title for i in other.items]


def test_item_text_carries_the_category() -> None:
    world = _world()
    for item in world.items[:50]:
        assert item.category.lower() in item.tags
        assert item.category.lower() in item.description

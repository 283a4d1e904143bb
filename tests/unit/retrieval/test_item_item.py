"""Item-to-item sources: what they recall, why, and what they never return."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import EASE, CoVisitation, ItemKNN
from recloop.retrieval.models import RecallQuery

pytestmark = pytest.mark.unit

DAY = 86_400.0


def _two_taste_world(seed: int = 0) -> TrainingData:
    """Half the users engage only with a*-items, half only with b*-items."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(60):
        group = "a" if u % 2 == 0 else "b"
        for step in range(8):
            users.append(f"u{u}")
            items.append(f"{group}{rng.integers(0, 10)}")
            ts.append(u * DAY + step * 60.0)
    return TrainingData(Interactions.from_records(users, items, ts, item_vocabulary=["cold"]))


@pytest.mark.parametrize("model", [CoVisitation(), ItemKNN(), EASE(l2=10.0)])
def test_history_recalls_items_of_the_same_taste(model: CoVisitation) -> None:
    model.fit(_two_taste_world())
    found = model.recall(RecallQuery(history=("a1", "a2")), 8)
    assert found
    assert all(r.item_id.startswith("a") for r in found)


@pytest.mark.parametrize("model", [CoVisitation(), ItemKNN(), EASE(l2=10.0)])
def test_each_result_names_the_history_item_that_explains_it(model: CoVisitation) -> None:
    model.fit(_two_taste_world())
    found = model.recall(RecallQuery(history=("a1", "b2")), 20)
    for r in found:
        assert r.because == ("a1" if r.item_id.startswith("a") else "b2")


@pytest.mark.parametrize("model", [CoVisitation(), ItemKNN(), EASE(l2=10.0)])
def test_history_excluded_and_unknown_items_are_never_returned(model: CoVisitation) -> None:
    model.fit(_two_taste_world())
    found = model.recall(RecallQuery(history=("a1", "a2"), exclude=frozenset({"a3"})), 50)
    returned = {r.item_id for r in found}
    assert not returned & {"a1", "a2", "a3", "cold"}
    assert model.recall(RecallQuery(history=("never-seen",)), 10) == []
    assert model.recall(RecallQuery(), 10) == []


def test_an_anchor_recalls_its_neighbours_not_itself() -> None:
    model = CoVisitation().fit(_two_taste_world())
    found = model.recall(RecallQuery(anchor_item_id="b4"), 5)
    assert [r.because for r in found] == ["b4"] * len(found)
    assert all(r.item_id.startswith("b") and r.item_id != "b4" for r in found)


def test_covisitation_pairs_only_items_close_together_in_a_session() -> None:
    # x and y follow each other in many sessions; x and z are in one user's sessions
    # three hours apart, so they never share a session.
    users, items, ts = [], [], []
    for u in range(20):
        base = u * DAY
        users += [f"u{u}"] * 3
        items += ["x", "y", "z"]
        ts += [base, base + 60, base + 3 * 3600]
    model = CoVisitation(session_gap_s=3600).fit(
        TrainingData(Interactions.from_records(users, items, ts))
    )
    assert [r.item_id for r in model.recall(RecallQuery(anchor_item_id="x"), 5)] == ["y"]


def test_covisitation_weighs_recent_sessions_more() -> None:
    users, items, ts = [], [], []
    # Long ago, p went with old; lately, p goes with new (fewer times, but recent).
    for u in range(10):
        users += [f"old{u}"] * 2
        items += ["p", "old"]
        ts += [u * 600.0, u * 600.0 + 10]
    for u in range(6):
        users += [f"new{u}"] * 2
        items += ["p", "new"]
        ts += [200 * DAY + u * 600.0, 200 * DAY + u * 600.0 + 10]
    data = TrainingData(Interactions.from_records(users, items, ts))
    decayed = CoVisitation(half_life_days=7.0, alpha=0.0).fit(data)
    flat = CoVisitation(half_life_days=None, alpha=0.0).fit(data)
    assert decayed.recall(RecallQuery(anchor_item_id="p"), 1)[0].item_id == "new"
    assert flat.recall(RecallQuery(anchor_item_id="p"), 1)[0].item_id == "old"


def test_ease_refuses_a_catalogue_above_its_limit() -> None:
    with pytest.raises(ValueError, match="item-knn"):
        EASE(max_items=5).fit(_two_taste_world())


@pytest.mark.parametrize("model", [CoVisitation(window=3), ItemKNN(shrink=2.0), EASE(l2=10.0)])
def test_a_saved_model_recalls_the_same(model: CoVisitation, tmp_path: Path) -> None:
    model.fit(_two_taste_world())
    model.save(tmp_path)
    loaded = type(model).load(tmp_path)
    query = RecallQuery(history=("a1", "b3", "a7"))
    assert loaded.recall(query, 10) == model.recall(query, 10)
    assert loaded.params() == model.params()

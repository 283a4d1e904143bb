"""What validation holds out (time, each user's latest, at random) and the query settings
picked on it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import MAX_HISTORY
from recloop.training.candidates import held_out_mask
from recloop.training.sources import (
    evaluate,
    even_sample,
    fit,
    make_validation,
    time_validation,
    tune_query,
    user_validation,
)
from tests.factories import returning_users

pytestmark = pytest.mark.unit

DAY = 86_400.0


def _one_visit_each(n_users: int = 60, per_user: int = 10) -> TrainingData:
    """Each user comes once, for an hour, on a day of their own: an imported history."""
    rng = np.random.default_rng(3)
    users, items, ts = [], [], []
    for u in range(n_users):
        group = u % 4
        for step in range(per_user):
            users.append(f"u{u}")
            items.append(f"g{group}-{rng.integers(0, 15)}")
            ts.append(u * DAY + step * 60.0)
    return TrainingData(Interactions.from_records(users, items, ts))


def test_a_user_split_holds_out_each_users_latest_share_at_the_users_own_cut_off() -> None:
    data = _one_visit_each()
    validation = user_validation(data, 0.2)
    x = data.interactions
    assert validation.split == "user"
    assert len(validation.cases) > 40  # nearly every user, where a cut-off in time finds few
    for case in validation.cases:
        u = x.user_ids.index(case.user_id)
        times = np.sort(x.timestamps[x.users == u])
        # 10 interactions, 20 %: the last two are held out, the cut-off is the first of them.
        assert case.now_ts == times[-2]
        assert case.history
        assert not case.relevant & case.exclude
        assert all((case.user_id, item) in validation.held_out for item in case.relevant)
    train = validation.train.interactions
    assert len(train) == len(x) - 2 * x.n_users
    kept = {
        (train.user_ids[u], train.item_ids[i])
        for u, i in zip(train.users, train.items, strict=True)
    }
    held = {(x.user_ids[u], x.item_ids[i]) for u, i in zip(x.users, x.items, strict=True)} - kept
    assert held <= validation.held_out


def test_a_random_split_asks_every_case_after_the_last_interaction() -> None:
    data = _one_visit_each()
    validation = user_validation(data, 0.2, at_random=True)
    last = float(data.interactions.timestamps.max())
    assert validation.split == "random"
    assert {case.now_ts for case in validation.cases} == {last + 1.0}
    latest = user_validation(data, 0.2)
    assert {c.user_id: c.relevant for c in validation.cases} != {
        c.user_id: c.relevant for c in latest.cases
    }


def test_a_user_with_one_interaction_keeps_it() -> None:
    data = TrainingData(
        Interactions.from_records(["a", "b", "b", "b"], ["x", "x", "y", "z"], [1.0, 2.0, 3.0, 4.0])
    )
    validation = user_validation(data, 0.3)
    assert [c.user_id for c in validation.cases] == ["b"]
    assert validation.cases[0].relevant == frozenset({"z"})
    assert len(validation.train.interactions) == 3


def test_auto_takes_time_for_returning_users_and_user_for_one_visit_each() -> None:
    returning = make_validation(returning_users(40), "auto", 0.2)
    assert returning.split == "time"
    assert len(returning.cases) == len(time_validation(returning_users(40), 0.2).cases)
    once = _one_visit_each()
    assert len(time_validation(once, 0.1).cases) < 60 / 4
    assert make_validation(once, "auto", 0.1).split == "user"
    assert make_validation(once, "time", 0.1).split == "time"
    assert make_validation(once, "random", 0.1).split == "random"


def _first_night() -> TrainingData:
    """A young service's first day: 20 users with three items each in the morning, six of
    whom come back for one more in the evening."""
    users, items, ts = [], [], []
    for u in range(20):
        for step in range(3):
            users.append(f"u{u}")
            items.append(f"i{(u + step) % 9}")
            ts.append(8 * 3600.0 + u * 600.0 + step * 60.0)
        if u < 6:
            users.append(f"u{u}")
            items.append(f"late{u}")
            ts.append(22 * 3600.0 + u * 60.0)
    return TrainingData(Interactions.from_records(users, items, ts))


def test_auto_leaves_a_time_split_below_the_gates_floor_for_the_users_own_latest() -> None:
    data = _first_night()
    assert len(time_validation(data, 0.1).cases) == 6

    # Six of twenty is over a quarter: without a floor the thin time split stands.
    assert make_validation(data, "auto", 0.1).split == "time"
    floored = make_validation(data, "auto", 0.1, min_cases=10)

    assert floored.split == "user"
    assert len(floored.cases) == 20
    # An explicit choice is kept whatever it finds.
    assert make_validation(data, "time", 0.1, min_cases=10).split == "time"


def test_even_sample_keeps_the_split_and_its_held_out_pairs() -> None:
    validation = user_validation(_one_visit_each(), 0.2)
    sample = even_sample(validation, 5)
    assert len(sample.cases) == 5
    assert sample.split == "user"
    assert sample.held_out == validation.held_out


def test_the_query_options_picked_recall_best_of_all_tried_on_validation() -> None:
    validation = user_validation(returning_users(40), 0.2, at_random=True)
    model, _ = fit("ease", {}, validation.train)
    tuned, chosen = tune_query(model, validation, {})
    assert chosen
    assert chosen in model.query_options()
    scores = [
        evaluate(model.with_query(o), validation.cases)["recall@100"] for o in model.query_options()
    ]
    assert evaluate(tuned, validation.cases)["recall@100"] == max(scores)
    # The fitted table is shared, not refitted.
    assert tuned.neighbours_ is model.neighbours_


def test_query_options_the_configuration_fixes_are_not_tried() -> None:
    validation = user_validation(returning_users(40), 0.2)
    model, _ = fit("item-knn", {"history_len": 7}, validation.train)
    tuned, chosen = tune_query(model, validation, {"history_len": 7})
    assert tuned.params()["history_len"] == 7
    assert chosen.get("history_len", 7) == 7
    options = model.query_options()
    assert options[0]["history_len"] == 7
    assert any(o["history_len"] == MAX_HISTORY for o in options)


def test_a_model_without_query_options_is_returned_as_it_is() -> None:
    validation = user_validation(returning_users(40), 0.2)
    model, _ = fit("als", {"factors": 4, "iterations": 2}, validation.train)
    same, chosen = tune_query(model, validation, {})
    assert same is model
    assert chosen == {}


def test_held_out_mask_marks_every_event_of_a_held_out_pair() -> None:
    events = pa.table(
        {"user_id": ["a", "a", "b", "a"], "item_id": ["x", "y", "x", "x"], "n": [1, 2, 3, 4]}
    )
    mask = held_out_mask(events, frozenset({("a", "x")}))
    assert mask.to_pylist() == [True, False, False, True]


def _with_one_more(data: TrainingData, user: str, item: str, ts: float) -> TrainingData:
    """The same history and one stray event (a test posted today, a clock years behind)."""
    x = data.interactions
    return TrainingData(
        Interactions.from_records(
            [*(x.user_ids[u] for u in x.users), user],
            [*(x.item_ids[i] for i in x.items), item],
            [*x.timestamps.tolist(), ts],
        )
    )


@pytest.mark.parametrize(
    ("user", "ts"),
    [
        ("a-new-user", 300 * DAY),  # the README's curl example, months after the history
        ("u1", 300 * DAY),  # a known user, so the stray event is a case of its own
        ("u2", -400 * DAY),  # a clock far behind: the span would start a year early
    ],
)
def test_one_stray_event_does_not_move_the_time_cut_off(user: str, ts: float) -> None:
    data = returning_users(40)
    healthy = time_validation(data, 0.2)
    strayed = time_validation(_with_one_more(data, user, "a-new-item", ts), 0.2)
    assert len(healthy.cases) >= 30
    # the bulk's span, trimmed by one event more or less: the same cut-off within minutes
    assert abs(strayed.cutoff_ts - healthy.cutoff_ts) < 3600.0
    assert {c.user_id for c in healthy.cases} <= {c.user_id for c in strayed.cases}
    # auto keeps the time split: the stray event does not turn it into another protocol
    assert make_validation(_with_one_more(data, user, "a-new-item", ts), "auto", 0.2).split == (
        "time"
    )

"""Data-set loaders and evaluation splits on tiny hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recloop.data.datasets import (
    InteractionLog,
    leave_one_out,
    load_item_attributes,
    load_movielens_inter,
    load_movielens_items,
    load_sequences,
    random_split,
    time_split,
)
from recloop.retrieval.interactions import TrainingData

pytestmark = pytest.mark.unit


def _log(rows: list[tuple[str, str, float]]) -> InteractionLog:
    users = np.array([r[0] for r in rows], dtype=object)
    items = np.array([r[1] for r in rows], dtype=object)
    return InteractionLog(users, items, np.array([r[2] for r in rows], dtype=float))


def _train_rows(data: TrainingData) -> set[tuple[str, str, float]]:
    inter = data.interactions
    return {
        (inter.user_ids[u], inter.item_ids[i], t)
        for u, i, t in zip(inter.users, inter.items, inter.timestamps, strict=True)
    }


# 20 interactions at t = 0..19: test cut at the 90% quantile (t >= 17.1 -> 18, 19),
# validation cut at 80% (t >= 15.2 -> 16, 17).
ROWS = [
    *[("a", f"x{t}", float(t)) for t in range(0, 16)],  # a: x0..x15 in training
    ("b", "x0", 16.0),  # b: nothing before the validation cut -> no validation case
    ("a", "y", 17.0),  # a: validation item
    ("a", "z", 18.0),  # a: test item
    ("c", "w", 19.0),  # c: unseen before the test cut -> no test case
]


def test_time_split_cuts_by_time_without_leakage() -> None:
    split = time_split(_log(ROWS))
    train_rows = _train_rows(split.train)
    assert max(t for *_, t in train_rows) < 18.0  # nothing at or after the test cut
    assert ("a", "y", 17.0) in train_rows  # validation period belongs to train
    assert [c.user_id for c in split.test] == ["a"]
    case = split.test[0]
    assert case.relevant == {"z"}
    assert case.history[:2] == ("y", "x15")  # most recent first
    assert case.exclude == frozenset([f"x{t}" for t in range(16)] + ["y"])
    assert case.now_ts is not None
    assert case.now_ts <= 18.0
    test_times = {t for u, i, t in ROWS if i in case.relevant and u == case.user_id}
    assert not test_times & {t for *_, t in train_rows}
    # validation: fitted on data before the validation cut only
    assert max(t for *_, t in _train_rows(split.valid_train)) < 16.0
    assert [(c.user_id, c.relevant) for c in split.valid] == [("a", frozenset({"y"}))]
    # the whole catalog is known to the training data, items first seen later included
    assert {"z", "w"} <= set(split.train.interactions.item_ids)


def test_time_split_puts_an_interaction_at_the_cut_in_test() -> None:
    rows = [("a", f"x{t}", float(t)) for t in range(9)] + [("a", "z", 9.0), ("b", "w", 9.0)]
    split = time_split(_log(rows))  # the 90% quantile of the times is exactly 9.0
    assert max(t for *_, t in _train_rows(split.train)) == 8.0
    assert [(c.user_id, c.relevant, c.now_ts) for c in split.test] == [("a", {"z"}, 9.0)]


def test_time_split_drops_already_seen_items_from_relevant() -> None:
    rows = [("a", f"x{t}", float(t)) for t in range(9)] + [("a", "x0", 9.0)]
    assert time_split(_log(rows)).test == []  # x0 is a re-consumption: nothing new to find


def test_leave_one_out_takes_exactly_the_last_item() -> None:
    seqs = {"u1": ("a", "b", "c", "d"), "u2": ("c", "a", "e"), "u3": ("a", "b")}
    split = leave_one_out(seqs)
    test = {c.user_id: c for c in split.test}
    valid = {c.user_id: c for c in split.valid}
    assert set(test) == set(valid) == {"u1", "u2"}  # u3 is too short for cases
    assert test["u1"].relevant == {"d"}
    assert test["u1"].history == ("c", "b", "a")  # validation item included, most recent first
    assert test["u1"].exclude == {"a", "b", "c"}
    assert valid["u1"].relevant == {"c"}
    assert valid["u1"].history == ("b", "a")
    assert valid["u1"].exclude == {"a", "b"}
    train_pairs = {(u, i) for u, i, _ in _train_rows(split.train)}
    assert train_pairs == {
        ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "c"), ("u2", "a"), ("u3", "a"), ("u3", "b")
    }  # fmt: skip
    valid_pairs = {(u, i) for u, i, _ in _train_rows(split.valid_train)}
    assert valid_pairs == train_pairs - {("u1", "c"), ("u2", "a")}
    # within a user the synthetic timestamps keep the sequence order
    inter = split.train.interactions
    u1 = inter.user_index("u1")
    order = [inter.item_ids[i] for i in inter.items[inter.users == u1]]
    assert order == ["a", "b", "c"]


def test_leave_one_out_keeps_a_repeated_target_as_a_case() -> None:
    split = leave_one_out({"u": ("a", "b", "c", "a")})
    (case,) = split.test
    assert case.relevant == {"a"}
    assert "a" in case.exclude
    assert case.history == ("c", "b", "a")


def test_random_split_is_per_user_and_reproducible() -> None:
    rows = [(u, f"{u}{n}", float(n)) for u in ("a", "b") for n in range(8)]
    first = random_split(_log(rows), train_fraction=0.75, seed=3)
    again = random_split(_log(rows), train_fraction=0.75, seed=3)
    assert _train_rows(first.train) == _train_rows(again.train)
    for case in first.test:
        assert len(case.relevant) == 2
        assert len(case.exclude) == 6
        assert not case.relevant & case.exclude
    assert first.valid == []
    assert first.valid_train is first.train


def test_loaders_read_the_file_formats(tmp_path: Path) -> None:
    inter = tmp_path / "x.inter"
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t99\n"
    )
    users, items, stamps = load_movielens_inter(inter)
    assert users.tolist() == ["1", "2"]
    assert items.tolist() == ["10", "10"]
    assert stamps.tolist() == [100.0, 99.0]
    assert len(load_movielens_inter(inter, min_rating=None).users) == 3

    item = tmp_path / "x.item"
    item.write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tToy Story\t1995\tAnimation Comedy\n11\tunknown\t\t\n"
    )
    table = load_movielens_items(item)
    assert table.texts == ("Toy Story 1995 Animation Comedy", "unknown")
    assert table.categories == ("Animation", None)
    assert np.isnan(table.created_ts[1])
    assert table.created_ts[0] > 0

    seq = tmp_path / "s.txt"
    seq.write_text("1 5 6 7\n2 6\n2 8\n")  # S3-Rec line per user, SASRec line per pair
    assert load_sequences(seq) == {"1": ("5", "6", "7"), "2": ("6", "8")}

    attrs = tmp_path / "a.json"
    attrs.write_text(json.dumps({"5": [1, 2], "6": [3]}))
    table = load_item_attributes(attrs)
    assert table.item_ids == ("5", "6")
    assert table.texts == ("attr_1 attr_2", "attr_3")

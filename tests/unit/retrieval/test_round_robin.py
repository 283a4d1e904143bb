"""Round-robin interleaving of labelled lists: bounded, distinct, fair, order-keeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.retrieval.round_robin import round_robin

pytestmark = pytest.mark.unit

items = st.sampled_from([f"i{n}" for n in range(12)])
lists = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(items, max_size=8, unique=True)),
    max_size=4,
)


@given(lists, st.frozensets(items), st.integers(min_value=0, max_value=20))
def test_output_is_bounded_distinct_and_never_skipped(
    ranked: list[tuple[str, list[str]]], skip: frozenset[str], k: int
) -> None:
    out = [item for item, _ in round_robin(ranked, skip, k)]
    assert len(out) <= k
    assert len(out) == len(set(out))
    assert not set(out) & skip
    available = {i for _, ids in ranked for i in ids} - skip
    assert len(out) == min(k, len(available))


@given(st.lists(st.lists(items, max_size=8, unique=True), max_size=4), st.frozensets(items))
def test_each_list_gives_its_items_in_its_own_order(
    id_lists: list[list[str]], skip: frozenset[str]
) -> None:
    ranked = [(f"list{j}", ids) for j, ids in enumerate(id_lists)]
    out = list(round_robin(ranked, skip, 100))
    for label, ids in ranked:
        given_by_it = [item for item, source in out if source == label]
        assert given_by_it == [i for i in ids if i in set(given_by_it)]


def test_an_excluded_head_does_not_hand_its_turn_to_the_next_list() -> None:
    out = list(round_robin([("a", ["x", "a1", "a2"]), ("b", ["b1", "b2"])], {"x"}, 4))
    assert out == [("a1", "a"), ("b1", "b"), ("a2", "a"), ("b2", "b")]

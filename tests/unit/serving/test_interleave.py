"""Interleaved serving: teams logged per item, and propensities that match the draft."""

from __future__ import annotations

from collections import Counter

import pytest

from recloop.domain import ScoredItem
from recloop.serving.interleave import SHARED, interleave_lists

pytestmark = pytest.mark.unit


def _items(*ids: str) -> list[ScoredItem]:
    return [ScoredItem(i, 1.0 - n / 10, "src", "why") for n, i in enumerate(ids)]


def test_each_item_names_the_team_that_drafted_it_and_the_shared_top_names_none() -> None:
    a = _items("x", "a1", "a2", "a3")
    b = _items("x", "b1", "b2", "b3")
    served = interleave_lists(a, b, ("current", "next"), 5, "req-1")

    assert served[0].item_id == "x"
    assert served[0].team == SHARED
    for item in served[1:]:
        assert item.team == ("current" if item.item_id.startswith("a") else "next")
    assert Counter(i.team for i in served[1:]) == {"current": 2, "next": 2}


def test_logged_propensities_match_how_often_the_draft_puts_each_item_there() -> None:
    a = _items("a1", "a2", "a3", "s")
    b = _items("b1", "s", "b2", "b3")
    seen: Counter[tuple[int, str]] = Counter()
    logged: Counter[tuple[int, str]] = Counter()
    n = 2000
    for r in range(n):
        for position, item in enumerate(interleave_lists(a, b, ("A", "B"), 4, f"req-{r}")):
            seen[(position, item.item_id)] += 1
            logged[(position, item.item_id)] += item.propensity
            assert 0 < item.propensity <= 1
    assert len(seen) > 4  # the draft does vary the list
    for key, count in seen.items():
        # The mean logged estimate (100 draws each) against the frequency over 2000 lists.
        assert logged[key] / count == pytest.approx(count / n, abs=0.04)

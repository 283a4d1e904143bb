"""The response cache's own rules: TTL, size bound, per-user forgetting, off at 0."""

from __future__ import annotations

import pytest

from recloop.domain import ScoredItem
from recloop.serving.response_cache import CachedList, ResponseCache

pytestmark = pytest.mark.unit


def entry(at: float, item: str = "a") -> CachedList:
    return CachedList((ScoredItem(item, 1.0, "popular", "Popular"),), "v", False, at)


def test_an_entry_is_served_until_its_ttl_and_not_after() -> None:
    cache = ResponseCache(ttl_s=10.0)
    cache.put("k", ("app", "u"), entry(at=100.0))

    assert cache.get("k", now=109.0) is not None
    assert cache.get("k", now=111.0) is None
    assert len(cache) == 0


def test_the_least_recently_used_entry_goes_first_beyond_the_bound() -> None:
    cache = ResponseCache(ttl_s=10.0, max_entries=2)
    cache.put("a", ("app", "u"), entry(0.0))
    cache.put("b", ("app", "u"), entry(0.0))
    cache.get("a", now=1.0)
    cache.put("c", ("app", "u"), entry(0.0))

    assert cache.get("b", now=1.0) is None
    assert cache.get("a", now=1.0) is not None
    assert cache.get("c", now=1.0) is not None


def test_forgetting_a_user_drops_only_their_entries() -> None:
    cache = ResponseCache(ttl_s=10.0)
    cache.put("ann-home", ("app", "ann"), entry(0.0))
    cache.put("ann-similar", ("app", "ann"), entry(0.0))
    cache.put("bob-home", ("app", "bob"), entry(0.0))

    cache.forget_users("app", ["ann"])

    assert cache.get("ann-home", 1.0) is None
    assert cache.get("ann-similar", 1.0) is None
    assert cache.get("bob-home", 1.0) is not None


def test_a_zero_ttl_keeps_nothing() -> None:
    cache = ResponseCache(ttl_s=0.0)
    cache.put("k", ("app", "u"), entry(0.0))

    assert not cache.enabled
    assert cache.get("k", 0.0) is None

"""Popular (all-time), trending (time-decayed), click-rate, newest and same-category sources.

They read the latest ``PopularitySnapshot``; popular is also every surface's fallback.
"""

from __future__ import annotations

from recloop.domain import Candidate
from recloop.retrieval.popularity import PopularityIndex, Ranked
from recloop.retrieval.protocols import RetrievalQuery


def _candidates(
    ranked: Ranked, source: str, reason: str, k: int, skip: str | None = None
) -> list[Candidate]:
    ids, scores = ranked
    out: list[Candidate] = []
    for item_id, score in zip(ids, scores, strict=False):
        if item_id == skip:
            continue
        out.append(Candidate(item_id, source, score, reason))
        if len(out) >= k:
            break
    return out


class _RankedListSource:
    """A source that reads one of the snapshot's ranked lists (overall or per category)."""

    name: str
    reason: str  # without a category
    reason_in: str  # with one: "... in {category}"

    def __init__(self, index: PopularityIndex) -> None:
        self._index = index

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """At most ``k`` items of the list, best first."""
        snapshot = self._index.get(query.app_id)
        if snapshot is None:
            return []
        reason = self.reason_in.format(category=query.category) if query.category else self.reason
        return _candidates(snapshot.ranked(self.name, query.category), self.name, reason, k)


class PopularSource(_RankedListSource):
    """The most engaged-with items of all time (within the requested category, if any)."""

    name = "popular"
    reason = "Popular"
    reason_in = "Popular in {category}"


class TrendingSource(_RankedListSource):
    """Items with the most engagement lately: counts decayed with a half-life."""

    name = "trending"
    reason = "Trending now"
    reason_in = "Trending in {category}"


class ClickRateSource(_RankedListSource):
    """Items clicked most often when shown: impressions and clicks, each item's rate shrunk
    toward the catalog's by an empirical-Bayes prior (``popularity.click_rates``). Unlike
    engagement counts it does not follow exposure, so the lists' own feedback loop does
    not feed it; it recalls nothing until impressions are logged."""

    name = "click-rate"
    reason = "Often clicked"
    reason_in = "Often clicked in {category}"


class NewestSource(_RankedListSource):
    """The most recently created active items: the cold-start fallback when nothing has
    engagement yet, and the way new items get their first impressions."""

    name = "newest"
    reason = "New"
    reason_in = "New in {category}"


class SameCategorySource:
    """Popular items in the anchor item's category: today's "you may also like"."""

    name = "same-category"

    def __init__(self, index: PopularityIndex) -> None:
        self._index = index

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """At most ``k`` items sharing the anchor's category, anchor excluded."""
        snapshot = self._index.get(query.app_id)
        if snapshot is None or query.anchor_item_id is None:
            return []
        category = snapshot.category_of.get(query.anchor_item_id)
        if category is None:
            return []
        ranked = snapshot.ranked("popular", category)
        return _candidates(ranked, self.name, f"More in {category}", k, skip=query.anchor_item_id)

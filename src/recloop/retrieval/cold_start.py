"""Sources for what the models do not know yet: new users and new items.

``InterestsSource`` serves a user with little history from what they told us (onboarding
interests, as user attributes): what is trending in those categories. ``FreshSource`` gives
new items a share of slots, ordered by how close their text is to the user's history, so
an item is recommendable the moment it is created, before anyone has engaged with it.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recloop.domain import Candidate
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.content import ContentModel
from recloop.retrieval.models import RecallQuery
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.protocols import RetrievalQuery
from recloop.retrieval.round_robin import round_robin


def interests_of(attributes: dict[str, Any] | None, key: str = "interests") -> list[str]:
    """Categories a user chose, from a list or a comma-separated string attribute."""
    value = (attributes or {}).get(key)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Sequence):
        return [str(v) for v in value if str(v).strip()]
    return []


class InterestsSource:
    """Trending items in the categories a cold user picked at onboarding.

    Only users with fewer than ``max_history`` engaged items get anything: once the history
    speaks, the trained sources take over.
    """

    name = "interests"

    def __init__(self, index: PopularityIndex, max_history: int = 5) -> None:
        self._index = index
        self._max_history = max_history

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """Round-robin over the chosen categories' trending lists (popular if none trend)."""
        if len(query.history) >= self._max_history:
            return []
        snapshot = self._index.get(query.app_id)
        interests = interests_of(query.user_attributes)
        if snapshot is None or not interests:
            return []
        # Interests are matched to catalog categories ignoring case ("comedy" is "Comedy").
        known = {c.casefold(): c for c in snapshot.popular_by_category}
        known.update({c.casefold(): c for c in snapshot.trending_by_category})
        lists: list[tuple[str, Sequence[str]]] = []
        for interest in interests:
            category = known.get(interest.casefold(), interest)
            ids, _ = snapshot.ranked("trending", category)
            lists.append((category, ids or snapshot.ranked("popular", category)[0]))
        return [
            Candidate(item_id, self.name, 1.0 / (1 + rank), f"Trending in {category}")
            for rank, (item_id, category) in enumerate(
                round_robin(lists, query.excluded_item_ids, k)
            )
        ]


class FreshSource:
    """Items created in the last ``max_age_days``, closest to the user's history first.

    Without a content model or a history, the newest come first. Its quota in a surface is
    the freshness quota: how many new items compete for slots on every request.
    """

    name = "fresh"
    #: It computes in this process's memory and never waits on I/O: the pipeline may run it
    #: in the request's thread while it stays cheap.
    in_memory = True

    def __init__(
        self,
        popularity: PopularityIndex,
        models: ModelIndex,
        *,
        max_age_days: float = 3.0,
        content_model: str = "content",
    ) -> None:
        self._popularity = popularity
        self._models = models
        self._min_recency = 1.0 / (1.0 + max_age_days)
        self._content_model = content_model

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """At most ``k`` new items, by similarity to the history, else by recency."""
        snapshot = self._popularity.get(query.app_id)
        if snapshot is None:
            return []
        ids, recency = snapshot.ranked("newest", query.category)
        # The list is newest first: the items recent enough are a prefix of it.
        recent = bisect.bisect_right(recency, -self._min_recency, key=operator.neg)
        excluded = query.excluded_item_ids
        fresh = [
            (item_id, r)
            for item_id, r in zip(ids[:recent], recency[:recent], strict=True)
            if item_id not in excluded
        ]
        if not fresh:
            return []
        bundle = self._models.get(query.app_id)
        model = bundle.model(self._content_model) if bundle is not None else None
        if isinstance(model, ContentModel) and query.history:
            ranked = self._by_similarity(model, query, fresh, bundle.titles if bundle else {})
            if ranked:
                return ranked[:k]
        return [
            Candidate(item_id, self.name, float(r), self._new_in(snapshot.category_of.get(item_id)))
            for item_id, r in fresh[:k]
        ]

    def _by_similarity(
        self,
        model: ContentModel,
        query: RetrievalQuery,
        fresh: list[tuple[str, float]],
        titles: Mapping[str, str],
    ) -> list[Candidate]:
        profile = model.profile(RecallQuery(history=query.history, session=query.session_items))
        if profile is None:
            return []
        vector, sources, history = profile
        at, matrix = model.vectors([item_id for item_id, _ in fresh])
        if not at:
            return []
        known = [fresh[i] for i in at]
        similarity = matrix @ vector
        closest = np.argmax(matrix @ history.T, axis=1)
        order = np.argsort(-similarity, kind="stable")
        out = []
        for j in order.tolist():
            item_id = known[j][0]
            because = sources[int(closest[j])]
            title = titles.get(because) or because
            out.append(Candidate(item_id, self.name, float(similarity[j]), f"New, like {title}"))
        return out

    @staticmethod
    def _new_in(category: str | None) -> str:
        return f"New in {category}" if category else "New"

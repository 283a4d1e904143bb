"""Mandatory filters: what a user excluded or consumed, and what the catalog does not serve.

These read the durable store on every request: a blocked item or a "not interested" must
take effect on the very next request, on every replica.
"""

from __future__ import annotations

from collections.abc import Sequence

from recloop.domain import RequestContext, ScoredItem
from recloop.features.candidates import MergedCandidate
from recloop.store.protocols import Catalog


class ExcludedItemsFilter:
    """Drops the request's excluded items: consumed, suppressed, asked-for exclusions, anchor."""

    name = "excluded"

    def keep(
        self, candidates: Sequence[MergedCandidate], ctx: RequestContext
    ) -> list[MergedCandidate]:
        """Candidates not in ``ctx.excluded_item_ids``."""
        excluded = ctx.excluded_item_ids
        return [c for c in candidates if c.item_id not in excluded]


class ActiveCatalogGate:
    """Admits only items that exist, are active, and match the requested category."""

    name = "catalog"

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def admit(self, items: Sequence[ScoredItem], ctx: RequestContext) -> list[ScoredItem]:
        """The items the catalog serves right now."""
        entries = self._catalog.active_entries(ctx.app_id, [i.item_id for i in items])
        return [
            item
            for item in items
            if (entry := entries.get(item.item_id)) is not None
            and (ctx.category is None or entry.category == ctx.category)
        ]

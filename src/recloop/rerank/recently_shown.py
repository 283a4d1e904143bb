"""Demotes items the user has been shown again and again without engaging."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, Slate
from recloop.store.protocols import RecommendationLog


class RecentlyShownConfig(BaseModel):
    """Items served at least ``max_shown`` times in the last ``window_h`` hours go last;
    ``surfaces`` says whose lists count: this surface's (``same``) or every surface's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_h: float = Field(default=24.0, gt=0)
    max_shown: int = Field(default=3, ge=1)
    surfaces: Literal["same", "all"] = "same"


class RecentlyShownDemotion:
    """Moves items the user kept scrolling past below the others, in their ranked order.

    Engaged items never reach this rule (they are excluded as consumed), so an item counted
    here was shown and ignored. It reads the user's recent served lists from the store: one
    query per request.
    """

    name = "recently-shown"
    mandatory = False

    def __init__(self, config: RecentlyShownConfig, log: RecommendationLog) -> None:
        self.config = config
        self._log = log

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate with the often-shown items moved to the end."""
        since = ctx.now - timedelta(hours=self.config.window_h)
        # Lists served before this request only: a shadow run of the same request must not
        # count the list that request served.
        counts = self._log.shown_counts(
            ctx.app_id,
            ctx.user_id,
            since,
            until=ctx.now,
            surface=ctx.surface if self.config.surfaces == "same" else None,
        )
        limit = self.config.max_shown
        fresh = [item for item in slate.items if counts.get(item.item_id, 0) < limit]
        stale = [item for item in slate.items if counts.get(item.item_id, 0) >= limit]
        return Slate(tuple(fresh + stale))

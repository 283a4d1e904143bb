"""Diversity rules: caps per creator or category in a window, and MMR over item vectors."""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.rerank.attributes import ItemAttributes, ItemVectors


class CapConfig(BaseModel):
    """At most ``max_items`` items sharing an attribute among any ``window`` consecutive ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: Literal["creator", "category"]
    max_items: int = Field(default=2, ge=1)
    window: int = Field(default=10, ge=2)


class AttributeCap:
    """Keeps the ranked order but defers an item whose creator (or category) already fills
    its share of the last ``window`` positions; deferred items come after, in order, so the
    slate keeps its length when there is nothing else to serve."""

    mandatory = False

    def __init__(self, config: CapConfig, attributes: ItemAttributes) -> None:
        self.config = config
        self.name = f"cap-{config.attribute}"
        self._attributes = attributes

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate with the cap applied greedily from the top."""
        c = self.config
        waiting: deque[ScoredItem] = deque(slate.items)
        placed: list[ScoredItem] = []
        values: list[str | None] = []
        deferred: list[ScoredItem] = []
        while waiting:
            item = waiting.popleft()
            value = self._attributes.attribute(ctx.app_id, item.item_id, c.attribute)
            recent = values[-(c.window - 1) :] if c.window > 1 else []
            if value is not None and recent.count(value) >= c.max_items:
                deferred.append(item)
                continue
            placed.append(item)
            values.append(value)
        return Slate(tuple(placed + deferred))


class MMRConfig(BaseModel):
    """Maximal marginal relevance: ``lambda_`` weighs relevance against novelty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lambda_: float = Field(default=0.7, ge=0.0, le=1.0, alias="lambda")
    top: int = Field(default=50, ge=1, description="How many head items are re-ordered.")


class MMR:
    """Re-orders the head of the slate: each next item maximises
    ``lambda * relevance - (1 - lambda) * max similarity to the items already chosen``.

    Relevance is the ranked score scaled to [0, 1]; similarity is the cosine of the items'
    vectors (items without a vector are treated as unlike everything).
    """

    name = "mmr"
    mandatory = False

    def __init__(self, config: MMRConfig, vectors: ItemVectors) -> None:
        self.config = config
        self._vectors = vectors

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate with its head re-ordered for diversity."""
        head = list(slate.items[: self.config.top])
        tail = slate.items[self.config.top :]
        if len(head) < 3:
            return slate
        found = [self._vectors.vector(ctx.app_id, item.item_id) for item in head]
        known = [v for v in found if v is not None]
        if not known:
            return slate
        dim = len(known[0])
        matrix = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in found])
        scores = np.array([item.score for item in head], dtype=np.float64)
        span = scores.max() - scores.min()
        relevance = (scores - scores.min()) / span if span > 0 else np.ones(len(head))
        similarity = matrix @ matrix.T
        lam = self.config.lambda_
        chosen: list[int] = []
        closest = np.full(len(head), -np.inf)
        remaining = np.ones(len(head), dtype=bool)
        for _ in range(len(head)):
            penalty = np.where(np.isfinite(closest), closest, 0.0)
            value = lam * relevance - (1.0 - lam) * penalty
            value[~remaining] = -np.inf
            pick = int(np.argmax(value))
            chosen.append(pick)
            remaining[pick] = False
            closest = np.maximum(closest, similarity[pick])
        return Slate(tuple(head[i] for i in chosen) + tuple(tail))

"""The exploration-policy role and the deterministic policy."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from recloop.domain import RequestContext, Slate


class ExplorationPolicy(Protocol):
    """Decides the final slate's exploration slots and the propensity of every position."""

    name: str

    def explore(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate to serve, each item carrying the probability it was put there."""
        ...


class NoExplorationPolicy:
    """Serves the ranked slate as is: every position was chosen with probability 1."""

    name = "none"

    def explore(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The same slate with propensity 1.0 everywhere."""
        return Slate(tuple(dataclasses.replace(item, propensity=1.0) for item in slate.items))

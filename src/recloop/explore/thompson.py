"""Thompson sampling over per-item click counts, a bandit exploration policy.

It satisfies ``ExplorationPolicy``: from the ranked slate it serves exactly
``min(k, len(slate))`` distinct items of it, each with a propensity in (0, 1], and the same
request id with the same state (counts, model) gives the same list.

**Which positions explore.** ``explore_slots`` of the ``k`` positions, the *last* ones
(examined least, so exploring there costs least), are filled by the bandit from the
candidates: the first ``pool`` items of the slate that the ranker's kept head does not hold.
The head keeps the ranker's order with propensity 1. ``explore_slots=None`` (the default)
hands all ``k`` positions to the bandit, which then re-ranks the pool by its own scores.

**Propensities** (see ``recloop.explore.drawn_slots``): a bandit position's propensity is
the Monte Carlo estimate, from ``propensity_draws`` extra seeded draws plus the served one,
of the probability that the policy puts that item at that position given the slate and the
state: the probability marginal over the earlier positions, not conditional on them. It is
an estimate (standard error up to ``0.5 / sqrt(1 + draws)``) and at least
``1 / (1 + draws)``; ``position_probabilities`` returns the whole estimated matrix, for
off-policy evaluation of a bandit as a target policy.

LinUCB, the other bandit, lives in ``recloop.explore.linucb``; both draw their slots with
``recloop.explore.drawn_slots``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, Slate
from recloop.explore.drawn_slots import (
    DrawnSlots,
    SlotPlan,
    plan_slots,
    request_seed,
    top_by_draws,
)
from recloop.features.candidates import FeatureMatrix


class ItemStats(Protocol):
    """Per-item counters a bandit reads: impressions (examined views) and clicks."""

    def get(self, app_id: str, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Impressions and clicks of each item, in order, as float arrays (0 if unknown)."""
        ...


class InMemoryItemStats:
    """``ItemStats`` in a dict, safe to read and update from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, list[float]]] = {}

    def get(self, app_id: str, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Impressions and clicks of each item, in order (0 for an item never counted)."""
        zero = (0.0, 0.0)
        with self._lock:
            counts = self._counts.get(app_id, {})
            rows = [counts.get(item_id, zero) for item_id in item_ids]
            impressions = np.fromiter((row[0] for row in rows), float, len(rows))
            clicks = np.fromiter((row[1] for row in rows), float, len(rows))
        return impressions, clicks

    def update(
        self,
        app_id: str,
        item_ids: Sequence[str],
        clicks: Sequence[float],
        impressions: Sequence[float] | None = None,
    ) -> None:
        """Add ``impressions`` (1 each when None) and ``clicks`` to each item's counters."""
        if len(clicks) != len(item_ids) or (
            impressions is not None and len(impressions) != len(item_ids)
        ):
            raise ValueError("item_ids, clicks and impressions must have the same length")
        shown = [1.0] * len(item_ids) if impressions is None else impressions
        with self._lock:
            counts = self._counts.setdefault(app_id, {})
            for item_id, seen, clicked in zip(item_ids, shown, clicks, strict=True):
                row = counts.setdefault(item_id, [0.0, 0.0])
                row[0] += float(seen)
                row[1] += float(clicked)


class ThompsonConfig(BaseModel):
    """Beta-Bernoulli Thompson sampling: prior ``Beta(alpha, beta)`` on each item's click
    rate per impression, ``pool`` candidates, ``explore_slots`` of the ``k`` positions
    (None: all), and ``propensity_draws`` Monte Carlo draws for the propensities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=1.0, gt=0.0)
    beta: float = Field(default=1.0, gt=0.0)
    pool: int = Field(default=50, ge=1)
    explore_slots: int | None = Field(default=None, ge=0)
    propensity_draws: int = Field(default=200, ge=1)


class ThompsonSampling(DrawnSlots):
    """Thompson sampling over per-item click counts, re-ranking the ranker's candidates.

    Each item's click rate per impression has the posterior
    ``Beta(alpha + clicks, beta + impressions - clicks)``; one draw per candidate, and the
    explore slots take the candidates with the highest draws, highest first. Items with few
    impressions have wide posteriors and so are tried; items with many are served by their
    measured rate. The draws are seeded by the request id: same id and counts, same list.

    The ranker's order is used only to pick the pool (its first ``pool`` items) and, with
    ``explore_slots`` set, the head it keeps; within the explore slots the counts alone
    decide. Counts are per item and shared by all users: this learns what is clicked in
    general among the candidates retrieval found for this user, not personal taste.
    """

    name = "thompson"

    def __init__(self, config: ThompsonConfig, stats: ItemStats) -> None:
        self.config = config
        self.stats = stats

    def _draw(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None = None
    ) -> tuple[SlotPlan, np.ndarray]:
        plan = plan_slots(slate, k, self.config.pool, self.config.explore_slots)
        if plan.slots == 0:
            return plan, np.zeros((0, 0), dtype=np.intp)
        ids = [item.item_id for item in plan.candidates]
        impressions, clicks = self.stats.get(ctx.app_id, ids)
        clicks = np.clip(clicks, 0.0, None)
        a = self.config.alpha + clicks
        b = self.config.beta + np.clip(impressions - clicks, 0.0, None)
        rng = np.random.default_rng(request_seed(ctx.request_id, self.name))
        draws = rng.beta(a, b, size=(1 + self.config.propensity_draws, len(ids)))
        return plan, top_by_draws(draws, plan.slots)

"""Boost rules: freshness for new items, and business rules from configuration."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.rerank.attributes import ItemAttributes

_DAY_S = 86_400.0


def _rescored(items: list[tuple[float, int, ScoredItem]]) -> Slate:
    """Items by their new score (stable for ties), carrying the new score."""
    items.sort(key=lambda t: (-t[0], t[1]))
    return Slate(tuple(dataclasses.replace(item, score=score) for score, _, item in items))


class FreshnessConfig(BaseModel):
    """Scores of items younger than ``max_age_days`` grow by up to ``boost`` (a share of
    the slate's score range), fading linearly with age."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_age_days: float = Field(default=3.0, gt=0)
    boost: float = Field(default=0.2, ge=0)


class FreshnessBoost:
    """Lifts new items, so they gather the engagement that the models need to learn them."""

    name = "freshness"
    mandatory = False

    def __init__(self, config: FreshnessConfig, attributes: ItemAttributes) -> None:
        self.config = config
        self._attributes = attributes

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate re-scored with the freshness lift."""
        if not slate.items:
            return slate
        scores = [item.score for item in slate.items]
        span = (max(scores) - min(scores)) or 1.0
        now = ctx.now.timestamp()
        rescored = []
        for position, item in enumerate(slate.items):
            created = self._attributes.created_ts(ctx.app_id, item.item_id)
            lift = 0.0
            if created is not None:
                age_days = max(0.0, (now - created) / _DAY_S)
                lift = max(0.0, 1.0 - age_days / self.config.max_age_days)
            rescored.append((item.score + self.config.boost * span * lift, position, item))
        return _rescored(rescored)


class Match(BaseModel):
    """Items whose ``attribute`` equals ``value``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: Literal["category", "creator"]
    value: str


class Boost(Match):
    """Multiply the matching items' score span share by ``factor`` (1 = no change)."""

    factor: float = Field(gt=0)


class Pin(BaseModel):
    """Serve ``item_id`` at ``position`` (0 = first) whenever it is eligible for the user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    position: int = Field(ge=0)


class BusinessConfig(BaseModel):
    """Business rules: exclude by attribute, boost by attribute, pin items to positions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude: list[Match] = Field(default_factory=list)
    boost: list[Boost] = Field(default_factory=list)
    pin: list[Pin] = Field(default_factory=list)


class BusinessRules:
    """Configured exclusions, boosts and pins. Exclusions are promises to the business,
    so the rule is mandatory: if it fails, the request fails rather than break them.

    A pinned item is placed only if it is in the slate: pinning never bypasses the
    eligibility filters (consumed, dismissed, blocked items stay out).
    """

    name = "business"
    mandatory = True

    def __init__(self, config: BusinessConfig, attributes: ItemAttributes) -> None:
        self.config = config
        self._attributes = attributes

    def _matches(self, app_id: str, item_id: str, rule: Match) -> bool:
        return self._attributes.attribute(app_id, item_id, rule.attribute) == rule.value

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate with exclusions, boosts and pins applied, in that order."""
        c = self.config
        items = [
            item
            for item in slate.items
            if not any(self._matches(ctx.app_id, item.item_id, m) for m in c.exclude)
        ]
        if c.boost and items:
            scores = [item.score for item in items]
            low, span = min(scores), (max(scores) - min(scores)) or 1.0
            rescored = []
            for position, item in enumerate(items):
                share = (item.score - low) / span + 1.0  # positive, so a factor scales it
                for rule in c.boost:
                    if self._matches(ctx.app_id, item.item_id, rule):
                        share *= rule.factor
                rescored.append((low + (share - 1.0) * span, position, item))
            items = list(_rescored(rescored).items)
        for pin in sorted(c.pin, key=lambda p: p.position):
            found = next((i for i in items if i.item_id == pin.item_id), None)
            if found is not None:
                items.remove(found)
                items.insert(min(pin.position, len(items)), found)
        return Slate(tuple(items))

"""Surfaces: each one a pipeline (sources and quotas, ranker, rules, exploration) as data."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from recloop.config.section import Section


class SourceSlotConfig(Section):
    """One candidate source in a surface: which, how many candidates, how long to wait."""

    name: str
    quota: int = Field(default=200, ge=1, le=5000)
    timeout_ms: float = Field(default=15.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ComponentConfig(Section):
    """A named component (ranker, rule or policy) and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SurfaceConfig(Section):
    """A surface is data: its sources and quotas, ranker, rerank rules and exploration."""

    sources: list[SourceSlotConfig]
    ranker: ComponentConfig = ComponentConfig(name="source-scores")
    rules: list[ComponentConfig] = Field(default_factory=list)
    exploration: ComponentConfig = ComponentConfig(name="none")
    online_features: bool = Field(
        default=False,
        description="Read user, item and session features from the online store for the ranker.",
    )
    fallback: list[str] = Field(
        default_factory=lambda: ["popular", "newest"],
        description="Sources tried in order when no configured source yields a servable item.",
    )
    requires_item: bool = False

    @model_validator(mode="after")
    def _has_sources(self) -> SurfaceConfig:
        if not self.sources:
            raise ValueError("a surface needs at least one source")
        return self


def default_surfaces() -> dict[str, SurfaceConfig]:
    """The surfaces a fresh install serves: home, trending and similar.

    Trained sources recall nothing until ``recloop train`` has published a model version;
    until then the popularity sources serve.
    """
    return {
        "home": SurfaceConfig(
            sources=[
                SourceSlotConfig(name="session", quota=50),
                SourceSlotConfig(name="covisitation", quota=100),
                SourceSlotConfig(name="ease", quota=100),
                SourceSlotConfig(name="als", quota=100),
                SourceSlotConfig(name="two-tower", quota=100),
                SourceSlotConfig(name="sasrec", quota=100),
                SourceSlotConfig(name="content", quota=50),
                SourceSlotConfig(name="interests", quota=50),
                SourceSlotConfig(name="segment-popular", quota=50),
                SourceSlotConfig(name="trending", quota=100),
                SourceSlotConfig(name="popular", quota=100),
                # What is clicked when shown, not merely shown often (popular's echo).
                SourceSlotConfig(name="click-rate", quota=100),
                # New items get a share of attention before they have any engagement.
                SourceSlotConfig(name="fresh", quota=30),
                SourceSlotConfig(name="newest", quota=20),
            ],
            # The learned ranker scores every candidate on the online features; until
            # `recloop train` has fitted one, the sources' own scores rank.
            ranker=ComponentConfig(
                name="learned",
                params={
                    "weights": {"click": 1.0, "satisfaction": 0.5},
                    "fallback_weights": {"newest": 0.3, "fresh": 0.5},
                },
            ),
            online_features=True,
            # A ranker trained only on lists it chose itself drifts; a tenth of the positions
            # show items ranked just below the list (with their propensities logged), which
            # in the simulator more than halved the CTR loss of a run that drifted.
            exploration=ComponentConfig(name="epsilon-greedy", params={"epsilon": 0.1, "pool": 50}),
            rules=[
                # An item served and passed over goes below the rest for three days: people
                # tire of seeing the same thing, and the slot is worth more to something new.
                ComponentConfig(name="recently-shown", params={"max_shown": 1, "window_h": 72}),
                # One creator should not fill the screen (last, so that nothing undoes it).
                ComponentConfig(
                    name="cap", params={"attribute": "creator", "max_items": 2, "window": 10}
                ),
            ],
        ),
        "trending": SurfaceConfig(sources=[SourceSlotConfig(name="trending", quota=300)]),
        "similar": SurfaceConfig(
            sources=[
                SourceSlotConfig(name="covisitation", quota=200),
                SourceSlotConfig(name="content", quota=100),
                SourceSlotConfig(name="same-category", quota=300),
                SourceSlotConfig(name="popular", quota=100),
            ],
            ranker=ComponentConfig(
                name="source-scores",
                params={
                    "weights": {
                        "covisitation": 2.0,
                        "content": 1.5,
                        "same-category": 1.0,
                        "popular": 0.5,
                    }
                },
            ),
            requires_item=True,
        ),
    }

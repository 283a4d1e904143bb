"""Experiments, their variants and guardrails, and shadow pipelines."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from recloop.config.section import Section

#: Pipeline fields a variant may override (the rest of the surface is the experiment's).
VARIANT_OVERRIDES = frozenset(
    {"sources", "ranker", "rules", "exploration", "online_features", "fallback"}
)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - VARIANT_OVERRIDES)
    if unknown:
        raise ValueError(
            f"overrides: {', '.join(unknown)} cannot be overridden "
            f"(allowed: {', '.join(sorted(VARIANT_OVERRIDES))})"
        )


class VariantConfig(Section):
    """One arm of an experiment: its share of the experiment's users and what it changes.

    A variant serves from another configured ``surface``, or from the experiment's surface
    with some pipeline fields replaced (``overrides``), or, with neither, unchanged (the
    control); with a ``model_version``, from that model version rather than the promoted
    one (a canary of a new version, or the previous one kept for comparison).
    """

    name: str = Field(pattern=_NAME)
    share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The variant's share of the experiment's users; left out in a ramped "
        "experiment, whose ramp sets the shares stage by stage.",
    )
    surface: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    model_version: str | None = Field(
        default=None,
        description="Serve this model version (retrieval models and ranker) to the variant "
        "instead of the promoted one; the service keeps it loaded beside the promoted one.",
    )

    @model_validator(mode="after")
    def _known_overrides(self) -> VariantConfig:
        _check_overrides(self.overrides)
        return self


class GuardrailConfig(Section):
    """A metric an experiment must not move the bad way.

    Relative to the control: not significantly, and not past ``tolerance`` (0: not at all).
    With an ``allowance`` too, a change within that much of the control in the metric's
    own units (ms for latency) is tolerated as well: only a change past both trips it, so
    a pipeline slower than its control by design is judged by how much slower, not by
    what a busy machine adds to both. With a ``limit``, instead an absolute bound on the
    treatment's value (a p99 latency budget in ms, say) that it must stay on the good
    side of.
    """

    metric: Literal["ctr", "satisfaction", "hide_rate", "latency_p99", "coverage"]
    bad_direction: Literal["up", "down"]
    tolerance: float = Field(default=0.0, ge=0)
    allowance: float | None = Field(
        default=None,
        ge=0,
        description="A change the bad way of up to this much, in the metric's units (ms for "
        "latency_p99), is tolerated whatever its relative size.",
    )
    limit: float | None = None


def default_guardrails() -> list[GuardrailConfig]:
    """Hides must not rise significantly; p99 latency must not rise more than 10%."""
    return [
        GuardrailConfig(metric="hide_rate", bad_direction="up"),
        GuardrailConfig(metric="latency_p99", bad_direction="up", tolerance=0.10),
    ]


class ExperimentConfig(Section):
    """An experiment on one surface: variants, traffic, layer and schedule.

    Users are assigned by a hash of (``salt``, user id), never a random draw, so a user keeps
    their variant across requests and replicas. Experiments in one ``layer`` split its
    users between them (each takes ``traffic`` of the layer, in configuration order), so a
    user is in at most one of them; experiments in different layers are independent.
    """

    name: str = Field(pattern=_NAME)
    surface: str
    variants: list[VariantConfig]
    kind: Literal["ab", "interleave"] = Field(
        default="ab",
        description="ab: each user gets one variant. interleave: each user gets one list "
        "team-drafted from both variants' rankings, clicks credited to the variant that "
        "contributed the item (two variants, no shares; neither explores).",
    )
    layer: str = Field(default="default", pattern=_NAME)
    traffic: float = Field(default=1.0, gt=0, le=1, description="Share of the layer's users.")
    salt: str | None = Field(default=None, description="Defaults to the experiment's name.")
    start: datetime | None = None
    stop: datetime | None = None
    primary_metric: Literal["ctr", "satisfaction"] = "ctr"
    guardrails: list[GuardrailConfig] = Field(default_factory=default_guardrails)
    auto_stop: bool = Field(
        default=False,
        description="Stop the experiment (everyone gets the surface as configured) as soon "
        "as a guardrail trips for a variant with enough users: automatic rollback.",
    )
    min_relative_effect: float | None = Field(
        default=None,
        gt=0,
        description="The smallest relative gain worth shipping; a flat result whose interval "
        "rules it out is 'don't ship' rather than 'keep running'.",
    )
    ramp: list[float] = Field(
        default_factory=list,
        description="A staged canary: the second variant's share of the experiment's users "
        "at each stage, increasing (e.g. [0.01, 0.05, 0.25, 0.5]). The service moves to the "
        "next stage once a stage has run stage_hours with stage_min_users per variant and no "
        "guardrail tripped, and stops the experiment (a rollback) as soon as one trips.",
    )
    stage_hours: float = Field(default=24.0, gt=0, description="The least time at a stage.")
    stage_min_users: int = Field(
        default=100, ge=1, description="Users each variant needs at a stage before it ends."
    )

    @model_validator(mode="after")
    def _valid_variants(self) -> ExperimentConfig:
        if len(self.variants) < 2:
            raise ValueError("variants: an experiment needs at least two")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: names must be unique")
        if self.kind == "interleave":
            self._valid_interleaving()
        elif self.ramp:
            self._valid_ramp()
        else:
            if any(v.share is None for v in self.variants):
                raise ValueError("variants: every variant needs a share (or give a ramp)")
            total = math.fsum(v.share or 0.0 for v in self.variants)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"variants: shares must add up to 1 (they add up to {total:g})")
        if self.start and self.stop and self.stop <= self.start:
            raise ValueError("stop: must be after start")
        return self

    def _valid_interleaving(self) -> None:
        if len(self.variants) != 2:
            raise ValueError("variants: an interleaving experiment has exactly two")
        if any(v.share is not None for v in self.variants):
            raise ValueError(
                "variants: leave share out in an interleaving experiment; every user sees both"
            )
        if self.ramp:
            raise ValueError("ramp: an interleaving experiment serves both variants to everyone")
        if self.auto_stop:
            raise ValueError(
                "auto_stop: guardrails compare variants' users; an interleaving experiment has "
                "one group of users (stop it by hand)"
            )

    def _valid_ramp(self) -> None:
        if len(self.variants) != 2:
            raise ValueError("ramp: a staged canary has two variants, the control and the canary")
        if any(v.share is not None for v in self.variants):
            raise ValueError("variants: leave share out in a ramped experiment; the ramp sets it")
        if any(not 0 < r <= 1 for r in self.ramp):
            raise ValueError("ramp: every stage's share must be in (0, 1]")
        if any(b <= a for a, b in zip(self.ramp, self.ramp[1:], strict=False)):
            raise ValueError("ramp: stages must increase")

    def shares(self, stage: int = 0) -> dict[str, float]:
        """Each variant's share of the experiment's users (at ``stage`` of a ramp); in an
        interleaving experiment, its expected share of each list."""
        if self.kind == "interleave":
            return dict.fromkeys((v.name for v in self.variants), 0.5)
        if not self.ramp:
            return {v.name: v.share or 0.0 for v in self.variants}
        canary = self.ramp[min(stage, len(self.ramp) - 1)]
        return {self.variants[0].name: 1.0 - canary, self.variants[1].name: canary}

    @property
    def control(self) -> str:
        """The first variant is the one the others are compared with."""
        return self.variants[0].name

    def state_at(self, now: datetime) -> Literal["scheduled", "running", "stopped"]:
        """Whether the experiment serves at ``now``, has yet to start, or has stopped."""
        if self.start is not None and now < self.start:
            return "scheduled"
        if self.stop is not None and now >= self.stop:
            return "stopped"
        return "running"


class ShadowConfig(Section):
    """A pipeline run in shadow on a surface's requests: scored and logged, never served.

    It starts from another configured surface (``pipeline``) or from the shadowed surface
    itself, with ``overrides`` and a pinned ``model_version`` like an experiment variant.
    Exploration is always off in shadow: the shadow list is what the candidate would serve,
    so that off-policy evaluation can judge it against the lists users did see.
    """

    name: str = Field(pattern=_NAME)
    surface: str = Field(description="The served surface whose requests are shadowed.")
    traffic: float = Field(
        default=1.0, gt=0, le=1, description="Share of the surface's requests run in shadow."
    )
    pipeline: str | None = Field(
        default=None, description="Another configured surface to run (default: the surface)."
    )
    overrides: dict[str, Any] = Field(default_factory=dict)
    model_version: str | None = Field(
        default=None,
        description="Run this model version in shadow; kept loaded beside the promoted one.",
    )

    @model_validator(mode="after")
    def _known_overrides(self) -> ShadowConfig:
        _check_overrides(self.overrides)
        return self

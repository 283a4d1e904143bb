"""Which experiment variant serves a user: deterministic, layered, with a holdout.

A user's place in a layer, and their variant within an experiment, come from a hash of
(salt, user id) mapped to [0, 1): the same user gets the same variant on every request and
replica, and no assignment is stored. Experiments in one layer take consecutive slices of
it in configuration order, so they never share a user, and a stopped experiment's slice
falls back to the default without moving anyone else. Layers hash with their own salts, so
a user's variant in one layer says nothing of their variant in another. A long-term holdout
(a share of all users) is kept out of every experiment.

Variants are pipeline configurations: ``variant_surfaces`` expands every combination a user
can be assigned on a surface into a surface configuration, built once at start-up, and
``Assignment.pipeline`` names the one that serves the user.

A ramped experiment (a staged canary) gives its canary the stage's share of the
experiment's users: those whose point is below it. The point is fixed, so a user in the
canary at one stage stays in it at every later stage, and moving up a stage only moves
control users into the canary.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from recloop.config import ExperimentConfig, SurfaceConfig, VariantConfig
from recloop.errors import ConfigError

HOLDOUT_SALT = "recloop-holdout"
HOLDOUT = "holdout"
DEFAULT = "default"
#: The variant an interleaving experiment's users are logged under: they see both.
INTERLEAVED = "interleaved"
#: More combinations than this on one surface is a configuration mistake, not a design.
MAX_COMBINATIONS = 256


def unit_interval(salt: str, user_id: str) -> float:
    """A stable point in [0, 1) for (salt, user id): the same in every process."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Arm:
    """A user's variant in one experiment; in an interleaving one, ``interleaved`` and the
    two variants (teams) whose rankings are drafted into one list."""

    experiment: str
    variant: str
    teams: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """Every experiment a user is in on one surface, in layer order."""

    surface: str
    arms: tuple[Arm, ...] = ()
    holdout: bool = False

    @property
    def experiment(self) -> str | None:
        """The experiments, comma-separated, as the served list logs them."""
        return ",".join(a.experiment for a in self.arms) or None

    @property
    def variant(self) -> str:
        """The variants, aligned with ``experiment``; ``default`` or ``holdout`` otherwise."""
        if self.holdout:
            return HOLDOUT
        return ",".join(a.variant for a in self.arms) or DEFAULT

    @property
    def pipeline(self) -> str:
        """The name of the pipeline that serves this assignment."""
        return pipeline_name(self.surface, self.arms)

    @property
    def interleaved(self) -> Arm | None:
        """The user's interleaving experiment on this surface, if any."""
        return next((a for a in self.arms if a.teams is not None), None)

    def team_pipelines(self) -> dict[str, str]:
        """An interleaving experiment's two teams (variants) and the pipeline of each, with
        the user's other experiments' variants applied to both; empty without one."""
        arm = self.interleaved
        if arm is None or arm.teams is None:
            return {}
        return {
            team: pipeline_name(
                self.surface, [Arm(x.experiment, team) if x is arm else x for x in self.arms]
            )
            for team in arm.teams
        }


def pipeline_name(surface: str, arms: Sequence[Arm]) -> str:
    """``home`` with no experiment, ``home[exp=variant,...]`` with some."""
    if not arms:
        return surface
    return f"{surface}[{','.join(f'{a.experiment}={a.variant}' for a in arms)}]"


@dataclass(frozen=True, slots=True)
class _Slot:
    experiment: ExperimentConfig
    low: float  # the experiment's slice of its layer: [low, high)
    high: float
    salt: str
    cumulative: tuple[float, ...]  # variant shares, summed (for an experiment without a ramp)


class Assigner:
    """Assigns users to the experiments running on a surface.

    Args:
        experiments: every configured experiment, in configuration order.
        holdout: the share of users kept out of all of them.
    """

    def __init__(self, experiments: Sequence[ExperimentConfig], holdout: float = 0.0) -> None:
        self._holdout = holdout
        self._stopped: frozenset[str] = frozenset()
        self._stages: dict[str, int] = {}
        self._layers: dict[str, list[tuple[str, list[_Slot]]]] = {}
        offsets: dict[str, float] = {}
        by_layer: dict[str, dict[str, list[_Slot]]] = {}
        for experiment in experiments:
            low = offsets.get(experiment.layer, 0.0)
            offsets[experiment.layer] = low + experiment.traffic
            shares = itertools.accumulate(experiment.shares().values())
            slot = _Slot(
                experiment,
                low,
                low + experiment.traffic,
                experiment.salt or experiment.name,
                tuple(shares),
            )
            layer = by_layer.setdefault(experiment.surface, {})
            layer.setdefault(experiment.layer, []).append(slot)
        for surface, layers in by_layer.items():
            self._layers[surface] = list(layers.items())

    def stop(self, experiment: str) -> None:
        """Serve the experiment's users the default from now on (a rollback)."""
        self._stopped = self._stopped | {experiment}

    def set_stage(self, experiment: str, stage: int) -> None:
        """Serve a ramped experiment's canary the share of stage ``stage`` from now on."""
        self._stages = self._stages | {experiment: stage}

    def stage(self, experiment: str) -> int:
        """The stage a ramped experiment serves at (0 until told otherwise)."""
        return self._stages.get(experiment, 0)

    @property
    def stopped(self) -> frozenset[str]:
        """The experiments stopped while running."""
        return self._stopped

    def surfaces(self) -> list[str]:
        """The surfaces some experiment runs on."""
        return sorted(self._layers)

    def assign(self, user_id: str, surface: str, now: datetime) -> Assignment:
        """The user's variants on ``surface`` at ``now``."""
        layers = self._layers.get(surface)
        if not layers:
            return Assignment(surface)
        if self._holdout and unit_interval(HOLDOUT_SALT, user_id) < self._holdout:
            return Assignment(surface, holdout=True)
        arms: list[Arm] = []
        for layer, slots in layers:
            point = unit_interval(f"layer:{layer}", user_id)
            for slot in slots:
                if slot.low <= point < slot.high:
                    if (
                        slot.experiment.state_at(now) == "running"
                        and slot.experiment.name not in self._stopped
                    ):
                        arms.append(self._arm(slot, user_id))
                    break
        return Assignment(surface, tuple(arms))

    def _arm(self, slot: _Slot, user_id: str) -> Arm:
        experiment = slot.experiment
        if experiment.kind == "interleave":
            first, second = (v.name for v in experiment.variants)
            return Arm(experiment.name, INTERLEAVED, (first, second))
        return Arm(experiment.name, self._variant(slot, user_id))

    def _variant(self, slot: _Slot, user_id: str) -> str:
        point = unit_interval(slot.salt, user_id)
        experiment = slot.experiment
        if experiment.ramp:
            stage = self._stages.get(experiment.name, 0)
            canary = experiment.ramp[min(stage, len(experiment.ramp) - 1)]
            return experiment.variants[1 if point < canary else 0].name
        return _by_share(slot, point)


def _by_share(slot: _Slot, point: float) -> str:
    for variant, edge in zip(slot.experiment.variants, slot.cumulative, strict=True):
        if point < edge:
            return variant.name
    return slot.experiment.variants[-1].name  # shares summing to 1 - 1e-12


def variant_surfaces(
    surfaces: Mapping[str, SurfaceConfig], experiments: Sequence[ExperimentConfig]
) -> dict[str, SurfaceConfig]:
    """The surface configuration of every combination of variants a user can be served.

    Raises:
        ConfigError: two experiments a user can be in at once change the same part of a
            surface (their effects could not be told apart), or a surface would need more
            than ``MAX_COMBINATIONS`` pipelines.
    """
    return {
        pipeline_name(surface, [Arm(e.name, v.name) for e, v in chosen]): _compose(
            surfaces, surface, chosen
        )
        for surface, chosen in _combinations(experiments)
    }


def pinned_versions(experiments: Sequence[ExperimentConfig]) -> dict[str, str]:
    """The model version of every variant pipeline that pins one (pipeline name -> version).

    Raises:
        ConfigError: two experiments a user can be in at once pin model versions.
    """
    out: dict[str, str] = {}
    for surface, chosen in _combinations(experiments):
        pinned = [(e, v) for e, v in chosen if v.model_version is not None]
        if len(pinned) > 1:
            raise ConfigError(
                f"experiments: {pinned[0][0].name} and {pinned[1][0].name} both pin a model "
                f"version on surface {surface!r} for the same users; put them in one layer"
            )
        if pinned:
            version = pinned[0][1].model_version
            assert version is not None
            out[pipeline_name(surface, [Arm(e.name, v.name) for e, v in chosen])] = version
    return out


def _combinations(
    experiments: Sequence[ExperimentConfig],
) -> Iterator[tuple[str, list[tuple[ExperimentConfig, VariantConfig]]]]:
    """Every (surface, variants a user can be in there at once), at least one variant."""
    by_surface: dict[str, dict[str, list[ExperimentConfig]]] = {}
    for experiment in experiments:
        layers = by_surface.setdefault(experiment.surface, {})
        layers.setdefault(experiment.layer, []).append(experiment)
    for surface, layers in by_surface.items():
        # In each layer a user is in one of its experiments, or in none of them.
        options = [
            [None, *((e, v) for e in layer for v in e.variants)] for layer in layers.values()
        ]
        count = 1
        for layer_options in options:
            count *= len(layer_options)
        if count > MAX_COMBINATIONS:
            raise ConfigError(
                f"experiments: surface {surface!r} would need {count} pipelines "
                f"(at most {MAX_COMBINATIONS}); use fewer layers or variants"
            )
        for combination in itertools.product(*options):
            chosen = [c for c in combination if c is not None]
            if chosen:
                yield surface, chosen


def _compose(
    surfaces: Mapping[str, SurfaceConfig],
    surface: str,
    chosen: Sequence[tuple[ExperimentConfig, VariantConfig]],
) -> SurfaceConfig:
    interleaving = [e.name for e, _ in chosen if e.kind == "interleave"]
    if len(interleaving) > 1:
        raise ConfigError(
            f"experiments: {interleaving[0]} and {interleaving[1]} both interleave surface "
            f"{surface!r} for the same users; put them in one layer"
        )
    base = surfaces[surface]
    replaced_by: str | None = None
    changed: dict[str, str] = {}
    for experiment, variant in chosen:
        if variant.surface is not None:
            if replaced_by is not None:
                raise ConfigError(
                    f"experiments: {replaced_by} and {experiment.name} both replace surface "
                    f"{surface!r} for the same users; put them in one layer"
                )
            replaced_by = experiment.name
            base = surfaces[variant.surface]
    updates: dict[str, object] = {}
    for experiment, variant in chosen:
        for field in variant.overrides:
            if field in changed:
                raise ConfigError(
                    f"experiments: {changed[field]} and {experiment.name} both override "
                    f"{field!r} of surface {surface!r} for the same users; put them in one layer"
                )
            changed[field] = experiment.name
        updates.update(variant.overrides)
    if interleaving:
        if "exploration" in changed:
            raise ConfigError(
                f"experiments: {changed['exploration']} overrides the exploration of surface "
                f"{surface!r} that {interleaving[0]} interleaves without exploring; "
                "put them in one layer"
            )
        # Each team's ranking is drafted as ranked: the draft's coin is the only chance.
        updates["exploration"] = {"name": "none", "params": {}}
    if replaced_by is not None and changed:
        raise ConfigError(
            f"experiments: {replaced_by} replaces surface {surface!r} while "
            f"{', '.join(sorted(set(changed.values())))} override(s) it for the same users; "
            "put them in one layer"
        )
    if not updates:
        return base
    try:
        return SurfaceConfig.model_validate(base.model_dump() | updates)
    except ValueError as error:
        names = ", ".join(f"{e.name}={v.name}" for e, v in chosen)
        raise ConfigError(f"experiments: variant {names} of {surface!r}: {error}") from error

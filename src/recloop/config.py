"""Settings: one typed object, read from ``recloop.toml`` and ``RECLOOP_*`` variables.

Precedence, highest first: constructor arguments, environment variables
(``RECLOOP_STORE_URL``, ``RECLOOP_SERVING__DEFAULT_LIMIT``...), the TOML file named by
``RECLOOP_CONFIG`` (default ``./recloop.toml`` when it exists), then the defaults below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSlotConfig(_Section):
    """One candidate source in a surface: which, how many candidates, how long to wait."""

    name: str
    quota: int = Field(default=200, ge=1, le=5000)
    timeout_ms: float = Field(default=15.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ComponentConfig(_Section):
    """A named component (ranker, rule or policy) and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SurfaceConfig(_Section):
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
                SourceSlotConfig(name="content", quota=50),
                SourceSlotConfig(name="interests", quota=50),
                SourceSlotConfig(name="segment-popular", quota=50),
                SourceSlotConfig(name="trending", quota=100),
                SourceSlotConfig(name="popular", quota=100),
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
            # One creator should not fill the screen.
            rules=[
                ComponentConfig(
                    name="cap", params={"attribute": "creator", "max_items": 2, "window": 10}
                )
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


class BudgetSettings(_Section):
    """Per-stage time budgets in milliseconds; a stage past its budget falls back."""

    retrieve_ms: float = Field(default=25.0, gt=0)
    rank_ms: float = Field(default=10.0, gt=0)
    rerank_ms: float = Field(default=5.0, gt=0)


class ServingSettings(_Section):
    """How recommendations are served."""

    default_limit: int = Field(default=20, ge=1, le=500)
    max_limit: int = Field(default=100, ge=1, le=500)
    popularity_refresh_s: float = Field(default=1.0, gt=0)
    popularity_rebuild_s: float = Field(default=600.0, gt=0)
    trending_half_life_h: float = Field(default=24.0, gt=0)
    key_cache_ttl_s: float = Field(default=10.0, ge=0)
    source_threads: int = Field(default=4, ge=1, le=64)
    request_threads: int = Field(
        default=2, ge=1, le=64, description="Recommendation requests built at once (~cores)."
    )
    budget: BudgetSettings = BudgetSettings()
    model_refresh_s: float = Field(
        default=10.0, gt=0, description="How often the service checks for a new model version."
    )
    cold_history: int = Field(
        default=5, ge=0, description="Users with fewer engaged items get cold-start sources."
    )
    response_cache_ttl_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Serve a repeat request (same user, surface and context) its list again "
        "for this long; any event from the user drops it. 0 turns the cache off.",
    )
    blas_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="BLAS threads in a serving process; requests are already parallel.",
    )
    item_features_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a process reuses an item's online features (0: read each time).",
    )


class TrainSourceConfig(_Section):
    """One trained source: its model kind and hyper-parameters (over the tuned ones)."""

    name: str
    kind: str | None = None  # the model class; defaults to the name
    params: dict[str, Any] = Field(default_factory=dict)


def default_train_sources() -> list[TrainSourceConfig]:
    """The retrieval models ``recloop train`` fits by default."""
    return [
        TrainSourceConfig(name="covisitation"),
        TrainSourceConfig(name="item-knn"),
        TrainSourceConfig(name="ease"),
        TrainSourceConfig(name="als"),
        TrainSourceConfig(name="content"),
        TrainSourceConfig(name="two-tower"),
        TrainSourceConfig(name="segment-popular"),
    ]


class RankerTrainSettings(_Section):
    """How ``recloop train`` fits the learned ranker on labelled impressions."""

    enabled: bool = True
    objective: Literal["binary", "lambdarank"] = "binary"
    heads: tuple[Literal["click", "satisfaction"], ...] = ("click", "satisfaction")
    negative_rate: float = Field(
        default=0.3, gt=0, le=1, description="Share of negative impressions kept for training."
    )
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"
    stopping_metric: Literal["auto", "auc", "ndcg"] = Field(
        default="auto",
        description="What early stopping watches on the validation part: AUC over all rows, "
        "or NDCG@10 within each list; auto: AUC for binary, NDCG for lambdarank.",
    )
    num_leaves: int = Field(default=31, ge=2)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_rounds: int = Field(default=400, ge=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    min_data_in_leaf: int = Field(default=50, ge=1)
    min_positives: int = Field(
        default=30, ge=1, description="A head with fewer positive training rows is not trained."
    )
    threads: int = Field(default=2, ge=1, le=64)


class TrainSettings(_Section):
    """What ``recloop train`` fits and how it validates."""

    sources: list[TrainSourceConfig] = Field(default_factory=default_train_sources)
    ranker: RankerTrainSettings = RankerTrainSettings()
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="The latest share of time held out to evaluate."
    )
    tune_trials: int = Field(default=20, ge=1, description="Optuna trials per source (--tune).")
    min_interactions: int = Field(default=20, ge=1)


class IngestSettings(_Section):
    """How events are accepted."""

    max_batch_events: int = Field(default=1000, ge=1, le=100_000)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    writer_max_rows: int = Field(default=5000, ge=1)
    ack_timeout_s: float = Field(default=10.0, gt=0)


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


class VariantConfig(_Section):
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


class GuardrailConfig(_Section):
    """A metric an experiment must not move the bad way.

    Relative to the control: not significantly, and not past ``tolerance`` (0: not at all).
    With a ``limit``, instead an absolute bound on the treatment's value (a p99 latency
    budget in ms, say) that it must stay on the good side of.
    """

    metric: Literal["ctr", "satisfaction", "hide_rate", "latency_p99", "coverage"]
    bad_direction: Literal["up", "down"]
    tolerance: float = Field(default=0.0, ge=0)
    limit: float | None = None


def default_guardrails() -> list[GuardrailConfig]:
    """Hides must not rise significantly; p99 latency must not rise more than 10%."""
    return [
        GuardrailConfig(metric="hide_rate", bad_direction="up"),
        GuardrailConfig(metric="latency_p99", bad_direction="up", tolerance=0.10),
    ]


class ExperimentConfig(_Section):
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


class ShadowConfig(_Section):
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


class Settings(BaseSettings):
    """The whole configuration of a recloop deployment."""

    model_config = SettingsConfigDict(
        env_prefix="RECLOOP_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("recloop-data")
    store_url: str | None = None
    model_dir: Path | None = None
    """The model artifact store (a folder every replica can read); default DATA_DIR/models."""
    online_url: str = "memory://"
    """The online store: ``memory://`` (in-process, the default) or ``redis://HOST:PORT/DB``."""
    online_timeout_s: float = Field(default=0.05, gt=0)
    """How long a call to the online store may take before the request falls back."""
    serving: ServingSettings = ServingSettings()
    ingest: IngestSettings = IngestSettings()
    train: TrainSettings = TrainSettings()
    surfaces: dict[str, SurfaceConfig] = Field(default_factory=default_surfaces)
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    experiment_check_s: float = Field(
        default=300.0,
        gt=0,
        description="How often a service checks guarded experiments (auto_stop) and stops.",
    )
    experiment_holdout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of users kept out of every experiment (a long-term holdout).",
    )
    shadows: list[ShadowConfig] = Field(default_factory=list)
    shadow_queue: int = Field(
        default=1000,
        ge=1,
        description="Shadow runs that may wait for the shadow worker; past that, new ones "
        "are skipped and counted (a shadow never slows the served request).",
    )

    @model_validator(mode="after")
    def _shadows_fit(self) -> Settings:
        names = [s.name for s in self.shadows]
        if len(set(names)) != len(names):
            raise ValueError("shadows: names must be unique")
        for i, shadow in enumerate(self.shadows):
            key = f"shadows[{i}] ({shadow.name})"
            for field, surface in (("surface", shadow.surface), ("pipeline", shadow.pipeline)):
                if surface is not None and surface not in self.surfaces:
                    raise ValueError(f"{key}.{field}: no surface named {surface!r}")
        return self

    @model_validator(mode="after")
    def _experiments_fit(self) -> Settings:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError("experiments: names must be unique")
        per_layer: dict[str, float] = {}
        for i, experiment in enumerate(self.experiments):
            key = f"experiments[{i}] ({experiment.name})"
            if experiment.surface not in self.surfaces:
                raise ValueError(f"{key}.surface: no surface named {experiment.surface!r}")
            for variant in experiment.variants:
                if variant.surface is not None and variant.surface not in self.surfaces:
                    raise ValueError(
                        f"{key}.variants.{variant.name}.surface: "
                        f"no surface named {variant.surface!r}"
                    )
            per_layer[experiment.layer] = per_layer.get(experiment.layer, 0.0) + experiment.traffic
            if per_layer[experiment.layer] > 1.0 + 1e-6:
                raise ValueError(
                    f"{key}.traffic: experiments in layer {experiment.layer!r} "
                    "take more than all of its users"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read constructor arguments, then the environment, then ``recloop.toml``."""
        toml_path = Path(os.environ.get("RECLOOP_CONFIG", "recloop.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    def resolved_store_url(self) -> str:
        """The durable store's URL: the configured one, or SQLite in the data directory."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'recloop.db').resolve()}"

    def resolved_model_dir(self) -> Path:
        """Where model versions are kept: ``model_dir``, else ``DATA_DIR/models``."""
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    def is_embedded(self) -> bool:
        """Whether the store is the embedded SQLite default rather than a server."""
        return self.resolved_store_url().startswith("sqlite")

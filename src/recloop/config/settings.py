"""Settings: one typed object, read from ``recloop.toml`` and ``RECLOOP_*`` variables.

Precedence, highest first: constructor arguments, environment variables
(``RECLOOP_STORE_URL``, ``RECLOOP_SERVING__DEFAULT_LIMIT``...), one TOML file, then the
defaults below. The TOML file is the one ``RECLOOP_CONFIG`` names; else, when the data
directory is given (``Settings(data_dir=...)``, as ``--data-dir`` does, or
``RECLOOP_DATA_DIR``), the ``recloop.toml`` inside it if there is one (a data directory
carries the configuration it was made with, as the demo's does); else ``./recloop.toml``
when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from recloop.config.experiments import ExperimentConfig, ShadowConfig
from recloop.config.logs import LoggingSettings
from recloop.config.retention import RetentionSettings
from recloop.config.schedule import ScheduleSettings
from recloop.config.serving import IngestSettings, ServingSettings
from recloop.config.suggestions import SuggestionSettings
from recloop.config.surfaces import SurfaceConfig, default_surfaces
from recloop.config.training import TrainSettings

#: The configuration file's name, in the working directory or inside a data directory.
CONFIG_FILE = "recloop.toml"


def config_file(data_dir: str | Path | None = None) -> Path | None:
    """The TOML file the settings are read from, or None (see the module's docstring).

    A ``RECLOOP_CONFIG`` naming no file means no file: the defaults and the environment.
    """
    named = os.environ.get("RECLOOP_CONFIG")
    if named:
        return Path(named) if Path(named).is_file() else None
    given = data_dir if data_dir is not None else os.environ.get("RECLOOP_DATA_DIR")
    if given:
        inside = Path(given) / CONFIG_FILE
        if inside.is_file():
            return inside
    local = Path(CONFIG_FILE)
    return local if local.is_file() else None


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
    suggestions: SuggestionSettings = SuggestionSettings()
    retention: RetentionSettings = RetentionSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
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
        """Read constructor arguments, then the environment, then one TOML file."""
        data_dir = (
            init_settings.init_kwargs.get("data_dir")
            if isinstance(init_settings, InitSettingsSource)
            else None
        )
        toml_path = config_file(data_dir)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
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

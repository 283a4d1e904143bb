"""Candidate sources by name: the closed table a surface's configuration names them from.

Serving builds a surface's sources here, and so does training when it recalls candidates
the way a surface would at a past moment (the ranker's rows from interactions), so both
build the same sources from the same names. A trained model class says which sources it
serves (``retrieval.registry``); the other sources read the popularity snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from recloop.errors import ConfigError
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.cold_start import FreshSource, InterestsSource
from recloop.retrieval.model_source import ModelSource
from recloop.retrieval.models import Seeds
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.popularity_sources import (
    ClickRateSource,
    NewestSource,
    PopularSource,
    SameCategorySource,
    TrendingSource,
)
from recloop.retrieval.protocols import CandidateSource
from recloop.retrieval.registry import TRAINED_SOURCES


@dataclass(frozen=True)
class SourceInputs:
    """What candidate sources read: the popularity snapshots and the loaded models."""

    popularity: PopularityIndex
    models: ModelIndex = field(default_factory=ModelIndex)


#: Sources that read the popularity snapshot (and, for ``fresh``, the content model).
SOURCES: dict[str, Callable[[SourceInputs], CandidateSource]] = {
    "popular": lambda r: PopularSource(r.popularity),
    "trending": lambda r: TrendingSource(r.popularity),
    "click-rate": lambda r: ClickRateSource(r.popularity),
    "same-category": lambda r: SameCategorySource(r.popularity),
    "newest": lambda r: NewestSource(r.popularity),
    "interests": lambda r: InterestsSource(r.popularity),
    "fresh": lambda r: FreshSource(r.popularity, r.models),
}

#: Trained sources: source name -> (what it feeds the model, the model's name in the live
#: model version, unless the surface sets ``model``).
MODEL_SOURCES: Mapping[str, tuple[Seeds, str]] = TRAINED_SOURCES

#: Sources that are lookups in an in-memory snapshot, answering in microseconds: they run
#: inline, since handing them to a thread would cost more than they do.
INLINE_SOURCES: frozenset[str] = frozenset(
    {"popular", "trending", "click-rate", "same-category", "newest", "interests"}
)


class ModelSourceParams(BaseModel):
    """What a surface may set on a trained source: its reasons, and which model it reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    because: str = "Because you watched {title}"
    similar: str = "Similar to {title}"
    reason: str = "Picked for you"

    @field_validator("because", "similar", "reason")
    @classmethod
    def _one_placeholder(cls, template: str) -> str:
        # A template that would fail per request is refused at start-up instead.
        try:
            template.format(title="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the only placeholder is {{title}}; got {template!r}") from exc
        return template


T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, key: str, also: Collection[str] = ()) -> T:
    """``table[name]``, or a configuration error naming ``key`` and the known names."""
    try:
        return table[name]
    except KeyError:
        known = sorted({*table, *also})
        raise ConfigError(
            f"{key}: unknown name {name!r}; known: {', '.join(known) or 'none yet'}"
        ) from None


def no_params(key: str, params: Mapping[str, Any]) -> None:
    """Refuse parameters given to a component that takes none."""
    if params:
        raise ConfigError(f"{key}.params: this component takes no parameters, got {sorted(params)}")


def build_source(
    name: str, params: Mapping[str, Any], inputs: SourceInputs, key: str
) -> CandidateSource:
    """The source called ``name``; ``key`` names the config entry in errors."""
    if name in MODEL_SOURCES:
        seeds, model = MODEL_SOURCES[name]
        try:
            config = ModelSourceParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc
        return ModelSource(
            name,
            inputs.models,
            seeds=seeds,
            model=config.model or model,
            because=config.because,
            similar=config.similar,
            reason=config.reason,
        )
    factory = lookup(SOURCES, name, f"{key}.name", also=MODEL_SOURCES)
    no_params(key, params)
    return factory(inputs)

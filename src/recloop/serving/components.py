"""Closed name tables: the only way a config names a source, ranker, rule or policy.

A new component is one new file plus one line here; configs never hold import paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from recloop.errors import ConfigError
from recloop.explore.policies import ExplorationPolicy, NoExplorationPolicy
from recloop.features.candidates import FeatureReader
from recloop.ranking.protocols import Ranker
from recloop.ranking.source_scores import SourceScoreConfig, SourceScoreRanker
from recloop.rerank.protocols import RerankRule
from recloop.retrieval.popular import (
    NewestSource,
    PopularSource,
    SameCategorySource,
    TrendingSource,
)
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.protocols import CandidateSource
from recloop.store.protocols import Catalog


@dataclass(frozen=True)
class Resources:
    """What components are built from: loaded models and store roles."""

    popularity: PopularityIndex
    catalog: Catalog
    features: FeatureReader | None = None


def _no_params(key: str, params: Mapping[str, Any]) -> None:
    if params:
        raise ConfigError(f"{key}.params: this component takes no parameters, got {sorted(params)}")


SOURCES: dict[str, Callable[[Resources], CandidateSource]] = {
    "popular": lambda r: PopularSource(r.popularity),
    "trending": lambda r: TrendingSource(r.popularity),
    "same-category": lambda r: SameCategorySource(r.popularity),
    "newest": lambda r: NewestSource(r.popularity),
}

#: Sources that are lookups in an in-memory snapshot, answering in microseconds: they run
#: inline, since handing them to a thread would cost more than they do.
INLINE_SOURCES: frozenset[str] = frozenset({"popular", "trending", "same-category", "newest"})

RANKERS: dict[str, Callable[[list[str], Mapping[str, Any]], Ranker]] = {
    "source-scores": lambda sources, params: SourceScoreRanker(
        sources, SourceScoreConfig.model_validate(params)
    ),
}

RULES: dict[str, Callable[[Resources, Mapping[str, Any]], RerankRule]] = {}

POLICIES: dict[str, Callable[[Mapping[str, Any]], ExplorationPolicy]] = {
    "none": lambda params: NoExplorationPolicy(),
}


T = TypeVar("T")


def _lookup(table: Mapping[str, T], name: str, key: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise ConfigError(
            f"{key}: unknown name {name!r}; known: {', '.join(sorted(table)) or 'none yet'}"
        ) from None


def build_source(
    name: str, params: Mapping[str, Any], resources: Resources, key: str
) -> CandidateSource:
    """The source called ``name``; ``key`` names the config entry in errors."""
    factory = _lookup(SOURCES, name, f"{key}.name")
    _no_params(key, params)
    return factory(resources)


def build_ranker(name: str, params: Mapping[str, Any], sources: list[str], key: str) -> Ranker:
    """The ranker called ``name``."""
    factory = _lookup(RANKERS, name, f"{key}.name")
    try:
        return factory(sources, params)
    except ValidationError as exc:
        raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc


def build_rule(name: str, params: Mapping[str, Any], resources: Resources, key: str) -> RerankRule:
    """The rerank rule called ``name``."""
    factory = _lookup(RULES, name, f"{key}.name")
    try:
        return factory(resources, params)
    except ValidationError as exc:
        raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc


def build_policy(name: str, params: Mapping[str, Any], key: str) -> ExplorationPolicy:
    """The exploration policy called ``name``."""
    factory = _lookup(POLICIES, name, f"{key}.name")
    _no_params(key, params)
    return factory(params)


def build_fallback(names: Sequence[str], resources: Resources, key: str) -> list[CandidateSource]:
    """The fallback chain: sources the pipeline tries in turn until one has a servable item."""
    if not names:
        raise ConfigError(f"{key}: name at least one fallback source")
    return [_lookup(SOURCES, name, f"{key}[{i}]")(resources) for i, name in enumerate(names)]

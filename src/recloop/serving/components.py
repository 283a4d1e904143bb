"""Closed name tables: the only way a config names a source, ranker, rule or policy.

A new component is one new file plus one line here; configs never hold import paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from recloop.errors import ConfigError
from recloop.explore.linucb import LinUCBParams, TrainedLinUCB
from recloop.explore.policies import (
    EpsilonGreedy,
    EpsilonGreedyConfig,
    ExplorationPolicy,
    NoExplorationPolicy,
)
from recloop.explore.thompson import ItemStats, ThompsonConfig, ThompsonSampling
from recloop.features.candidates import FeatureReader
from recloop.monitoring.drift_monitor import DriftMonitor
from recloop.ranking.learned import LearnedRanker, LearnedRankerConfig, RankerModels
from recloop.ranking.protocols import Ranker
from recloop.ranking.source_scores import SourceScoreConfig, SourceScoreRanker
from recloop.rerank.boosts import BusinessConfig, BusinessRules, FreshnessBoost, FreshnessConfig
from recloop.rerank.diversity import MMR, AttributeCap, CapConfig, MMRConfig
from recloop.rerank.protocols import RerankRule
from recloop.rerank.recently_shown import RecentlyShownConfig, RecentlyShownDemotion
from recloop.retrieval import source_table
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.protocols import CandidateSource
from recloop.retrieval.source_table import (
    SOURCES,
    SourceInputs,
    lookup,
    no_params,
)
from recloop.serving.drift_sampling import SampledRanker
from recloop.serving.item_views import ContentVectors, SnapshotAttributes
from recloop.store.protocols import Catalog, RecommendationLog


@dataclass(frozen=True)
class Resources:
    """What components are built from: loaded models and store roles."""

    popularity: PopularityIndex
    catalog: Catalog
    features: FeatureReader | None = None
    models: ModelIndex = field(default_factory=ModelIndex)
    rec_log: RecommendationLog | None = None
    rankers: RankerModels = field(default_factory=RankerModels)
    item_stats: ItemStats | None = None  # per-item impressions and clicks, for bandits
    drift: DriftMonitor | None = None  # a learned ranker's sampled requests go here


def _needs(log: RecommendationLog | None, rule: str) -> RecommendationLog:
    if log is None:
        raise ConfigError(f"rule {rule!r} reads served lists; this service has no store for them")
    return log


def _learned(resources: Resources, sources: list[str], params: Mapping[str, Any]) -> Ranker:
    config = LearnedRankerConfig.model_validate(params)
    fallback = SourceScoreRanker(sources, SourceScoreConfig(weights=config.fallback_weights))
    ranker = LearnedRanker(resources.rankers, fallback, config)
    if resources.drift is None:
        return ranker
    return SampledRanker(ranker, resources.rankers, resources.drift)


RANKERS: dict[str, Callable[[Resources, list[str], Mapping[str, Any]], Ranker]] = {
    "source-scores": lambda resources, sources, params: SourceScoreRanker(
        sources, SourceScoreConfig.model_validate(params)
    ),
    "learned": _learned,
}

RULES: dict[str, Callable[[Resources, Mapping[str, Any]], RerankRule]] = {
    "cap": lambda r, p: AttributeCap(CapConfig.model_validate(p), SnapshotAttributes(r.popularity)),
    "mmr": lambda r, p: MMR(MMRConfig.model_validate(p), ContentVectors(r.models)),
    "freshness": lambda r, p: FreshnessBoost(
        FreshnessConfig.model_validate(p), SnapshotAttributes(r.popularity)
    ),
    "recently-shown": lambda r, p: RecentlyShownDemotion(
        RecentlyShownConfig.model_validate(p), _needs(r.rec_log, "recently-shown")
    ),
    "business": lambda r, p: BusinessRules(
        BusinessConfig.model_validate(p), SnapshotAttributes(r.popularity)
    ),
}

POLICIES: dict[str, Callable[[Mapping[str, Any], Resources], ExplorationPolicy]] = {
    "none": lambda params, resources: NoExplorationPolicy(),
    "epsilon-greedy": lambda params, resources: EpsilonGreedy(
        EpsilonGreedyConfig.model_validate(params)
    ),
    "thompson": lambda params, resources: ThompsonSampling(
        ThompsonConfig.model_validate(params), _needs_stats(resources.item_stats)
    ),
    # Its evidence is fitted by `recloop train` and loaded with the model version, beside
    # the ranker (a variant that pins a version reads that version's); its rows come from
    # the features the surface ranks with, so the surface needs online_features.
    "linucb": lambda params, resources: TrainedLinUCB(
        LinUCBParams.model_validate(params), resources.rankers.linucb
    ),
}


def _needs_stats(stats: ItemStats | None) -> ItemStats:
    if stats is None:
        raise ConfigError("exploration 'thompson' reads item statistics; none are configured")
    return stats


def build_source(
    name: str, params: Mapping[str, Any], resources: Resources, key: str
) -> CandidateSource:
    """The source called ``name``; ``key`` names the config entry in errors."""
    return source_table.build_source(
        name, params, SourceInputs(resources.popularity, resources.models), key
    )


def build_ranker(
    name: str, params: Mapping[str, Any], resources: Resources, sources: list[str], key: str
) -> Ranker:
    """The ranker called ``name``."""
    factory = lookup(RANKERS, name, f"{key}.name")
    try:
        return factory(resources, sources, params)
    except ValidationError as exc:
        raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc


def build_rule(name: str, params: Mapping[str, Any], resources: Resources, key: str) -> RerankRule:
    """The rerank rule called ``name``."""
    factory = lookup(RULES, name, f"{key}.name")
    try:
        return factory(resources, params)
    except ValidationError as exc:
        raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc


def build_policy(
    name: str, params: Mapping[str, Any], resources: Resources, key: str
) -> ExplorationPolicy:
    """The exploration policy called ``name``."""
    factory = lookup(POLICIES, name, f"{key}.name")
    if name == "none":
        no_params(key, params)
    try:
        return factory(params, resources)
    except ValidationError as exc:
        raise ConfigError(f"{key}.params: {exc.errors(include_url=False)[0]['msg']}") from exc


def build_fallback(names: Sequence[str], resources: Resources, key: str) -> list[CandidateSource]:
    """The fallback chain: sources the pipeline tries in turn until one has a servable item."""
    if not names:
        raise ConfigError(f"{key}: name at least one fallback source")
    inputs = SourceInputs(resources.popularity, resources.models)
    return [lookup(SOURCES, name, f"{key}[{i}]")(inputs) for i, name in enumerate(names)]

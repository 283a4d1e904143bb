"""Surfaces are configuration: each ``[surfaces.NAME]`` table becomes one ``Pipeline``."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor

from recloop.config import BudgetSettings, SurfaceConfig
from recloop.errors import ConfigError
from recloop.features.definitions import FEATURE_NAMES
from recloop.rerank.eligibility import ActiveCatalogGate, ExcludedItemsFilter
from recloop.retrieval.source_table import INLINE_SOURCES
from recloop.serving.budget import Budget
from recloop.serving.components import (
    Resources,
    build_fallback,
    build_policy,
    build_ranker,
    build_rule,
    build_source,
)
from recloop.serving.pipeline import Pipeline, SourceSlot


def build_pipeline(
    name: str,
    config: SurfaceConfig,
    resources: Resources,
    budget: BudgetSettings,
    executor: Executor,
) -> Pipeline:
    """The pipeline of one surface.

    Raises:
        ConfigError: a name is unknown or parameters are wrong; the message names the key.
    """
    key = f"surfaces.{name}"
    if config.online_features and resources.features is None:
        raise ConfigError(f"{key}.online_features: no online store is configured")
    slots = [
        SourceSlot(
            build_source(s.name, s.params, resources, f"{key}.sources[{i}]"),
            s.quota,
            s.timeout_ms,
            inline=s.name in INLINE_SOURCES,
        )
        for i, s in enumerate(config.sources)
    ]
    source_names = [slot.source.name for slot in slots]
    return Pipeline(
        name=name,
        sources=slots,
        # Eligibility is not configurable: these filters are on every surface.
        filters=[ExcludedItemsFilter()],
        gates=[ActiveCatalogGate(resources.catalog)],
        ranker=build_ranker(
            config.ranker.name, config.ranker.params, resources, source_names, f"{key}.ranker"
        ),
        rules=[
            build_rule(r.name, r.params, resources, f"{key}.rules[{i}]")
            for i, r in enumerate(config.rules)
        ],
        policy=build_policy(
            config.exploration.name, config.exploration.params, resources, f"{key}.exploration"
        ),
        fallback=build_fallback(config.fallback, resources, f"{key}.fallback"),
        budget=Budget(budget.retrieve_ms, budget.rank_ms, budget.rerank_ms),
        executor=executor,
        feature_reader=resources.features if config.online_features else None,
        default_features=FEATURE_NAMES,
    )


def build_pipelines(
    surfaces: Mapping[str, SurfaceConfig],
    resources: Resources,
    budget: BudgetSettings,
    executor: Executor,
) -> dict[str, Pipeline]:
    """Every configured surface's pipeline, built at start-up so config errors surface then."""
    return {
        name: build_pipeline(name, config, resources, budget, executor)
        for name, config in surfaces.items()
    }

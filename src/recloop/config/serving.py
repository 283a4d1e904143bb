"""How the service serves and ingests: budgets, caches, threads, refresh intervals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from recloop.config.drift import DriftSettings
from recloop.config.section import Section


class BudgetSettings(Section):
    """Per-stage time budgets in milliseconds; a stage past its budget falls back."""

    retrieve_ms: float = Field(default=25.0, gt=0)
    rank_ms: float = Field(default=10.0, gt=0)
    rerank_ms: float = Field(default=5.0, gt=0)


class ServingSettings(Section):
    """How recommendations are served."""

    default_limit: int = Field(default=20, ge=1, le=500)
    max_limit: int = Field(default=100, ge=1, le=500)
    popularity_refresh_s: float = Field(default=1.0, gt=0)
    popularity_rebuild_s: float = Field(default=600.0, gt=0)
    trending_half_life_h: float = Field(default=24.0, gt=0)
    key_cache_ttl_s: float = Field(default=10.0, ge=0)
    revocation_check_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a process asks whether its cached keys were revoked: a "
        "revoked key stops working within this long on every process.",
    )
    rate_limits: dict[Literal["serve", "ingest", "admin"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Requests a second each key may make per scope (serve, ingest, admin), "
        "with a burst of one second's worth; absent: unlimited. Per process.",
    )
    auth_failures_per_s: float = Field(
        default=10.0,
        gt=0,
        description="Failed key checks a second one client address may cause (a burst of "
        "twice that) before it gets 429 without a lookup.",
    )
    purge_interval_h: float = Field(
        default=24.0,
        ge=0,
        description="How often the leading process runs `recloop purge` (0: never): a "
        "deleted user leaves snapshots, training sets and model files within this long.",
    )
    store_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits on the store before it answers 503 with "
        "Retry-After (a stalled database must not hang requests).",
    )
    statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="PostgreSQL cancels any statement of the service that runs longer "
        "(PostgreSQL's statement_timeout, set on the service's connections; 0: no limit). "
        "It frees what requests past store_timeout_s left running, and bounds the "
        "service's background work; training and imports run without it.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="The largest request body a route other than a batch may carry; larger "
        "ones get 413 before they are read.",
    )
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
    drift: DriftSettings = Field(
        default_factory=DriftSettings,
        description="Drift of the ranker's features, its score, embeddings and the head.",
    )


class IngestSettings(Section):
    """How events are accepted."""

    max_batch_events: int = Field(default=1000, ge=1, le=100_000)
    max_batch_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="The largest body of a batch (`POST /api/events`, `POST /api/items`); "
        "larger ones get 413 before they are read.",
    )
    max_future_skew_s: float = Field(default=300.0, ge=0)
    writer_max_rows: int = Field(default=5000, ge=1)
    ack_timeout_s: float = Field(default=10.0, gt=0)

"""Drift monitoring: how the service samples ranked requests, and what counts as drift."""

from __future__ import annotations

from pydantic import Field

from recloop.config.section import Section


class DriftSettings(Section):
    """``[serving.drift]``: the sample of ranked requests folded into the drift counts, and
    the thresholds past which the gauges, ``recloop monitor`` and the triggers call it drift."""

    enabled: bool = Field(
        default=True,
        description="Sample ranked requests against the served version's drift reference.",
    )
    sample_every: int = Field(
        default=10,
        ge=1,
        description="Fold one ranked request in this many into the drift counts.",
    )
    rows_per_request: int = Field(
        default=50,
        ge=1,
        description="The most candidate rows of a sampled request folded in (drawn at random).",
    )
    window_rows: int = Field(
        default=20_000,
        ge=100,
        description="Live rows weighed: past this many, every count is halved (recent traffic "
        "counts most, memory stays features x bins).",
    )
    min_requests: int = Field(
        default=50,
        ge=1,
        description="Sampled requests needed before a feature's drift is reported as drift.",
    )
    psi_threshold: float = Field(
        default=0.25,
        gt=0,
        description="PSI of a feature or the score above which it has drifted (0.1 is a small "
        "shift, 0.25 a large one).",
    )
    p_value: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="A drifted feature's chi-square test must also reject at this level.",
    )
    embedding_shift_threshold: float = Field(
        default=0.3,
        gt=0,
        le=2,
        description="Mean cosine distance of the same ids' aligned embeddings between the "
        "served version and the one before it, above which embeddings have drifted.",
    )
    head_share: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="The head: this share of the active catalog, the most popular items.",
    )
    head_share_threshold: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of served impressions going to the head above which the service "
        "feeds a popularity spiral.",
    )

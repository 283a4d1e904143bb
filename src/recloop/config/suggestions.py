"""The ``[suggestions]`` section: how query suggestions are built, served and kept safe.

The ``safety`` table is kept as plain data here and validated into the suggestion
surface's ``SafetyPolicy`` when a process starts (settings import nothing of the stages);
a bad key there stops start-up with a ``ConfigError`` naming it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from recloop.config.section import Section


class SuggestionWeights(Section):
    """The weights of the transparent suggestion score: ``score = sum(weight * feature)``.

    Each feature is described in docs/suggestions.md; all are in [0, 1] except ``success``,
    which is centred on the app's average success rate (in [-1, 1]).
    """

    popularity: float = Field(default=1.0, ge=0)
    match: float = Field(default=0.5, ge=0)
    personal: float = Field(default=1.0, ge=0)
    context: float = Field(default=0.8, ge=0)
    success: float = Field(default=1.0, ge=0)
    trend: float = Field(default=0.3, ge=0)


class SuggestionSettings(Section):
    """Query suggestions: the model ``recloop train`` builds, and the request pipeline."""

    enabled: bool = Field(
        default=True, description="Build the suggestion model with every `recloop train`."
    )
    min_users: int = Field(
        default=3,
        ge=1,
        description="A searched query becomes suggestible once this many distinct users "
        "searched it, each counted by their trust (k-anonymity, with fresh accounts "
        "counting less); catalog-derived queries need none.",
    )
    min_link_users: int = Field(
        default=2,
        ge=1,
        description="Distinct users a co-click link (query -> engaged item) needs to count.",
    )
    repeat_window_hours: float = Field(
        default=24.0,
        ge=0,
        description="A user's repeated searches of one query within this window count once "
        "toward its popularity.",
    )
    trust_hours: float = Field(
        default=72.0,
        ge=0,
        description="A search counts by its account's age over this (since the account's "
        "first event), at least min_trust; 0 turns the damping off. While the whole log is "
        "younger than this (a new app), every account counts fully.",
    )
    min_trust: float = Field(default=0.05, gt=0, le=1)
    half_life_hours: float = Field(
        default=168.0, gt=0, description="Half-life of the main popularity count (a week)."
    )
    trend_half_life_hours: float = Field(
        default=6.0, gt=0, description="Half-life of the short count that trending reads."
    )
    long_half_life_hours: float = Field(
        default=720.0, gt=0, description="Half-life of the long count, trending's baseline."
    )
    reformulation_s: float = Field(
        default=30.0,
        gt=0,
        description="A new search this soon after one, with no engagement between, makes "
        "the first a reformulation.",
    )
    session_gap_s: float = Field(
        default=1800.0,
        gt=0,
        description="For events without a session id: engagement this long after a search "
        "still counts toward its success.",
    )
    zero_result_days: float = Field(
        default=30.0,
        gt=0,
        description="The window of the zero-result rule: a query searched at least "
        "`zero_result_min_searches` times in it, never followed by engagement, is not "
        "suggested.",
    )
    zero_result_min_searches: int = Field(default=5, ge=1)
    catalog: bool = Field(
        default=True,
        description="Derive queries from the catalog: titles, categories, tags and "
        "'category tag' pairs.",
    )
    catalog_weight: float = Field(
        default=0.5,
        ge=0,
        description="The prior weight of a catalog-derived query, in searches (low: a few "
        "real searches outweigh it).",
    )
    max_title_chars: int = Field(
        default=80, ge=1, le=200, description="Longer titles are not taken as queries."
    )
    min_pair_items: int = Field(
        default=2, ge=1, description="A 'category tag' pair needs this many items."
    )
    min_query_chars: int = Field(
        default=2, ge=1, le=200, description="Shorter queries are never suggested."
    )
    default_limit: int = Field(default=10, ge=1, le=50)
    word_min_chars: int = Field(
        default=3,
        ge=1,
        le=200,
        description="Word-start matches (a later word of a query: 'shoes' finds 'running "
        "shoes') need at least this many typed characters; one or two letters start too "
        "many words to say what the user means.",
    )
    typo_below: int = Field(
        default=5,
        ge=0,
        description="Look up typo-tolerant completions when exact prefix and word-start "
        "matches found fewer than this many queries.",
    )
    recent_searches: int = Field(
        default=50, ge=0, le=1000, description="How many of a user's latest searches are read."
    )
    exploration_epsilon: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Epsilon-greedy: each position serves a query from just below the "
        "list with this probability (its propensity is logged).",
    )
    exploration_pool: int = Field(
        default=10, ge=1, description="How many queries below the list exploration draws from."
    )
    budget_ms: float = Field(
        default=20.0,
        gt=0,
        description="A request's time budget: optional sources not started by then are "
        "skipped (traced, and the response says fallback); rules are never skipped.",
    )
    cold_refresh_s: float = Field(
        default=60.0,
        gt=0,
        description="Apps with no trained suggestion model serve catalog-derived and recent "
        "queries, rebuilt from the store this often.",
    )
    cold_window_days: float = Field(
        default=7.0, gt=0, description="How far back the cold state reads searches."
    )
    cold_max_events: int = Field(default=100_000, ge=1)
    cold_max_items: int = Field(default=100_000, ge=1)
    blocklist_refresh_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a replica re-reads the admin blocklist that another wrote.",
    )
    live: bool = Field(
        default=True,
        description="Fold searches received since the model's data cut-off into a live "
        "overlay within seconds: a new query that min_users distinct users searched is "
        "suggested before the next training, and a model query's popularity rises with them.",
    )
    live_refresh_s: float = Field(
        default=1.0, gt=0, description="How often the live overlay reads new events."
    )
    live_max_queries: int = Field(
        default=10_000,
        ge=1,
        description="The live overlay keeps at most this many queries per app: the heaviest, "
        "where a newer search weighs more (so the most searched and most recent).",
    )
    live_max_events: int = Field(
        default=100_000,
        ge=1,
        description="Searches kept per app to count again from a new model's cut-off when a "
        "model is swapped in; older ones are forgotten.",
    )
    weights: SuggestionWeights = SuggestionWeights()
    safety: dict[str, Any] = Field(
        default_factory=dict,
        description="The safety policy (blocked_terms, patterns, sensitive_topics, "
        "allow_list_mode, allowed_queries, pii, overrides), validated at start-up.",
    )

    @model_validator(mode="after")
    def _windows_ordered(self) -> SuggestionSettings:
        if not self.trend_half_life_hours < self.long_half_life_hours:
            raise ValueError(
                "trend_half_life_hours must be shorter than long_half_life_hours "
                "(trending is the short count above the long one's rate)"
            )
        return self

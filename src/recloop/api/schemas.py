"""Request and response models of the HTTP API (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from recloop.analysis.rollout import RampState
from recloop.config import ExperimentConfig, ShadowConfig
from recloop.domain import Feedback, ItemStatus
from recloop.ingest.wire import CamelModel, EventIn, Id, ItemIn, ItemPut, Label, UserIn, UserPut

__all__ = ["EventIn", "ItemIn", "ItemPut", "UserIn", "UserPut"]


class FieldError(CamelModel):
    """One broken rule."""

    field: str
    rule: str


class Problem(CamelModel):
    """The body of every error: a sentence, and each field with the rule it broke."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class EventBatchIn(CamelModel):
    """Several events in one request (at most ``ingest.max_batch_events``)."""

    events: list[EventIn]


class RejectedRecord(CamelModel):
    """A record of a batch that was refused, by its index in the batch."""

    index: int
    field: str
    reason: str


class EventsAccepted(CamelModel):
    """What became of a batch of events. Accepted events are durable."""

    accepted: int = Field(description="Newly stored events.")
    duplicates: int = Field(
        description="Events whose eventId was already stored (not stored again)."
    )
    rejected: list[RejectedRecord] = Field(description="Refused events, by index, with the reason.")
    conflicts: list[RejectedRecord] = Field(
        default_factory=list,
        description="Events sent with the eventId of a stored event but a different payload, "
        "by index, naming the fields that differ; the stored event is kept (a client bug: "
        "two events sharing an id).",
    )


class ItemBatchIn(CamelModel):
    """Items to insert or replace; validated one by one."""

    items: list[dict[str, Any]]


class ItemsUpserted(CamelModel):
    """What became of a batch of items."""

    upserted: int
    rejected: list[RejectedRecord]


class ItemPublic(CamelModel):
    """An item as stored."""

    # Validated from the domain ``Item`` itself: each field read by its attribute name.
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    type: str
    title: str | None
    description: str | None
    category: str | None
    tags: list[str]
    creator_id: str | None
    locale: str | None
    status: ItemStatus
    created_at: datetime | None
    updated_at: datetime | None
    metadata: dict[str, Any]


class UserPublic(CamelModel):
    """A user as stored."""

    # Validated from the domain ``User`` itself: each field read by its attribute name.
    model_config = ConfigDict(from_attributes=True)

    user_id: str
    attributes: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


class RecommendedItem(CamelModel):
    """One recommended item."""

    item_id: str
    score: float
    reason: str = Field(description="Why, in words a person can read.")
    source: str = Field(
        description="The candidate source credited with it: of those that recalled it, the "
        "one that scored it highest against its own best candidate; the reason is its."
    )
    sources: list[str] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Every source that recalled it (only with debug=true).",
    )
    source_scores: dict[str, float] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Each recalling source's normalised score, as the ranker read it "
        "(only with debug=true).",
    )
    heads: dict[str, float] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Each ranker head's calibrated prediction (click, satisfaction); the "
        "score combines them by the surface's weights (only with debug=true).",
    )


class TracedItemPublic(CamelModel):
    """What one stage did to one item."""

    item_id: str
    change: Literal["recalled", "removed", "added", "demoted", "promoted"] = Field(
        description="recalled: a source found it (score: the source's own); removed: a "
        "filter, gate or rerank rule dropped it; added: a rule inserted it; demoted / "
        "promoted: a rule moved it, from `before` to `after` (1-based positions among the "
        "items the rule kept)."
    )
    score: float | None = Field(default=None, exclude_if=lambda v: v is None)
    before: int | None = Field(default=None, exclude_if=lambda v: v is None)
    after: int | None = Field(default=None, exclude_if=lambda v: v is None)


class StagePublic(CamelModel):
    """One pipeline stage of the request (only with ``debug=true``)."""

    stage: str
    elapsed_ms: float
    outcome: str
    detail: str
    items: list[TracedItemPublic] = Field(
        default_factory=list,
        description="The items this stage recalled (a source), removed (a filter, gate or "
        "rule) or moved (a rerank rule), in its order; empty for stages that change no item.",
    )


class RecommendationsPublic(CamelModel):
    """A served list; ``requestId`` ties later events to it."""

    request_id: str
    items: list[RecommendedItem]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool = Field(
        description="Whether a stage that should have served did not: a source timed out or "
        "failed, the ranker failed, features were unavailable (see `stages` with debug)."
    )
    cold: bool = Field(
        default=False,
        description="Whether the pipeline is in its cold state: a stage has nothing trained "
        "yet (no ranker before the first `recloop train`), so a stand-in served. Not a failure.",
    )
    stages: list[StagePublic] | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Only with debug=true."
    )


class FeedbackIn(CamelModel):
    """Explicit negative feedback; effective from the user's next request."""

    user_id: Id
    item_id: Id
    feedback: Feedback
    request_id: Id | None = None
    surface: Label | None = None


class FeedbackAccepted(CamelModel):
    """Feedback stored; the item is suppressed for the user."""

    suppressed: bool
    event_id: str


__all__ += [
    "EventBatchIn",
    "EventsAccepted",
    "FeedbackAccepted",
    "FeedbackIn",
    "FieldError",
    "ItemBatchIn",
    "ItemPublic",
    "ItemsUpserted",
    "Problem",
    "RecommendationsPublic",
    "RecommendedItem",
    "RejectedRecord",
    "StagePublic",
    "UserPublic",
]


class VariantPublic(CamelModel):
    """One variant of an experiment."""

    name: str
    share: float = Field(description="Its share of the experiment's users now.")
    surface: str | None
    overrides: dict[str, Any]
    model_version: str | None = None


class RampChangePublic(CamelModel):
    """One move of a staged canary."""

    stage: int
    at: datetime
    reason: str


class ExperimentPublic(CamelModel):
    """A configured experiment and whether it serves now."""

    name: str
    kind: str = Field(description="ab, or interleave (every user sees both variants, drafted).")
    surface: str
    layer: str
    traffic: float
    variants: list[VariantPublic]
    control: str
    primary_metric: str
    start: datetime | None
    stop: datetime | None
    state: str = Field(description="scheduled, running or stopped")
    stopped_reason: str | None = Field(
        default=None, description="Why it was stopped while running (a guardrail, by hand)."
    )
    ramp: list[float] = Field(
        default_factory=list, description="A staged canary's share at each stage (else empty)."
    )
    ramp_stage: int | None = Field(
        default=None, description="The stage a staged canary serves at, from 0."
    )
    ramp_since: datetime | None = None
    ramp_complete: bool = False
    ramp_history: list[RampChangePublic] = Field(default_factory=list)

    @classmethod
    def of(
        cls,
        experiment: ExperimentConfig,
        now: datetime,
        stopped_reason: str | None = None,
        ramp: RampState | None = None,
    ) -> ExperimentPublic:
        """The public view of a configured experiment at ``now``."""
        stage = ramp.stage if ramp is not None else 0
        shares = experiment.shares(stage)
        return cls(
            name=experiment.name,
            kind=experiment.kind,
            surface=experiment.surface,
            layer=experiment.layer,
            traffic=experiment.traffic,
            variants=[
                VariantPublic(
                    name=v.name,
                    share=shares[v.name],
                    surface=v.surface,
                    overrides=v.overrides,
                    model_version=v.model_version,
                )
                for v in experiment.variants
            ],
            control=experiment.control,
            primary_metric=experiment.primary_metric,
            start=experiment.start,
            stop=experiment.stop,
            state="stopped" if stopped_reason else experiment.state_at(now),
            stopped_reason=stopped_reason,
            ramp=list(experiment.ramp),
            ramp_stage=stage if experiment.ramp else None,
            ramp_since=ramp.since if ramp is not None else None,
            ramp_complete=ramp.complete if ramp is not None else False,
            ramp_history=[
                RampChangePublic(stage=c.stage, at=c.at, reason=c.reason)
                for c in (ramp.history if ramp is not None else ())
            ],
        )


class ShadowPublic(CamelModel):
    """A configured shadow pipeline: scored and logged on live requests, never served."""

    name: str
    surface: str = Field(description="The served surface whose requests it follows.")
    traffic: float = Field(description="Its share of that surface's requests.")
    pipeline: str = Field(description="The configured surface it runs, before overrides.")
    overrides: dict[str, Any]
    model_version: str | None = Field(description="A pinned model version, or the promoted one.")

    @classmethod
    def of(cls, shadow: ShadowConfig) -> ShadowPublic:
        """The public view of a configured shadow."""
        return cls(
            name=shadow.name,
            surface=shadow.surface,
            traffic=shadow.traffic,
            pipeline=shadow.pipeline or shadow.surface,
            overrides=shadow.overrides,
            model_version=shadow.model_version,
        )


class SuggestionPublic(CamelModel):
    """One suggested query."""

    query: str = Field(description="The query to show (and to submit when chosen).")
    score: float
    reason: str = Field(description="Why, in words a person can read.")
    source: str = Field(
        description="The source behind the largest part of its score: prefix, words, typo, "
        "session, recent, related, trending, popular, item, catalog or categories."
    )
    sources: list[str] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Every source that recalled it (only with debug=true).",
    )
    features: dict[str, float] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The score's features: popularity, match, personal, context, success, "
        "trend (only with debug=true).",
    )
    propensity: float | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The probability exploration put it at its position (only with debug=true).",
    )


class FilteredPublic(CamelModel):
    """A query a rule kept out of the list (only with ``debug=true``)."""

    query: str = Field(description="The query; scrubbed when it held personal data.")
    rule: str = Field(description="safety, k_anonymity, min_length, zero_result or duplicate.")
    detail: str = Field(description="Why: the safety reasons with their lists, the counts...")
    source: str


class SuggestionsPublic(CamelModel):
    """A served list of queries; ``requestId`` and a position join a search to it."""

    request_id: str
    suggestions: list[SuggestionPublic]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool = Field(
        description="Whether a stage that should have served did not: a source skipped past "
        "the budget, or a related or feed list served what everyone searches instead."
    )
    cold: bool = Field(
        default=False,
        description="Whether no suggestion model is trained yet: catalog-derived and recent "
        "queries served. Not a failure.",
    )
    prefix: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The typed text as normalized (only with debug=true).",
    )
    stages: list[StagePublic] | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Only with debug=true."
    )
    filtered: list[FilteredPublic] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="What each rule filtered and why: the request's audit (only with debug=true).",
    )


class BlocklistIn(CamelModel):
    """An app's suggestion blocklist, replacing the stored one."""

    terms: list[str] = Field(
        default_factory=list,
        description="Blocked words or phrases, matched as whole words after normalization, "
        "look-alike and leetspeak folding (at most 10,000).",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="Blocked regular expressions (Python syntax, case-insensitive), refused "
        "when they could backtrack badly, match everything or run slowly.",
    )


class BlocklistPublic(CamelModel):
    """An app's suggestion blocklist as stored."""

    terms: list[str]
    patterns: list[str]
    updated_at: datetime | None


__all__ += [
    "BlocklistIn",
    "BlocklistPublic",
    "FilteredPublic",
    "SuggestionPublic",
    "SuggestionsPublic",
]

"""The rerank-rule role and the candidate-filter role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.features.candidates import MergedCandidate


class RerankRule(Protocol):
    """Reshapes a ranked slate (diversity, caps, boosts); mandatory rules are never skipped."""

    name: str
    mandatory: bool

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        """The slate after this rule."""
        ...


class CandidateFilter(Protocol):
    """Removes candidates that must never be served. Filters always run, before ranking,
    so no ranking work is spent on an item that cannot be shown."""

    name: str

    def keep(
        self, candidates: Sequence[MergedCandidate], ctx: RequestContext
    ) -> list[MergedCandidate]:
        """The candidates that may be served, in the same order."""
        ...


class SlateGate(Protocol):
    """Admits ranked items that may be served, checking the source of truth per request.

    Gates run after ranking on the head of the ranked list, a chunk at a time, so a check
    that costs a store query touches only the items that could be served.
    """

    name: str

    def admit(self, items: Sequence[ScoredItem], ctx: RequestContext) -> list[ScoredItem]:
        """The items that may be served, in the same order."""
        ...

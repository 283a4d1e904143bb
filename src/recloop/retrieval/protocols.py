"""The candidate-source role: recall up to ``k`` items for a request."""

from __future__ import annotations

from typing import Protocol

from recloop.domain import Candidate, RequestContext

#: What a source sees of a request: the request context, which carries the user's recent
#: history and session items (and, for users with a short history, their attributes).
RetrievalQuery = RequestContext


class SourceNotLoaded(RuntimeError):
    """The source's model belongs to the served version but failed to load (a damaged
    file): the request is served without it and flagged as a fallback. The load failure
    itself was logged and counted once, when the version loaded."""


class CandidateSource(Protocol):
    """Recalls candidates; every candidate it returns carries ``source == name``.

    A source answers an unknown user or item with ``[]``, never an error.
    """

    name: str

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """At most ``k`` candidates, best first."""
        ...

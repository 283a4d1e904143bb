"""Stage budgets and traces: what each stage took, and what fell back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

#: What a stage did. ``cold``: it could not do its planned work because nothing is trained
#: for it yet (a new app), and its stand-in served; not a failure, and not a fallback.
Outcome = Literal["ok", "timeout", "error", "empty", "fallback", "skipped", "cold"]
#: What a stage did to one item (see ``TracedItem``).
Change = Literal["recalled", "removed", "added", "demoted", "promoted"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Per-stage time budgets in milliseconds.

    Python cannot stop a running thread, so a budget means "stop waiting": a source that
    misses it is dropped from this request, and the stage records a timeout.
    """

    retrieve_ms: float = 25.0
    rank_ms: float = 10.0
    rerank_ms: float = 5.0


@dataclass(frozen=True, slots=True)
class TracedItem:
    """What a stage did to one item (only when a request asks for its explanation).

    ``change``: ``recalled`` (a source found it), ``removed`` (a filter, gate or rule
    dropped it), ``demoted``/``promoted`` (a rule moved it; ``before``/``after`` are its
    1-based positions among the items the rule kept), ``added`` (a rule inserted it).
    """

    item_id: str
    change: Change
    score: float | None = None
    before: int | None = None
    after: int | None = None


@dataclass(frozen=True, slots=True)
class StageTrace:
    """One stage of one request."""

    stage: str
    elapsed_ms: float
    outcome: Outcome
    detail: str = ""
    # Filled only for an explained (``debug``) request: the per-item record costs nothing
    # on the hot path when it is empty.
    items: tuple[TracedItem, ...] = ()

    @property
    def degraded(self) -> bool:
        """Whether the request was served worse than planned because of this stage."""
        return self.outcome in ("timeout", "error", "fallback")


class Stopwatch:
    """Milliseconds since construction, on the monotonic clock."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        """Elapsed milliseconds."""
        return (time.perf_counter() - self._start) * 1000.0

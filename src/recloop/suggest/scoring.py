"""The transparent suggestion score: six features, one weighted sum.

``score = sum(weights[f] * feature[f])`` over (weights in ``[suggestions.weights]``):

- ``popularity``: ``log1p(weight) / log1p(max weight)``, the query's decayed searches
  (plus the catalog prior) against the model's heaviest query, at most 1. The live
  overlay's weight (``suggest.live``: searches since the model's cut-off, in the model's
  frame) adds to the model's; a query only the overlay holds has its live weight alone.
- ``match``: how the query matched the typed text: 1 at the start, 0.7 at a later word,
  0.5 with one typo and 0.3 with two; 0 without typed text.
- ``personal``: the user's own searches: 1 for the latest, halving every ten searches back.
- ``context``: the best score of a contextual source (the co-click walk, the item's
  queries, the item's catalog queries, the user's categories), each source's best 1.
- ``success``: the success rate smoothed toward the app's,
  ``(successes + 5 p) / (searches + 5)``, minus the app's rate ``p``: positive for queries
  that find things, negative for those clicked and then abandoned or reformulated. The
  overlay's searches and successes add to the model's.
- ``trend``: the query's rise (the short count above the long count's rate) against the
  model's most rising query.

Each suggestion is credited to the source behind the largest part of its score: the
personal, contextual or trending source when that term is the largest, else the source
that matched the typed text (or ``popular``). Its reason is that source's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from recloop.config import SuggestionWeights
from recloop.suggest.live import LiveQueries, LiveQuery
from recloop.suggest.model import SuggestionModel
from recloop.suggest.sources import PERSONAL, REASONS, QueryCandidate

FEATURES: tuple[str, ...] = ("popularity", "match", "personal", "context", "success", "trend")
MATCH_QUALITY: Mapping[str, float] = {"prefix": 1.0, "word": 0.7, "typo": 0.5}
#: Each typo past the first takes this much more off ``match``.
TYPO_PENALTY = 0.2
#: Searches of pseudo-evidence at the app's success rate: a query searched twice is not
#: judged by those two searches alone.
SUCCESS_PRIOR_SEARCHES = 5.0
CONTEXT: frozenset[str] = frozenset({"related", "item", "catalog", "categories"})
# Which source the popularity and match terms are credited to, most specific first (a
# trending query's rise is its own term).
_MATCHING = ("prefix", "words", "typo", "live", "popular")


@dataclass(frozen=True, slots=True)
class ScoredQuery:
    """A candidate query after scoring: its features, score, credited source and reason."""

    key: str
    display: str
    score: float
    source: str
    reason: str
    sources: tuple[str, ...]
    features: Mapping[str, float]
    row: int | None  # its row in the model; None for a query only the user or the overlay has

    @property
    def personal_only(self) -> bool:
        """Recalled only from the user's own searches (exempt from k-anonymity)."""
        return all(s in PERSONAL for s in self.sources)


def match_quality(match: str | None, edits: int) -> float:
    """The ``match`` feature of one way of matching."""
    if match is None:
        return 0.0
    quality = MATCH_QUALITY[match]
    return max(0.0, quality - TYPO_PENALTY * max(0, edits - 1)) if match == "typo" else quality


def popularity(
    model: SuggestionModel, row: int | None, recent: LiveQuery | None, live_top: float = 0.0
) -> float:
    """The ``popularity`` feature: the model's weight of the query plus its live weight
    (``recent``), against the model's heaviest query (``live_top``, the overlay's heaviest,
    when the model has none), at most 1."""
    weight = (float(model.stats.weight[row]) if row is not None else 0.0) + (
        recent.weight if recent is not None else 0.0
    )
    top = model.max_weight if model.max_weight > 0 else live_top
    if top <= 0:
        return 0.0
    return min(1.0, math.log1p(weight) / math.log1p(top))


def features_of(
    candidates: Iterable[QueryCandidate],
    model: SuggestionModel | None,
    live: LiveQueries | None = None,
) -> tuple[dict[str, float], int | None]:
    """The features of one query from every candidate recalled for it, and its row."""
    values = dict.fromkeys(FEATURES, 0.0)
    key = ""
    for c in candidates:
        key = c.key
        values["match"] = max(values["match"], match_quality(c.match, c.edits))
        if c.source in PERSONAL:
            values["personal"] = max(values["personal"], c.score)
        elif c.source in CONTEXT:
            values["context"] = max(values["context"], c.score)
    row = model.row(key) if model is not None else None
    recent = live.get(key) if live is not None else None
    if model is not None and (row is not None or recent is not None):
        values["popularity"] = popularity(
            model, row, recent, live.max_weight if live is not None else 0.0
        )
        searches = successes = 0.0
        if row is not None:
            values["trend"] = model.trend_share(row)
            searches = float(model.stats.searches[row])
            successes = float(model.stats.successes[row])
        if recent is not None:
            searches += recent.searches
            successes += recent.successes
        if searches > 0:
            p = model.success_prior
            smoothed = (successes + SUCCESS_PRIOR_SEARCHES * p) / (
                searches + SUCCESS_PRIOR_SEARCHES
            )
            values["success"] = smoothed - p
    return values, row


def score_candidates(
    candidates: Iterable[QueryCandidate],
    model: SuggestionModel | None,
    weights: SuggestionWeights,
    live: LiveQueries | None = None,
) -> list[ScoredQuery]:
    """Merge candidates by match key, score each query, best first (ties by key); ``live``
    is the app's overlay of searches since the model's cut-off."""
    merged: dict[str, list[QueryCandidate]] = {}
    for c in candidates:
        merged.setdefault(c.key, []).append(c)
    out: list[ScoredQuery] = []
    w = weights.model_dump()
    for key, found in merged.items():
        values, row = features_of(found, model, live)
        parts = {f: w[f] * values[f] for f in FEATURES}
        sources = tuple(dict.fromkeys(c.source for c in found))
        source = _credited(found, parts, sources)
        # The user's own spelling of their own query; otherwise the model's display form.
        personal = next((c for c in found if c.source in PERSONAL), None)
        if model is not None and row is not None and personal is None:
            display = model.stats.display[row]
        else:
            display = (personal or found[0]).display
        reason = REASONS[source]
        if (
            source in ("prefix", "words", "popular")
            and model is not None
            and row is not None
            and model.stats.searches[row] == 0
            and (live is None or live.get(key) is None)
        ):
            reason = REASONS["catalog"]  # nobody searched it yet: the catalog named it
        out.append(
            ScoredQuery(
                key=key,
                display=display,
                score=round(sum(parts.values()), 6),
                source=source,
                reason=reason,
                sources=sources,
                features={f: round(v, 6) for f, v in values.items()},
                row=row,
            )
        )
    out.sort(key=lambda q: (-q.score, q.key))
    return out


def _credited(
    found: list[QueryCandidate], parts: Mapping[str, float], sources: tuple[str, ...]
) -> str:
    """The source behind the largest part of the score (see the module docstring)."""

    def best(allowed: frozenset[str] | set[str]) -> str | None:
        picked = [c for c in found if c.source in allowed]
        return max(picked, key=lambda c: c.score).source if picked else None

    options: list[tuple[float, int, str]] = []
    personal = best(PERSONAL)
    if personal is not None:
        options.append((parts["personal"], 3, personal))
    context = best(CONTEXT)
    if context is not None:
        options.append((parts["context"], 2, context))
    if "trending" in sources:
        options.append((parts["trend"], 1, "trending"))
    matching = next((s for s in _MATCHING if s in sources), None)
    if matching is not None:
        options.append((parts["popularity"] + parts["match"], 0, matching))
    if not options:
        return sources[0]
    return max(options)[2]

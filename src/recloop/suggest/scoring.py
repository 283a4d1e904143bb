"""The transparent suggestion score: six features, one weighted sum.

``score = sum(weights[f] * feature[f])`` over (weights in ``[suggestions.weights]``):

- ``popularity``: ``log1p(weight) / log1p(max weight)``, the query's decayed searches
  (plus the catalog prior) against the model's heaviest query; 0 for a query the model
  does not hold.
- ``match``: how the query matched the typed text: 1 at the start, 0.7 at a later word,
  0.5 with one typo and 0.3 with two; 0 without typed text.
- ``personal``: the user's own searches: 1 for the latest, halving every ten searches back.
- ``context``: the best score of a contextual source (the co-click walk, the item's
  queries, the item's catalog queries, the user's categories), each source's best 1.
- ``success``: the success rate smoothed toward the app's,
  ``(successes + 5 p) / (searches + 5)``, minus the app's rate ``p``: positive for queries
  that find things, negative for those clicked and then abandoned or reformulated.
- ``trend``: the query's rise (the short count above the long count's rate) against the
  model's most rising query.

Each suggestion is credited to the source behind the largest part of its score: the
personal, contextual or trending source when that term is the largest, else the source
that matched the typed text (or ``popular``). Its reason is that source's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from recloop.config import SuggestionWeights
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
_MATCHING = ("prefix", "words", "typo", "popular")


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
    row: int | None  # its row in the model, None for a user's own query the model lacks

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


def features_of(
    candidates: Iterable[QueryCandidate], model: SuggestionModel | None
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
    if model is not None and row is not None:
        values["popularity"] = model.popularity(row)
        values["trend"] = model.trend_share(row)
        searches = float(model.stats.searches[row])
        if searches > 0:
            p = model.success_prior
            smoothed = (float(model.stats.successes[row]) + SUCCESS_PRIOR_SEARCHES * p) / (
                searches + SUCCESS_PRIOR_SEARCHES
            )
            values["success"] = smoothed - p
    return values, row


def score_candidates(
    candidates: Iterable[QueryCandidate],
    model: SuggestionModel | None,
    weights: SuggestionWeights,
) -> list[ScoredQuery]:
    """Merge candidates by match key, score each query, best first (ties by key)."""
    merged: dict[str, list[QueryCandidate]] = {}
    for c in candidates:
        merged.setdefault(c.key, []).append(c)
    out: list[ScoredQuery] = []
    w = weights.model_dump()
    for key, found in merged.items():
        values, row = features_of(found, model)
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

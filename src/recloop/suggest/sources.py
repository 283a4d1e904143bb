"""Candidate sources of the suggestion surface: each recalls queries for one reason.

A source is a function of the model (or of the user's own searches) and the request's
typed match key; it returns ``QueryCandidate``s with its own score in [0, 1] (its best
candidate 1) and the reason it gives. The pipeline (``serving/suggester.py``) picks the
sources by mode, merges their candidates by match key, scores and filters them.

- ``prefix`` (typed): queries that start with the typed text, by weight;
- ``words`` (typed): queries with a later word that starts with it ("shoes" finds
  "running shoes");
- ``typo`` (typed, when few match): queries that start with it up to per-word typos;
- ``live`` (typed): queries that at least ``min_users`` distinct users searched since the
  model's cut-off (``suggest.live``) and that start with it or have a word that does,
  whether the model holds them or not;
- ``session`` (both): the searches of this session (typed: those that match);
- ``recent`` (both): the user's own latest searches (typed: those that match);
- ``related`` (zero-prefix): the co-click walk from the session's or user's last searches:
  query -> items engaged after it -> the queries that led to those items;
- ``trending`` (zero-prefix, feed): queries searched more now than at their long-run rate;
- ``popular`` (zero-prefix, feed, fallback): the heaviest queries;
- ``item`` (related): queries whose searches led to engagement with the item;
- ``catalog`` (related): the item's own category, tags and "category tag" pairs;
- ``categories`` (feed): the popular queries of the user's categories.

Personal sources read the user's own searches (``SearchRecord``), not the model: what a
user searched is shown back to them only, so k-anonymity does not apply to it (safety
rules still do).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from recloop.domain import Item
from recloop.store.protocols import SearchRecord
from recloop.suggest.live import LiveQueries
from recloop.suggest.model import SuggestionModel
from recloop.suggest.normalize import match_key, normalize
from recloop.suggest.prefix_index import Completion, MatchKind

REASONS: dict[str, str] = {
    "prefix": "Popular search",
    "words": "Popular search with a word you typed",
    "typo": "Did you mean this?",
    "live": "Searched by others just now",
    "session": "You searched this a moment ago",
    "recent": "You searched this before",
    "related": "Related to your last search",
    "trending": "Trending now",
    "popular": "Popular search",
    "item": "People who engaged with this item searched this",
    "catalog": "From the catalog",
    "categories": "Popular in a category you like",
}
#: Sources that read the user's own searches (exempt from k-anonymity, never from safety).
PERSONAL: frozenset[str] = frozenset({"session", "recent"})


@dataclass(frozen=True, slots=True)
class QueryCandidate:
    """One query recalled by one source."""

    key: str  # the match key
    display: str  # what is shown
    source: str
    score: float  # the source's own score, in [0, 1]
    match: MatchKind | None = None  # how it matched the typed text; None without one
    edits: int = 0

    @property
    def reason(self) -> str:
        """The source's reason, in words."""
        return REASONS[self.source]


def _scaled(pairs: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """(row, weight) pairs with weights divided by the largest."""
    top = max((w for _, w in pairs), default=0.0)
    return [(row, w / top if top > 0 else 0.0) for row, w in pairs]


def _from_completions(
    model: SuggestionModel, completions: Iterable[Completion], source_of_match: dict[str, str]
) -> list[QueryCandidate]:
    out: list[QueryCandidate] = []
    completions = list(completions)
    top = max((c.weight for c in completions), default=0.0)
    for c in completions:
        row = model.row(c.query)
        if row is None:
            continue
        out.append(
            QueryCandidate(
                c.query,
                model.stats.display[row],
                source_of_match[c.match],
                c.weight / top if top > 0 else 0.0,
                c.match,
                c.edits,
            )
        )
    return out


def prefix_candidates(model: SuggestionModel, key: str, k: int) -> list[QueryCandidate]:
    """Queries starting with ``key`` (source ``prefix``)."""
    return _from_completions(model, model.index.complete(key, k), {"prefix": "prefix"})


def word_candidates(model: SuggestionModel, key: str, k: int) -> list[QueryCandidate]:
    """Queries with a later word starting with ``key`` (source ``words``); queries that
    start with it come back too, as ``prefix`` matches."""
    return _from_completions(
        model, model.index.complete_words(key, k), {"prefix": "prefix", "word": "words"}
    )


def typo_candidates(model: SuggestionModel, key: str, k: int) -> list[QueryCandidate]:
    """Queries starting with ``key`` up to per-word typos; only those with an edit
    (source ``typo``)."""
    return [
        c
        for c in _from_completions(
            model, model.index.complete_fuzzy(key, k), {"prefix": "prefix", "typo": "typo"}
        )
        if c.edits > 0
    ]


def live_candidates(live: LiveQueries, key: str, k: int) -> list[QueryCandidate]:
    """Queries of the live overlay that enough users searched since the model's cut-off and
    that start with ``key`` or have a later word that does (source ``live``), scored by
    their live weight."""
    found = live.complete(key, k)
    top = max((q.weight for q, _ in found), default=0.0)
    return [
        QueryCandidate(q.key, q.display, "live", q.weight / top if top > 0 else 0.0, match)
        for q, match in found
    ]


def personal_candidates(
    searches: Sequence[SearchRecord], key: str, session_id: str | None, k: int
) -> list[QueryCandidate]:
    """The user's own searches, most recent first: ``session`` for this session's, ``recent``
    for the others. With typed text, only those that start with it or have a word that
    does. The score halves every ten searches back."""
    out: list[QueryCandidate] = []
    seen: set[str] = set()
    for rank, search in enumerate(searches):
        own = match_key(search.query)
        if not own or own in seen:
            continue
        match: MatchKind | None = None
        if key:
            if own.startswith(key):
                match = "prefix"
            elif f" {key}" in f" {own}":
                match = "word"
            else:
                continue
        seen.add(own)
        source = (
            "session" if session_id is not None and search.session_id == session_id else "recent"
        )
        out.append(QueryCandidate(own, search.query, source, 0.5 ** (rank / 10), match))
        if len(out) >= k:
            break
    return out


def trending_candidates(model: SuggestionModel, k: int) -> list[QueryCandidate]:
    """The queries rising most (source ``trending``)."""
    rows = [(row, float(model.stats.trend[row])) for row in model.trending[:k]]
    return [
        QueryCandidate(model.stats.keys[row], model.stats.display[row], "trending", score)
        for row, score in _scaled(rows)
    ]


def popular_candidates(model: SuggestionModel, k: int) -> list[QueryCandidate]:
    """The heaviest queries (source ``popular``)."""
    return [
        QueryCandidate(c.key, c.display, "popular", c.score)
        for c in prefix_candidates(model, "", k)
    ]


def related_candidates(
    model: SuggestionModel, seeds: Sequence[str], k: int, *, source: str = "related"
) -> list[QueryCandidate]:
    """The co-click walk from the seed match keys: each seed's engaged items, then the
    queries that led to those items, weighted by both links; the seeds themselves left
    out. Earlier seeds (more recent searches) count more."""
    totals: dict[int, float] = {}
    seed_rows = [r for r in (model.row(s) for s in seeds) if r is not None]
    for n, row in enumerate(seed_rows):
        for item, to_item in model.query_items.get(row, ()):
            for other, to_query in model.item_queries.get(item):
                totals[other] = totals.get(other, 0.0) + to_item * to_query / (1 + n)
    for row in seed_rows:
        totals.pop(row, None)
    best = sorted(totals.items(), key=lambda rw: (-rw[1], rw[0]))[:k]
    return [
        QueryCandidate(model.stats.keys[row], model.stats.display[row], source, score)
        for row, score in _scaled(best)
    ]


def item_candidates(model: SuggestionModel, item_id: str, k: int) -> list[QueryCandidate]:
    """Queries whose searches led to engagement with the item (source ``item``)."""
    rows = list(model.item_queries.get(item_id)[:k])
    return [
        QueryCandidate(model.stats.keys[row], model.stats.display[row], "item", score)
        for row, score in _scaled(rows)
    ]


def item_catalog_candidates(model: SuggestionModel, item: Item) -> list[QueryCandidate]:
    """The item's own catalog queries that the model holds: its category, its tags and its
    "category tag" pairs (source ``catalog``; scored by weight)."""
    texts = [t for t in (item.category, *item.tags) if t]
    if item.category:
        texts += [f"{item.category} {tag}" for tag in item.tags if tag]
    rows: list[tuple[int, float]] = []
    for text in dict.fromkeys(texts):
        row = model.row(match_key(normalize(text)))
        if row is not None and model.stats.catalog[row]:
            rows.append((row, float(model.stats.weight[row])))
    rows.sort(key=lambda rw: (-rw[1], rw[0]))
    return [
        QueryCandidate(model.stats.keys[row], model.stats.display[row], "catalog", score)
        for row, score in _scaled(rows)
    ]


def category_candidates(
    model: SuggestionModel, categories: Sequence[tuple[str, float]], k: int
) -> list[QueryCandidate]:
    """The queries of the user's categories, each weighted by the category's share of the
    user's history (source ``categories``)."""
    totals: dict[int, float] = {}
    for category, share in categories:
        pairs = model.categories.get(category)
        for row, weight in _scaled(list(pairs)):
            totals[row] = totals.get(row, 0.0) + share * weight
    best = sorted(totals.items(), key=lambda rw: (-rw[1], rw[0]))[:k]
    return [
        QueryCandidate(model.stats.keys[row], model.stats.display[row], "categories", score)
        for row, score in _scaled(best)
    ]

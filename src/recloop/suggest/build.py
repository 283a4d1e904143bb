"""Building the suggestion model from a search log and a catalog.

``build_model(events, items, settings, now=..., version=...)`` is a pure function of its
inputs: ``recloop train`` feeds it a snapshot's cleaned events (bots already dropped), and
a service with no trained model yet feeds it the store's recent events (the cold state).

What happens to the log, in order:

1. **Searches are labelled** per user, in time order (``label_searches``). A search is a
   *success* when the user engages with an item (the caller passes engagements only:
   clicks, views, purchases...) in the same session before their next search; for events
   without a session id, within ``session_gap_s`` of the search. It is a
   *reformulation* when it is not a success and the user searches again within
   ``reformulation_s``. The items engaged after a success are its co-click links.
2. **Queries are counted by match key**, so that "Café" and "cafe" are one query shown as
   the form most users typed: decayed counts over three half-lives (the main count that
   ranks completions, a short one and a long one for trending), distinct users, searches,
   successes, reformulations, and the searches and successes of the zero-result window.
   A query holding a personal-data tag (``<email>``...) is dropped here: it can never be
   suggested.
3. **Abuse is damped, then k-anonymity holds.** A user's repeated searches of one query
   within ``repeat_window_hours`` count once toward its popularity, and each search weighs
   by its account's trust: the account's age (since its first event in the log) over
   ``trust_hours``, at least ``min_trust``, and 1 for everyone while the log itself is
   younger than ``trust_hours``. A searched query is kept only when at least ``min_users``
   distinct users searched it and their trust adds up to ``min_users``: a push by a crowd
   of fresh accounts neither reaches the suggestions nor weighs much once it does. Links
   of a dropped query go with it, and a link needs ``min_link_users`` users of its own.
4. **The catalog adds queries** with a low prior weight (``catalog_weight``): each active
   item's title (up to ``max_title_chars``), each category and tag (the prior grows with the
   log of the items that carry it), and "category tag" pairs carried by at least
   ``min_pair_items`` items. They need no users: the catalog is public.
5. Each category's queries are the queries whose successful searches led to the
   category's items, plus the category's own catalog queries.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from recloop.config import SuggestionSettings
from recloop.suggest.model import (
    MAX_CATEGORY_QUERIES,
    MAX_LINKS,
    MAX_TRENDING,
    STAT_COLUMNS,
    Links,
    SuggestionModel,
    stats_of,
    top_links,
)
from recloop.suggest.normalize import MAX_QUERY_CHARS, match_key, normalize
from recloop.suggest.pii import TAGS
from recloop.suggest.prefix_index import PrefixIndex

_LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One event of the log as the builder reads it: a search (``query`` set) or an
    engagement with an item (``item_id`` set)."""

    user_id: str
    ts: float  # seconds since the epoch
    session_id: str | None = None
    query: str | None = None  # a search's stored query: normalized, personal data tagged
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogText:
    """What the catalog says about one active item, for catalog-derived queries."""

    item_id: str
    title: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelledSearch:
    """A search with its outcome."""

    user_id: str
    ts: float
    query: str
    success: bool
    reformulation: bool
    items: tuple[str, ...] = ()  # engaged after it, in the same session, before the next search


@dataclass
class BuildReport:
    """What a build read and kept."""

    events: int = 0
    searches: int = 0
    successes: int = 0
    reformulations: int = 0
    distinct_queries: int = 0
    below_min_users: int = 0
    tagged: int = 0  # searches whose query holds a personal-data tag: never suggestible
    repeats: int = 0  # searches by a user who searched the same query within the window
    untrusted_searches: int = 0  # searches by accounts younger than trust_hours
    searched_rows: int = 0
    catalog_rows: int = 0
    rows: int = 0
    links: int = 0
    trending: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def label_searches(
    events: Sequence[LogEvent], *, reformulation_s: float, session_gap_s: float
) -> list[LabelledSearch]:
    """Every search of ``events`` with its outcome (see the module docstring), in the order
    of users' first events, then time."""
    by_user: dict[str, list[LogEvent]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    out: list[LabelledSearch] = []
    for user_id, user_events in by_user.items():
        user_events.sort(key=lambda e: e.ts)  # stable: the caller's order breaks ties
        searches = [i for i, e in enumerate(user_events) if e.query is not None]
        for j, at in enumerate(searches):
            search = user_events[at]
            end = searches[j + 1] if j + 1 < len(searches) else len(user_events)
            items: list[str] = []
            for event in user_events[at + 1 : end]:
                if event.item_id is None:
                    continue
                if search.session_id is not None:
                    same = event.session_id == search.session_id
                else:
                    same = event.session_id is None and event.ts - search.ts <= session_gap_s
                if same and event.item_id not in items:
                    items.append(event.item_id)
            success = bool(items)
            reformulation = (
                not success
                and end < len(user_events)
                and user_events[end].ts - search.ts <= reformulation_s
            )
            assert search.query is not None
            out.append(
                LabelledSearch(
                    user_id, search.ts, search.query, success, reformulation, tuple(items)
                )
            )
    return out


def has_tag(query: str) -> bool:
    """Whether ``query`` holds a tag that ingestion writes in place of personal data."""
    return "<" in query and any(tag in query for tag in TAGS.values())


class _Counts:
    """Per match key: the counts of step 2."""

    __slots__ = (
        "forms",
        "long",
        "main",
        "reformulations",
        "searches",
        "successes",
        "trend",
        "users",
        "window_searches",
        "window_successes",
    )

    def __init__(self) -> None:
        self.main = self.trend = self.long = 0.0
        self.searches = self.successes = self.reformulations = 0
        self.window_searches = self.window_successes = 0
        self.users: dict[str, float] = {}  # each searcher's highest trust
        self.forms: Counter[str] = Counter()


def build_model(
    events: Iterable[LogEvent],
    items: Iterable[CatalogText],
    settings: SuggestionSettings,
    *,
    now: datetime,
    version: str,
    cold: bool = False,
) -> tuple[SuggestionModel, BuildReport]:
    """The suggestion model of a log and a catalog at ``now`` (see the module docstring)."""
    started = time.perf_counter()
    report = BuildReport()
    log = list(events)
    report.events = len(log)
    labelled = label_searches(
        log, reformulation_s=settings.reformulation_s, session_gap_s=settings.session_gap_s
    )
    now_ts = now.timestamp()
    rate = {
        "main": _LN2 / settings.half_life_hours,
        "trend": _LN2 / settings.trend_half_life_hours,
        "long": _LN2 / settings.long_half_life_hours,
    }
    window_h = settings.zero_result_days * 24.0
    trust = _trust(log, settings)
    repeat_s = settings.repeat_window_hours * 3600.0
    last_counted: dict[tuple[str, str], float] = {}
    keys: dict[str, str] = {}  # stored query -> match key ("" when never suggestible)
    counts: dict[str, _Counts] = {}
    link_weight: dict[tuple[str, str], float] = {}
    link_users: dict[tuple[str, str], set[str]] = {}
    for search in labelled:
        report.searches += 1
        report.successes += search.success
        report.reformulations += search.reformulation
        key = keys.get(search.query)
        if key is None:
            key = keys[search.query] = "" if has_tag(search.query) else match_key(search.query)
        if not key:
            report.tagged += 1
            continue
        c = counts.get(key)
        if c is None:
            c = counts[key] = _Counts()
        age_h = max(0.0, (now_ts - search.ts) / 3600.0)
        weight = trust(search.user_id, search.ts)
        report.untrusted_searches += weight < 1.0
        last = last_counted.get((key, search.user_id))
        if last is None or search.ts - last >= repeat_s:
            last_counted[(key, search.user_id)] = search.ts
        else:
            weight = 0.0  # the same user again within the repeat window counts once
            report.repeats += 1
        main = weight * math.exp(-rate["main"] * age_h)
        c.main += main
        c.trend += weight * math.exp(-rate["trend"] * age_h)
        c.long += weight * math.exp(-rate["long"] * age_h)
        c.searches += 1
        c.successes += search.success
        c.reformulations += search.reformulation
        if age_h <= window_h:
            c.window_searches += 1
            c.window_successes += search.success
        c.users[search.user_id] = max(
            c.users.get(search.user_id, 0.0), trust(search.user_id, search.ts)
        )
        c.forms[search.query] += 1
        for item in search.items:
            pair = (key, item)
            link_weight[pair] = link_weight.get(pair, 0.0) + main
            link_users.setdefault(pair, set()).add(search.user_id)
    report.distinct_queries = len(counts)
    # Distinct users, each counted by their trust: at least min_users real people, and more
    # when some are fresh accounts.
    kept = {
        k: c
        for k, c in counts.items()
        if len(c.users) >= settings.min_users and sum(c.users.values()) >= settings.min_users - 1e-9
    }
    report.below_min_users = len(counts) - len(kept)
    report.searched_rows = len(kept)

    catalog_display: dict[str, str] = {}
    catalog_prior: dict[str, float] = {}
    item_category: dict[str, str] = {}
    category_catalog: list[tuple[str, str, float]] = []  # (category, key, weight)
    if settings.catalog:
        _catalog_queries(
            list(items), settings, catalog_display, catalog_prior, item_category, category_catalog
        )
    else:
        for text in items:
            if text.category:
                item_category[text.item_id] = text.category

    all_keys = sorted(set(kept) | set(catalog_prior))
    row_of = {k: i for i, k in enumerate(all_keys)}
    columns: dict[str, list[Any]] = {name: [] for name in STAT_COLUMNS}
    display: list[str] = []
    trend_share = settings.trend_half_life_hours / settings.long_half_life_hours
    for key in all_keys:
        c = kept.get(key)
        prior = catalog_prior.get(key, 0.0)
        if c is not None:
            # The most typed form; ties by text, so a rebuild shows the same one.
            form = min(c.forms.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            display.append(form)
            columns["weight"].append(c.main + prior)
            columns["users"].append(len(c.users))
            columns["searches"].append(c.searches)
            columns["successes"].append(c.successes)
            columns["reformulations"].append(c.reformulations)
            columns["window_searches"].append(c.window_searches)
            columns["window_successes"].append(c.window_successes)
            # The short count above what the long count's rate would give it.
            columns["trend"].append(max(0.0, c.trend - c.long * trend_share))
            columns["zero_result"].append(
                c.window_searches >= settings.zero_result_min_searches and c.window_successes == 0
            )
        else:
            display.append(catalog_display[key])
            columns["weight"].append(prior)
            for name in (
                "users",
                "searches",
                "successes",
                "reformulations",
                "window_searches",
                "window_successes",
                "trend",
            ):
                columns[name].append(0)
            columns["zero_result"].append(False)
        columns["catalog"].append(key in catalog_prior)
    stats = stats_of(all_keys, display, columns)
    report.catalog_rows = int(stats.catalog.sum())
    report.rows = len(all_keys)

    links = [
        (key, item, weight)
        for (key, item), weight in link_weight.items()
        if key in kept and len(link_users[(key, item)]) >= settings.min_link_users
    ]
    report.links = len(links)
    query_items: dict[int, list[tuple[str, float]]] = {}
    for key, item, weight in links:
        query_items.setdefault(row_of[key], []).append((item, weight))
    item_queries = top_links(((item, row_of[key], w) for key, item, w in links), MAX_LINKS)
    per_category: dict[tuple[str, int], float] = {}
    for key, item, weight in links:
        category = item_category.get(item)
        if category is not None:
            slot = (category, row_of[key])
            per_category[slot] = per_category.get(slot, 0.0) + weight
    for category, key, weight in category_catalog:
        slot = (category, row_of[key])
        per_category[slot] = per_category.get(slot, 0.0) + weight
    categories = top_links(((c, r, w) for (c, r), w in per_category.items()), MAX_CATEGORY_QUERIES)

    order = sorted(
        (i for i in range(len(all_keys)) if stats.trend[i] > 0),
        key=lambda i: (-float(stats.trend[i]), all_keys[i]),
    )
    trending = tuple(order[:MAX_TRENDING])
    report.trending = len(trending)
    searched = sum(c.searches for c in counts.values())
    successes = sum(c.successes for c in counts.values())
    # With no searches yet, a neutral prior: success rates then centre on nothing.
    success_prior = successes / searched if searched else 0.0
    model = SuggestionModel(
        version=version,
        built_at=now,
        stats=stats,
        index=PrefixIndex.build(zip(all_keys, stats.weight.tolist(), strict=True)),
        trending=trending,
        query_items={
            row: tuple(sorted(pairs, key=lambda p: (-p[1], p[0]))[:MAX_LINKS])
            for row, pairs in query_items.items()
        },
        item_queries=Links(item_queries),
        categories=Links(categories),
        success_prior=success_prior,
        params={
            "min_users": settings.min_users,
            "min_link_users": settings.min_link_users,
            "half_life_hours": settings.half_life_hours,
            "trend_half_life_hours": settings.trend_half_life_hours,
            "long_half_life_hours": settings.long_half_life_hours,
            "zero_result_days": settings.zero_result_days,
            "zero_result_min_searches": settings.zero_result_min_searches,
            "catalog_weight": settings.catalog_weight,
        },
        cold=cold,
    )
    report.seconds = round(time.perf_counter() - started, 3)
    return model, report


def _trust(log: Sequence[LogEvent], settings: SuggestionSettings) -> Callable[[str, float], float]:
    """How much a user's search at a time counts: their account's age (since their first
    event in the log) over ``trust_hours``, at least ``min_trust`` and at most 1. While the
    log itself is younger than ``trust_hours`` (a new app), everyone counts fully."""
    trust_s = settings.trust_hours * 3600.0
    first_seen: dict[str, float] = {}
    for event in log:
        seen = first_seen.get(event.user_id)
        if seen is None or event.ts < seen:
            first_seen[event.user_id] = event.ts
    log_start = min(first_seen.values(), default=0.0)

    def trust(user_id: str, ts: float) -> float:
        if trust_s <= 0 or ts - log_start < trust_s:
            return 1.0
        age = ts - first_seen.get(user_id, ts)
        return min(1.0, max(settings.min_trust, age / trust_s))

    return trust


def _catalog_queries(
    items: Sequence[CatalogText],
    settings: SuggestionSettings,
    display: dict[str, str],
    prior: dict[str, float],
    item_category: dict[str, str],
    category_catalog: list[tuple[str, str, float]],
) -> None:
    """Step 4: titles, categories, tags and pairs, with their prior weights (filled in)."""
    base = settings.catalog_weight

    def add(text: str, weight: float) -> str:
        form = normalize(text)
        if not form or len(form) > MAX_QUERY_CHARS or has_tag(form):
            return ""
        key = match_key(form)
        if not key:
            return ""
        display.setdefault(key, form)
        prior[key] = prior.get(key, 0.0) + weight
        return key

    category_items: Counter[str] = Counter()
    tag_items: Counter[str] = Counter()
    pair_items: Counter[tuple[str, str]] = Counter()
    for item in items:
        if item.title and len(normalize(item.title)) <= settings.max_title_chars:
            add(item.title, base)
        if item.category:
            item_category[item.item_id] = item.category
            category_items[item.category] += 1
        tags = list(dict.fromkeys(t for t in item.tags if t))
        tag_items.update(tags)
        if item.category:
            pair_items.update((item.category, tag) for tag in tags)
    for category, n in category_items.items():
        key = add(category, base * (1.0 + math.log(n)))
        if key:
            category_catalog.append((category, key, base * (1.0 + math.log(n))))
    for tag, n in tag_items.items():
        add(tag, base * (1.0 + math.log(n)))
    for (category, tag), n in pair_items.items():
        if n >= settings.min_pair_items:
            weight = base * (1.0 + math.log(n))
            key = add(f"{category} {tag}", weight)
            if key:
                category_catalog.append((category, key, weight))

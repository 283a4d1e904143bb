"""The live overlay: the searches received since the suggestion model's data cut-off.

A trained model counts the searches up to its build; ``LiveFold`` counts those that came
after, as they arrive, so that a new query is suggested within seconds of its
``min_users``-th searcher and a model query's popularity rises with its new searches.
``serving/suggest_live.py`` feeds it from the event log and publishes its ``snapshot``, a
``LiveQueries`` that requests read without a lock.

Counted per query (by match key), as ``suggest.build`` counts where the live path can:

- **users**: distinct users, each once however often they search it (k-anonymity reads
  this, against ``min_users``);
- **weight**: the decayed count in the model's frame. The model's weights are decayed to
  its cut-off; here a search at the cut-off weighs 1 and one ``half_life_hours`` later 2,
  so the two add up as a rebuild would rank them, and a snapshot need not be decayed
  again as time passes. A user's repeats within ``repeat_window_hours`` count once;
- **searches** and **successes**: a search is a success when its user engages with an item
  in the same session before searching again (without a session id: within
  ``session_gap_s``).

Not done live: account trust (an account's age is its first event, which the live path
does not read: every user counts fully here, and the next training damps fresh accounts)
and the cleaning step's bot filter. A query holding a personal-data tag is never counted.

The overlay keeps at most ``live_max_queries`` queries: a quarter past that, the lightest
go (a newer search weighs more, so these are the least searched and least recent); a
dropped query counts from nothing when searched again.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from recloop.config import SuggestionSettings
from recloop.suggest.build import has_tag
from recloop.suggest.normalize import match_key
from recloop.suggest.prefix_index import MatchKind

_LN2 = math.log(2.0)
#: Past this many users remembered for one query, those whose last search left the repeat
#: window are forgotten: ``users`` stays exact below it, and k-anonymity reads far below.
MAX_USERS_PER_QUERY = 1024
# exp() of more overflows; a search 19 years after the cut-off at a week's half-life.
_MAX_EXPONENT = 700.0
# Word starts that match typed text: past this many, ``complete`` scans the queries by
# weight instead (it stops at the k-th match, early when so many match).
_MAX_WALK = 256
_LAST_CHAR = "\U0010ffff"


class LiveSearch:
    """One search as the overlay counts it; kept to be counted again after a model swap."""

    __slots__ = ("key", "query", "received", "session_id", "success", "ts", "user_id")

    def __init__(
        self, user_id: str, session_id: str | None, query: str, ts: float, received: float
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.query = query  # the stored form: normalized, personal data tagged
        self.ts = ts  # when it happened, seconds since the epoch (never after ``received``)
        self.received = received  # when the server received it: the cut-off compares this
        self.key = "" if has_tag(query) else match_key(query)  # "": never suggestible
        self.success = False


@dataclass(frozen=True, slots=True)
class LiveQuery:
    """One query's counts since the cut-off."""

    key: str
    display: str  # the form most of its searches typed
    weight: float
    users: int
    searches: int
    successes: int
    zero_result: bool  # searched ``zero_result_min_searches`` times, never with success


def _word_starts(keys: Iterable[str]) -> list[tuple[str, str]]:
    """(suffix from a word on, key) for every word start of every key."""
    pairs: list[tuple[str, str]] = []
    for key in keys:
        words = key.split(" ")
        pairs.append((key, key))
        pairs.extend((" ".join(words[i:]), key) for i in range(1, len(words)))
    return pairs


@dataclass(frozen=True, slots=True)
class WordStarts:
    """Every word start of some match keys, sorted: ``(suffix, key)`` pairs where the
    suffix is the key from one of its words on. The overlay's lookup by typed text."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, keys: Iterable[str]) -> WordStarts:
        """The word starts of ``keys``."""
        return cls(tuple(sorted(_word_starts(keys))))

    def changed(self, added: Collection[str], removed: Collection[str]) -> WordStarts:
        """These word starts without those of ``removed``, then with those of ``added``."""
        pairs: Iterable[tuple[str, str]] = self.pairs
        if removed:
            pairs = [p for p in pairs if p[1] not in removed]
        if added:
            # Two sorted runs: the sort merges them in one pass.
            pairs = sorted(chain(pairs, sorted(_word_starts(added))))
        return WordStarts(tuple(pairs))


@dataclass(frozen=True)
class LiveQueries:
    """An app's overlay at one moment; immutable.

    ``since`` is the cut-off it counts from (the model's ``built_at``; None before the app
    has a model). The queries with at least ``min_users`` users are the ones ``complete``
    finds: by ``index``, their word starts (built from them when not given; a fold passes
    the last one while that set is unchanged), and in order of weight.
    """

    since: datetime | None
    queries: Mapping[str, LiveQuery]
    min_users: int
    index: WordStarts | None = None
    max_weight: float = -1.0  # computed when not given
    _ranked: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        suggestible = [k for k, q in self.queries.items() if q.users >= self.min_users]
        if self.index is None:
            object.__setattr__(self, "index", WordStarts.of(suggestible))
        if self.max_weight < 0:
            top = max((q.weight for q in self.queries.values()), default=0.0)
            object.__setattr__(self, "max_weight", top)
        suggestible.sort(key=lambda k: (-self.queries[k].weight, k))
        object.__setattr__(self, "_ranked", tuple(suggestible))

    def __len__(self) -> int:
        return len(self.queries)

    def get(self, key: str) -> LiveQuery | None:
        """One query's counts, or None when nobody searched it since the cut-off."""
        return self.queries.get(key)

    def users(self, key: str) -> int:
        """Distinct users who searched the query since the cut-off."""
        query = self.queries.get(key)
        return 0 if query is None else query.users

    def complete(self, key: str, k: int) -> list[tuple[LiveQuery, MatchKind]]:
        """Queries with at least ``min_users`` users that start with ``key`` (``prefix``)
        or have a later word that does (``word``): the ``k`` heaviest, ties by key."""
        assert self.index is not None
        pairs = self.index.pairs
        lo = bisect.bisect_left(pairs, (key,))
        hi = bisect.bisect_left(pairs, (key + _LAST_CHAR,), lo)
        found: dict[str, MatchKind] = {}
        if hi - lo > _MAX_WALK:
            # Many match (a short prefix): the heaviest queries, until k match, cost less.
            for query in self._ranked:
                if query.startswith(key):
                    found[query] = "prefix"
                elif " " + key in query:
                    found[query] = "word"
                else:
                    continue
                if len(found) >= k:
                    break
            return [(self.queries[q], kind) for q, kind in found.items()]
        for start, owner in pairs[lo:hi]:
            if len(start) == len(owner):
                found[owner] = "prefix"
            else:
                found.setdefault(owner, "word")
        best = heapq.nsmallest(k, found, key=lambda q: (-self.queries[q].weight, q))
        return [(self.queries[q], found[q]) for q in best]


class _Entry:
    __slots__ = ("forms", "n_users", "prune_at", "searches", "successes", "users", "weight")

    def __init__(self) -> None:
        self.weight = 0.0
        self.n_users = self.searches = self.successes = 0
        self.prune_at = MAX_USERS_PER_QUERY
        self.users: dict[str, float] = {}  # user -> their last counted search
        self.forms: Counter[str] = Counter()


class LiveFold:
    """The counts of the searches received since one cut-off (see the module docstring).

    Not thread-safe: one follower feeds it and publishes its snapshots.
    """

    def __init__(self, settings: SuggestionSettings, since: datetime | None) -> None:
        self.since = since
        self._origin = since.timestamp() if since is not None else None
        self._rate = _LN2 / (settings.half_life_hours * 3600.0)
        self._repeat_s = settings.repeat_window_hours * 3600.0
        self._session_gap_s = settings.session_gap_s
        self._max_queries = settings.live_max_queries
        self._max_pending = settings.live_max_events
        self._min_users = settings.min_users
        self._zero_min = settings.zero_result_min_searches
        self._entries: dict[str, _Entry] = {}
        # Each user's latest search still waiting for engagement, oldest first.
        self._pending: OrderedDict[str, LiveSearch] = OrderedDict()
        # What the last snapshot showed, and what changed since: a snapshot redoes only that.
        self._views: dict[str, LiveQuery] = {}
        self._dirty: set[str] = set()
        self._index = WordStarts()
        # Keys that became suggestible, and keys dropped (maybe suggestible), since.
        self._added: set[str] = set()
        self._removed: set[str] = set()
        self._max_weight = 0.0  # weights only grow, and eviction drops the lightest
        self.repeats = 0  # searches by a user who searched the query within the window
        self.evicted = 0  # queries dropped past ``live_max_queries``

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, search: LiveSearch) -> bool:
        """Count one search; False for a query that can never be suggested (tagged)."""
        if not search.key:
            return False
        entry = self._entries.get(search.key)
        if entry is None:
            entry = self._entries[search.key] = _Entry()
        if self._origin is None:
            self._origin = search.ts
        self._dirty.add(search.key)
        last = entry.users.get(search.user_id)
        if last is None:
            entry.n_users += 1
            if entry.n_users == self._min_users:
                self._added.add(search.key)  # suggestible from now on
        if last is None or search.ts - last >= self._repeat_s:
            entry.users[search.user_id] = search.ts
            exponent = min(_MAX_EXPONENT, self._rate * (search.ts - self._origin))
            entry.weight += math.exp(exponent)
            self._max_weight = max(self._max_weight, entry.weight)
        else:
            self.repeats += 1  # the same user again within the repeat window counts once
        entry.searches += 1
        entry.successes += search.success
        entry.forms[search.query] += 1
        self._pending.pop(search.user_id, None)
        if not search.success:
            self._pending[search.user_id] = search
            if len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
        if len(entry.users) > entry.prune_at:
            horizon = search.ts - self._repeat_s
            entry.users = {u: t for u, t in entry.users.items() if t > horizon}
            # Pruned again only when it has doubled: a query with many users in the window
            # costs no pass per search.
            entry.prune_at = max(MAX_USERS_PER_QUERY, 2 * len(entry.users))
        if len(self._entries) > self._max_queries + max(1, self._max_queries // 4):
            self._evict()
        return True

    def engage(self, user_id: str, session_id: str | None, ts: float) -> bool:
        """An engagement with an item: the user's latest search is a success when it is of
        the same session (without a session id: within ``session_gap_s``). Whether one was."""
        search = self._pending.get(user_id)
        if search is None:
            return False
        if search.session_id is not None:
            same = session_id == search.session_id
        else:
            same = session_id is None and ts - search.ts <= self._session_gap_s
        if not same:
            return False
        del self._pending[user_id]
        search.success = True
        entry = self._entries.get(search.key)
        if entry is not None:
            entry.successes += 1
            self._dirty.add(search.key)
        return True

    def _evict(self) -> None:
        """Keep the ``live_max_queries`` heaviest queries."""
        kept = dict(
            heapq.nlargest(
                self._max_queries, self._entries.items(), key=lambda kv: (kv[1].weight, kv[0])
            )
        )
        for key, entry in self._entries.items():
            if key not in kept:
                self._dirty.add(key)
                if entry.n_users >= self._min_users:
                    self._added.discard(key)
                    self._removed.add(key)
        self.evicted += len(self._entries) - len(kept)
        self._entries = kept

    def snapshot(self) -> LiveQueries:
        """The counts as they are now, immutable (only what changed since the last one is
        computed again)."""
        for key in self._dirty:
            entry = self._entries.get(key)
            if entry is None:
                self._views.pop(key, None)
                continue
            self._views[key] = LiveQuery(
                key=key,
                # The most typed form; ties by text, like the model's display form.
                display=min(entry.forms.items(), key=lambda kv: (-kv[1], kv[0]))[0],
                weight=entry.weight,
                users=entry.n_users,
                searches=entry.searches,
                successes=entry.successes,
                zero_result=entry.searches >= self._zero_min and entry.successes == 0,
            )
        self._dirty.clear()
        if self._added or self._removed:
            self._index = self._index.changed(self._added, self._removed)
            self._added.clear()
            self._removed.clear()
        return LiveQueries(
            self.since, dict(self._views), self._min_users, self._index, self._max_weight
        )

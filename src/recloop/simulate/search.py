"""Searching in the simulated world: intents, typing, suggestion clicks, and search outcomes.

A user with a search intent (a query drawn from an item they would like: its category, a
topic, "category topic", two topics, its title, its creator) types it a keystroke at a time,
sometimes with a typo. At each keystroke the client asks the service for suggestions; the
user looks at the list with some probability, examines it by position, and clicks the first
examined suggestion that appeals (one close to the intent, or an attractive one: bait
phrases pull clicks). A click submits that query; otherwise the typed text is submitted at
the end. The world's search engine then shows the items whose words contain every word of
the query, ranked by attractiveness (what an engagement-trained engine favours), and the
search succeeds when the user finds one they are satisfied with: the same click and
satisfaction model as the item lists, on the user's hidden taste and the items' hidden
quality. A success engages with an item; a failure reformulates within seconds or abandons.

Everything is a closed-form probability, so the world knows the expected suggestion CTR,
search success and keystrokes saved of any list in any typing state (``SearchBehaviour.truth``),
its own best lists (``best_lists``), and a most-popular-completion baseline built from the
searches submitted so far (``MostPopularCompletion``), the baseline of the literature.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import math
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.simulate.behaviour import BehaviourConfig
from recloop.simulate.world import BAIT_PHRASES, SimItem, SimUser, World

_NON_WORD = re.compile(r"[\W_]+")
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {
    row[i]: row[max(0, i - 1) : i] + row[i + 1 : i + 2]
    for row in _KEYBOARD
    for i in range(len(row))
}
#: The kinds of query an intent is drawn from, and how often (bait only for clickbait items).
QUERY_KINDS = ("category", "topic", "category_topic", "topics", "title", "bait", "creator")


@functools.lru_cache(maxsize=1 << 16)
def query_key(text: str) -> str:
    """The world's form of a query: NFKC, case-folded, apostrophes dropped, words of letters
    and digits joined by single spaces: "You Won't Believe: Sci-Fi" is "you wont believe sci fi"."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("'", "").replace("\u2019", "")
    return " ".join(w for w in _NON_WORD.split(text) if w)


#: Bait phrases as queries hold them; a query with one pulls clicks.
_BAIT_KEYS = tuple(query_key(phrase) for phrase in BAIT_PHRASES)


class SearchConfig(BaseModel):
    """How often users search, how they type, look at suggestions, and judge results."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    searches_per_session: float = Field(
        default=0.25,
        ge=0,
        description="Search sessions a user starts per item session (Poisson around "
        "activity x this), at uniform times of the day, between the item sessions.",
    )
    list_size: int = Field(default=8, ge=1, le=50, description="Suggestions asked for.")
    surface: str | None = Field(
        default=None, description="The suggestion surface asked for; None: the service's default."
    )
    zero_prefix: bool = Field(default=True, description="Ask when the box is focused.")
    debounce: int = Field(default=1, ge=1, description="Ask every this many keystrokes.")
    keystroke_s: tuple[float, float] = (0.15, 0.45)
    # Intents: a target item drawn by taste (as organic discovery draws), then one of its
    # queries by kind.
    intent_pool: int = Field(default=200, ge=1)
    intent_temperature: float = Field(default=0.15, gt=0)
    kind_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "category": 1.0,
            "topic": 2.0,
            "category_topic": 1.0,
            "topics": 1.0,
            "title": 1.5,
            "bait": 0.1,
            "creator": 0.3,
        }
    )
    typo_rate: float = Field(default=0.12, ge=0, le=1, description="Intents typed with a typo.")
    # The suggestion list: looked at, examined by position, clicked by appeal.
    look_probability: float = Field(default=0.55, ge=0, le=1)
    position_decay: float = Field(default=1.0, ge=0)
    click_bias: float = -4.0
    relevance_weight: float = 6.0
    attractiveness_weight: float = 1.0
    query_attractiveness_sigma: float = Field(default=0.4, ge=0)
    bait_pull: float = Field(default=1.5, ge=0)
    typo_relevance: float = Field(
        default=0.5, ge=0, le=1, description="A misspelt suggestion's relevance, relative."
    )
    # The world's search engine and the user's judgement of its results.
    results_shown: int = Field(default=10, ge=1)
    result_click_bias: float = Field(
        default=-0.5, description="Logit of a result click at match 0 (the item lists': -3.6)."
    )
    typo_recall: float = Field(
        default=0.5, ge=0, le=1, description="Success of a query with a typo, relative."
    )
    # After a failed search.
    reformulate_probability: float = Field(default=0.6, ge=0, le=1)
    max_reformulations: int = Field(default=2, ge=0)
    reformulate_after_s: tuple[float, float] = (2.0, 12.0)


@dataclass
class Episode:
    """One search: who types what, meaning what. ``intent`` is the world's form of the
    query meant; ``typed`` is what the fingers type (the intent, perhaps with a typo)."""

    user: SimUser
    session_id: str
    intent: str
    typed: str
    kind: str
    target: str  # the item the intent came from
    started_at: datetime
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class TypingState:
    """A moment of an episode: ``typed_chars`` characters typed, the list about to be shown."""

    episode: Episode
    typed_chars: int

    @property
    def prefix(self) -> str:
        """What the box holds."""
        return self.episode.typed[: self.typed_chars]


@dataclass(frozen=True, slots=True)
class SuggestionTruth:
    """The world's ground truth for one suggestion list in one typing state."""

    click: np.ndarray  # P(this position is the one clicked): looking and examination included
    success: np.ndarray  # P(the search succeeds | this position is submitted)
    saved: np.ndarray  # characters not typed if this position is clicked
    typed_success: float  # P(success) when nothing is clicked and the typed text is submitted

    @property
    def ctr(self) -> float:
        """Expected clicks on the list (at most one)."""
        return float(self.click.sum())

    @property
    def expected_success(self) -> float:
        """P(success) of the search, if it ends with this list or by typing the rest."""
        return float(self.click @ self.success) + (1.0 - self.ctr) * self.typed_success

    @property
    def expected_saved(self) -> float:
        """Expected characters saved by this list."""
        return float(self.click @ self.saved)


@dataclass(frozen=True, slots=True)
class ListChoice:
    """What the user did with one list: the position clicked, if any."""

    looked: bool
    clicked: int | None


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    """The queries the catalog gives, with their engine results, as arrays."""

    keys: list[str]
    index: dict[str, int]
    words: list[frozenset[str]]
    attractiveness: np.ndarray
    matches: list[list[int]]  # per query, the items it finds in engine order
    rank: np.ndarray  # each item's place in the engine's order
    by_word: dict[str, list[int]]  # word -> vocabulary rows holding it
    items: int  # catalog size it was built at
    # The items as arrays, for judging results all at once.
    vectors: np.ndarray
    item_attractiveness: np.ndarray
    quality: np.ndarray
    published: np.ndarray  # POSIX seconds


class SearchBehaviour:
    """The search side of the world; randomness comes from the generator passed in."""

    def __init__(
        self,
        world: World,
        behaviour: BehaviourConfig | None = None,
        config: SearchConfig | None = None,
    ) -> None:
        self.world = world
        self.behaviour = behaviour or BehaviourConfig()
        self.config = config or SearchConfig()
        unknown = set(self.config.kind_weights) - set(QUERY_KINDS)
        if unknown:
            raise ValueError(f"unknown query kinds {sorted(unknown)}; known: {QUERY_KINDS}")
        self._item_words: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = {}
        self._queries: dict[str, frozenset[str]] = {}
        self._typos: dict[str, str] = {}  # a misspelt word -> the word meant
        self._vocab: _Vocabulary | None = None
        self._attractiveness: dict[str, float] = {}
        # The vocabulary's results, cut to what can be shown from a time on: (time, rows).
        self._results: tuple[float, int, np.ndarray] | None = None

    # -- the catalog's queries and the engine ------------------------------------------

    def item_queries(self, item: SimItem) -> list[tuple[str, str]]:
        """The queries that lead to an item, by kind: (kind, query)."""
        category = query_key(item.category)
        topics = [query_key(t) for t in item.tags[1:3]]
        bait, _, title = item.title.partition(": ") if item.is_clickbait else ("", "", item.title)
        out = [("category", category)]
        out += [("topic", t) for t in topics]
        out += [("category_topic", f"{category} {t}") for t in topics]
        if len(topics) == 2:
            out.append(("topics", f"{topics[0]} {topics[1]}"))
        out.append(("title", query_key(title)))
        if item.is_clickbait:
            out.append(("bait", query_key(item.title)))
            out.append(("bait", f"{query_key(bait)} {topics[0]}"))
        out.append(("creator", query_key(item.creator_id)))
        return out

    def _refresh(self) -> _Vocabulary:
        """Index items added since the last call; the engine's order follows the catalog."""
        items = self.world.items
        if self._vocab is not None and self._vocab.items == len(items):
            return self._vocab
        for n in range(len(self._item_words), len(items)):
            item = items[n]
            words = set(query_key(f"{item.title} {item.category} {item.creator_id}").split())
            for tag in item.tags:
                words.update(query_key(tag).split())
            self._item_words.append(frozenset(words))
            for word in words:
                self._postings.setdefault(word, []).append(n)
            for _, query in self.item_queries(item):
                self._queries.setdefault(query, frozenset(query.split()))
        keys = sorted(self._queries)
        # The engine ranks matches by attractiveness, then by age: what engagement favours.
        order = np.lexsort((np.arange(len(items)), -np.array([i.attractiveness for i in items])))
        rank = np.empty(len(items), dtype=np.int64)
        rank[order] = np.arange(len(items))
        by_word: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            for word in self._queries[key]:
                by_word.setdefault(word, []).append(row)
        self._vocab = _Vocabulary(
            keys=keys,
            index={k: n for n, k in enumerate(keys)},
            words=[self._queries[k] for k in keys],
            attractiveness=np.array([self.query_attractiveness(k) for k in keys]),
            matches=[self._matches(self._queries[k], rank) for k in keys],
            rank=rank,
            by_word=by_word,
            items=len(items),
            vectors=np.stack([i.vector for i in items]),
            item_attractiveness=np.array([i.attractiveness for i in items]),
            quality=np.array([i.quality for i in items]),
            published=np.array([i.published_at.timestamp() for i in items]),
        )
        return self._vocab

    def _results_from(self, at: float) -> np.ndarray:
        """Every catalog query's results as rows (engine order, -1 padded) that hold what
        it can show at any time from ``at`` on: its first ``results_shown`` items published
        by ``at``, and the items it finds that are published later."""
        vocab = self._refresh()
        cached = self._results
        if cached is not None and cached[0] <= at and cached[1] == vocab.items:
            return cached[2]
        later = vocab.published > at
        rows: list[list[int]] = []
        for found in vocab.matches:
            row: list[int] = []
            shown = 0
            for n in found:
                if later[n]:
                    row.append(n)
                elif shown < self.config.results_shown:
                    row.append(n)
                    shown += 1
            rows.append(row)
        results = np.full((len(rows), max([1, *map(len, rows)])), -1, dtype=np.int64)
        for n, row in enumerate(rows):
            results[n, : len(row)] = row
        self._results = (at, vocab.items, results)
        return results

    def _matches(self, words: frozenset[str], rank: np.ndarray) -> list[int]:
        """Items whose words hold every word of a query, in the engine's order."""
        postings = [self._postings.get(w) for w in words]
        if not words or any(p is None for p in postings):
            return []
        found = set.intersection(*(set(p) for p in postings if p is not None))
        return sorted(found, key=lambda n: int(rank[n]))

    def vocabulary(self) -> list[str]:
        """Every query the catalog gives so far, in the world's form."""
        return list(self._refresh().keys)

    def corrected(self, query: str) -> tuple[str, bool]:
        """The query meant (the world's form, typos mended) and whether it had a typo."""
        words = query_key(query).split()
        mended = [self._typos.get(w, w) for w in words]
        return " ".join(mended), mended != words

    def query_attractiveness(self, query: str) -> float:
        """How clicky a suggestion is (logit scale): a stable draw per query, plus the pull
        of bait phrases ("shocking", "gone wrong")."""
        key = query_key(query)
        cached = self._attractiveness.get(key)
        if cached is not None:
            return cached
        digest = hashlib.sha256(f"{self.world.config.seed}:{key}".encode()).digest()
        u = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
        value = self.config.query_attractiveness_sigma * statistics.NormalDist().inv_cdf(u)
        padded = f" {key} "
        if any(f" {phrase} " in padded for phrase in _BAIT_KEYS):
            value += self.config.bait_pull
        self._attractiveness[key] = value
        return value

    # -- intents and typing ------------------------------------------------------------

    def draw_episode(
        self,
        user: SimUser,
        session_id: str,
        now: datetime,
        rng: np.random.Generator,
        *,
        target: str | None = None,
        avoid: Sequence[str] = (),
        typo: bool = True,
    ) -> Episode | None:
        """A new search intent: a target item drawn by taste (or ``target``), one of its
        queries by kind (not one of ``avoid``), typed with a typo ``typo_rate`` of the time.
        None when nothing is left to search for."""
        c = self.config
        items = self.world.items
        if target is None:
            published = [n for n in range(len(items)) if items[n].published_at <= now]
            if not published:
                return None
            drawn = rng.integers(len(published), size=c.intent_pool)
            pool = [items[published[int(i)]] for i in drawn]
            # Taste decides most of it, general appeal the rest, as in organic discovery.
            appeal = np.array([i.vector @ user.taste + 0.15 * i.attractiveness for i in pool])
            weights = np.exp((appeal - appeal.max()) / c.intent_temperature)
            item = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
        else:
            item = self.world.item_by_id[target]
        options = [
            (kind, query)
            for kind, query in self.item_queries(item)
            if c.kind_weights.get(kind, 0.0) > 0 and query not in avoid
        ]
        if not options:
            return None
        weights = np.array([c.kind_weights[kind] for kind, _ in options])
        kind, intent = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        typed = self._misspell(intent, rng) if typo and rng.random() < c.typo_rate else intent
        return Episode(user, session_id, intent, typed, kind, item.item_id, now)

    def _misspell(self, query: str, rng: np.random.Generator) -> str:
        """The query with one typo in one word of four letters or more, as fingers make it:
        two letters swapped, one dropped, one doubled or a neighbouring key."""
        words = query.split()
        choices = [n for n, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if not choices:
            return query
        n = choices[int(rng.integers(len(choices)))]
        word = words[n]
        i = int(rng.integers(1, len(word) - 1))  # first and last letters are rarely wrong
        op = int(rng.integers(4))
        if op == 0:
            typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif op == 1:
            typo = word[:i] + word[i + 1 :]
        elif op == 2:
            typo = word[:i] + word[i] + word[i:]
        else:
            near = _NEIGHBOURS.get(word[i], "") or word[i]
            typo = word[:i] + near[int(rng.integers(len(near)))] + word[i + 1 :]
        self._refresh()
        if typo == word or typo in self._postings or self._typos.get(typo, word) != word:
            return query  # a slip that lands on another word reads as that word
        self._typos[typo] = word
        return " ".join([*words[:n], typo, *words[n + 1 :]])

    def states(self, episode: Episode) -> list[TypingState]:
        """The states in which the client asks for suggestions: on focus (empty box), then
        every ``debounce`` keystrokes up to the whole typed text."""
        c = self.config
        counts = list(range(c.debounce, len(episode.typed) + 1, c.debounce))
        if c.zero_prefix:
            counts.insert(0, 0)
        return [TypingState(episode, t) for t in counts]

    # -- the ground truth --------------------------------------------------------------

    def click_given_examined(self, episode: Episode, query: str) -> float:
        """P(click | examined) of one suggestion for this intent."""
        cache: dict[str, float] = episode.cache.setdefault("click", {})
        value = cache.get(query)
        if value is None:
            value = cache[query] = self._click(episode, *self.corrected(query), query_key(query))
        return value

    def _click(self, episode: Episode, meant: str, had_typo: bool, key: str) -> float:
        c = self.config
        intent = set(episode.intent.split())
        words = set(meant.split())
        relevance = len(words & intent) / len(words | intent) if words else 0.0
        if had_typo:
            relevance *= c.typo_relevance
        logit = (
            c.click_bias
            + c.relevance_weight * relevance
            + c.attractiveness_weight * self.query_attractiveness(key)
        )
        return 1.0 / (1.0 + math.exp(-logit))

    def success_probability(self, episode: Episode, query: str) -> float:
        """P(the search for ``query`` succeeds for this user at the episode's time): at
        least one satisfied click among the engine's first results."""
        cache: dict[str, float] = episode.cache.setdefault("success", {})
        key = query_key(query)
        if key in cache:
            return cache[key]
        vocab = self._refresh()
        meant, had_typo = self.corrected(key)
        row = vocab.index.get(meant)
        if row is not None:
            value = float(self._vocab_success(episode)[row])
        else:
            found = np.array(self._matches(frozenset(meant.split()), vocab.rank), dtype=np.int64)
            value = float(self._success_of(episode, found[None, :])[0]) if len(found) else 0.0
        if had_typo:
            value *= self.config.typo_recall
        cache[key] = value
        return value

    def _item_success(self, episode: Episode) -> np.ndarray:
        """Per item: P(satisfied click | examined), for this user; 0 before publication."""
        vocab = self._refresh()
        cached = episode.cache.get("items")
        if cached is not None and len(cached) == vocab.items:
            return np.asarray(cached)
        b, c = self.behaviour, self.config
        match = vocab.vectors @ episode.user.taste
        logits = (
            c.result_click_bias
            + b.taste_weight * match
            + b.attractiveness_weight * vocab.item_attractiveness
        )
        click = 1.0 / (1.0 + np.exp(-logits))
        satisfied = vocab.quality / (1.0 + np.exp(-b.satisfaction_sharpness * match))
        published = vocab.published <= episode.started_at.timestamp()
        value = np.where(published, click * satisfied, 0.0)
        episode.cache["items"] = value
        episode.cache["published"] = published
        return value

    def _success_of(self, episode: Episode, results: np.ndarray) -> np.ndarray:
        """Success of result rows (item indices in engine order, -1 padded)."""
        per_item = self._item_success(episode)
        published = episode.cache["published"]
        valid = results >= 0
        safe = np.where(valid, results, 0)
        shown = valid & published[safe]
        rank = np.cumsum(shown, axis=1) - 1
        shown &= rank < self.config.results_shown
        decay = self.behaviour.position_decay
        examined = np.where(shown, (1.0 + np.maximum(rank, 0)) ** -decay, 0.0)
        out: np.ndarray = 1.0 - np.prod(1.0 - examined * per_item[safe], axis=1)
        return out

    def _vocab_success(self, episode: Episode) -> np.ndarray:
        vocab = self._refresh()
        cached = episode.cache.get("vocab_success")
        if cached is None or len(cached) != len(vocab.keys):
            results = self._results_from(episode.started_at.timestamp())
            cached = self._success_of(episode, results)
            episode.cache["vocab_success"] = cached
        return np.asarray(cached)

    def _vocab_click(self, episode: Episode) -> np.ndarray:
        """P(click | examined) of every catalog query for this intent."""
        vocab = self._refresh()
        cached = episode.cache.get("vocab_click")
        if cached is not None and len(cached) == len(vocab.keys):
            return np.asarray(cached)
        c = self.config
        logits = c.click_bias + c.attractiveness_weight * vocab.attractiveness
        intent = set(episode.intent.split())
        rows = {r for w in intent for r in vocab.by_word.get(w, ())}
        for row in rows:
            words = vocab.words[row]
            logits[row] += c.relevance_weight * len(words & intent) / len(words | intent)
        value = 1.0 / (1.0 + np.exp(-logits))
        episode.cache["vocab_click"] = value
        return value

    def examination(self, k: int) -> np.ndarray:
        """P(position is examined | the list is looked at), for positions 0..k-1."""
        return (1.0 + np.arange(k)) ** -self.config.position_decay

    def truth(self, state: TypingState, queries: Sequence[str]) -> SuggestionTruth:
        """Expected click, success and saving of every position of a suggestion list."""
        episode = state.episode
        cache: dict[tuple[int, tuple[str, ...]], SuggestionTruth]
        cache = episode.cache.setdefault("truth", {})
        key = (state.typed_chars, tuple(queries))
        if key not in cache:
            cache[key] = self._truth(state, queries)
        return cache[key]

    def _truth(self, state: TypingState, queries: Sequence[str]) -> SuggestionTruth:
        episode = state.episode
        typed_success = self.success_probability(episode, episode.typed)
        if not queries:
            empty = np.zeros(0)
            return SuggestionTruth(empty, empty, empty, typed_success)
        ec = self.examination(len(queries)) * np.array(
            [self.click_given_examined(episode, q) for q in queries]
        )
        none_before = np.concatenate(([1.0], np.cumprod(1.0 - ec)[:-1]))
        click = self.config.look_probability * ec * none_before
        success = np.array([self.success_probability(episode, q) for q in queries])
        saved = np.array([max(0, len(query_key(q)) - state.typed_chars) for q in queries], float)
        return SuggestionTruth(click, success, saved, typed_success)

    def best_lists(
        self, state: TypingState, k: int, against: Sequence[Sequence[str]] = ()
    ) -> tuple[list[str], list[str]]:
        """The world's best suggestion lists of ``k`` for a state.

        The first has the most expected clicks, and is exact: examination depends only on
        position and a click only on the query, so the ``k`` most clickable queries in
        that order are best. The second has the most expected success: a local optimum
        (greedy, then replacements and swaps) over the catalog queries most worth a click
        and the queries of ``against`` (say, the lists served in that state), and never
        below any list of ``against``. Both know the intent, and no prefix binds them.
        """
        if k <= 0:
            return [], []
        episode = state.episode
        vocab = self._refresh()
        lists = [[query_key(q) for q in queries][:k] for queries in against]
        extra = list(dict.fromkeys(q for queries in lists for q in queries if q))
        clicks = {q: self.click_given_examined(episode, q) for q in extra}
        top: list[str] | None = episode.cache.get(f"top{k}")
        if top is None:
            click_all = self._vocab_click(episode)
            rows = np.argsort(-click_all, kind="stable")[:k]
            top = episode.cache[f"top{k}"] = [vocab.keys[int(r)] for r in rows]
        clicks.update({q: self.click_given_examined(episode, q) for q in top})
        by_click = sorted(clicks, key=lambda q: (-clicks[q], q))[:k]
        by_success = self._best_success(state, k, extra)
        value = self.truth(state, by_success).expected_success
        for queries in lists:
            if self.truth(state, queries).expected_success > value:
                by_success, value = queries, self.truth(state, queries).expected_success
        return by_click, by_success

    def _best_success(self, state: TypingState, k: int, extra: list[str]) -> list[str]:
        episode = state.episode
        start: list[str] | None = episode.cache.get(f"best{k}")
        if start is None:
            vocab = self._refresh()
            v0 = self.success_probability(episode, episode.typed)
            gain = self._vocab_success(episode) - v0
            click = self._vocab_click(episode)
            rows = np.flatnonzero(gain > 0)
            by_worth = np.argsort(-(click[rows] * gain[rows]), kind="stable")
            pool_rows = set(rows[by_worth[: 3 * k]])
            pool_rows |= set(rows[np.argsort(-gain[rows], kind="stable")[:k]])
            pool = sorted(vocab.keys[int(r)] for r in pool_rows)
            start = self._improve(episode, [], pool, k)
            episode.cache[f"best{k}"] = start
        # Only a query more worth a click than the least of the list may improve it.
        v0 = self.success_probability(episode, episode.typed)

        def worth(q: str) -> float:
            return self.click_given_examined(episode, q) * (
                self.success_probability(episode, q) - v0
            )

        floor = min(map(worth, start)) if len(start) == k else 0.0
        fresh = [q for q in extra if q not in start and worth(q) > floor]
        return self._improve(episode, start, fresh, k) if fresh else list(start)

    def _improve(self, episode: Episode, start: list[str], pool: list[str], k: int) -> list[str]:
        """Greedy filling, then replacements and swaps while any raises expected success."""
        v0 = self.success_probability(episode, episode.typed)
        e = self.examination(k)
        stats = {
            q: (self.click_given_examined(episode, q), self.success_probability(episode, q) - v0)
            for q in [*start, *pool]
        }

        def value(order: list[str]) -> float:
            total, none_before = 0.0, 1.0
            for n, q in enumerate(order):
                c, g = stats[q]
                total += none_before * e[n] * c * g
                none_before *= 1.0 - e[n] * c
            return total

        best = [q for q in start if stats[q][1] > 0]
        candidates = [q for q in pool if stats[q][1] > 0 and q not in best]
        while len(best) < k and candidates:
            # Appending a query with a positive gain always adds value.
            pick = max(candidates, key=lambda q: (value([*best, q]), q))
            best.append(pick)
            candidates.remove(pick)
        current = value(best)
        improved = True
        while improved:
            improved = False
            trials = [
                [*best[:n], q, *best[n + 1 :]] for n in range(len(best)) for q in candidates
            ] + [
                [*best[:n], best[m], *best[n + 1 : m], best[n], *best[m + 1 :]]
                for n in range(len(best))
                for m in range(n + 1, len(best))
            ]
            for trial in trials:
                if value(trial) > current + 1e-15:
                    best, current, improved = trial, value(trial), True
                    candidates = [q for q in candidates if q not in best]
                    candidates += [
                        q
                        for q in stats
                        if q not in best and q not in candidates and stats[q][1] > 0
                    ]
                    break
        return best

    # -- sampling ----------------------------------------------------------------------

    def choose(
        self, state: TypingState, queries: Sequence[str], rng: np.random.Generator
    ) -> ListChoice:
        """Sample what the user does with one list, by the same probabilities as ``truth``."""
        if rng.random() >= self.config.look_probability:
            return ListChoice(False, None)
        examination = self.examination(len(queries))
        for k, query in enumerate(queries):
            if rng.random() < examination[k] and rng.random() < self.click_given_examined(
                state.episode, query
            ):
                return ListChoice(True, k)
        return ListChoice(True, None)

    def engaged_item(
        self, episode: Episode, query: str, rng: np.random.Generator
    ) -> tuple[str, int] | None:
        """After a successful search: the result engaged with and its position, drawn by
        its chance of a satisfied click."""
        meant, _ = self.corrected(query)
        found = self._matches(frozenset(meant.split()), self._refresh().rank)
        per_item = self._item_success(episode)
        shown = [n for n in found if episode.cache["published"][n]][: self.config.results_shown]
        if not shown:
            return None
        weights = self.examination(len(shown)) * per_item[shown]
        if weights.sum() <= 0:
            return None
        k = int(rng.choice(len(shown), p=weights / weights.sum()))
        return self.world.items[shown[k]].item_id, k


class MostPopularCompletion:
    """The baseline every paper uses: the queries submitted so far that start with what was
    typed, most submitted first (ties alphabetical)."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._counts: dict[str, int] = {}

    def add(self, query: str) -> None:
        """Count one submitted search."""
        key = query_key(query)
        if not key:
            return
        if key not in self._counts:
            bisect.insort(self._keys, key)
            self._counts[key] = 0
        self._counts[key] += 1

    def complete(self, prefix: str, k: int) -> list[str]:
        """The ``k`` most submitted queries that start with ``prefix`` (spaces collapsed)."""
        typed = " ".join(prefix.casefold().split()) + (" " if prefix[-1:].isspace() else "")
        typed = typed.lstrip()
        lo = bisect.bisect_left(self._keys, typed)
        hi = bisect.bisect_left(self._keys, typed + "\U0010ffff")
        return heapq.nsmallest(k, self._keys[lo:hi], key=lambda q: (-self._counts[q], q))

    def __len__(self) -> int:
        return len(self._keys)


# -- figures -------------------------------------------------------------------------------

SEARCH_COUNTS = (
    "sessions",
    "searches",
    "from_suggestion",
    "successes",
    "expected_success",
    "reformulations",
    "abandoned",
    "query_chars",
    "typed_chars",
    "saved_chars",
    "lists",
    "empty_lists",
    "fallbacks",
    "clicks",
    "expected_clicks",
    "baseline_clicks",
    "oracle_clicks",
    "success_value",
    "baseline_success_value",
    "oracle_success_value",
    "expected_saved",
    "baseline_saved",
    "oracle_saved",
)


@dataclass
class SearchDayStats:
    """One variant's search figures for one day: counts, summed expectations, latencies."""

    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SEARCH_COUNTS, 0.0))
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, name: str, value: float = 1.0) -> None:
        """Add to one count."""
        self.counts[name] += value

    def summary(self) -> dict[str, float]:
        """The counts, their rates (``search_rates``) and the latency percentiles."""
        latencies = sorted(self.latencies_ms) or [0.0]
        return {
            **self.counts,
            **search_rates(self.counts),
            "latency_p50_ms": statistics.median(latencies),
            "latency_p99_ms": latencies[
                min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))
            ],
        }


def search_rates(counts: dict[str, float]) -> dict[str, float]:
    """Rates from summed counts: per suggestion list (CTR, success value, characters saved)
    for the served list, the most-popular-completion baseline and the world's best list;
    per submitted search (success, suggestion use, reformulation, abandonment); and the
    share of the submitted queries' characters not typed (keystrokes saved)."""
    lists = max(1.0, counts["lists"])
    searches = max(1.0, counts["searches"])
    return {
        "suggestion_ctr": counts["clicks"] / lists,
        "true_suggestion_ctr": counts["expected_clicks"] / lists,
        "baseline_suggestion_ctr": counts["baseline_clicks"] / lists,
        "oracle_suggestion_ctr": counts["oracle_clicks"] / lists,
        "list_success": counts["success_value"] / lists,
        "baseline_list_success": counts["baseline_success_value"] / lists,
        "oracle_list_success": counts["oracle_success_value"] / lists,
        "saved_per_list": counts["expected_saved"] / lists,
        "baseline_saved_per_list": counts["baseline_saved"] / lists,
        "oracle_saved_per_list": counts["oracle_saved"] / lists,
        "success_rate": counts["successes"] / searches,
        "true_success_rate": counts["expected_success"] / searches,
        "suggestion_use": counts["from_suggestion"] / searches,
        "reformulation_rate": counts["reformulations"] / searches,
        "abandon_rate": counts["abandoned"] / searches,
        "keystrokes_saved": counts["saved_chars"] / max(1.0, counts["query_chars"]),
        "empty_list_share": counts["empty_lists"] / lists,
        "fallback_share": counts["fallbacks"] / lists,
    }


def typing_times(episode: Episode, config: SearchConfig, rng: np.random.Generator) -> np.ndarray:
    """Seconds from the episode's start until ``t`` characters are typed, for every ``t``:
    a second to focus the box, then a drawn pause per keystroke."""
    low, high = config.keystroke_s
    pauses = np.concatenate(([1.0], rng.uniform(low, high, size=len(episode.typed))))
    out: np.ndarray = np.cumsum(pauses)
    return out

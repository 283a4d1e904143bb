"""The suggestion surface's rules: what may never be suggested, and what is one query twice.

Each rule takes the scored list (best first) and returns what it keeps and what it
filtered, with why; the pipeline runs them in this order and never skips a mandatory one:

- ``safety`` (mandatory): what the app's ``SafetyFilter`` refuses: blocked terms and
  patterns (configured, and the admin blocklist), sensitive topics, personal data and its
  tags, allow-list mode.
- ``k_anonymity`` (mandatory): a query with fewer than ``min_users`` distinct searchers,
  in the model or in the live overlay of searches since its cut-off, that the catalog does
  not name. The model never holds one, nor does the live source recall one; the rule holds
  if the setting was raised since, and for any query neither knows. The user's own
  searches are exempt: they are shown only to them.
- ``min_length``: queries shorter than ``min_query_chars``.
- ``zero_result``: queries searched ``zero_result_min_searches`` times or more in the
  window and never followed by engagement (for a query only the overlay holds: since the
  model's cut-off).
- ``duplicate``: a query whose words, each made singular, are those of a query above it in
  any order, or spell it without spaces ("running shoe" and "shoes running" under "running
  shoes", "iphone15" under "iphone 15").

``Filtered`` entries are the per-request audit that ``debug=true`` returns. A query refused
for personal data is shown there scrubbed (``<email>``...), never as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from recloop.suggest.live import LiveQueries
from recloop.suggest.model import SuggestionModel
from recloop.suggest.normalize import locale_rules
from recloop.suggest.safety import SafetyFilter
from recloop.suggest.scoring import ScoredQuery

# Languages whose plurals mostly end in -s: singular/plural dedupe strips it there (and
# in English, the -es and -ies forms too). Elsewhere only word order and spacing count.
_S_PLURALS = frozenset({"", "en", "fr", "es", "pt", "ca", "nl"})


@dataclass(frozen=True, slots=True)
class Filtered:
    """One query a rule kept from the list, and why."""

    query: str
    rule: str
    detail: str
    source: str


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What rules read besides the list."""

    locale: str | None
    model: SuggestionModel | None
    explain: bool = False  # report every reason (debug), not only the first
    live: LiveQueries | None = None  # searches since the model's cut-off


class QueryRule(Protocol):
    """Keeps some of a scored list, best first, and says why it dropped the rest."""

    name: str
    mandatory: bool

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """The kept queries (in order) and the filtered ones."""
        ...


class SafetyRule:
    """Refuses what the safety filter refuses (``suggest.safety``), in the request's locale."""

    name = "safety"
    mandatory = True

    def __init__(self, safety: SafetyFilter) -> None:
        self.safety = safety

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """Keep the allowed queries."""
        kept: list[ScoredQuery] = []
        filtered: list[Filtered] = []
        for q in queries:
            verdict = self.safety.check(q.display, ctx.locale, explain=ctx.explain)
            if verdict.allowed:
                kept.append(q)
                continue
            shown = q.display
            if any(r.rule == "pii" for r in verdict.reasons):
                shown = self.safety.scrub(q.display).text
            detail = "; ".join(
                f"{r.rule}: {r.topic + ' / ' if r.topic else ''}{r.detail} ({r.scope})"
                for r in verdict.reasons
            )
            filtered.append(Filtered(shown, self.name, detail, q.source))
        return kept, filtered


class KAnonymityRule:
    """Refuses queries searched by fewer than ``min_users`` people (see the module docstring)."""

    name = "k_anonymity"
    mandatory = True

    def __init__(self, min_users: int) -> None:
        self.min_users = min_users

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """Keep queries with enough users (in the model or since its cut-off), from the
        catalog, or the user's own."""
        model = ctx.model
        kept: list[ScoredQuery] = []
        filtered: list[Filtered] = []
        for q in queries:
            own = any(s in ("session", "recent") for s in q.sources)
            row = q.row if model is not None else None
            catalog = model is not None and row is not None and bool(model.stats.catalog[row])
            # The model's users and the overlay's may be the same people: either count
            # must reach min_users on its own.
            users = max(
                int(model.stats.users[row]) if model is not None and row is not None else 0,
                ctx.live.users(q.key) if ctx.live is not None else 0,
            )
            if own or catalog or users >= self.min_users:
                kept.append(q)
            else:
                filtered.append(
                    Filtered(
                        q.display,
                        self.name,
                        f"{users} users, fewer than {self.min_users}",
                        q.source,
                    )
                )
        return kept, filtered


class MinLengthRule:
    """Refuses queries shorter than ``min_chars`` characters."""

    name = "min_length"
    mandatory = False

    def __init__(self, min_chars: int) -> None:
        self.min_chars = min_chars

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """Keep queries of at least ``min_chars`` characters."""
        kept = [q for q in queries if len(q.display) >= self.min_chars]
        filtered = [
            Filtered(q.display, self.name, f"shorter than {self.min_chars} characters", q.source)
            for q in queries
            if len(q.display) < self.min_chars
        ]
        return kept, filtered


class ZeroResultRule:
    """Refuses queries whose searches never led to engagement over the window."""

    name = "zero_result"
    mandatory = False

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """Keep queries the model (or, for a query only it holds, the overlay) does not
        flag as zero-result."""
        model = ctx.model
        kept: list[ScoredQuery] = []
        filtered: list[Filtered] = []
        for q in queries:
            detail = None
            if model is not None and q.row is not None:
                if model.stats.zero_result[q.row]:
                    searches = int(model.stats.window_searches[q.row])
                    detail = f"{searches} searches in the window, none followed by engagement"
            elif ctx.live is not None:
                recent = ctx.live.get(q.key)
                if recent is not None and recent.zero_result:
                    detail = (
                        f"{recent.searches} searches since the model was built, none followed "
                        "by engagement"
                    )
            if detail is None:
                kept.append(q)
            else:
                filtered.append(Filtered(q.display, self.name, detail, q.source))
        return kept, filtered


def singular(word: str, language: str = "") -> str:
    """``word`` without a plural ending, by simple rules (see ``_S_PLURALS``)."""
    if language not in _S_PLURALS or len(word) <= 3 or not word.isalpha():
        return word
    if language in ("", "en"):
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith(("sses", "xes", "ches", "shes", "zes")):
            return word[:-2]
    if word.endswith(("ss", "us", "is")) or not word.endswith("s"):
        return word
    return word[:-1]


@functools.lru_cache(maxsize=65_536)
def dedupe_keys(key: str, language: str = "") -> tuple[str, str]:
    """Two keys under which near-duplicates of a match key meet: its singular words in
    sorted order, and the same words (in order) without spaces."""
    words = [singular(w, language) for w in key.split()]
    return " ".join(sorted(words)), "".join(words)


class DedupeRule:
    """Keeps the best-placed query of each group of near-duplicates."""

    name = "duplicate"
    mandatory = False

    def apply(
        self, queries: Sequence[ScoredQuery], ctx: RuleContext
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """Keep the first query of every dedupe key."""
        language = locale_rules(ctx.locale).language
        by_bag: dict[str, str] = {}
        by_compact: dict[str, str] = {}
        kept: list[ScoredQuery] = []
        filtered: list[Filtered] = []
        for q in queries:
            bag, compact = dedupe_keys(q.key, language)
            twin = by_bag.get(bag) or by_compact.get(compact)
            if twin is not None:
                filtered.append(
                    Filtered(q.display, self.name, f"a near-duplicate of {twin!r}", q.source)
                )
                continue
            by_bag[bag] = q.display
            by_compact.setdefault(compact, q.display)
            kept.append(q)
        return kept, filtered


def default_rules(safety: SafetyFilter, *, min_users: int, min_chars: int) -> tuple[QueryRule, ...]:
    """The rules in the order they run."""
    return (
        SafetyRule(safety),
        KAnonymityRule(min_users),
        MinLengthRule(min_chars),
        ZeroResultRule(),
        DedupeRule(),
    )

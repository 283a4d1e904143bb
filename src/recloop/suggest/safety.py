"""Which queries may be suggested: blocklists, patterns, sensitive topics, personal data,
an allow-list mode, and lists that apply only in some languages or regions.

``SafetyPolicy`` is configuration (typed data, checked when it is built); ``SafetyFilter``
compiles it once and answers ``check(query, locale) -> Verdict`` for serving and
``scrub(text) -> Scrubbed`` for ingestion. A new policy means a new filter: nothing in a
filter changes after it is built, so one filter is safe to share between threads and a
policy change is one reference swap.

What a check does, cheapest first, each with the reason it reports:

- ``invalid``: the query is empty after normalization or longer than ``MAX_QUERY_CHARS``.
- ``scrubbed``: the query holds a tag that ``scrub`` writes (``<email>`` …); a scrubbed
  query is never suggested.
- ``pii``: a detector of ``pii`` finds personal data in it.
- ``blocked_term``: a blocked term, compared as safety skeletons (see ``skeleton``), occurs
  in it as whole words, or the whole query is the term with any spacing.
- ``pattern``: a blocked regular expression (checked by ``regex_guard``, matched without
  regard to case) matches the normalized query or its skeleton words (look-alikes,
  diacritics, symbols and spelled-out letters undone; digits as written, see
  ``Skeleton.words``).
- ``sensitive_topic``: a term of a sensitive topic occurs in it, as for blocked terms.
  Not abuse, just not to be offered unasked (self-harm, for one).
- ``not_allowed``: allow-list mode is on and the query's match key is not on the list.

Terms and patterns of a policy override apply to the locales its key names: a language
("de"), a region in any language ("*-DE": jurisdictional lists), or both ("de-DE"). A
locale gets the global lists, then its language's override, then its region's, then its
exact one; each may add terms, patterns and topics, exempt terms and topics that the ones
before it added, and switch allow-list mode.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from recloop.errors import InvalidInput
from recloop.suggest.normalize import MAX_QUERY_CHARS, match_key, normalize, validate_query
from recloop.suggest.pii import TAGS, PiiConfig, Scrubbed, find_pii, scrub
from recloop.suggest.regex_guard import pattern_problem
from recloop.suggest.skeleton import (
    Skeleton,
    Tokens,
    collapsed,
    skeleton_of_normalized,
    term_skeleton,
)

#: At most this many patterns in one policy (each one runs on every check).
MAX_PATTERNS: Final = 200
#: At most this many terms in one list.
MAX_TERMS: Final = 100_000
GLOBAL: Final = "global"
# Spelled-out tokens are searched inside up to this length (every substring is a lookup).
_MAX_SPELLED: Final = 48

RuleKind = Literal[
    "invalid",
    "scrubbed",
    "pii",
    "blocked_term",
    "pattern",
    "sensitive_topic",
    "not_allowed",
]


def term_problem(term: str) -> str | None:
    """Why ``term`` cannot be a blocked term or a topic's term, or None when it can."""
    if len(term) > MAX_QUERY_CHARS:
        return f"a term has at most {MAX_QUERY_CHARS} characters"
    if not term_skeleton(term):
        return f"{term!r} has no letters or digits to match"
    return None


def _valid_term(term: str) -> str:
    problem = term_problem(term)
    if problem is not None:
        raise ValueError(problem)
    return term


def _valid_pattern(pattern: str) -> str:
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ValueError(f"pattern {pattern!r}: {problem}")
    return pattern


def _valid_query(query: str) -> str:
    try:
        validate_query(query)
    except InvalidInput as exc:
        raise ValueError(f"allowed query {query!r}: {exc.rule}") from exc
    return query


Term = Annotated[str, AfterValidator(_valid_term)]
Pattern = Annotated[str, AfterValidator(_valid_pattern)]
AllowedQuery = Annotated[str, AfterValidator(_valid_query)]
TopicName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
_OVERRIDE_KEY_RE: Final = re.compile(r"(\*|[a-z]{2,3})(?:-([a-z]{2}|[0-9]{3}))?")


class PolicyOverride(BaseModel):
    """What changes for the locales of one language, one region, or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocked_terms: tuple[Term, ...] = Field(default=(), max_length=MAX_TERMS)
    patterns: tuple[Pattern, ...] = Field(default=(), max_length=MAX_PATTERNS)
    sensitive_topics: dict[TopicName, tuple[Term, ...]] = Field(default_factory=dict)
    exempt_terms: tuple[Term, ...] = Field(default=(), max_length=MAX_TERMS)
    """Terms blocked by the lists before this one that are not blocked here."""
    exempt_topics: tuple[TopicName, ...] = ()
    """Sensitive topics that are not suppressed here."""
    allow_list_mode: bool | None = None
    """None: as the lists before this one say."""
    allowed_queries: tuple[AllowedQuery, ...] = Field(default=(), max_length=MAX_TERMS)


class SafetyPolicy(BaseModel):
    """The suggestion surface's safety configuration: global lists, personal-data
    detectors, and overrides by language, region or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocked_terms: tuple[Term, ...] = Field(default=(), max_length=MAX_TERMS)
    """Blocked words or phrases, matched as whole words after normalization, look-alike
    and leetspeak folding (see ``skeleton``)."""
    patterns: tuple[Pattern, ...] = Field(default=(), max_length=MAX_PATTERNS)
    """Blocked regular expressions (Python syntax, case-insensitive, checked for
    backtracking shapes by ``regex_guard``)."""
    sensitive_topics: dict[TopicName, tuple[Term, ...]] = Field(default_factory=dict)
    """Topic name → its terms; a query on a topic is not suggested."""
    allow_list_mode: bool = False
    """Suggest only the queries in ``allowed_queries`` (compared by match key)."""
    allowed_queries: tuple[AllowedQuery, ...] = Field(default=(), max_length=MAX_TERMS)
    pii: PiiConfig = PiiConfig()
    overrides: dict[str, PolicyOverride] = Field(default_factory=dict)
    """Keyed by "de" (a language), "*-DE" (a region) or "de-DE" (both)."""

    @field_validator("overrides")
    @classmethod
    def _canonical_keys(cls, overrides: dict[str, PolicyOverride]) -> dict[str, PolicyOverride]:
        out: dict[str, PolicyOverride] = {}
        for key, override in overrides.items():
            match = _OVERRIDE_KEY_RE.fullmatch(key.strip().lower().replace("_", "-"))
            if match is None or match.group() == "*":
                raise ValueError(
                    f"override key {key!r}: use a language (de), a region (*-DE) or both (de-DE)"
                )
            language, region = match.groups()
            canonical = language + (f"-{region.upper()}" if region else "")
            if canonical in out:
                raise ValueError(f"override key {key!r} repeats {canonical!r}")
            out[canonical] = override
        return out


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule a query broke: which rule, what in it (the term, pattern or topic as
    configured, the personal-data kind, the tag), and which list it came from."""

    rule: RuleKind
    detail: str
    scope: str = GLOBAL
    """"global", or the override key ("de", "*-DE", "de-DE")."""
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a query may be suggested, and every reason it may not."""

    query: str
    """The query as checked (normalized)."""
    reasons: tuple[Reason, ...]

    @property
    def allowed(self) -> bool:
        """True when no rule was broken."""
        return not self.reasons


@dataclass(frozen=True, slots=True)
class _Entry:
    tokens: Tokens
    term: str
    scope: str
    topic: str | None = None


class _TermIndex:
    """Terms by their first skeleton token, and by their whole collapsed skeleton."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._by_first: dict[str, list[_Entry]] = {}
        self._by_collapsed: dict[str, list[_Entry]] = {}
        for entry in entries:
            self._by_first.setdefault(entry.tokens[0], []).append(entry)
            self._by_collapsed.setdefault(collapsed(entry.tokens), []).append(entry)

    def __bool__(self) -> bool:
        return bool(self._by_first)

    def find(self, skeleton: Skeleton, first_only: bool) -> list[_Entry]:
        """The entries that occur in any variant (whole tokens, in order), that equal a
        whole variant with its spaces removed, or that sit inside a spelled-out token."""
        found: list[_Entry] = []

        def add(entries: Iterable[_Entry]) -> bool:
            for entry in entries:
                if entry not in found:
                    found.append(entry)
                    if first_only:
                        return True
            return False

        for tokens in skeleton.variants:
            for i, token in enumerate(tokens):
                for entry in self._by_first.get(token, ()):
                    if tokens[i : i + len(entry.tokens)] == entry.tokens and add((entry,)):
                        return found
            if add(self._by_collapsed.get(collapsed(tokens), ())):
                return found
        for word in skeleton.spelled:
            word = word[:_MAX_SPELLED]
            for start in range(len(word)):
                for end in range(start + 1, len(word) + 1):
                    if add(self._by_collapsed.get(word[start:end], ())):
                        return found
        return found


@dataclass(frozen=True, slots=True)
class _Rules:
    """One locale's compiled lists."""

    blocked: _TermIndex
    topics: _TermIndex
    patterns: tuple[tuple[re.Pattern[str], str, str], ...]
    allow_list_mode: bool
    allow_scope: str
    allowed: frozenset[str]


def _locale_parts(locale: str | None) -> tuple[str, str]:
    """(language, region) of a BCP 47 tag: "de-Latn-AT" → ("de", "AT")."""
    subtags = (locale or "").strip().replace("_", "-").split("-")
    language = subtags[0].lower()
    region = next(
        (
            s.upper()
            for s in subtags[1:]
            if (len(s) == 2 and s.isalpha()) or (len(s) == 3 and s.isdigit())
        ),
        "",
    )
    return language, region


class SafetyFilter:
    """A compiled ``SafetyPolicy``: ``check`` for serving, ``scrub`` for ingestion."""

    _MAX_LOCALES: Final = 4096

    def __init__(self, policy: SafetyPolicy, *, cache_size: int = 16_384) -> None:
        """``cache_size`` verdicts are remembered (0: none): suggestions repeat from
        request to request, and a filter's verdict on a query never changes."""
        self._policy = policy
        self._by_keys: dict[tuple[str, ...], _Rules] = {}
        self._keys_by_locale: dict[str | None, tuple[str, ...]] = {}
        self._lists: dict[tuple[str, str | None, bool], dict[Tokens, _Entry]] = {}
        self._rules(None)  # compile the global lists now, not on the first request
        self._cached = functools.lru_cache(maxsize=cache_size)(self._check) if cache_size else None

    @property
    def policy(self) -> SafetyPolicy:
        """The policy this filter was compiled from."""
        return self._policy

    def scrub(self, text: str, locale: str | None = None) -> Scrubbed:
        """``text`` normalized, with personal data replaced by tags, and the findings."""
        return scrub(text, self._policy.pii, locale)

    def check(self, query: str, locale: str | None = None, *, explain: bool = True) -> Verdict:
        """Whether ``query`` may be suggested in ``locale``. With ``explain`` every broken
        rule is reported; without, the check stops at the first (cheaper, for serving)."""
        if self._cached is not None:
            return self._cached(query, locale, explain)
        return self._check(query, locale, explain)

    def _check(self, query: str, locale: str | None, explain: bool) -> Verdict:
        try:
            normalized = validate_query(query, locale)
        except InvalidInput as exc:
            return Verdict(normalize(query, locale), (Reason("invalid", exc.rule),))
        rules = self._rules(locale)
        reasons: list[Reason] = []
        first_only = not explain

        for tag in TAGS.values():
            if tag in normalized:
                reasons.append(Reason("scrubbed", tag))
                if first_only:
                    return Verdict(normalized, tuple(reasons))
        kinds = dict.fromkeys(f.kind for f in find_pii(normalized, self._policy.pii))
        for kind in kinds:
            reasons.append(Reason("pii", kind))
            if first_only:
                return Verdict(normalized, tuple(reasons))

        skeleton = skeleton_of_normalized(normalized)
        for entry in rules.blocked.find(skeleton, first_only) if rules.blocked else ():
            reasons.append(Reason("blocked_term", entry.term, entry.scope))
            if first_only:
                return Verdict(normalized, tuple(reasons))
        if rules.patterns:
            for compiled, source, scope in rules.patterns:
                if compiled.search(normalized) or compiled.search(skeleton.words):
                    reasons.append(Reason("pattern", source, scope))
                    if first_only:
                        return Verdict(normalized, tuple(reasons))
        for entry in rules.topics.find(skeleton, first_only) if rules.topics else ():
            reasons.append(Reason("sensitive_topic", entry.term, entry.scope, entry.topic))
            if first_only:
                return Verdict(normalized, tuple(reasons))
        if rules.allow_list_mode and match_key(normalized) not in rules.allowed:
            reasons.append(Reason("not_allowed", "allow-list mode", rules.allow_scope))
        return Verdict(normalized, tuple(reasons))

    # -- compiling -----------------------------------------------------------------------

    def _rules(self, locale: str | None) -> _Rules:
        keys = self._keys_by_locale.get(locale)
        if keys is None:
            keys = self._keys(locale)
            if len(self._keys_by_locale) >= self._MAX_LOCALES:
                self._keys_by_locale.clear()  # locales come from clients: bound the cache
            self._keys_by_locale[locale] = keys
        rules = self._by_keys.get(keys)
        if rules is None:
            rules = self._by_keys[keys] = self._compile(keys)
        return rules

    def _keys(self, locale: str | None) -> tuple[str, ...]:
        """The override keys that apply to ``locale``, broadest first."""
        language, region = _locale_parts(locale)
        candidates = (language, f"*-{region}", f"{language}-{region}") if region else (language,)
        return tuple(k for k in candidates if k in self._policy.overrides)

    def _compile(self, keys: tuple[str, ...]) -> _Rules:
        """The global lists, then each override of ``keys`` in turn."""
        policy = self._policy
        blocked = dict(self._entries(GLOBAL, policy.blocked_terms))
        topics = {
            topic: dict(self._entries(GLOBAL, terms, topic))
            for topic, terms in policy.sensitive_topics.items()
        }
        patterns = [(p, GLOBAL) for p in policy.patterns]
        allow_list_mode, allow_scope = policy.allow_list_mode, GLOBAL
        allowed = {match_key(q) for q in policy.allowed_queries}
        for key in keys:
            override = policy.overrides[key]
            for tokens in self._entries(key, override.exempt_terms, exempt=True):
                blocked.pop(tokens, None)
            blocked.update(self._entries(key, override.blocked_terms))
            for topic in override.exempt_topics:
                topics.pop(topic, None)
            for topic, terms in override.sensitive_topics.items():
                topics.setdefault(topic, {}).update(self._entries(key, terms, topic))
            patterns += [(p, key) for p in override.patterns]
            if override.allow_list_mode is not None:
                allow_list_mode, allow_scope = override.allow_list_mode, key
            allowed.update(match_key(q) for q in override.allowed_queries)
        return _Rules(
            blocked=_TermIndex(blocked.values()),
            topics=_TermIndex(e for terms in topics.values() for e in terms.values()),
            patterns=tuple((re.compile(p, re.IGNORECASE), p, scope) for p, scope in patterns),
            allow_list_mode=allow_list_mode,
            allow_scope=allow_scope,
            allowed=frozenset(allowed),
        )

    def _entries(
        self, scope: str, terms: tuple[str, ...], topic: str | None = None, *, exempt: bool = False
    ) -> dict[Tokens, _Entry]:
        """One list's entries by skeleton (blocked terms, exempt terms, or a topic's terms),
        computed once per filter: a list is reused by every locale it applies to."""
        list_key = (scope, topic, exempt)
        cached = self._lists.get(list_key)
        if cached is None:
            cached = {}
            for term in terms:
                tokens = term_skeleton(term)
                cached[tokens] = _Entry(tokens, term, scope, topic)
            self._lists[list_key] = cached
        return cached

"""Refuse blocklist patterns that could make a check slow, before they are used.

Python's ``re`` backtracks and has no time limit, and a pattern is run on every suggestion
of every request, so a configured pattern must be cheap on any text. Two bounds together
make it so: the text is short (a normalized query, at most ``MAX_QUERY_CHARS``), and the
pattern has none of the shapes that backtrack without end:

- a repeat (``*``, ``+``, ``{m,n}``) over anything but one character may contain no repeat
  (not even ``?``) and no alternation of its own: ``(a+)+``, ``(\\w+\\s?)*``, ``(a?a?)+``
  and ``(a|ab)*`` are refused, ``(?:ab)+``, ``(?:foo|bar)?`` and ``[a-z]+`` are fine;
- at most ``MAX_UNBOUNDED_REPEATS`` unbounded repeats in all (``.*a.*b.*c.*d`` is
  polynomial in the text's length with a high power);
- no backreferences;
- at most ``MAX_PATTERN_CHARS`` characters, no match on the empty query nor on every one of
  a few ordinary queries (a pattern that matches everything would block everything);
- and, as a last check of what the rules above miss, no probe text of ``MAX_QUERY_CHARS``
  characters may take it longer than ``PROBE_LIMIT_MS``.

The structure is read with the standard library's own regular-expression parser
(``re._parser``): it is private, but it is the only parser that agrees with ``re`` on every
pattern; a change to it would fail this module's tests, not pass a bad pattern.
"""

from __future__ import annotations

import re
import re._constants as sre  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
import time
from typing import Any, Final

from recloop.suggest.normalize import MAX_QUERY_CHARS

MAX_PATTERN_CHARS: Final = 256
MAX_UNBOUNDED_REPEATS: Final = 3
PROBE_LIMIT_MS: Final = 20.0
#: Texts that make backtracking patterns slow: long runs of one character with a
#: mismatch at the end, alternating characters, runs of spaces and digits.
PROBES: Final = (
    "a" * MAX_QUERY_CHARS,
    "a" * (MAX_QUERY_CHARS - 1) + "!",
    "ab" * (MAX_QUERY_CHARS // 2),
    "a " * (MAX_QUERY_CHARS // 2),
    " " * (MAX_QUERY_CHARS - 1) + "x",
    "0" * MAX_QUERY_CHARS,
    "é" * MAX_QUERY_CHARS,
)
#: Ordinary queries of which a pattern must leave at least one alone.
ORDINARY: Final = ("weather", "how to cook rice", "2024", "東京")

_SINGLE_CHAR_OPS: Final = frozenset({sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.CATEGORY})
_REPEAT_OPS: Final = frozenset({sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT})


class _Shape:
    """What a walk over a parsed pattern found."""

    def __init__(self) -> None:
        self.unbounded = 0
        self.problem: str | None = None


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` may not be used as a blocklist pattern, or None when it may."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"longer than {MAX_PATTERN_CHARS} characters"
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
        parsed = sre_parse.parse(pattern, re.IGNORECASE)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    shape = _Shape()
    _walk(parsed, shape)
    if shape.problem is None and shape.unbounded > MAX_UNBOUNDED_REPEATS:
        shape.problem = f"more than {MAX_UNBOUNDED_REPEATS} unbounded repeats (*, +, {{n,}}) in all"
    if shape.problem is not None:
        return shape.problem
    if compiled.search("") is not None:
        return "matches the empty query, so it would block every query"
    if all(compiled.search(q) for q in ORDINARY):
        return "matches every query (tried: " + ", ".join(ORDINARY) + ")"
    for probe in PROBES:
        # The best of three: a pattern is slow every time, a busy machine only sometimes.
        elapsed_ms = min(_time_ms(compiled, probe) for _ in range(3))
        if elapsed_ms > PROBE_LIMIT_MS:
            return f"too slow: {elapsed_ms:.0f} ms on a {len(probe)}-character probe"
    return None


def _time_ms(compiled: re.Pattern[str], text: str) -> float:
    start = time.perf_counter()
    compiled.search(text)
    return (time.perf_counter() - start) * 1000


def _walk(items: Any, shape: _Shape) -> None:
    for op, av in items:
        if shape.problem is not None:
            return
        if op in _REPEAT_OPS:
            _, high, body = av
            if high == sre.MAXREPEAT:
                shape.unbounded += 1
            single = len(body) == 1 and body[0][0] in _SINGLE_CHAR_OPS
            if high > 1 and not single and _has_choice(body):
                shape.problem = (
                    "a repeated group holds a repeat or an alternation of its own "
                    "(nested quantifiers backtrack without end)"
                )
                return
            _walk(body, shape)
        elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            shape.problem = "backreferences are not allowed"
        elif op == sre.SUBPATTERN:
            _walk(av[-1], shape)
        elif op == sre.BRANCH:
            for branch in av[1]:
                _walk(branch, shape)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(av[1], shape)
        elif op == sre.ATOMIC_GROUP:
            _walk(av, shape)


def _has_choice(items: Any) -> bool:
    """Whether a parsed body holds a repeat (even an optional one: ``(a?a?)+`` is
    ``(a|aa)+``) or an alternation."""
    for op, av in items:
        if op in _REPEAT_OPS or op == sre.BRANCH:
            return True
        elif op == sre.SUBPATTERN:
            if _has_choice(av[-1]):
                return True
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            if _has_choice(av[1]):
                return True
        elif op == sre.ATOMIC_GROUP and _has_choice(av):
            return True
    return False

"""Team-draft interleaving of two rankings: the draft that serves one list from two.

Team draft (Radlinski, Kurup and Joachims, 2008): the two rankers are team captains. While
the list is short of ``k``, the team with fewer picks (a coin decides between equal
counts) adds its highest-ranked item not yet shown, and the item remembers its team. One
departure from the 2008 algorithm: the rankings' common prefix (the items both rank
identically from the top) is shown first and credited to neither team. Clicks there say
nothing about which ranker is better; left to the coin they would only add noise, and
identical rankings would produce random wins instead of ties.

This is the request-path half; crediting clicks and the preference test live in
``recloop.analysis.interleaving``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Team(StrEnum):
    """The ranker an interleaved item was drafted from."""

    A = "A"
    B = "B"


@dataclass(frozen=True, slots=True)
class Interleaving:
    """An interleaved list and, position by position, the team that contributed each item."""

    items: tuple[str, ...]
    teams: tuple[Team | None, ...]  # None: the shared prefix, credited to neither team

    def team_items(self, team: Team) -> tuple[str, ...]:
        """The items ``team`` contributed, in list order."""
        return tuple(i for i, t in zip(self.items, self.teams, strict=True) if t is team)

    def to_dict(self) -> dict[str, Any]:
        """The interleaving as JSON types."""
        return {
            "items": list(self.items),
            "teams": [None if t is None else t.value for t in self.teams],
        }


def seeded_rng(seed: int | str | bytes) -> np.random.Generator:
    """A generator from a stable hash of ``seed`` (e.g. a request id), to replay a request.

    Python's ``hash`` of a string changes between processes; BLAKE2 does not.
    """
    data = seed if isinstance(seed, bytes) else str(seed).encode()
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _unique(ranking: Sequence[str]) -> list[str]:
    # A ranking that repeats an item keeps its first (best) rank.
    return list(dict.fromkeys(ranking))


def team_draft(
    ranking_a: Sequence[str],
    ranking_b: Sequence[str],
    k: int,
    *,
    rng: np.random.Generator | None = None,
    seed: int | str | bytes | None = None,
) -> Interleaving:
    """Interleave two rankings by team draft, up to ``k`` items (fewer if both run out).

    Give ``rng`` or ``seed`` (exactly one); the same seed gives the same list. An item both
    rankings hold is shown once, for the team that drafts it first; the common prefix goes
    to neither team. When one ranking runs out, the other keeps drafting, so the team counts
    stay within one of each other only while both have items left.
    """
    if k < 0:
        raise ValueError("k must be non-negative")
    if rng is not None and seed is None:
        generator = rng
    elif rng is None and seed is not None:
        generator = seeded_rng(seed)
    else:
        raise ValueError("give exactly one of rng and seed")
    lists = {Team.A: _unique(ranking_a), Team.B: _unique(ranking_b)}
    cursor = {Team.A: 0, Team.B: 0}
    picks = {Team.A: 0, Team.B: 0}
    shown: set[str] = set()
    items: list[str] = []
    teams: list[Team | None] = []
    for item_a, item_b in zip(lists[Team.A], lists[Team.B], strict=False):
        if item_a != item_b or len(items) == k:
            break
        shown.add(item_a)
        items.append(item_a)
        teams.append(None)

    def has_next(team: Team) -> bool:
        ranking = lists[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return cursor[team] < len(ranking)

    while len(items) < k:
        a_left, b_left = has_next(Team.A), has_next(Team.B)
        if not (a_left or b_left):
            break
        if picks[Team.A] != picks[Team.B]:
            team = Team.A if picks[Team.A] < picks[Team.B] else Team.B
        else:
            team = Team.A if generator.random() < 0.5 else Team.B
        if not (a_left if team is Team.A else b_left):
            team = Team.B if team is Team.A else Team.A
        item = lists[team][cursor[team]]
        shown.add(item)
        items.append(item)
        teams.append(team)
        picks[team] += 1
    return Interleaving(tuple(items), tuple(teams))

"""Interleaving's click credit and the per-user preference test (the draft itself is
``recloop.experiments.team_draft``).

A click credits the team of the clicked item; per impression the team with more clicks
wins, and an impression with clicks but equal credit ties. Clicks on the rankings' shared
prefix are credited to neither team.

Over many impressions the preference is Chapelle et al.'s (2012)
``delta_AB = (wins_A + ties / 2) / (wins_A + wins_B + ties) - 1/2``, counting only impressions
with a click (one without carries no preference). It is positive when A is preferred. As
the user is the randomisation unit, its interval comes from the delta method over per-user
sums, and its test is a sign test over users: each user with clicks prefers A, B, or
neither, by their own impressions' wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from recloop.analysis.stats import (
    DEFAULT_ALPHA,
    check_alpha,
    delta_method_ratio_variance,
    jsonable,
)
from recloop.experiments.team_draft import Interleaving, Team


class Outcome(StrEnum):
    """Which team one impression's clicks favour."""

    A_WINS = "A"
    B_WINS = "B"
    TIE = "tie"
    NO_CLICKS = "no clicks"


@dataclass(frozen=True, slots=True)
class Credit:
    """One impression's clicks per team, and on the shared prefix (credited to neither)."""

    clicks_a: int
    clicks_b: int
    shared_clicks: int = 0

    @property
    def outcome(self) -> Outcome:
        """The team with more clicks wins; any clicks with equal credit tie."""
        if self.clicks_a == self.clicks_b:
            clicked = self.clicks_a + self.shared_clicks > 0
            return Outcome.TIE if clicked else Outcome.NO_CLICKS
        return Outcome.A_WINS if self.clicks_a > self.clicks_b else Outcome.B_WINS

    def to_dict(self) -> dict[str, Any]:
        """The credit as JSON types, with the outcome."""
        return dict(jsonable(self), outcome=self.outcome.value)


def credit(interleaving: Interleaving, clicked_positions: Iterable[int]) -> Credit:
    """Credit each clicked position (0 is the top; repeats count once) to its item's team."""
    positions = set(clicked_positions)
    if any(not 0 <= p < len(interleaving.teams) for p in positions):
        raise ValueError("a clicked position lies outside the interleaved list")
    teams = [interleaving.teams[p] for p in positions]
    return Credit(teams.count(Team.A), teams.count(Team.B), teams.count(None))


@dataclass(frozen=True, slots=True)
class InterleavingResult:
    """The preference between A and B over many users' impressions.

    ``delta`` is Chapelle et al.'s delta_AB over impressions with a click (positive: A
    preferred), with a normal interval whose variance is the delta method's over users.
    ``p_value`` is the two-sided exact sign (binomial) test of users preferring A against
    users preferring B; users with no preference are left out of it.
    """

    users: int
    impressions: int
    wins_a: int
    wins_b: int
    ties: int
    delta: float
    delta_ci: tuple[float, float]
    users_prefer_a: int
    users_prefer_b: int
    users_tied: int
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        """Whether the sign test over users rejects "no preference" at ``alpha``."""
        return self.p_value < self.alpha

    @property
    def winner(self) -> Team | None:
        """The preferred team when the preference is significant, else ``None``."""
        if not self.significant or self.users_prefer_a == self.users_prefer_b:
            return None
        return Team.A if self.users_prefer_a > self.users_prefer_b else Team.B

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON types, with ``significant`` and ``winner``."""
        return dict(jsonable(self), significant=self.significant, winner=jsonable(self.winner))


def aggregate_counts(
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
    *,
    impressions: int | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> InterleavingResult:
    """Aggregate per-user counts of impressions won by A, won by B, and tied (one row a user).

    ``impressions`` is the total shown, clicked or not (for the record only; defaults to the
    clicked ones).
    """
    check_alpha(alpha)
    a = np.asarray(wins_a, dtype=np.int64)
    b = np.asarray(wins_b, dtype=np.int64)
    t = np.asarray(ties, dtype=np.int64)
    if not a.shape == b.shape == t.shape or a.ndim != 1:
        raise ValueError("wins_a, wins_b and ties must be one row per user each")
    clicked = a + b + t
    total_a, total_b, total_t = int(a.sum()), int(b.sum()), int(t.sum())
    decided = total_a + total_b + total_t
    delta = (total_a + total_t / 2) / decided - 0.5 if decided else math.nan
    active = clicked > 0
    if int(active.sum()) >= 2:
        se = math.sqrt(delta_method_ratio_variance(a[active] + t[active] / 2, clicked[active]))
        crit = float(stats.norm.ppf(1 - alpha / 2))
        delta_ci = (delta - crit * se, delta + crit * se)
    else:
        delta_ci = (math.nan, math.nan)
    prefer_a = int(np.sum(a > b))
    prefer_b = int(np.sum(b > a))
    tied = int(np.sum(active & (a == b)))
    votes = prefer_a + prefer_b
    p_value = float(stats.binomtest(prefer_a, votes, 0.5).pvalue) if votes else 1.0
    return InterleavingResult(
        users=len(a),
        impressions=int(impressions) if impressions is not None else decided,
        wins_a=total_a,
        wins_b=total_b,
        ties=total_t,
        delta=delta,
        delta_ci=delta_ci,
        users_prefer_a=prefer_a,
        users_prefer_b=prefer_b,
        users_tied=tied,
        p_value=p_value,
        alpha=alpha,
    )


def aggregate(
    credits_by_user: Mapping[str, Sequence[Credit]], *, alpha: float = DEFAULT_ALPHA
) -> InterleavingResult:
    """Aggregate every user's impressions' credits into the preference and its test."""
    counts = np.zeros((len(credits_by_user), 3), dtype=np.int64)
    impressions = 0
    column = {Outcome.A_WINS: 0, Outcome.B_WINS: 1, Outcome.TIE: 2}
    for row, user_credits in enumerate(credits_by_user.values()):
        impressions += len(user_credits)
        for c in user_credits:
            outcome = c.outcome
            if outcome is not Outcome.NO_CLICKS:
                counts[row, column[outcome]] += 1
    return aggregate_counts(
        counts[:, 0], counts[:, 1], counts[:, 2], impressions=impressions, alpha=alpha
    )

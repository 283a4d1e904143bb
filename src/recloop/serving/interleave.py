"""Interleaved serving: two teams' lists team-drafted into one, with logged propensities.

The draft is seeded by the request id, so a request replays. The propensity of an item at
its position is the draft's probability of putting it there given the two lists, estimated
from ``DRAWS`` more drafts plus the one served (so it is never zero); the teams' pipelines do
not explore, so the draft's coin is the only chance in the list.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from recloop.domain import ScoredItem
from recloop.experiments.team_draft import Team, seeded_rng, team_draft

#: Extra drafts behind each list's propensities.
DRAWS = 100
#: The team logged for the rankings' shared top, credited to neither variant.
SHARED = ""


def interleave_lists(
    a: Sequence[ScoredItem],
    b: Sequence[ScoredItem],
    teams: tuple[str, str],
    k: int,
    request_id: str,
) -> tuple[ScoredItem, ...]:
    """``k`` items team-drafted from ``a`` and ``b``, each naming its team (a variant, or
    ``SHARED``) and its propensity at its position."""
    ids_a = [i.item_id for i in a]
    ids_b = [i.item_id for i in b]
    drafted = team_draft(ids_a, ids_b, k, seed=request_id)
    rng = seeded_rng(f"{request_id}:propensity")
    seen: Counter[tuple[int, str]] = Counter()
    for _ in range(DRAWS):
        seen.update(enumerate(team_draft(ids_a, ids_b, k, rng=rng).items))
    by_id = {i.item_id: i for i in b} | {i.item_id: i for i in a}
    names = {Team.A: teams[0], Team.B: teams[1], None: SHARED}
    return tuple(
        dataclasses.replace(
            by_id[item_id],
            team=names[team],
            propensity=(seen[(position, item_id)] + 1) / (DRAWS + 1),
        )
        for position, (item_id, team) in enumerate(zip(drafted.items, drafted.teams, strict=True))
    )

"""What the bandit policies share: the request seed, the explore slots, and propensities.

Both bandits are *perturb-and-sort* policies: every candidate gets a random score (a
posterior draw for Thompson sampling, an upper confidence bound plus Gumbel noise for
LinUCB), and the explore slots are filled by the candidates with the highest scores, in
order. The served list is the first of ``1 + draws`` independent draws (all seeded by the
request id); the other ``draws`` are replays of the same random choice, and the share of
all ``1 + draws`` rows that put an item at a position is the Monte Carlo estimate of the
probability that the policy puts it there. Counting the served row makes the estimate at
least ``1 / (1 + draws)`` for a served item, never 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.features.candidates import FeatureMatrix

#: The reason given to an item the bandit served from below the ranker's first ``k``.
EXPLORED_REASON = "Something new to try"


def request_seed(request_id: str, salt: str) -> int:
    """A 64-bit seed from the request id, so a logged request replays exactly; the salt
    keeps policies that read the same request id on independent streams."""
    digest = hashlib.blake2b(f"{salt}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest)


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """How a slate of ``k`` is split: the ranker's head, kept in order, and the candidates
    for the explore slots that follow it."""

    head: tuple[ScoredItem, ...]
    candidates: tuple[ScoredItem, ...]
    slots: int
    k: int  # the ranker's cut: a candidate with slate index >= k was explored into the list


def plan_slots(slate: Slate, k: int, pool: int, explore_slots: int | None) -> SlotPlan:
    """The first ``k - explore_slots`` items keep their positions (all ``k`` positions are
    explored when ``explore_slots`` is None); the remaining slots draw from the rest of the
    first ``max(pool, k)`` items, so the list is always ``min(k, len(slate))`` long."""
    k = max(0, min(k, len(slate.items)))
    slots = k if explore_slots is None else min(max(explore_slots, 0), k)
    window = slate.items[: max(pool, k)]
    head = window[: k - slots]
    return SlotPlan(head=head, candidates=window[k - slots :], slots=slots, k=k)


def top_by_draws(draws: np.ndarray, m: int) -> np.ndarray:
    """Per row of ``draws`` (rows x candidates), the indices of the ``m`` highest, highest
    first: shape (rows, m)."""
    n = draws.shape[1]
    if m >= n:
        out: np.ndarray = np.argsort(-draws, axis=1, kind="stable")[:, :m]
        return out
    part = np.argpartition(-draws, m - 1, axis=1)[:, :m]
    order = np.argsort(-np.take_along_axis(draws, part, axis=1), axis=1, kind="stable")
    picked: np.ndarray = np.take_along_axis(part, order, axis=1)
    return picked


def position_frequencies(top: np.ndarray, n: int) -> np.ndarray:
    """Share of the rows of ``top`` (rows x slots) that put candidate ``i`` in slot ``j``:
    shape (n, slots); each column sums to 1."""
    rows, slots = top.shape
    freq = np.zeros((n, slots))
    for j in range(slots):
        freq[:, j] = np.bincount(top[:, j], minlength=n) / rows
    return freq


def head_only(plan: SlotPlan) -> Slate:
    """The ranker's head with propensity 1: nothing is left to explore."""
    return Slate(tuple(dataclasses.replace(item, propensity=1.0) for item in plan.head))


def assemble(plan: SlotPlan, top: np.ndarray) -> Slate:
    """The head with propensity 1, then the candidates of the served row (``top[0]``), each
    with the share of all rows of ``top`` that put it in its slot."""
    served = [dataclasses.replace(item, propensity=1.0) for item in plan.head]
    first = top[0]
    offset = len(plan.head)
    for j, index in enumerate(first.tolist()):
        item = plan.candidates[index]
        share = float(np.count_nonzero(top[:, j] == index)) / top.shape[0]
        reason = EXPLORED_REASON if offset + index >= plan.k else item.reason
        served.append(dataclasses.replace(item, propensity=share, reason=reason))
    return Slate(tuple(served))


@dataclass(frozen=True, slots=True)
class PositionProbabilities:
    """The estimated probability of every candidate at every served position.

    ``probabilities[i, j]`` is the share of the policy's draws that put ``item_ids[i]`` at
    position ``j``: the propensities ``explore`` logs are the entries of its served items,
    and off-policy evaluation can read the entry of any logged item as the target policy's
    probability of that action.
    """

    item_ids: tuple[str, ...]
    probabilities: np.ndarray  # (len(item_ids), served positions)


def position_probabilities(plan: SlotPlan, top: np.ndarray | None) -> PositionProbabilities:
    """The head's fixed positions (probability 1) and the candidates' shares of ``top``."""
    head = len(plan.head)
    ids = tuple(item.item_id for item in plan.head)
    if top is None:
        return PositionProbabilities(ids, np.eye(head))
    ids += tuple(item.item_id for item in plan.candidates)
    matrix = np.zeros((len(ids), head + plan.slots))
    matrix[:head, :head] = np.eye(head)
    matrix[head:, head:] = position_frequencies(top, len(plan.candidates))
    return PositionProbabilities(ids, matrix)


class DrawnSlots:
    """A bandit that fills the explore slots from seeded draws: ``_draw`` gives the plan and
    the top candidates of every draw (the served one first); the rest is shared. A bandit
    that scores candidates by their feature rows reads ``features`` (the matrix the
    pipeline ranked with); the others ignore it."""

    def _draw(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None = None
    ) -> tuple[SlotPlan, np.ndarray]:
        raise NotImplementedError

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """``min(k, len(slate))`` items: the kept head, then the explore slots from the
        served draw, each with its estimated probability of being at that position."""
        return self._explore(slate, ctx, k, None)

    def position_probabilities(
        self, slate: Slate, ctx: RequestContext, k: int
    ) -> PositionProbabilities:
        """The estimated probability of every candidate at every position (the same draws
        ``explore`` uses for this request)."""
        return self._position_probabilities(slate, ctx, k, None)

    def _explore(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None
    ) -> Slate:
        plan, top = self._draw(slate, ctx, k, features)
        return head_only(plan) if plan.slots == 0 else assemble(plan, top)

    def _position_probabilities(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None
    ) -> PositionProbabilities:
        plan, top = self._draw(slate, ctx, k, features)
        return position_probabilities(plan, top if plan.slots else None)

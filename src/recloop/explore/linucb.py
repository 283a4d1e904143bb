"""LinUCB with a shared linear model, randomised so every served position has a propensity.

One ridge regression ``reward ≈ x · theta`` is shared by all items (the arms are items
described by feature rows, so a new item needs no arm of its own); an item's upper
confidence bound is ``x · theta + alpha * sqrt(x' A^-1 x)`` with ``A = ridge * I + sum x x'``.

Plain LinUCB serves the highest bounds, a deterministic choice whose logs carry propensity
1 and are useless to off-policy evaluation of any other policy. Here the explore slots are
filled by a Plackett-Luce draw with weights ``exp(ucb / temperature)``: the first slot takes
item ``i`` with probability ``softmax(ucb / temperature)_i``, the next one the same over the
items left, and so on (sampled as the top of ``ucb / temperature + Gumbel noise``). A small
temperature is nearly greedy on the bound; a large one nearly uniform. The logged
propensity is, as for Thompson sampling, the Monte Carlo estimate of the probability that
the item lands at that position, marginal over the earlier positions (see
``recloop.explore.drawn_slots``).

Two policies share that draw:

- ``LinUCB`` learns online (``update``) from rows a ``FeatureProvider`` gives: a library
  policy for simulations (``benchmarks/bandit_regret.py``);
- ``TrainedLinUCB`` is the one serving builds (``exploration = { name = "linucb" }``): its
  evidence is fitted each night by ``recloop train`` on the logged impressions and loaded
  with the model version (``recloop.features.bandit_context.ContextEvidence``, per app), and
  its rows are the context of ``recloop.features.bandit_context``, computed from the
  feature matrix the pipeline ranked the request with.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.explore.drawn_slots import (
    DrawnSlots,
    PositionProbabilities,
    SlotPlan,
    plan_slots,
    request_seed,
    top_by_draws,
)
from recloop.features.bandit_context import CONTEXT_FEATURES, ContextEvidence, serving_context
from recloop.features.candidates import FeatureMatrix

log = logging.getLogger(__name__)


class FeatureProvider(Protocol):
    """The feature rows the online-learning ``LinUCB`` scores: one row per item."""

    def features(self, items: Sequence[ScoredItem], ctx: RequestContext) -> np.ndarray:
        """A float array of shape (len(items), dim) for the items in this request."""
        ...


class LinUCBParams(BaseModel):
    """Confidence width ``alpha``, ridge prior, softmax ``temperature`` (in reward units),
    ``pool`` candidates, ``explore_slots`` of the ``k`` positions (None: all) and
    ``propensity_draws`` Monte Carlo draws for the propensities: what a surface sets in
    ``exploration = { name = "linucb", params = {...} }``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=1.0, ge=0.0)
    ridge: float = Field(default=1.0, gt=0.0)
    temperature: float = Field(default=0.05, gt=0.0)
    pool: int = Field(default=50, ge=1)
    explore_slots: int | None = Field(default=None, ge=0)
    propensity_draws: int = Field(default=200, ge=1)


class LinUCBConfig(LinUCBParams):
    """``LinUCBParams`` and the dimension of the rows a ``FeatureProvider`` gives."""

    dim: int = Field(ge=1)


def upper_bounds(x: np.ndarray, a_inv: np.ndarray, theta: np.ndarray, alpha: float) -> np.ndarray:
    """``x · theta + alpha * sqrt(x' A^-1 x)`` for each row of ``x``."""
    width = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", x, a_inv, x), 0.0, None))
    out: np.ndarray = x @ theta + alpha * width
    return out


def plackett_luce(
    scores: np.ndarray, plan: SlotPlan, params: LinUCBParams, request_id: str, salt: str
) -> np.ndarray:
    """The top ``plan.slots`` candidates of ``1 + propensity_draws`` seeded Gumbel-perturbed
    copies of ``scores / temperature`` (the served draw first): (draws, slots)."""
    rng = np.random.default_rng(request_seed(request_id, salt))
    noise = rng.gumbel(size=(1 + params.propensity_draws, len(plan.candidates)))
    return top_by_draws(scores / params.temperature + noise, plan.slots)


class LinUCB(DrawnSlots):
    """Shared-model LinUCB with a Plackett-Luce (softmax) draw over the upper bounds.

    ``update`` adds observations by Sherman-Morrison, O(dim^2) each; ``explore`` reads a
    consistent snapshot of the model, so serving threads may call both. Deterministic
    given the request id and the model.
    """

    name = "linucb"

    def __init__(self, config: LinUCBConfig, features: FeatureProvider) -> None:
        self.config = config
        self.features = features
        self._lock = threading.Lock()
        self._a_inv = np.eye(config.dim) / config.ridge
        self._b = np.zeros(config.dim)
        self._theta = np.zeros(config.dim)
        self.observations = 0

    @property
    def theta(self) -> np.ndarray:
        """The current ridge estimate of the reward weights."""
        with self._lock:
            return self._theta.copy()

    def update(self, features: np.ndarray, rewards: np.ndarray) -> None:
        """Add observations: one row of ``features`` (n, dim) per reward (n,) observed."""
        x = np.atleast_2d(np.asarray(features, dtype=float))
        r = np.atleast_1d(np.asarray(rewards, dtype=float))
        if x.shape[1] != self.config.dim or x.shape[0] != r.shape[0]:
            raise ValueError(f"expected features (n, {self.config.dim}) and rewards (n,)")
        with self._lock:
            a_inv = self._a_inv
            for row in x:
                u = a_inv @ row
                a_inv -= np.outer(u, u) / (1.0 + row @ u)
            self._b += r @ x
            self._theta = a_inv @ self._b
            self.observations += len(r)

    def upper_bounds(self, features: np.ndarray) -> np.ndarray:
        """``x · theta + alpha * sqrt(x' A^-1 x)`` for each row of ``features``."""
        x = np.asarray(features, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"expected features of shape (n, {self.config.dim})")
        with self._lock:
            theta = self._theta.copy()
            a_inv = self._a_inv.copy()
        return upper_bounds(x, a_inv, theta, self.config.alpha)

    def _draw(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None = None
    ) -> tuple[SlotPlan, np.ndarray]:
        plan = plan_slots(slate, k, self.config.pool, self.config.explore_slots)
        if plan.slots == 0:
            return plan, np.zeros((0, 0), dtype=np.intp)
        ucb = self.upper_bounds(self.features.features(plan.candidates, ctx))
        return plan, plackett_luce(ucb, plan, self.config, ctx.request_id, self.name)


#: Per app, the evidence of the model version it serves (None before the first fit).
EvidenceLookup = Callable[[str], ContextEvidence | None]


class TrainedLinUCB(DrawnSlots):
    """LinUCB as serving runs it: evidence fitted nightly, context from the ranker's features.

    Each app's evidence comes from its served model version (``evidence(app_id)``), and
    ``A^-1`` and ``theta`` are computed once per evidence, not per request. A candidate's
    row is ``serving_context`` of the feature matrix the pipeline ranked the request with
    (``explore_with_features``); ``explore`` alone, with no matrix, gives every candidate
    the same context.

    Without evidence (no ``recloop train`` since the first lists were served, or evidence
    of another context definition) every candidate's bound is the same, and the explore
    slots are a uniform random draw from the pool, as Thompson sampling's are before any
    counts: the logs it leaves are what the first fit learns from.
    """

    name = "linucb"

    def __init__(self, config: LinUCBParams, evidence: EvidenceLookup) -> None:
        self.config = config
        self._evidence = evidence
        # app -> (the evidence, its A^-1, its theta): replaced whole, so a reader never
        # sees one evidence's A^-1 with another's theta.
        self._posteriors: dict[str, tuple[ContextEvidence, np.ndarray, np.ndarray]] = {}
        self._warned: set[int] = set()

    def explore_with_features(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix
    ) -> Slate:
        """``explore``, scoring the candidates by their rows of ``features``."""
        return self._explore(slate, ctx, k, features)

    def position_probabilities(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None = None
    ) -> PositionProbabilities:
        """The estimated probability of every candidate at every position."""
        return self._position_probabilities(slate, ctx, k, features)

    def posterior(self, app_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``A^-1`` and ``theta`` of the app's evidence, or None when it has none usable."""
        evidence = self._evidence(app_id)
        if evidence is None:
            return None
        cached = self._posteriors.get(app_id)
        if cached is not None and cached[0] is evidence:
            return cached[1], cached[2]
        if evidence.names != CONTEXT_FEATURES:
            if id(evidence) not in self._warned:
                self._warned.add(id(evidence))
                log.warning(
                    "LinUCB evidence of app %s has context %s, this code %s: not used",
                    app_id,
                    evidence.names,
                    CONTEXT_FEATURES,
                )
            return None
        cached = (evidence, *evidence.posterior(self.config.ridge))
        self._posteriors[app_id] = cached
        return cached[1], cached[2]

    def upper_bounds(
        self, app_id: str, items: Sequence[ScoredItem], features: FeatureMatrix | None
    ) -> np.ndarray:
        """Each item's upper confidence bound under the app's evidence (0 for all without)."""
        posterior = self.posterior(app_id)
        if posterior is None:
            return np.zeros(len(items))
        x = serving_context(features, [item.item_id for item in items])
        return upper_bounds(x, posterior[0], posterior[1], self.config.alpha)

    def _draw(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix | None = None
    ) -> tuple[SlotPlan, np.ndarray]:
        plan = plan_slots(slate, k, self.config.pool, self.config.explore_slots)
        if plan.slots == 0:
            return plan, np.zeros((0, 0), dtype=np.intp)
        ucb = self.upper_bounds(ctx.app_id, plan.candidates, features)
        return plan, plackett_luce(ucb, plan, self.config, ctx.request_id, self.name)

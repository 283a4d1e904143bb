"""What the request path and the model loader feed the drift monitor.

- ``SampledRanker`` wraps a surface's learned ranker: one ranked request in
  ``serving.drift.sample_every`` has (up to ``rows_per_request`` of) its rows, as the model
  reads them, and their scores folded into the served version's drift window. The others
  cost one counter increment.
- ``HeadItems`` is the head of each app's catalog (its most popular active items, from the
  popularity snapshot the sources already read), counted in every served list.
- ``embedding_shifts`` compares two loaded versions' embeddings, once per model load.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix
from recloop.monitoring.drift import aligned_cosine_shift
from recloop.monitoring.drift_monitor import DriftMonitor, EmbeddingShift
from recloop.ranking.learned import LEARNED, POSITION_FEATURE, RankerModels
from recloop.ranking.protocols import Ranker, Scores
from recloop.retrieval.bundle import ModelBundle
from recloop.retrieval.popularity import PopularityIndex, PopularitySnapshot

log = logging.getLogger(__name__)


class SampledRanker:
    """A ranker whose sampled requests feed the drift monitor; it ranks as ``ranker`` does."""

    def __init__(
        self, ranker: Ranker, models: RankerModels, monitor: DriftMonitor, seed: int = 0
    ) -> None:
        self._ranker = ranker
        self.version = ranker.version
        self._models = models
        self._monitor = monitor
        self._rng = np.random.default_rng(seed)
        self._failed = False

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        """The wrapped ranker's scores; a sampled request is folded in first."""
        scores = self._ranker.score(features, ctx)
        if self._monitor.sampled() and not scores.fallback and not scores.cold:
            try:
                self._observe(features, ctx.app_id, scores)
            except Exception:
                # Monitoring must never cost a request; said once, not per request.
                if not self._failed:
                    log.exception("could not fold a ranked request into the drift window")
                    self._failed = True
        return scores

    def _observe(self, features: FeatureMatrix, app_id: str, scores: Scores) -> None:
        model = self._models.get(app_id)
        if model is None or not len(features.item_ids):
            return
        window = self._monitor.window(app_id, model.version)
        if window is None:
            return
        n = len(features.item_ids)
        cap = self._monitor.settings.rows_per_request
        if n > cap:
            # Evenly spaced from a random start: the candidates come in the sources' order,
            # so a stride spreads over every source (and costs less than a random choice).
            step = n / cap
            rows = (self._rng.uniform(0, step) + step * np.arange(cap)).astype(np.intp)
        else:
            rows = np.arange(n)
        picked = FeatureMatrix(
            tuple(features.item_ids[i] for i in rows), features.names, features.values[rows]
        )
        x = model.design(picked)
        keep = [i for i, name in enumerate(model.features) if name != POSITION_FEATURE]
        names = [model.features[i] for i in keep]
        # The heads' score only when the heads ranked (not the blend the gate chose).
        served = model.serve == LEARNED and not scores.version
        window.observe(names, x[:, keep], np.asarray(scores.combined)[rows] if served else None)


class HeadItems:
    """Each app's head: its most popular ``share`` of active items (at least one), as of
    the popularity snapshot; counted into the monitor for every served list."""

    def __init__(self, popularity: PopularityIndex, monitor: DriftMonitor) -> None:
        self._popularity = popularity
        self._monitor = monitor
        self._heads: dict[str, tuple[PopularitySnapshot, frozenset[str]]] = {}

    def head(self, app_id: str) -> frozenset[str]:
        """The app's head items (empty before the first popularity snapshot)."""
        snapshot = self._popularity.get(app_id)
        if snapshot is None:
            return frozenset()
        cached = self._heads.get(app_id)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        size = max(1, math.ceil(self._monitor.settings.head_share * snapshot.active_items))
        # ``popular`` holds the top ``top_n`` only: a head larger than that is cut to it.
        head = frozenset(snapshot.popular[0][:size])
        self._heads = {**self._heads, app_id: (snapshot, head)}
        return head

    def served(self, app_id: str, items: Sequence[str]) -> None:
        """Count one served list's head items."""
        if items and self._monitor.settings.enabled:
            head = self.head(app_id)
            self._monitor.served(app_id, sum(1 for i in items if i in head), len(items))


def _embeddings(model: object) -> dict[str, tuple[Sequence[str], np.ndarray]]:
    """A trained model's embeddings by entity: factor models' users and items, a tower or
    sequence model's item vectors; nothing for a model without any."""
    out: dict[str, tuple[Sequence[str], np.ndarray]] = {}
    items = getattr(model, "item_factors_", None)
    if isinstance(items, np.ndarray) and items.size:
        out["item"] = (getattr(model, "item_ids_", ()), items)
        users = getattr(model, "user_factors_", None)
        if isinstance(users, np.ndarray) and users.size:
            out["user"] = (getattr(model, "user_ids_", ()), users)
        return out
    try:
        vectors = getattr(model, "item_vectors", None)
    except Exception:  # not fitted: nothing to compare
        return out
    if isinstance(vectors, tuple) and len(vectors) == 2 and isinstance(vectors[1], np.ndarray):
        out["item"] = (vectors[0], vectors[1])
    return out


def embedding_shifts(before: ModelBundle, after: ModelBundle) -> tuple[EmbeddingShift, ...]:
    """Each source both versions trained with embeddings: the aligned cosine shift of the
    ids both know, items and users."""
    out: list[EmbeddingShift] = []
    shared: Mapping[str, object] = {n: m for n, m in after.models.items() if n in before.models}
    for source, model in sorted(shared.items()):
        old = _embeddings(before.models[source])
        for entity, vectors in sorted(_embeddings(model).items()):
            if entity not in old:
                continue
            found = aligned_cosine_shift(old[entity], vectors)
            if found is not None:
                out.append(EmbeddingShift(source, entity, found[0], found[1], before.version))
    return tuple(out)

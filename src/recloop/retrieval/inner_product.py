"""The best items for a vector by inner product: exact over the matrix, or through the
catalogue's vector index when one was built (the embedding sources share this)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from recloop.retrieval.interactions import Float32Array

if TYPE_CHECKING:
    from recloop.retrieval.vector_index import VectorIndex


def best_rows(
    vector: Float32Array,
    k: int,
    blocked: set[int],
    *,
    items: Float32Array,
    index: VectorIndex | None,
    item_ids: Sequence[str],
    item_index: Mapping[str, int],
) -> list[tuple[int, float]]:
    """The ``k`` item rows of ``items`` with the largest inner product with ``vector``,
    best first (ties by row), none of them ``blocked``. With an index, it answers (its ids
    are ``item_ids``); without one the scores are exact."""
    if index is not None:
        exclude = {item_ids[r] for r in blocked}
        found = index.search(vector, k, exclude=exclude)
        return [(item_index[item_id], score) for item_id, score in found]
    scores = items @ vector
    if blocked:
        scores[np.fromiter(blocked, dtype=np.int64, count=len(blocked))] = -np.inf
    k = min(k, len(scores) - len(blocked))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(r), float(scores[r])) for r in top]

"""Views that give rerank rules item attributes and vectors from what serving holds in memory."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.content import ContentModel
from recloop.retrieval.popularity import PopularityIndex


class SnapshotAttributes:
    """Category, creator and creation time from the app's popularity snapshot."""

    def __init__(self, popularity: PopularityIndex) -> None:
        self._popularity = popularity

    def attribute(self, app_id: str, item_id: str, name: str) -> str | None:
        """``category`` or ``creator``; None when unknown."""
        snapshot = self._popularity.get(app_id)
        if snapshot is None:
            return None
        table = snapshot.category_of if name == "category" else snapshot.creator_of
        return table.get(item_id)

    def created_ts(self, app_id: str, item_id: str) -> float | None:
        """Creation time in seconds since the epoch; None when unknown."""
        snapshot = self._popularity.get(app_id)
        return None if snapshot is None else snapshot.created_of.get(item_id)


class ContentVectors:
    """Text vectors of the app's loaded content model."""

    def __init__(self, models: ModelIndex, model: str = "content") -> None:
        self._models = models
        self._model = model

    def vector(self, app_id: str, item_id: str) -> npt.NDArray[np.float32] | None:
        """The item's unit text vector, or None (no content model, or not indexed)."""
        bundle = self._models.get(app_id)
        model = bundle.model(self._model) if bundle is not None else None
        return model.vector(item_id) if isinstance(model, ContentModel) else None

"""What rerank rules may know about items: attributes and vectors, read from memory.

Rules never query the store per item: the serving layer hands them views over the
in-memory popularity snapshot (category, creator, creation time) and the loaded content
model (text vectors). Both are eventually consistent, which is right for diversity and
boosts; what must be exact (blocked, removed, dismissed) is enforced by the mandatory
filters and gate.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class ItemAttributes(Protocol):
    """Item attributes by id; None when unknown."""

    def attribute(self, app_id: str, item_id: str, name: str) -> str | None:
        """``category`` or ``creator`` of an item."""
        ...

    def created_ts(self, app_id: str, item_id: str) -> float | None:
        """When the item was created, in seconds since the epoch."""
        ...


class ItemVectors(Protocol):
    """Unit vectors of items, for similarity between them."""

    def vector(self, app_id: str, item_id: str) -> npt.NDArray[np.float32] | None:
        """The item's vector, or None when it has none."""
        ...

"""What retrieval models train on: user-item interactions, item attributes, shown negatives.

Offline code builds these from a snapshot (or a benchmark loads them from a data set); every
trained source takes the same ``TrainingData``, so a new source needs no new loader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Interactions:
    """Positive interactions, one row each: who, what, when, how strongly, in which session.

    Users and items are dense integer indices into ``user_ids`` and ``item_ids``; rows are in
    time order (ties keep their input order).
    """

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    users: IntArray
    items: IntArray
    timestamps: FloatArray  # seconds since the epoch
    weights: FloatArray
    sessions: IntArray  # -1 when unknown
    _user_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _item_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_records(
        cls,
        users: Sequence[str],
        items: Sequence[str],
        timestamps: Sequence[float] | FloatArray,
        *,
        weights: Sequence[float] | FloatArray | None = None,
        sessions: Sequence[str | None] | None = None,
        item_vocabulary: Sequence[str] = (),
    ) -> Interactions:
        """Index raw ids; ``item_vocabulary`` adds items with no interactions (new items)."""
        n = len(users)
        if len(items) != n or len(timestamps) != n:
            raise ValueError("users, items and timestamps must have the same length")
        ts = np.asarray(timestamps, dtype=np.float64)
        order = np.argsort(ts, kind="stable")
        user_ids = tuple(sorted(set(users)))
        item_ids = tuple(sorted(set(items) | set(item_vocabulary)))
        user_index = {u: i for i, u in enumerate(user_ids)}
        item_index = {t: i for i, t in enumerate(item_ids)}
        u = np.fromiter((user_index[x] for x in users), dtype=np.int64, count=n)
        it = np.fromiter((item_index[x] for x in items), dtype=np.int64, count=n)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        if sessions is None:
            s = np.full(n, -1, dtype=np.int64)
        else:
            session_index: dict[str, int] = {}
            s = np.fromiter(
                (
                    -1 if x is None else session_index.setdefault(x, len(session_index))
                    for x in sessions
                ),
                dtype=np.int64,
                count=n,
            )
        return cls(
            user_ids, item_ids, u[order], it[order], ts[order], w[order], s[order]
        )._indexed()

    def _indexed(self) -> Interactions:
        self._user_index.update((u, i) for i, u in enumerate(self.user_ids))
        self._item_index.update((t, i) for i, t in enumerate(self.item_ids))
        return self

    @property
    def n_users(self) -> int:
        """How many users are indexed."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """How many items are indexed (with or without interactions)."""
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def user_index(self, user_id: str) -> int | None:
        """The user's row, or None for a user not seen in training."""
        return self._user_index.get(user_id)

    def item_index(self, item_id: str) -> int | None:
        """The item's column, or None for an item not seen in training."""
        return self._item_index.get(item_id)

    def matrix(self, binary: bool = False) -> sp.csr_matrix:
        """Users by items, summed weights (or 1 where any interaction happened)."""
        data = np.ones(len(self)) if binary else self.weights
        m = sp.csr_matrix(
            (data, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float64
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def select(self, mask: npt.NDArray[np.bool_]) -> Interactions:
        """The rows where ``mask`` holds, with the same user and item indices."""
        return Interactions(
            self.user_ids,
            self.item_ids,
            self.users[mask],
            self.items[mask],
            self.timestamps[mask],
            self.weights[mask],
            self.sessions[mask],
        )._indexed()

    def histories(self, max_len: int | None = None) -> list[list[int]]:
        """Per user, the distinct items interacted with, most recent first."""
        out: list[list[int]] = [[] for _ in range(self.n_users)]
        seen: list[set[int]] = [set() for _ in range(self.n_users)]
        for u, it in zip(self.users[::-1].tolist(), self.items[::-1].tolist(), strict=True):
            if it in seen[u] or (max_len is not None and len(out[u]) >= max_len):
                continue
            seen[u].add(it)
            out[u].append(it)
        return out


@dataclass(frozen=True)
class ItemTable:
    """Item attributes for content and neural sources, aligned by item id."""

    item_ids: tuple[str, ...]
    titles: tuple[str | None, ...]
    texts: tuple[str, ...]  # title, description and tags joined: what content models embed
    categories: tuple[str | None, ...]
    created_ts: FloatArray  # seconds since the epoch; NaN when unknown

    @classmethod
    def empty(cls) -> ItemTable:
        """No attributes for any item."""
        return cls((), (), (), (), np.zeros(0))

    def aligned(self, item_ids: Sequence[str]) -> ItemTable:
        """The table re-ordered to ``item_ids``; items it lacks get empty attributes."""
        index = {t: i for i, t in enumerate(self.item_ids)}
        rows = [index.get(t) for t in item_ids]
        return ItemTable(
            tuple(item_ids),
            tuple(None if r is None else self.titles[r] for r in rows),
            tuple("" if r is None else self.texts[r] for r in rows),
            tuple(None if r is None else self.categories[r] for r in rows),
            np.array([np.nan if r is None else self.created_ts[r] for r in rows], dtype=np.float64),
        )


def item_text(title: str | None, description: str | None, tags: Sequence[str]) -> str:
    """The text a content model embeds for one item."""
    return " ".join(part for part in (title, description, " ".join(tags)) if part)


@dataclass(frozen=True)
class TrainingData:
    """Everything a retrieval model may fit on.

    ``shown_negatives`` are (user, item) index pairs of items shown to a user and not
    engaged with: hard negatives for models that can use them.
    """

    interactions: Interactions
    items: ItemTable = field(default_factory=ItemTable.empty)
    shown_negatives: tuple[IntArray, IntArray] | None = None
    user_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def item_table(self) -> ItemTable:
        """Item attributes aligned with the interactions' item indices."""
        return self.items.aligned(self.interactions.item_ids)

"""Item-to-item sources: co-visitation, normalized item neighbours (item-kNN) and EASE.

All three learn a weight from each item to others and keep the strongest ``max_neighbours``
per item (an ``ItemNeighbours`` table). A request is answered the same way for each: an
anchored request returns the anchor's neighbours; a personal one adds up the neighbours of
the user's recent items, the most recent weighing most, and says which of them contributed
most to each result (the "Because you watched X" reason).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import MAX_HISTORY, Recalled, RecallQuery, Seeds

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

_DAY_S = 86_400.0
#: The history fadings ``query_options`` offers, in items: fast, slow, none in practice.
_HALF_LIVES = (5.0, 20.0, 100.0, 1e6)


class ItemNeighbours:
    """The strongest neighbours of every item: a sparse rows-by-item table, best first."""

    def __init__(
        self,
        item_ids: tuple[str, ...],
        indptr: npt.NDArray[np.int64],
        indices: npt.NDArray[np.int32],
        scores: npt.NDArray[np.float32],
    ) -> None:
        self.item_ids = item_ids
        self.indptr = indptr
        self.indices = indices
        self.scores = scores
        self._index = {t: i for i, t in enumerate(item_ids)}

    @classmethod
    def from_matrix(cls, item_ids: tuple[str, ...], weights: sp.spmatrix, top: int) -> Self:
        """Keep the ``top`` largest positive weights of each row (the diagonal dropped)."""
        m = sp.csr_matrix(weights, dtype=np.float32)
        m.setdiag(0.0)
        m.eliminate_zeros()
        indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
        indices: list[npt.NDArray[np.int32]] = []
        scores: list[npt.NDArray[np.float32]] = []
        for row in range(m.shape[0]):
            lo, hi = m.indptr[row], m.indptr[row + 1]
            cols = m.indices[lo:hi]
            vals = m.data[lo:hi]
            keep = vals > 0
            cols, vals = cols[keep], vals[keep]
            if len(vals) > top:
                part = np.argpartition(-vals, top - 1)[:top]
                cols, vals = cols[part], vals[part]
            order = np.argsort(-vals, kind="stable")
            indices.append(cols[order].astype(np.int32))
            scores.append(vals[order].astype(np.float32))
            indptr[row + 1] = indptr[row] + len(order)
        return cls(
            item_ids,
            indptr,
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.concatenate(scores) if scores else np.zeros(0, np.float32),
        )

    def index_of(self, item_id: str) -> int | None:
        """The item's row, or None when the item was not in training."""
        return self._index.get(item_id)

    def row(self, index: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Neighbour indices and weights of one item, best first."""
        lo, hi = self.indptr[index], self.indptr[index + 1]
        return self.indices[lo:hi], self.scores[lo:hi]

    def save(self, path: Path) -> None:
        """Write the table as ``neighbours.npz`` and ``items.json`` in ``path``."""
        np.savez(
            path / "neighbours.npz", indptr=self.indptr, indices=self.indices, scores=self.scores
        )
        (path / "items.json").write_text(json.dumps(list(self.item_ids)))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a table written by :meth:`save`."""
        arrays = np.load(path / "neighbours.npz")
        item_ids = tuple(json.loads((path / "items.json").read_text()))
        return cls(item_ids, arrays["indptr"], arrays["indices"], arrays["scores"])


class _ItemItemModel:
    """What the three item-item models share: the neighbour table and how it answers."""

    kind: ClassVar[str]
    _PARAMS: ClassVar[tuple[str, ...]]

    def __init__(self, max_neighbours: int, history_len: int, recency_half_life: float) -> None:
        self.max_neighbours = max_neighbours
        self.history_len = history_len
        self.recency_half_life = recency_half_life
        self.neighbours_: ItemNeighbours | None = None

    def params(self) -> dict[str, Any]:
        """The hyper-parameters."""
        names = ("max_neighbours", "history_len", "recency_half_life", *self._PARAMS)
        return {name: getattr(self, name) for name in names}

    def _weights(self, data: TrainingData) -> sp.spmatrix:
        raise NotImplementedError

    def fit(self, data: TrainingData) -> Self:
        """Learn item-to-item weights and keep each item's strongest neighbours."""
        weights = self._weights(data)
        self.neighbours_ = ItemNeighbours.from_matrix(
            data.interactions.item_ids, weights, self.max_neighbours
        )
        return self

    def _table(self) -> ItemNeighbours:
        if self.neighbours_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return self.neighbours_

    def query_options(self) -> list[dict[str, Any]]:
        """The current history length and fading, then the whole history (``MAX_HISTORY``)
        fading fast, slowly or not at all: data whose order says little wants the last."""
        current = {"history_len": self.history_len, "recency_half_life": self.recency_half_life}
        options = [current]
        for half_life in _HALF_LIVES:
            option = {"history_len": MAX_HISTORY, "recency_half_life": half_life}
            if option != current:
                options.append(option)
        return options

    def with_query(self, options: Mapping[str, Any]) -> Self:
        """The same neighbour table, answering with other history settings."""
        model = copy.copy(self)
        for name in ("history_len", "recency_half_life"):
            if name in options:
                setattr(model, name, type(getattr(self, name))(options[name]))
        return model

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """The anchor's neighbours, or the summed neighbours of the session and history."""
        table = self._table()
        if k <= 0:
            return []
        if query.anchor_item_id is not None:
            seeds = [query.anchor_item_id]
        else:
            seeds = list(dict.fromkeys((*query.session, *query.history)))[: self.history_len]
        rows: list[int] = []
        weights: list[float] = []
        for position, item_id in enumerate(seeds):
            index = table.index_of(item_id)
            if index is not None:
                rows.append(index)
                weights.append(0.5 ** (position / self.recency_half_life))
        if not rows:
            return []
        parts = [table.row(r) for r in rows]
        cols = np.concatenate([p[0] for p in parts]).astype(np.int64)
        if len(cols) == 0:
            return []
        contrib = np.concatenate(
            [p[1].astype(np.float64) * w for p, w in zip(parts, weights, strict=True)]
        )
        ids = table.item_ids
        # Each candidate's summed weight, candidates in index order (so that ties break as
        # they always did): through one dense vector when the entries are many beside the
        # catalogue (a bincount is far cheaper than sorting them), else by sorting them.
        if len(ids) <= 16 * len(cols):
            dense = np.bincount(cols, weights=contrib, minlength=len(ids))
            candidates = np.flatnonzero(np.bincount(cols, minlength=len(ids)))
            totals = dense[candidates]
        else:
            candidates, inverse = np.unique(cols, return_inverse=True)
            totals = np.bincount(inverse, weights=contrib)
        exclude, seen = query.exclude, set(seeds)
        chosen: list[int] = []
        chosen_scores: list[float] = []
        for at in np.argsort(-totals, kind="stable").tolist():
            j = int(candidates[at])
            item_id = ids[j]
            if item_id in exclude or item_id in seen:
                continue
            chosen.append(j)
            chosen_scores.append(float(totals[at]))
            if len(chosen) >= k:
                break
        if not chosen:
            return []
        # The seed that contributed most to each chosen candidate (the "because").
        seed_of = np.repeat(np.arange(len(rows)), [len(p[0]) for p in parts])
        mine = np.flatnonzero(np.isin(cols, chosen))
        order = np.lexsort((-contrib[mine], cols[mine]))  # by candidate, then weight
        by_col = cols[mine][order]
        first = np.ones(len(by_col), dtype=bool)
        first[1:] = by_col[1:] != by_col[:-1]
        best = dict(zip(by_col[first].tolist(), seed_of[mine][order][first].tolist(), strict=True))
        return [
            Recalled(ids[j], score, ids[rows[best[j]]])
            for j, score in zip(chosen, chosen_scores, strict=True)
        ]

    def save(self, path: Path) -> None:
        """Write the neighbour table and the hyper-parameters."""
        self._table().save(path)
        (path / "params.json").write_text(json.dumps(self.params()))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls(**json.loads((path / "params.json").read_text()))
        model.neighbours_ = ItemNeighbours.load(path)
        return model


def _decay(interactions: Interactions, half_life_days: float | None) -> npt.NDArray[np.float64]:
    """Per interaction, 0.5 ** (age at the end of training / half-life): recent counts more."""
    if half_life_days is None or len(interactions) == 0:
        return np.ones(len(interactions))
    age_days = (interactions.timestamps.max() - interactions.timestamps) / _DAY_S
    return np.asarray(0.5 ** (age_days / half_life_days), dtype=np.float64)


class CoVisitation(_ItemItemModel):
    """Items engaged with close together in the same session ("people who watched X next
    watched Y"), counted in both directions and weighted by recency and closeness.

    Args:
        window: how many later engagements of the same session pair with each one.
        half_life_days: an interaction's weight halves every this many days before the end
            of training (None: no decay).
        session_gap_s: without session ids, a user's engagements further apart than this
            start a new session.
        alpha: popularity damping: a count is divided by (n_i * n_j) ** alpha.
    """

    kind: ClassVar[str] = "covisitation"
    # The same table serves the "session" source, fed only the current session's items.
    serves: ClassVar[Mapping[str, Seeds]] = {"covisitation": "history", "session": "session"}
    _PARAMS = ("window", "half_life_days", "session_gap_s", "alpha")

    def __init__(
        self,
        *,
        window: int = 5,
        half_life_days: float | None = 30.0,
        session_gap_s: float = 3600.0,
        alpha: float = 0.5,
        max_neighbours: int = 200,
        history_len: int = 20,
        recency_half_life: float = 5.0,
    ) -> None:
        super().__init__(max_neighbours, history_len, recency_half_life)
        self.window = window
        self.half_life_days = half_life_days
        self.session_gap_s = session_gap_s
        self.alpha = alpha

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """Window, decay, damping and how fast older history items fade."""
        return {
            "window": trial.suggest_int("window", 1, 20),
            "half_life_days": trial.suggest_float("half_life_days", 0.5, 365.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.0, 1.0),
            "recency_half_life": trial.suggest_float("recency_half_life", 1.0, 50.0, log=True),
        }

    def _sessions(self, x: Interactions) -> npt.NDArray[np.int64]:
        """A session key per interaction: the logged session, else gaps within a user."""
        if len(x) == 0 or (x.sessions >= 0).all():
            return x.sessions
        order = np.lexsort((x.timestamps, x.users))
        users, ts = x.users[order], x.timestamps[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (users[1:] != users[:-1]) | (np.diff(ts) > self.session_gap_s)
        derived = np.empty(len(order), dtype=np.int64)
        derived[order] = np.cumsum(starts) - 1
        offset = int(x.sessions.max()) + 1
        return np.where(x.sessions >= 0, x.sessions, derived + offset)

    def _weights(self, data: TrainingData) -> sp.spmatrix:
        x = data.interactions
        n = x.n_items
        sessions = self._sessions(x)
        order = np.lexsort((x.timestamps, sessions))
        s, items = sessions[order], x.items[order]
        decay = _decay(x, self.half_life_days)[order]
        rows: list[npt.NDArray[np.int64]] = []
        cols: list[npt.NDArray[np.int64]] = []
        vals: list[npt.NDArray[np.float64]] = []
        for d in range(1, self.window + 1):
            same = (s[d:] == s[:-d]) & (items[d:] != items[:-d])
            a, b = items[:-d][same], items[d:][same]
            w = decay[d:][same] / d
            rows += [a, b]
            cols += [b, a]
            vals += [w, w]
        if not rows:
            return sp.csr_matrix((n, n), dtype=np.float32)
        counts = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        counts.sum_duplicates()
        freq = np.bincount(x.items, minlength=n).astype(np.float64) + 1.0
        damp = sp.diags(freq ** (-self.alpha))
        return damp @ counts @ damp


class ItemKNN(_ItemItemModel):
    """Normalized item-item neighbours over who engaged with what: an asymmetric cosine with
    shrinkage, computed sparsely, so it scales to catalogues EASE cannot hold.

    Args:
        alpha: 0.5 is the cosine; higher favours neighbours that are popular.
        shrink: added to the denominator, so pairs seen together once score low.
        half_life_days: engagements decay with this half-life before the end of training.
    """

    kind: ClassVar[str] = "item-knn"
    serves: ClassVar[Mapping[str, Seeds]] = {"item-knn": "history"}
    _PARAMS = ("alpha", "shrink", "half_life_days")

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        shrink: float = 10.0,
        half_life_days: float | None = None,
        max_neighbours: int = 200,
        history_len: int = 50,
        recency_half_life: float = 20.0,
    ) -> None:
        super().__init__(max_neighbours, history_len, recency_half_life)
        self.alpha = alpha
        self.shrink = shrink
        self.half_life_days = half_life_days

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """Popularity bias, shrinkage and how fast older history items fade."""
        return {
            "alpha": trial.suggest_float("alpha", 0.1, 0.9),
            "shrink": trial.suggest_float("shrink", 0.1, 200.0, log=True),
            "recency_half_life": trial.suggest_float("recency_half_life", 1.0, 100.0, log=True),
        }

    def _weights(self, data: TrainingData) -> sp.spmatrix:
        x = data.interactions
        m = sp.csr_matrix(
            (_decay(x, self.half_life_days), (x.users, x.items)),
            shape=(x.n_users, x.n_items),
            dtype=np.float64,
        )
        m.sum_duplicates()
        m.data = np.minimum(m.data, 1.0)
        co = (m.T @ m).tocsr()
        norms = np.asarray(m.power(2).sum(axis=0)).ravel()
        co = co.tocoo()
        denom = norms[co.row] ** self.alpha * norms[co.col] ** (1.0 - self.alpha) + self.shrink
        return sp.csr_matrix((co.data / denom, (co.row, co.col)), shape=co.shape)


class EASE(_ItemItemModel):
    """Embarrassingly shallow autoencoder: the closed-form item-item regression
    ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``, the diagonal forced to zero.

    It needs a dense items-by-items inverse, so it refuses catalogues above ``max_items``
    items with interactions (use ``ItemKNN`` there).
    """

    kind: ClassVar[str] = "ease"
    serves: ClassVar[Mapping[str, Seeds]] = {"ease": "history"}
    _PARAMS = ("l2", "max_items")

    def __init__(
        self,
        *,
        l2: float = 500.0,
        max_items: int = 20_000,
        max_neighbours: int = 200,
        history_len: int = 50,
        recency_half_life: float = 20.0,
    ) -> None:
        super().__init__(max_neighbours, history_len, recency_half_life)
        self.l2 = l2
        self.max_items = max_items

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """The L2 penalty and how fast older history items fade."""
        return {
            "l2": trial.suggest_float("l2", 1.0, 5000.0, log=True),
            # Up to "no recency at all" in practice: random splits have no order to exploit.
            "recency_half_life": trial.suggest_float("recency_half_life", 1.0, 1000.0, log=True),
        }

    def _weights(self, data: TrainingData) -> sp.spmatrix:
        x = data.interactions
        m = x.matrix(binary=True)
        used = np.flatnonzero(np.asarray(m.sum(axis=0)).ravel() > 0)
        if len(used) > self.max_items:
            raise ValueError(
                f"EASE needs a dense {len(used)} x {len(used)} inverse; max_items is "
                f"{self.max_items}. Use item-knn for a catalogue this size."
            )
        dtype = np.float64 if len(used) <= 8000 else np.float32
        sub = m[:, used]
        gram = (sub.T @ sub).toarray().astype(dtype)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        n = x.n_items
        # Keep only each row's strongest weights before going sparse: the dense B is large.
        top = min(self.max_neighbours, len(used) - 1) if len(used) > 1 else 0
        rows: list[npt.NDArray[np.int64]] = []
        cols: list[npt.NDArray[np.int64]] = []
        vals: list[npt.NDArray[Any]] = []
        if top > 0:
            for start in range(0, len(used), 2048):
                block = b[start : start + 2048]
                part = np.argpartition(-block, top - 1, axis=1)[:, :top]
                rows.append(np.repeat(used[start : start + len(block)], top))
                cols.append(used[part].ravel())
                vals.append(np.take_along_axis(block, part, axis=1).ravel())
        if not rows:
            return sp.csr_matrix((n, n), dtype=np.float32)
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )

"""Matrix factorization sources with ``implicit``: ALS with confidence weights, and BPR.

User vectors are looked up (users seen in training) or folded in from the request's history
(new users, in closed form for ALS); either is searched against the item vectors in a
``VectorIndex``. Training runs offline; serving needs numpy and faiss only.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import Recalled, RecallQuery, Seeds
from recloop.retrieval.vector_index import VectorIndex

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

Matrix = npt.NDArray[np.float32]


class _FactorModel:
    """What ALS and BPR share: the factors, the index over item vectors, and recall."""

    kind: ClassVar[str]
    _PARAMS: ClassVar[tuple[str, ...]]

    def __init__(self, factors: int, iterations: int, regularization: float, seed: int) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.seed = seed
        self.user_ids_: tuple[str, ...] = ()
        self.item_ids_: tuple[str, ...] = ()
        self.user_factors_: Matrix = np.zeros((0, 0), np.float32)
        self.item_factors_: Matrix = np.zeros((0, 0), np.float32)
        self.index_: VectorIndex | None = None
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}

    def params(self) -> dict[str, Any]:
        """The hyper-parameters."""
        names = ("factors", "iterations", "regularization", "seed", *self._PARAMS)
        return {name: getattr(self, name) for name in names}

    def _train(self, data: TrainingData) -> tuple[Matrix, Matrix]:
        raise NotImplementedError

    def fit(self, data: TrainingData) -> Self:
        """Factorize the user-item matrix and index the item vectors."""
        x = data.interactions
        # implicit parallelises itself; a multi-threaded BLAS underneath only adds contention.
        # It is imported first so that the limit applies to the BLAS it loads.
        importlib.import_module("implicit.cpu")
        with threadpool_limits(1, "blas"):
            users, items = self._train(data)
        self._set(x.user_ids, x.item_ids, users, items)
        return self

    def _set(
        self,
        user_ids: tuple[str, ...],
        item_ids: tuple[str, ...],
        users: Matrix,
        items: Matrix,
        index: VectorIndex | None = None,
    ) -> None:
        self.user_ids_, self.item_ids_ = user_ids, item_ids
        self.user_factors_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(items, dtype=np.float32)
        self._users = {u: i for i, u in enumerate(user_ids)}
        self._items = {t: i for i, t in enumerate(item_ids)}
        self.index_ = index or VectorIndex.build(item_ids, self.item_factors_)

    def _fold_in(self, rows: list[int]) -> Matrix | None:
        """A vector for a user known only by the items in ``rows``."""
        return np.asarray(self.item_factors_[rows].mean(axis=0), dtype=np.float32)

    def user_vector(self, query: RecallQuery) -> Matrix | None:
        """The trained vector of a known user, else one folded in from the history."""
        if query.user_id is not None:
            row = self._users.get(query.user_id)
            if row is not None:
                return np.asarray(self.user_factors_[row], dtype=np.float32)
        rows = [
            r
            for r in (self._items.get(t) for t in dict.fromkeys((*query.session, *query.history)))
            if r is not None
        ]
        return self._fold_in(rows[:50]) if rows else None

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """The items whose vectors score highest against the user's."""
        if self.index_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        if query.anchor_item_id is not None:
            row = self._items.get(query.anchor_item_id)
            if row is None:
                return []
            vector: Matrix | None = self.item_factors_[row]
        else:
            vector = self.user_vector(query)
        if vector is None:
            return []
        seeds = [query.anchor_item_id] if query.anchor_item_id else list(query.history)
        skip = set(query.exclude) | set(seeds) | set(query.session)
        found = self.index_.search(vector, k, exclude=skip)
        return self._explain(found, seeds)

    def _explain(self, found: list[tuple[str, float]], seeds: list[str]) -> list[Recalled]:
        """Name, for each result, the seed item whose vector is closest to it."""
        seed_rows = [r for r in (self._items.get(t) for t in seeds[:20]) if r is not None]
        if not found or not seed_rows:
            return [Recalled(item_id, score) for item_id, score in found]
        result_rows = [self._items[item_id] for item_id, _ in found]
        affinity = self.item_factors_[result_rows] @ self.item_factors_[seed_rows].T
        best = np.argmax(affinity, axis=1)
        return [
            Recalled(item_id, score, self.item_ids_[seed_rows[int(b)]])
            for (item_id, score), b in zip(found, best, strict=True)
        ]

    def forget_users(self, user_ids: Collection[str]) -> int:
        """Drop these users' vectors: they are folded in from their history like new users.
        The mapping is swapped whole, so a request reads the old one or the new one."""
        gone = set(user_ids) & self._users.keys()
        if gone:
            self._users = {u: row for u, row in self._users.items() if u not in gone}
        return len(gone)

    def save(self, path: Path) -> None:
        """Write the factors, ids, hyper-parameters and the vector index (without the
        vectors of forgotten users)."""
        kept = [row for row, user in enumerate(self.user_ids_) if self._users.get(user) == row]
        np.savez(path / "factors.npz", users=self.user_factors_[kept], items=self.item_factors_)
        if self.index_ is not None:
            (path / "index").mkdir()
            self.index_.save(path / "index")
        (path / "ids.json").write_text(
            json.dumps({"users": [self.user_ids_[r] for r in kept], "items": list(self.item_ids_)})
        )
        (path / "params.json").write_text(json.dumps(self.params()))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls(**json.loads((path / "params.json").read_text()))
        arrays = np.load(path / "factors.npz")
        ids = json.loads((path / "ids.json").read_text())
        # The index built offline is read, not rebuilt: HNSW over a large catalogue takes
        # minutes to build.
        index = VectorIndex.load(path / "index") if (path / "index").is_dir() else None
        model._set(
            tuple(ids["users"]), tuple(ids["items"]), arrays["users"], arrays["items"], index
        )
        return model


class ALSModel(_FactorModel):
    """Alternating least squares for implicit feedback (Hu, Koren and Volinsky 2008):
    confidence ``1 + alpha * weight`` on observed pairs, zero preference elsewhere.
    """

    kind: ClassVar[str] = "als"
    serves: ClassVar[Mapping[str, Seeds]] = {"als": "history"}
    _PARAMS = ("alpha",)

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 10.0,
        seed: int = 7,
    ) -> None:
        super().__init__(factors, iterations, regularization, seed)
        self.alpha = alpha

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """Width, regularization, confidence scale and sweeps."""
        return {
            "factors": trial.suggest_categorical("factors", [16, 32, 64, 128, 256]),
            "regularization": trial.suggest_float("regularization", 1e-4, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.5, 300.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
        }

    def _train(self, data: TrainingData) -> tuple[Matrix, Matrix]:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
        )
        model.fit(data.interactions.matrix().astype(np.float32), show_progress=False)
        return model.user_factors, model.item_factors

    def _fold_in(self, rows: list[int]) -> Matrix | None:
        # The ALS user step in closed form: (YᵀY + Yₕᵀ(C-1)Yₕ + λI)⁻¹ Yₕᵀ C p.
        y = self.item_factors_.astype(np.float64)
        yh = y[rows]
        confidence = 1.0 + self.alpha
        a = y.T @ y + (confidence - 1.0) * (yh.T @ yh)
        a[np.diag_indices_from(a)] += self.regularization
        b = confidence * yh.sum(axis=0)
        return np.asarray(np.linalg.solve(a, b), dtype=np.float32)


class BPRModel(_FactorModel):
    """Bayesian personalized ranking: factors trained so a user's items outrank others.

    ``threads`` are implicit's fitting threads (0: every core). Its SGD updates the factors
    from all threads at once without locks, so only ``threads=1`` fits the same model twice
    under the same ``seed``.
    """

    kind: ClassVar[str] = "bpr"
    serves: ClassVar[Mapping[str, Seeds]] = {"bpr": "history"}
    _PARAMS = ("learning_rate", "threads")

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 100,
        regularization: float = 0.01,
        learning_rate: float = 0.05,
        seed: int = 7,
        threads: int = 0,
    ) -> None:
        if threads < 0:
            raise ValueError(f"threads must be 0 (every core) or more, got {threads}")
        super().__init__(factors, iterations, regularization, seed)
        self.learning_rate = learning_rate
        self.threads = threads

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """Width, learning rate, regularization and epochs."""
        return {
            "factors": trial.suggest_categorical("factors", [8, 16, 32, 64, 128, 256]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
            "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
            "iterations": trial.suggest_int("iterations", 20, 200),
        }

    def _train(self, data: TrainingData) -> tuple[Matrix, Matrix]:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=self.threads,
            random_state=self.seed,
        )
        model.fit(data.interactions.matrix(binary=True).astype(np.float32), show_progress=False)
        return model.user_factors, model.item_factors

    def _fold_in(self, rows: list[int]) -> Matrix | None:
        # implicit's BPR keeps an item bias as the last factor and a constant 1 for users.
        vector = self.item_factors_[rows].mean(axis=0)
        vector[-1] = 1.0
        return np.asarray(vector, dtype=np.float32)

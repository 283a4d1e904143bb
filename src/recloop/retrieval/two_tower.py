"""Two-tower retrieval: a user tower and an item tower trained with in-batch sampled softmax.

The user tower reads the user id (with a shared "unknown user" row for users not seen in
training), the mean item-id embedding of the user's recent items and the request context
(device, hour of day); the item tower reads the item id, an optional content vector, the
category and an age bucket. Both end in an L2-normalised ``dim`` vector and score by inner
product.

This module is the numpy side: inputs, the user tower's forward pass, search, save and
load. The network and its training are in ``recloop.retrieval.two_tower_net``, which needs
torch (the ``deep`` extra) and is imported only by :meth:`TwoTowerModel.fit`. After fitting,
the item tower's output for every item and the user tower's weights are exported to numpy,
so loading a saved model and recalling need numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from recloop.retrieval.inner_product import best_rows
from recloop.retrieval.interactions import (
    Float32Array,
    FloatArray,
    IntArray,
    ItemTable,
    TrainingData,
)
from recloop.retrieval.model_files import load_model_files, save_model_files
from recloop.retrieval.models import Recalled, RecallQuery, Seeds
from recloop.retrieval.text_embedding import HashingEmbedder

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

    from recloop.retrieval.vector_index import VectorIndex

_DAY = 86400.0
_DEVICE_DIM = 8
_CATEGORY_DIM = 16
_AGE_DIM = 8
_MAX_AGE_LOG2 = 10  # items older than 2**10 days share the last age bucket
_AGE_BUCKETS = _MAX_AGE_LOG2 + 2  # row 0: unknown creation time
_CONTENT_DIM = 128  # hashed text buckets when fit() is given no content matrix
_INIT_STD = 0.1
_FILES = "two_tower"  # two_tower.npz and two_tower.json
_FORMAT = 1
_USER_WEIGHTS = ("user_emb", "history_emb", "device_emb", "w1", "b1", "w2", "b2")


def hour_features(now_ts: float | None) -> Float32Array:
    """Hour of day (UTC) as ``[sin, cos]``; ``[0, 0]`` when the time is unknown."""
    if now_ts is None:
        return np.zeros(2, dtype=np.float32)
    angle = 2.0 * math.pi * ((now_ts % _DAY) / _DAY)
    return np.array([math.sin(angle), math.cos(angle)], dtype=np.float32)


def _hour_matrix(timestamps: FloatArray) -> Float32Array:
    angle = 2.0 * np.pi * ((timestamps % _DAY) / _DAY)
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def age_buckets(created_ts: FloatArray, at_ts: float) -> IntArray:
    """``1 + clip(floor(log2(1 + age in days)), 0, 10)`` per item; 0 when creation is unknown."""
    out = np.zeros(len(created_ts), dtype=np.int64)
    known = np.isfinite(created_ts)
    days = np.maximum(at_ts - created_ts[known], 0.0) / _DAY
    out[known] = np.clip(np.floor(np.log2(1.0 + days)), 0, _MAX_AGE_LOG2).astype(np.int64) + 1
    return out


def _vocabulary(values: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v is not None}))


def _training_histories(
    users: IntArray, items: IntArray, timestamps: FloatArray, n_items: int, max_len: int
) -> IntArray:
    """Per interaction, the user's up to ``max_len`` most recent distinct items strictly
    earlier in time, most recent first, padded with ``n_items``."""
    out = np.full((len(users), max_len), n_items, dtype=np.int64)
    if max_len == 0:
        return out
    by_user = np.argsort(users, kind="stable")  # rows stay in time order within a user
    bounds = np.flatnonzero(np.diff(users[by_user])) + 1
    for group in np.split(by_user, bounds):
        recent: list[int] = []
        pending: list[int] = []
        current = -math.inf
        for row in group.tolist():
            ts = float(timestamps[row])
            if ts > current:
                for it in pending:
                    if it in recent:
                        recent.remove(it)
                    recent.insert(0, it)
                del recent[max_len:]
                pending.clear()
                current = ts
            out[row, : len(recent)] = recent
            pending.append(int(items[row]))
    return out


def _default_content(table: ItemTable) -> Float32Array | None:
    """Hashed item texts (unit rows, zero for items without text); None when no item has text."""
    if not any(t.strip() for t in table.texts):
        return None
    return HashingEmbedder(dim=_CONTENT_DIM).embed(table.texts)


class TwoTowerModel:
    """Two-tower neural retrieval, trained in torch and served in numpy.

    Args:
        dim: the width of the user and item vectors (and of the id embeddings).
        epochs: passes over the positive interactions.
        batch_size: training examples per step; the other rows' items are its negatives.
        lr: Adam (AdamW) learning rate.
        temperature: the softmax temperature over cosine similarities.
        history_len: at most this many recent items make up the user's history input.
        hidden: the width of each tower's hidden layer.
        seed: seeds torch and the batch order.
        weight_decay: AdamW's decoupled weight decay.
        use_hard_negatives: add one shown-but-not-engaged item per row as a negative.
        logq_correction: subtract log(item frequency) from the training logits.
        unknown_user_rate: the share of training rows whose user is replaced by the
            unknown-user row, which is what users not seen in training get.
        threads: torch threads while fitting. One is the default: the towers are small, and
            on a busy machine a second intra-op thread made fitting several times slower.
    """

    kind: ClassVar[str] = "two-tower"
    serves: ClassVar[Mapping[str, Seeds]] = {"two-tower": "history"}

    def __init__(
        self,
        *,
        dim: int = 64,
        epochs: int = 10,
        batch_size: int = 512,
        lr: float = 3e-3,
        temperature: float = 0.05,
        history_len: int = 20,
        hidden: int = 128,
        seed: int = 0,
        weight_decay: float = 1e-6,
        use_hard_negatives: bool = True,
        logq_correction: bool = True,
        unknown_user_rate: float = 0.1,
        threads: int = 1,
    ) -> None:
        if dim < 1 or hidden < 1 or epochs < 0 or batch_size < 2 or history_len < 0:
            raise ValueError("dim, hidden and batch_size must be positive, epochs >= 0")
        if temperature <= 0 or lr <= 0 or not 0.0 <= unknown_user_rate < 1.0 or threads < 1:
            raise ValueError(
                "temperature and lr must be > 0, unknown_user_rate in [0, 1), threads >= 1"
            )
        self.dim = dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.history_len = history_len
        self.hidden = hidden
        self.seed = seed
        self.weight_decay = weight_decay
        self.use_hard_negatives = use_hard_negatives
        self.logq_correction = logq_correction
        self.unknown_user_rate = unknown_user_rate
        self.threads = threads
        self._user_ids: tuple[str, ...] = ()
        self._item_ids: tuple[str, ...] = ()
        self._devices: tuple[str, ...] = ()
        self._categories: tuple[str, ...] = ()
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        self._device_index: dict[str, int] = {}
        self._weights: dict[str, Float32Array] = {}
        self._items: Float32Array = np.zeros((0, dim), dtype=np.float32)
        self._index: VectorIndex | None = None
        self._fitted = False

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """The softmax temperature, the learning rate and the epochs."""
        return {
            "temperature": trial.suggest_float("temperature", 0.02, 0.3, log=True),
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "epochs": trial.suggest_int("epochs", 3, 15),
        }

    def params(self) -> dict[str, Any]:
        """The hyper-parameters, as recorded beside the artifact."""
        return {
            "dim": self.dim,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "temperature": self.temperature,
            "history_len": self.history_len,
            "hidden": self.hidden,
            "seed": self.seed,
            "weight_decay": self.weight_decay,
            "use_hard_negatives": self.use_hard_negatives,
            "logq_correction": self.logq_correction,
            "unknown_user_rate": self.unknown_user_rate,
            "threads": self.threads,
        }

    # ----------------------------------------------------------------------------- training

    def fit(self, data: TrainingData, *, content: npt.NDArray[Any] | None = None) -> Self:
        """Train both towers on every positive interaction, then export them to numpy.

        ``content`` is an optional ``(n_items, d)`` matrix aligned with
        ``data.interactions.item_ids``; without it, item texts are hashed when
        ``recloop.retrieval.text_embedding`` is installed, else the item tower has no content.
        """
        try:
            from recloop.retrieval.two_tower_net import TowerInputs, TowerSpec, train_towers
        except ImportError as exc:
            raise RuntimeError(
                "TwoTowerModel.fit needs torch: install the deep extra (pip install recloop[deep])"
            ) from exc
        inter = data.interactions
        if len(inter) == 0:
            raise ValueError("no interactions to train on")
        self._fitted = False
        table = data.item_table
        if content is None:
            content = _default_content(table)
        content32 = None if content is None else np.asarray(content, dtype=np.float32)
        if content32 is not None and (content32.ndim != 2 or len(content32) != inter.n_items):
            raise ValueError("content must be a (n_items, d) matrix aligned with item_ids")

        self._user_ids, self._item_ids = inter.user_ids, inter.item_ids
        self._categories = _vocabulary(table.categories)
        user_devices = [
            d if isinstance(d := data.user_attributes.get(u, {}).get("device"), str) else None
            for u in inter.user_ids
        ]
        self._devices = _vocabulary(user_devices)
        self._reindex()
        category_index = {c: i + 1 for i, c in enumerate(self._categories)}
        category_rows = np.array(
            [0 if c is None else category_index[c] for c in table.categories], dtype=np.int64
        )
        device_rows = np.array([self._device_row(d) for d in user_devices], dtype=np.int64)
        ages = age_buckets(table.created_ts, float(inter.timestamps.max()))
        histories = _training_histories(
            inter.users, inter.items, inter.timestamps, inter.n_items, self.history_len
        )

        spec = TowerSpec(
            dim=self.dim,
            hidden=self.hidden,
            temperature=self.temperature,
            lr=self.lr,
            weight_decay=self.weight_decay,
            epochs=self.epochs,
            batch_size=self.batch_size,
            unknown_user_rate=self.unknown_user_rate,
            logq_correction=self.logq_correction,
            use_hard_negatives=self.use_hard_negatives,
            seed=self.seed,
            threads=self.threads,
            n_devices=len(self._devices),
            n_categories=len(self._categories),
            device_dim=_DEVICE_DIM,
            category_dim=_CATEGORY_DIM,
            age_dim=_AGE_DIM,
            age_buckets=_AGE_BUCKETS,
            init_std=_INIT_STD,
        )
        inputs = TowerInputs(
            data=data,
            histories=histories,
            category_rows=category_rows,
            ages=ages,
            device_rows=device_rows,
            hours=_hour_matrix(inter.timestamps),
            content=content32,
        )
        self._items, self._weights = train_towers(spec, inputs)
        self._build_index()
        self._fitted = True
        return self

    # ------------------------------------------------------------------------------ serving

    def _reindex(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self._user_ids)}
        self._item_index = {t: i for i, t in enumerate(self._item_ids)}
        self._device_index = {d: i for i, d in enumerate(self._devices)}

    def _device_row(self, device: str | None) -> int:
        return 0 if device is None else self._device_index.get(device, -1) + 1

    def _build_index(self, saved: Path | None = None) -> None:
        """Index the item vectors with ``VectorIndex`` (read the one saved at ``saved`` when
        there is one: an HNSW build of a large catalogue takes minutes); without faiss,
        search them in numpy."""
        try:
            from recloop.retrieval.vector_index import VectorIndex
        except ImportError:
            self._index = None
            return
        if saved is not None and saved.is_dir():
            self._index = VectorIndex.load(saved)
        else:
            self._index = VectorIndex.build(self._item_ids, self._items)

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("TwoTowerModel is not fitted: call fit() or load()")

    @property
    def item_vectors(self) -> tuple[tuple[str, ...], Float32Array]:
        """The item ids and their item-tower vectors (float32, L2-normalised), row-aligned."""
        self._require_fitted()
        return self._item_ids, self._items

    @staticmethod
    def _seeds(query: RecallQuery) -> tuple[str, ...]:
        """The items that stand for the user: the anchor (if any), the session, the history."""
        anchor = () if query.anchor_item_id is None else (query.anchor_item_id,)
        return (*anchor, *query.session, *query.history)

    def _history_rows(self, query: RecallQuery) -> list[int]:
        """Rows of the known seed items, most recent first, distinct, at most ``history_len``."""
        rows: list[int] = []
        for item_id in self._seeds(query):
            if len(rows) >= self.history_len:
                break
            row = self._item_index.get(item_id)
            if row is not None and row not in rows:
                rows.append(row)
        return rows

    def _user_vector(self, query: RecallQuery, history: list[int]) -> Float32Array:
        w = self._weights
        user = self._user_index.get(query.user_id) if query.user_id is not None else None
        user_vec = w["user_emb"][0 if user is None else user + 1]
        if history:
            mean = w["history_emb"][history].mean(axis=0, dtype=np.float32)
        else:
            mean = np.zeros(self.dim, dtype=np.float32)
        device = w["device_emb"][self._device_row(query.device)]
        x = np.concatenate([user_vec, mean, device, hour_features(query.now_ts)])
        h = np.maximum(x @ w["w1"] + w["b1"], np.float32(0.0))
        out: Float32Array = (h @ w["w2"] + w["b2"]).astype(np.float32)
        norm = float(np.linalg.norm(out))
        if norm > 0:
            out /= np.float32(norm)
        return out

    def user_vector(self, query: RecallQuery) -> Float32Array:
        """The user tower's (L2-normalised) output for a query, computed in numpy."""
        self._require_fitted()
        return self._user_vector(query, self._history_rows(query))

    def _search(self, vector: Float32Array, k: int, blocked: set[int]) -> list[tuple[int, float]]:
        """The ``k`` best item rows by inner product, best first, none of them blocked."""
        return best_rows(
            vector,
            k,
            blocked,
            items=self._items,
            index=self._index,
            item_ids=self._item_ids,
            item_index=self._item_index,
        )

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """At most ``k`` items by inner product with the user vector, best first.

        The user vector reads the anchor item (a "similar" surface), the session and the history
        as the user's recent items. Never returns ``query.exclude`` nor any of those items.
        ``because`` is the one of them whose item vector is closest to the result (None
        without any).
        """
        self._require_fitted()
        if k <= 0 or not self._item_ids:
            return []
        history = self._history_rows(query)
        vector = self._user_vector(query, history)
        blocked = {
            row
            for item_id in (*query.exclude, *self._seeds(query))
            if (row := self._item_index.get(item_id)) is not None
        }
        hits = self._search(vector, k, blocked)
        if not hits:
            return []
        if not history:
            return [Recalled(self._item_ids[r], s) for r, s in hits]
        rows = np.array([r for r, _ in hits], dtype=np.int64)
        closest = np.argmax(self._items[rows] @ self._items[history].T, axis=1)
        return [
            Recalled(self._item_ids[r], s, self._item_ids[history[int(c)]])
            for (r, s), c in zip(hits, closest, strict=True)
        ]

    # ---------------------------------------------------------------------------- artifacts

    def forget_users(self, user_ids: Collection[str]) -> int:
        """Drop these users' embeddings: they are encoded as an unknown user (row 0). The
        index is swapped whole, so a request reads the old one or the new one."""
        gone = set(user_ids) & self._user_index.keys()
        if gone:
            self._user_index = {u: i for u, i in self._user_index.items() if u not in gone}
        return len(gone)

    def save(self, path: Path) -> None:
        """Write the numpy arrays (``two_tower.npz``) and params and vocabularies (JSON),
        without the embeddings of forgotten users."""
        self._require_fitted()
        kept = [i for i, user in enumerate(self._user_ids) if self._user_index.get(user) == i]
        weights = dict(self._weights)
        weights["user_emb"] = self._weights["user_emb"][[0, *(i + 1 for i in kept)]]
        meta = {
            "kind": self.kind,
            "format": _FORMAT,
            "params": self.params(),
            "user_ids": [self._user_ids[i] for i in kept],
            "item_ids": list(self._item_ids),
            "devices": list(self._devices),
            "categories": list(self._categories),
        }
        arrays = {"item_vectors": self._items, **weights}
        save_model_files(path, _FILES, arrays, meta, self._index)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`; needs numpy only."""
        meta, arrays = load_model_files(path, _FILES, cls.kind, _FORMAT)
        model = cls(**meta["params"])
        model._user_ids = tuple(meta["user_ids"])
        model._item_ids = tuple(meta["item_ids"])
        model._devices = tuple(meta["devices"])
        model._categories = tuple(meta["categories"])
        model._reindex()
        model._items = arrays["item_vectors"]
        model._weights = {name: arrays[name] for name in _USER_WEIGHTS}
        model._build_index(path / "index")
        model._fitted = True
        return model

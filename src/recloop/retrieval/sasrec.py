"""SASRec: a causal self-attention encoder of the user's recent items, scored against items.

The user's recent items (oldest first, at most ``max_len``) go through ``blocks``
pre-LayerNorm transformer blocks with causal attention; the output at the last position is
the user vector, and an item's score is its inner product with the item's embedding (the
same table embeds the inputs). Training predicts the next item at every position of each
user's sequence with a sampled (or full) softmax; see ``recloop.retrieval.sasrec_net``.

This module is the numpy side: sequences, the forward pass for one request, search, save
and load. The network and its training need torch (the ``deep`` extra) and live in
``recloop.retrieval.sasrec_net``, which only :meth:`SASRecModel.fit` imports: a saved model
loads and recalls with numpy alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np

from recloop.retrieval.inner_product import best_rows
from recloop.retrieval.interactions import Float32Array, IntArray, TrainingData
from recloop.retrieval.model_files import load_model_files, save_model_files
from recloop.retrieval.models import Recalled, RecallQuery

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

    from recloop.retrieval.vector_index import VectorIndex

Sampling = Literal["uniform", "popularity"]

#: LayerNorm's epsilon, shared with the torch network so both sides compute the same thing.
LN_EPS = 1e-6
_FILES = "sasrec"  # sasrec.npz and sasrec.json
_FORMAT = 1
# Up to this many items an exact matrix product is faster than any index (about 1 ms at
# 50k x 64 on one core); above it, the vector index's HNSW keeps search sub-linear.
_EXACT_BELOW = 50_000


def user_sequences(data: TrainingData) -> list[IntArray]:
    """Per user with any interaction, their distinct items oldest first.

    An item the user had more than once sits at its latest time: that is how serving sees
    a history (distinct, most recent first), and every target is then an item new to the
    user, as every recommendation must be. Ties in time keep the rows' order.
    """
    inter = data.interactions
    by_user = np.argsort(inter.users, kind="stable")  # rows are already in time order
    bounds = np.flatnonzero(np.diff(inter.users[by_user])) + 1
    out: list[IntArray] = []
    for group in np.split(by_user, bounds):
        if len(group) == 0:
            continue
        items = inter.items[group]
        # Keep each item's last occurrence: first occurrence in the reversed sequence.
        _, first_in_reversed = np.unique(items[::-1], return_index=True)
        keep = np.sort(len(items) - 1 - first_in_reversed)
        out.append(items[keep].astype(np.int64))
    return out


def training_windows(sequences: list[IntArray], max_len: int) -> list[IntArray]:
    """Cut each sequence into windows of at most ``max_len + 1`` items, from the end.

    Consecutive windows share one item, so every item but a sequence's first is a target
    exactly once; sequences of one item teach nothing and are dropped.
    """
    out: list[IntArray] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            out.append(seq[start:end])
            end = start + 1
    return out


def _layer_norm(x: Float32Array, w: Float32Array, b: Float32Array) -> Float32Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return np.asarray(centred / np.sqrt(var + np.float32(LN_EPS)) * w + b, dtype=np.float32)


def _gelu(x: Float32Array) -> Float32Array:
    """GELU, tanh approximation (torch's ``approximate="tanh"``)."""
    c = np.float32(math.sqrt(2.0 / math.pi))
    inner = np.tanh(c * (x + np.float32(0.044715) * x * x * x))
    return np.asarray(np.float32(0.5) * x * (np.float32(1.0) + inner), dtype=np.float32)


def encode_sequence(
    weights: Mapping[str, Float32Array], rows: IntArray, *, blocks: int, heads: int
) -> Float32Array:
    """The user vector for item rows oldest first (at most ``max_len``), in numpy.

    The same computation as ``SASRecNet.forward`` at the last position, in eval mode.
    Only the last position's output is needed, so the last block computes its attention
    and feed-forward for that position alone.
    """
    n = len(rows)
    pos = weights["pos_emb"]
    dim = pos.shape[1]
    x = weights["item_emb"][rows] * np.float32(math.sqrt(dim)) + pos[len(pos) - n :]
    head_dim = dim // heads
    scale = np.float32(1.0 / math.sqrt(head_dim))
    causal = np.triu(np.ones((n, n), dtype=bool), k=1)
    for b in range(blocks):
        p = f"b{b}."
        last = b == blocks - 1
        a = _layer_norm(x, weights[p + "ln1_w"], weights[p + "ln1_b"])
        qkv = a @ weights[p + "wqkv"] + weights[p + "bqkv"]
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        if last:
            q = q[-1:]
        qh = q.reshape(len(q), heads, head_dim).transpose(1, 0, 2)
        kh = k.reshape(n, heads, head_dim).transpose(1, 0, 2)
        vh = v.reshape(n, heads, head_dim).transpose(1, 0, 2)
        s = (qh @ kh.transpose(0, 2, 1)) * scale
        if not last:
            s = np.where(causal, np.float32(-np.inf), s)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = (s @ vh).transpose(1, 0, 2).reshape(len(q), dim)
        x = (x[-1:] if last else x) + o @ weights[p + "wo"] + weights[p + "bo"]
        f = _layer_norm(x, weights[p + "ln2_w"], weights[p + "ln2_b"])
        x = x + _gelu(f @ weights[p + "w1"] + weights[p + "b1"]) @ weights[p + "w2"]
        x = x + weights[p + "b2"]
    h = _layer_norm(x[-1], weights["lnf_w"], weights["lnf_b"])
    return np.asarray(h, dtype=np.float32)


class SASRecModel:
    """A sequential transformer (SASRec) trained in torch and served in numpy.

    Args:
        dim: the width of item embeddings and of the transformer.
        blocks: transformer blocks.
        heads: attention heads per block (must divide ``dim``).
        max_len: at most this many recent items make up the input sequence.
        dropout: dropout on the embeddings and on each block's residual branches.
        epochs: passes over the training windows.
        batch_size: sequences (windows) per step.
        lr: AdamW learning rate.
        weight_decay: AdamW's decoupled weight decay.
        negatives: sampled negatives per step, shared by every position of the batch; 0 (or
            at least the catalogue's size) trains with the full softmax over the catalogue.
        sampling: draw negatives uniformly, or by popularity (count ** 0.75) with the
            logQ correction subtracted from every logit.
        seed: seeds torch, the batch order and the negatives.
        threads: torch threads while fitting.
        max_seconds: stop training after this much wall time (None: run every epoch).

    The defaults are those chosen on the validation targets of the S3-Rec Beauty and LastFM
    files (``benchmarks/sasrec_quality.py``): dropout 0.5 kept validation flat from 35 to
    70 epochs on Beauty where 0.2 overfitted after 20, and 1024 popularity-drawn negatives
    reached the plateau in fewer epochs than 256 of them or 1024 uniform ones.
    """

    kind: ClassVar[str] = "sasrec"
    serves: ClassVar[Mapping[str, Literal["history", "session"]]] = MappingProxyType(
        {"sasrec": "history"}
    )

    def __init__(
        self,
        *,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 1,
        max_len: int = 50,
        dropout: float = 0.5,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        negatives: int = 1024,
        sampling: Sampling = "popularity",
        seed: int = 0,
        threads: int = 1,
        max_seconds: float | None = None,
    ) -> None:
        if dim < 1 or blocks < 1 or heads < 1 or dim % heads or max_len < 1:
            raise ValueError("dim, blocks, heads, max_len must be positive; heads must divide dim")
        if epochs < 0 or batch_size < 1 or lr <= 0 or negatives < 0 or threads < 1:
            raise ValueError("epochs, negatives >= 0; batch_size, threads >= 1; lr > 0")
        if not 0.0 <= dropout < 1.0 or weight_decay < 0:
            raise ValueError("dropout must be in [0, 1) and weight_decay >= 0")
        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', got {sampling!r}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.dim = dim
        self.blocks = blocks
        self.heads = heads
        self.max_len = max_len
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.negatives = negatives
        self.sampling: Sampling = sampling
        self.seed = seed
        self.threads = threads
        self.max_seconds = max_seconds
        self._item_ids: tuple[str, ...] = ()
        self._item_index: dict[str, int] = {}
        self._weights: dict[str, Float32Array] = {}
        self._index: VectorIndex | None = None
        self._fitted = False
        self.epochs_run = 0  # after fit: the epochs actually run (a time budget may cut them)
        self.fit_seconds = 0.0

    def params(self) -> dict[str, Any]:
        """The hyper-parameters, as recorded beside the artifact."""
        return {
            "dim": self.dim,
            "blocks": self.blocks,
            "heads": self.heads,
            "max_len": self.max_len,
            "dropout": self.dropout,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "negatives": self.negatives,
            "sampling": self.sampling,
            "seed": self.seed,
            "threads": self.threads,
            "max_seconds": self.max_seconds,
        }

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """What tuning searches (Optuna define-by-run); the rest keep their defaults."""
        return {
            "dim": trial.suggest_categorical("dim", [32, 64, 128]),
            "blocks": trial.suggest_int("blocks", 1, 3),
            "max_len": trial.suggest_categorical("max_len", [20, 50, 100]),
            "dropout": trial.suggest_float("dropout", 0.1, 0.6),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "epochs": trial.suggest_int("epochs", 10, 150, log=True),
            "negatives": trial.suggest_categorical("negatives", [256, 1024, 4096]),
        }

    # ----------------------------------------------------------------------------- training

    def fit(
        self,
        data: TrainingData,
        *,
        on_epoch: Callable[[int, Self], bool | None] | None = None,
    ) -> Self:
        """Train on every user's sequence, then export the weights to numpy.

        ``on_epoch(epoch, model)`` is called after each epoch (from 1) with the model
        serving that epoch's weights; returning True stops training there.
        """
        try:
            from recloop.retrieval.sasrec_net import NetSpec, TrainSpec, train
        except ImportError as exc:
            raise RuntimeError(
                "SASRecModel.fit needs torch: install the deep extra (pip install recloop[deep])"
            ) from exc
        inter = data.interactions
        if len(inter) == 0:
            raise ValueError("no interactions to train on")
        started = time.perf_counter()
        self._fitted = False
        self._item_ids = inter.item_ids
        self._item_index = {t: i for i, t in enumerate(self._item_ids)}
        windows = training_windows(user_sequences(data), self.max_len)
        if not windows:
            raise ValueError("no user has two distinct items: nothing to predict")
        counts = np.bincount(inter.items, minlength=inter.n_items).astype(np.float64)
        net = NetSpec(
            n_items=inter.n_items,
            dim=self.dim,
            blocks=self.blocks,
            heads=self.heads,
            max_len=self.max_len,
            dropout=self.dropout,
            ln_eps=LN_EPS,
        )
        spec = TrainSpec(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            negatives=self.negatives,
            sampling=self.sampling,
            seed=self.seed,
            threads=self.threads,
            max_seconds=self.max_seconds,
        )

        def epoch_done(epoch: int, weights: dict[str, Float32Array]) -> bool:
            self.epochs_run = epoch
            if on_epoch is None:
                return False
            self._serve(weights)
            return bool(on_epoch(epoch, self))

        self.epochs_run = 0
        self._serve(train(net, spec, windows, counts, epoch_done))
        self.fit_seconds = time.perf_counter() - started
        return self

    # ------------------------------------------------------------------------------ serving

    def _serve(self, weights: dict[str, Float32Array], saved_index: Path | None = None) -> None:
        self._weights = weights
        self._index = None
        if len(self._item_ids) >= _EXACT_BELOW:
            from recloop.retrieval.vector_index import VectorIndex

            if saved_index is not None and saved_index.is_dir():
                self._index = VectorIndex.load(saved_index)
            else:
                self._index = VectorIndex.build(self._item_ids, weights["item_emb"])
        self._fitted = True

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("SASRecModel is not fitted: call fit() or load()")

    @property
    def item_vectors(self) -> tuple[tuple[str, ...], Float32Array]:
        """The item ids and their (output) embeddings, row-aligned."""
        self._require_fitted()
        return self._item_ids, self._weights["item_emb"]

    def _input_rows(self, query: RecallQuery) -> list[int]:
        """Known items of the anchor, session and history: distinct, oldest first, the
        ``max_len`` most recent. The anchor (a "similar" surface) counts as the latest."""
        anchor = () if query.anchor_item_id is None else (query.anchor_item_id,)
        rows: list[int] = []
        seen: set[int] = set()
        for item_id in (*anchor, *query.session, *query.history):
            row = self._item_index.get(item_id)
            if row is not None and row not in seen:
                seen.add(row)
                rows.append(row)
                if len(rows) >= self.max_len:
                    break
        rows.reverse()
        return rows

    def user_vector(self, query: RecallQuery) -> Float32Array | None:
        """The encoder's output for the query's items; None when it has no known item."""
        self._require_fitted()
        rows = self._input_rows(query)
        if not rows:
            return None
        return encode_sequence(
            self._weights, np.asarray(rows, dtype=np.int64), blocks=self.blocks, heads=self.heads
        )

    def score_items(self, query: RecallQuery, item_ids: list[str]) -> list[float | None]:
        """The model's score of each item for the query (None for an unknown item, or for
        every item when the query has no known item): a ranker feature for candidates that
        other sources recalled."""
        vector = self.user_vector(query)
        rows = [self._item_index.get(t) for t in item_ids]
        if vector is None:
            return [None] * len(item_ids)
        known = np.array([r for r in rows if r is not None], dtype=np.int64)
        scores = iter((self._weights["item_emb"][known] @ vector).tolist())
        return [None if r is None else next(scores) for r in rows]

    def _search(self, vector: Float32Array, k: int, blocked: set[int]) -> list[tuple[int, float]]:
        """The ``k`` best item rows by inner product, best first, none of them blocked."""
        return best_rows(
            vector,
            k,
            blocked,
            items=self._weights["item_emb"],
            index=self._index,
            item_ids=self._item_ids,
            item_index=self._item_index,
        )

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """At most ``k`` items that most likely come next after the query's items, best first.

        The input is the anchor, the session and the history (the ``max_len`` most recent
        known ones); none of them, nor any of ``query.exclude``, is returned. ``because``
        is the input item whose embedding is closest to the result's. A query with no
        known item gets ``[]``.
        """
        self._require_fitted()
        if k <= 0:
            return []
        rows = self._input_rows(query)
        if not rows:
            return []
        vector = encode_sequence(
            self._weights, np.asarray(rows, dtype=np.int64), blocks=self.blocks, heads=self.heads
        )
        blocked = set(rows)
        blocked.update(r for t in query.exclude if (r := self._item_index.get(t)) is not None)
        hits = self._search(vector, k, blocked)
        if not hits:
            return []
        emb = self._weights["item_emb"]
        found = np.array([r for r, _ in hits], dtype=np.int64)
        closest = np.argmax(emb[found] @ emb[rows].T, axis=1)
        return [
            Recalled(self._item_ids[r], s, self._item_ids[rows[int(c)]])
            for (r, s), c in zip(hits, closest, strict=True)
        ]

    # ---------------------------------------------------------------------------- artifacts

    def save(self, path: Path) -> None:
        """Write the weights (``sasrec.npz``), the params and the item ids (JSON)."""
        self._require_fitted()
        meta = {
            "kind": self.kind,
            "format": _FORMAT,
            "params": self.params(),
            "item_ids": list(self._item_ids),
        }
        save_model_files(path, _FILES, self._weights, meta, self._index)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`; needs numpy only (and faiss for a catalogue
        large enough to be indexed)."""
        meta, weights = load_model_files(path, _FILES, cls.kind, _FORMAT)
        model = cls(**meta["params"])
        model._item_ids = tuple(meta["item_ids"])
        model._item_index = {t: i for i, t in enumerate(model._item_ids)}
        model._serve(weights, path / "index")
        return model

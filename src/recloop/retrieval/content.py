"""Content-based retrieval: items whose text embeds near the anchor's or the user's history.

Each item's text (title, description, tags) is embedded by a ``TextEmbedder`` and the unit
vectors go into a ``VectorIndex``. A brand-new item needs no retraining: ``add_items``
embeds it and makes it retrievable at once, which is what lets the content source serve
items nobody has interacted with yet.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import Recalled, RecallQuery, Seeds
from recloop.retrieval.text_embedding import (
    EmbedderUnavailable,
    TextEmbedder,
    open_embedder,
)
from recloop.retrieval.vector_index import VectorIndex

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_BATCH = 1024  # texts embedded at a time: bounds memory for large catalogues
_PARAMS_FILE = "params.json"
_TITLES_FILE = "titles.json"
_INDEX_DIR = "index"


class ContentModel:
    """Recall by text similarity, to an anchor item or to a recency-weighted history profile.

    Args:
        embedder: the text embedder's name for :func:`open_embedder` ("auto", "hashing",
            "minilm"); "auto" is resolved at fit time and the resolved name is saved.
        history_len: at most this many indexed history items make up the profile.
        recency_half_life: the profile weight halves every this many history positions.
    """

    kind: ClassVar[str] = "content"
    serves: ClassVar[Mapping[str, Seeds]] = {"content": "history"}

    def __init__(
        self, embedder: str = "auto", history_len: int = 20, recency_half_life: float = 5.0
    ) -> None:
        if history_len < 1:
            raise ValueError(f"history_len must be at least 1, got {history_len}")
        if not recency_half_life > 0:
            raise ValueError(f"recency_half_life must be positive, got {recency_half_life}")
        self.embedder = embedder
        self.history_len = history_len
        self.recency_half_life = recency_half_life
        self.embedder_name_: str | None = None  # the embedder actually used ("auto" resolved)
        self.index_: VectorIndex | None = None
        self._embedder: TextEmbedder | None = None
        self._embedder_problem: str | None = None  # why the saved embedder did not reopen
        self._titles: dict[str, str] = {}
        self._write_lock = threading.Lock()  # add_items: embed, index and title together

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """How fast older history items fade from the profile, and how many make it up."""
        return {
            "recency_half_life": trial.suggest_float("recency_half_life", 1.0, 50.0, log=True),
            "history_len": trial.suggest_int("history_len", 1, 50),
        }

    def params(self) -> dict[str, Any]:
        """The hyper-parameters."""
        return {
            "embedder": self.embedder,
            "history_len": self.history_len,
            "recency_half_life": self.recency_half_life,
        }

    # -- training ----------------------------------------------------------------------

    def fit(self, data: TrainingData) -> Self:
        """Embed every item with text and index the vectors; items without text are left out."""
        table = data.item_table
        embedder = open_embedder(self.embedder)
        rows = [i for i, text in enumerate(table.texts) if text.strip()]
        ids: list[str] = []
        chunks: list[Float32Array] = []
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            batch_ids, vectors = _usable(
                [table.item_ids[i] for i in batch], embedder.embed([table.texts[i] for i in batch])
            )
            ids.extend(batch_ids)
            chunks.append(vectors)
        matrix = np.vstack(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
        self.index_ = VectorIndex.build(ids, matrix)
        self._embedder, self._embedder_problem = embedder, None
        self.embedder_name_ = embedder.name
        self._titles = {
            item_id: title
            for item_id, title in zip(table.item_ids, table.titles, strict=True)
            if title
        }
        return self

    # -- serving -----------------------------------------------------------------------

    def _fitted(self) -> VectorIndex:
        if self.index_ is None:
            raise RuntimeError("ContentModel is not fitted")
        return self.index_

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """Neighbours of the anchor item if it is indexed, else of the history profile.

        Never returns ``query.exclude``, the anchor, or the session and history items.
        """
        index = self._fitted()
        if k <= 0:
            return []
        seen = list(dict.fromkeys((*query.session, *query.history)))  # most recent first
        skip = set(query.exclude)
        skip.update(seen)
        anchor = query.anchor_item_id
        if anchor is not None:
            vector = index.vector(anchor)
            if vector is not None:
                skip.add(anchor)
                return [Recalled(i, s, anchor) for i, s in index.search(vector, k, skip)]
        profile = self.profile(query)
        if profile is None:
            return []
        vector, sources, history = profile
        found = index.search(vector, k, skip)
        return self._explain(index, found, sources, history)

    def profile(self, query: RecallQuery) -> tuple[Float32Array, list[str], Float32Array] | None:
        """The user's taste as one unit vector: the recency-weighted mean of the vectors of
        the session and history items (most recent first, at most ``history_len``).

        Returns the vector, the items it was built from, and their vectors (one row each);
        None when no item of the history is indexed.
        """
        index = self._fitted()
        seeds = list(dict.fromkeys((*query.session, *query.history)))
        at, found = index.vectors(seeds)
        if not at:
            return None
        # The most recent ``history_len`` of the indexed ones.
        at, history = at[: self.history_len], found[: self.history_len]
        sources = [seeds[i] for i in at]
        weights = 0.5 ** (np.arange(len(sources)) / self.recency_half_life)
        profile = (weights @ history).astype(np.float32)
        norm = float(np.linalg.norm(profile))
        if norm < 1e-12:  # opposite texts cancelled out: no direction to search in
            return None
        return profile / norm, sources, history

    def vector(self, item_id: str) -> Float32Array | None:
        """The item's unit text vector, or None when it is not indexed."""
        return self._fitted().vector(item_id)

    def vectors(self, item_ids: Sequence[str]) -> tuple[list[int], Float32Array]:
        """Many items' unit text vectors: the positions in ``item_ids`` of the indexed ones,
        and their vectors (one row each)."""
        return self._fitted().vectors(item_ids)

    @staticmethod
    def _explain(
        index: VectorIndex,
        found: list[tuple[str, float]],
        sources: list[str],
        history: Float32Array,
    ) -> list[Recalled]:
        """Name, for each result, the history item whose text is closest to it."""
        # Vectors are missing only for items removed since the search.
        at, vectors = index.vectors([item_id for item_id, _ in found])
        because: list[str | None] = [None] * len(found)
        if at:
            closest = np.argmax(vectors @ history.T, axis=1).tolist()
            for position, row in zip(at, closest, strict=True):
                because[position] = sources[row]
        return [
            Recalled(item_id, score, reason)
            for (item_id, score), reason in zip(found, because, strict=True)
        ]

    def title(self, item_id: str) -> str | None:
        """The item's title, if known: for reasons such as "Because you watched ..."."""
        return self._titles.get(item_id)

    def add_items(
        self, ids: Sequence[str], texts: Sequence[str], titles: Sequence[str | None]
    ) -> int:
        """Embed and index new or changed items; returns how many are now indexed.

        An item already indexed gets its new vector; one whose text is now empty (or embeds
        to nothing) is taken out of the index. Titles are updated either way.

        Raises:
            EmbedderUnavailable: the model was loaded where its embedder cannot run (a
                "minilm" model without sentence-transformers); recall still works.
        """
        if not len(ids) == len(texts) == len(titles):
            raise ValueError("ids, texts and titles must have the same length")
        index = self._fitted()
        embedder = self._embedder
        if embedder is None:
            raise EmbedderUnavailable(
                f"this content model was trained with text embedder {self.embedder_name_!r}, "
                f"which cannot be opened here ({self._embedder_problem}); it can recall but "
                "not add items"
            )
        with self._write_lock:
            rows = [i for i, text in enumerate(texts) if text.strip()]
            embedded = embedder.embed([texts[i] for i in rows])
            added, vectors = _usable([ids[i] for i in rows], embedded)
            if added:
                index.add(added, vectors)
            dropped = set(ids) - set(added)
            if dropped:
                index.remove(dropped)
            for item_id, title in zip(ids, titles, strict=True):
                if title:
                    self._titles[item_id] = title
                else:
                    self._titles.pop(item_id, None)
        return len(set(added))

    # -- persistence -------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the index, the titles and the parameters (with the embedder used)."""
        index = self._fitted()
        index.save(path / _INDEX_DIR)
        (path / _TITLES_FILE).write_text(json.dumps(self._titles), encoding="utf-8")
        meta = {**self.params(), "embedder_name": self.embedder_name_, "dim": index.dim}
        (path / _PARAMS_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save` and reopen its embedder by name.

        If the embedder cannot be opened here (a "minilm" model where sentence-transformers
        is not installed) the model still recalls; only :meth:`add_items` raises.
        """
        meta = json.loads((path / _PARAMS_FILE).read_text(encoding="utf-8"))
        name = str(meta.pop("embedder_name"))
        dim = int(meta.pop("dim"))
        model = cls(**meta)
        model.index_ = VectorIndex.load(path / _INDEX_DIR)
        model.embedder_name_ = name
        model._titles = json.loads((path / _TITLES_FILE).read_text(encoding="utf-8"))
        try:
            embedder = open_embedder(name)
        except EmbedderUnavailable as exc:
            log.warning("content model: %s; recall works, adding items does not", exc)
            model._embedder_problem = str(exc)
            return model
        if embedder.dim != dim:
            model._embedder_problem = f"it embeds in {embedder.dim} dimensions, not {dim}"
            log.warning("content model: embedder %r %s", name, model._embedder_problem)
            return model
        model._embedder = embedder
        return model


def _usable(ids: list[str], vectors: Float32Array) -> tuple[list[str], Float32Array]:
    """Drop the rows that embedded to zero (no words): they match nothing."""
    keep = np.linalg.norm(vectors, axis=1) > 0
    if keep.all():
        return ids, vectors
    return [i for i, k in zip(ids, keep.tolist(), strict=True) if k], vectors[keep]

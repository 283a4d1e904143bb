"""The files of an embedding model: its arrays in ``NAME.npz``, its kind, format, params and
vocabularies in ``NAME.json``, and its vector index (if any) in ``index/``; no pickle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recloop.retrieval.interactions import Float32Array

if TYPE_CHECKING:
    from recloop.retrieval.vector_index import VectorIndex


def save_model_files(
    path: Path,
    name: str,
    arrays: Mapping[str, Any],
    meta: Mapping[str, Any],
    index: VectorIndex | None,
) -> None:
    """Write ``arrays`` and ``meta`` (which names the kind and format) under ``path``."""
    np.savez(path / f"{name}.npz", **dict(arrays))
    (path / f"{name}.json").write_text(json.dumps(dict(meta)), encoding="utf-8")
    if index is not None:
        index_dir = path / "index"
        index_dir.mkdir()
        index.save(index_dir)


def load_model_files(
    path: Path, name: str, kind: str, fmt: int
) -> tuple[dict[str, Any], dict[str, Float32Array]]:
    """The meta and the float32 arrays written by :func:`save_model_files`; a folder of
    another kind or format is refused by name."""
    meta: dict[str, Any] = json.loads((path / f"{name}.json").read_text(encoding="utf-8"))
    if meta.get("kind") != kind or meta.get("format") != fmt:
        raise ValueError(f"{path} holds no {kind} model of format {fmt}")
    with np.load(path / f"{name}.npz", allow_pickle=False) as stored:
        arrays = {key: np.asarray(stored[key], dtype=np.float32) for key in stored.files}
    return meta, arrays

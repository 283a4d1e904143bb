"""The trained retrieval models recloop knows, listed once.

Everything that names a trained kind reads ``MODELS``: loading a saved model by its kind
(``retrieval.bundle``), fitting and tuning it (``training.sources``) and serving it as
candidate sources (``serving.components``). A saved model names its kind, and only these
kinds are ever loaded: a manifest never holds an import path.

A new trained source is one new file, a class following ``RetrievalModel``, and one line
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from recloop.retrieval.content import ContentModel
from recloop.retrieval.factors import ALSModel, BPRModel
from recloop.retrieval.item_item import EASE, CoVisitation, ItemKNN
from recloop.retrieval.models import RetrievalModel, Seeds
from recloop.retrieval.sasrec import SASRecModel
from recloop.retrieval.segment_popular import SegmentPopularModel
from recloop.retrieval.two_tower import TwoTowerModel

#: Every trained model class, in the order training reports them.
MODELS: tuple[type[RetrievalModel], ...] = (
    CoVisitation,
    ItemKNN,
    EASE,
    ALSModel,
    BPRModel,
    ContentModel,
    TwoTowerModel,
    SegmentPopularModel,
    SASRecModel,
)


def _by_kind(models: tuple[type[RetrievalModel], ...]) -> Mapping[str, type[RetrievalModel]]:
    table: dict[str, type[RetrievalModel]] = {}
    for model in models:
        if model.kind in table:
            raise ValueError(f"two model classes share the kind {model.kind!r}")
        table[model.kind] = model
    return MappingProxyType(table)


def _sources(models: tuple[type[RetrievalModel], ...]) -> Mapping[str, tuple[Seeds, str]]:
    table: dict[str, tuple[Seeds, str]] = {}
    for model in models:
        for name, seeds in model.serves.items():
            if name in table:
                raise ValueError(f"two model classes serve the source {name!r}")
            table[name] = (seeds, model.kind)
    return MappingProxyType(table)


#: The model class of each kind.
MODEL_KINDS: Mapping[str, type[RetrievalModel]] = _by_kind(MODELS)

#: Trained sources a surface may name: source name -> (what it feeds the model, model kind).
TRAINED_SOURCES: Mapping[str, tuple[Seeds, str]] = _sources(MODELS)


def model_class(kind: str) -> type[RetrievalModel]:
    """The model class of ``kind``.

    Raises:
        ValueError: the kind is not one recloop knows.
    """
    model = MODEL_KINDS.get(kind)
    if model is None:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(sorted(MODEL_KINDS))}")
    return model

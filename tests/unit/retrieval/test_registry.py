"""The registry of trained model classes: one list, from which every table derives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recloop.retrieval.bundle import load_model
from recloop.retrieval.item_item import CoVisitation, ItemKNN
from recloop.retrieval.registry import (
    MODEL_KINDS,
    MODELS,
    TRAINED_SOURCES,
    _by_kind,
    _sources,
    model_class,
)
from recloop.retrieval.source_table import MODEL_SOURCES
from recloop.training.sources import FACTORIES

pytestmark = pytest.mark.unit


def test_every_table_derives_from_the_one_list() -> None:
    assert list(MODEL_KINDS) == [model.kind for model in MODELS]
    assert dict(FACTORIES) == dict(MODEL_KINDS)
    assert dict(MODEL_SOURCES) == dict(TRAINED_SOURCES)
    assert {kind for _, kind in TRAINED_SOURCES.values()} == set(MODEL_KINDS)


def test_each_model_serves_a_source_of_its_own_name_and_covisitation_the_session() -> None:
    for model in MODELS:
        assert TRAINED_SOURCES[model.kind] == ("history", model.kind)
    assert TRAINED_SOURCES["session"] == ("session", CoVisitation.kind)


def test_an_unknown_kind_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model kind 'nope'; known: als, bpr"):
        model_class("nope")
    with pytest.raises(ValueError, match="unknown model kind"):
        load_model("nope", tmp_path)


def test_two_classes_may_not_share_a_kind_or_a_source_name() -> None:
    with pytest.raises(ValueError, match="share the kind 'covisitation'"):
        _by_kind((CoVisitation, CoVisitation))
    with pytest.raises(ValueError, match="serve the source 'item-knn'"):
        _sources((ItemKNN, ItemKNN))


def test_the_registry_loads_without_the_tuner_or_torch() -> None:
    # Serving imports the registry; Optuna (tuning) and torch (two-tower fitting) must stay
    # off its import path.
    code = (
        "import sys, recloop.retrieval.registry, recloop.retrieval.bundle;"
        "print(sorted(m for m in ('optuna', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

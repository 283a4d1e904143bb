"""Every registered trained model class, checked the same way.

Parametrized over ``retrieval.registry.MODELS``: a new class is checked as soon as it is
listed there. Each is fitted on the checkerboard world through the training job's ``fit``
(with ``SUITE_PARAMS`` where the defaults do not suit a world this small).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from recloop.retrieval.bundle import load_model
from recloop.retrieval.models import Recalled, RecallQuery
from recloop.retrieval.registry import MODEL_KINDS, model_class
from recloop.training.sources import fit
from tests.contracts.support import (
    CALL_MS_BOUND,
    COSTS,
    FIT_S_BOUND,
    Fitted,
    per_call_ms,
    suite_params,
)
from tests.contracts.world import ASKERS, SAME_GROUP_SHARE, World, same_group_share

pytestmark = pytest.mark.unit

KIND = "trained model"
NAMES = list(MODEL_KINDS)
each_model = pytest.mark.parametrize("name", NAMES)


def _ids(found: list[Recalled]) -> list[str]:
    return [r.item_id for r in found]


def _questions() -> list[RecallQuery]:
    """What the saved and loaded models are both asked: each asker, and an anchor."""
    return [
        *(asker.recall_query() for asker in ASKERS.values()),
        RecallQuery(anchor_item_id="a02", exclude=frozenset({"a02"})),
    ]


@each_model
def test_answers_a_new_user_from_their_own_group(name: str, fitted: Fitted) -> None:
    model = fitted(name)
    for group, asker in ASKERS.items():
        found = _ids(model.recall(asker.recall_query(), 5))
        assert len(found) >= 3, (group, found)
        assert same_group_share(found, group) >= SAME_GROUP_SHARE, (group, found)


@each_model
def test_saves_and_loads_to_the_same_answers(name: str, fitted: Fitted, tmp_path: Path) -> None:
    model = fitted(name)
    model.save(tmp_path)
    # Through the registry, by kind, as the service loads a model version.
    loaded = load_model(name, tmp_path)
    assert type(loaded) is type(model)
    assert loaded.params() == model.params()
    for question in _questions():
        before, after = model.recall(question, 10), loaded.recall(question, 10)
        assert _ids(after) == _ids(before), question
        assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-5)
        assert [(r.because, r.reason) for r in after] == [(r.because, r.reason) for r in before]


@each_model
def test_never_returns_an_excluded_item(name: str, fitted: Fitted) -> None:
    model = fitted(name)
    for asker in ASKERS.values():
        # The consumed items, and the model's own best answers: blocking those must bite.
        best = _ids(model.recall(asker.recall_query(), 3))
        exclude = asker.consumed | set(best)
        found = _ids(model.recall(asker.recall_query(exclude), 100))
        assert not set(found) & exclude


@each_model
def test_answers_unknown_users_and_items_without_an_error(name: str, fitted: Fitted) -> None:
    model = fitted(name)
    for question in (
        RecallQuery(),
        RecallQuery(user_id="nobody"),
        RecallQuery(history=("never-seen",)),
        RecallQuery(anchor_item_id="never-seen"),
    ):
        found = model.recall(question, 5)
        assert len(found) <= 5
        assert not {"never-seen"} & set(_ids(found))


@each_model
def test_respects_k_best_first(name: str, fitted: Fitted, world: World) -> None:
    model = fitted(name)
    question = ASKERS["a"].recall_query()
    assert model.recall(question, 0) == []
    for k in (1, 3, len(world.item_ids) + 10):
        found = model.recall(question, k)
        assert 1 <= len(found) <= k
        assert len(set(_ids(found))) == len(found)
        scores = [r.score for r in found]
        assert all(math.isfinite(s) for s in scores)
        assert scores == sorted(scores, reverse=True)


@each_model
def test_is_deterministic_under_its_seed(name: str, fitted: Fitted, world: World) -> None:
    model = fitted(name)
    again, _ = fit(name, suite_params(name), world.training_data)
    for question in _questions():
        first, second = model.recall(question, 10), again.recall(question, 10)
        assert _ids(second) == _ids(first)
        assert [r.score for r in second] == pytest.approx([r.score for r in first], abs=1e-5)


@each_model
def test_search_space_and_parameters_round_trip(name: str) -> None:
    cls = model_class(name)
    defaults = cls().params()
    json.dumps(defaults)  # recorded beside the artifact
    assert cls(**defaults).params() == defaults
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        space = cls.search_space(trial)
        assert space
        assert space == trial.params
        # Every point of the space builds a model that records it.
        params = cls(**space).params()
        assert {p: params[p] for p in space} == space
    # Tuning starts from the defaults: they lie inside the space.
    for param, dist in trial.distributions.items():
        value = defaults[param]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            assert value in dist.choices, param
        else:
            assert dist.low <= value <= dist.high, param  # type: ignore[attr-defined]


@each_model
def test_reports_its_cost(name: str, fitted: Fitted) -> None:
    model = fitted(name)
    cost = COSTS[(KIND, name)]
    # The training job's fit reports the seconds fitting took.
    assert 0.0 < cost["fit_s"] <= FIT_S_BOUND
    question = ASKERS["a"].recall_query()
    cost["call_ms"] = per_call_ms(lambda: model.recall(question, 10))
    assert cost["call_ms"] <= CALL_MS_BOUND

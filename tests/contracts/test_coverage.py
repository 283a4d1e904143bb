"""The suite checks every registered component, with every check of its kind.

The count it prints is what "a new component is checked" rests on: a trained model class
added to ``retrieval.registry.MODELS`` raises the count of trained models and of candidate
sources with no change here.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from recloop.retrieval.registry import MODEL_KINDS
from recloop.retrieval.source_table import MODEL_SOURCES, SOURCES
from recloop.serving.components import POLICIES, RULES
from tests.contracts import test_policies, test_rules, test_sources, test_trained_models

pytestmark = pytest.mark.unit

#: Each check module, and the names its kind registers.
REGISTERED: dict[ModuleType, set[str]] = {
    test_trained_models: set(MODEL_KINDS),
    test_sources: {*SOURCES, *MODEL_SOURCES},
    test_rules: set(RULES),
    test_policies: set(POLICIES),
}


def _parametrized_names(module: ModuleType) -> dict[str, list[str]]:
    """Each check of ``module``, and the component names it is parametrized over."""
    checks: dict[str, list[str]] = {}
    for attribute, value in vars(module).items():
        if not attribute.startswith("test_") or not callable(value):
            continue
        names: list[str] = []
        for mark in getattr(value, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "name":
                names.extend(mark.args[1])
        checks[attribute] = names
    return checks


@pytest.mark.parametrize("module", list(REGISTERED), ids=lambda m: m.KIND)
def test_every_check_runs_on_every_registered_component(module: ModuleType) -> None:
    checks = _parametrized_names(module)
    assert checks, module.__name__
    for check, names in checks.items():
        assert len(names) == len(set(names)), check
        assert set(names) == REGISTERED[module], check


def test_every_component_without_a_generic_answer_has_a_known_one() -> None:
    assert set(test_sources.KNOWN_ANSWERS) == set(SOURCES)
    assert set(test_rules.KNOWN_ANSWERS) == set(test_rules.RULE_PARAMS) == set(RULES)
    assert set(test_policies.KNOWN_ANSWERS) == set(test_policies.POLICY_PARAMS) == set(POLICIES)


def test_the_count_of_checked_components_is_the_count_registered() -> None:
    # The run's summary ("conformance") prints the count of components that passed.
    counted = {module.KIND: len(set(module.NAMES)) for module in REGISTERED}
    registered = {module.KIND: len(names) for module, names in REGISTERED.items()}
    assert counted == registered
    assert sum(counted.values()) == (
        len(MODEL_KINDS) + len(SOURCES) + len(MODEL_SOURCES) + len(RULES) + len(POLICIES)
    )

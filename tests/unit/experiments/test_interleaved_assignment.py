"""Interleaving experiments: configuration, assignment to both teams, and their pipelines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from recloop.config import ExperimentConfig, Settings
from recloop.errors import ConfigError
from recloop.experiments.assignment import INTERLEAVED, Assigner, variant_surfaces

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _interleaved(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "il",
        "surface": "home",
        "kind": "interleave",
        "variants": [
            {"name": "current"},
            {"name": "click-only", "overrides": {"ranker": {"name": "source-scores"}}},
        ],
    }
    return data | fields


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, "exactly two"),
        ({"variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}, "share"),
        ({"ramp": [0.5, 1.0]}, "ramp"),
        ({"auto_stop": True}, "auto_stop"),
    ],
)
def test_a_bad_interleaving_experiment_is_refused_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentConfig.model_validate(_interleaved(**fields))


def test_every_user_in_it_is_served_both_teams_with_their_other_variants() -> None:
    settings = Settings(
        experiments=[
            _interleaved(),
            {
                "name": "rules",
                "surface": "home",
                "layer": "rules",
                "variants": [{"name": "control", "share": 0.5}, {"name": "t", "share": 0.5}],
            },
        ]
    )
    assigner = Assigner(settings.experiments)
    assignment = assigner.assign("u1", "home", NOW)
    rules = assignment.arms[1].variant

    assert assignment.variant == f"{INTERLEAVED},{rules}"
    assert assignment.team_pipelines() == {
        "current": f"home[il=current,rules={rules}]",
        "click-only": f"home[il=click-only,rules={rules}]",
    }
    built = variant_surfaces(settings.surfaces, settings.experiments)
    for name in assignment.team_pipelines().values():
        assert built[name].exploration.name == "none"  # the draft is the only chance
    assert built[f"home[il=click-only,rules={rules}]"].ranker.name == "source-scores"
    assert assigner.assign("u1", "trending", NOW).team_pipelines() == {}


def test_an_experiment_overriding_the_exploration_it_interleaves_is_refused() -> None:
    settings = Settings(
        experiments=[
            _interleaved(),
            {
                "name": "explore-more",
                "surface": "home",
                "layer": "explore",
                "variants": [
                    {"name": "control", "share": 0.5},
                    {"name": "more", "share": 0.5, "overrides": {"exploration": {"name": "none"}}},
                ],
            },
        ]
    )
    with pytest.raises(ConfigError, match="explore-more overrides the exploration"):
        variant_surfaces(settings.surfaces, settings.experiments)


def test_two_interleaving_experiments_for_the_same_users_are_refused() -> None:
    settings = Settings(experiments=[_interleaved(), _interleaved(name="il2", layer="other")])
    with pytest.raises(ConfigError, match="il and il2 both interleave"):
        variant_surfaces(settings.surfaces, settings.experiments)

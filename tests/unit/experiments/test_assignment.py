"""Assignment: stable, proportional, exclusive within a layer, independent across layers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from recloop.config import ComponentConfig, ExperimentConfig, Settings
from recloop.errors import ConfigError
from recloop.experiments.assignment import (
    HOLDOUT,
    Arm,
    Assigner,
    unit_interval,
    variant_surfaces,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
USERS = [f"u{n}" for n in range(20_000)]


def _experiment(name: str, **fields: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "name": name,
        "surface": "home",
        "variants": [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}],
    }
    return ExperimentConfig.model_validate(data | fields)


@given(st.text(max_size=20), st.text(max_size=40))
def test_unit_interval_is_in_zero_one_and_stable(salt: str, user: str) -> None:
    point = unit_interval(salt, user)
    assert 0.0 <= point < 1.0
    assert unit_interval(salt, user) == point


def test_a_user_keeps_their_variant_on_every_request() -> None:
    assigner = Assigner([_experiment("e")])
    first = {u: assigner.assign(u, "home", NOW).variant for u in USERS[:500]}
    again = {u: Assigner([_experiment("e")]).assign(u, "home", NOW).variant for u in USERS[:500]}
    assert first == again


def test_variants_get_their_configured_shares() -> None:
    experiment = _experiment(
        "e", variants=[{"name": "a", "share": 0.2}, {"name": "b", "share": 0.8}]
    )
    counts = Counter(Assigner([experiment]).assign(u, "home", NOW).variant for u in USERS)
    assert counts["a"] / len(USERS) == pytest.approx(0.2, abs=0.01)
    assert counts["b"] / len(USERS) == pytest.approx(0.8, abs=0.01)


def test_experiments_in_one_layer_never_share_a_user() -> None:
    first = _experiment("first", traffic=0.3)
    second = _experiment("second", traffic=0.5)
    assigner = Assigner([first, second])
    seen = Counter(assigner.assign(u, "home", NOW).experiment for u in USERS)
    assert set(seen) == {"first", "second", None}
    assert seen["first"] / len(USERS) == pytest.approx(0.3, abs=0.01)
    assert seen["second"] / len(USERS) == pytest.approx(0.5, abs=0.01)


def test_experiments_in_two_layers_are_assigned_independently() -> None:
    ranking = _experiment("ranking", layer="ranking")
    rules = _experiment("rules", layer="rules")
    assigner = Assigner([ranking, rules])
    pairs = Counter(assigner.assign(u, "home", NOW).variant for u in USERS)
    # Every combination, each about a quarter of users.
    assert set(pairs) == {
        "control,control",
        "control,treatment",
        "treatment,control",
        "treatment,treatment",
    }
    for count in pairs.values():
        assert count / len(USERS) == pytest.approx(0.25, abs=0.012)


def test_stopping_an_experiment_moves_no_one_else() -> None:
    first = _experiment("first", traffic=0.5, stop=datetime(2026, 5, 1, tzinfo=UTC))
    second = _experiment("second", traffic=0.5)
    running = Assigner([_experiment("first", traffic=0.5), second])
    stopped = Assigner([first, second])
    for user in USERS[:2000]:
        before, after = running.assign(user, "home", NOW), stopped.assign(user, "home", NOW)
        if before.experiment == "second":
            assert after == before
        else:
            assert after.arms == ()
            assert after.variant == "default"


def test_an_experiment_serves_only_between_start_and_stop() -> None:
    experiment = _experiment(
        "e", start=datetime(2026, 5, 1, tzinfo=UTC), stop=datetime(2026, 7, 1, tzinfo=UTC)
    )
    assigner = Assigner([experiment])
    assert assigner.assign("u1", "home", datetime(2026, 4, 1, tzinfo=UTC)).arms == ()
    assert assigner.assign("u1", "home", NOW).arms != ()
    assert assigner.assign("u1", "home", datetime(2026, 7, 1, tzinfo=UTC)).arms == ()


def test_holdout_users_are_in_no_experiment_on_any_surface() -> None:
    assigner = Assigner([_experiment("e"), _experiment("t", surface="trending")], holdout=0.1)
    held = [u for u in USERS if assigner.assign(u, "home", NOW).variant == HOLDOUT]
    assert len(held) / len(USERS) == pytest.approx(0.1, abs=0.01)
    assert all(assigner.assign(u, "trending", NOW).variant == HOLDOUT for u in held)
    assert all(assigner.assign(u, "home", NOW).pipeline == "home" for u in held)


def test_a_surface_without_experiments_is_served_as_configured() -> None:
    assignment = Assigner([_experiment("e")]).assign("u1", "similar", NOW)
    assert (assignment.experiment, assignment.variant, assignment.pipeline) == (
        None,
        "default",
        "similar",
    )


def test_variant_surfaces_apply_overrides_and_replacements() -> None:
    settings = Settings()
    ranker = {"name": "learned", "params": {"weights": {"click": 1.0}}}
    experiment = _experiment(
        "e",
        variants=[
            {"name": "control", "share": 0.4},
            {"name": "click", "share": 0.3, "overrides": {"ranker": ranker}},
            {"name": "trend", "share": 0.3, "surface": "trending"},
        ],
    )
    built = variant_surfaces(settings.surfaces, [experiment])
    assert set(built) == {"home[e=control]", "home[e=click]", "home[e=trend]"}
    assert built["home[e=control]"] == settings.surfaces["home"]
    assert built["home[e=click]"].ranker == ComponentConfig.model_validate(ranker)
    assert built["home[e=click]"].sources == settings.surfaces["home"].sources
    assert built["home[e=trend]"] == settings.surfaces["trending"]
    assignment = Assigner([experiment]).assign("u1", "home", NOW)
    assert assignment.pipeline in built
    assert assignment.arms == (Arm("e", assignment.variant),)


def test_two_layers_changing_the_same_part_of_a_surface_are_refused() -> None:
    rules = [{"name": "mmr", "params": {}}]
    first = _experiment(
        "first",
        layer="a",
        variants=[
            {"name": "c", "share": 0.5},
            {"name": "t", "share": 0.5, "overrides": {"rules": rules}},
        ],
    )
    second = _experiment(
        "second",
        layer="b",
        variants=[
            {"name": "c", "share": 0.5},
            {"name": "t", "share": 0.5, "overrides": {"rules": []}},
        ],
    )
    with pytest.raises(ConfigError, match="both override 'rules'"):
        variant_surfaces(Settings().surfaces, [first, second])


def test_settings_name_the_field_of_a_bad_experiment() -> None:
    with pytest.raises(ValidationError, match="surface: no surface named 'nowhere'"):
        Settings(experiments=[_experiment("e", surface="nowhere")])
    with pytest.raises(ValidationError, match="shares must add up to 1"):
        _experiment("e", variants=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}])
    with pytest.raises(ValidationError, match="take more than all of its users"):
        Settings(experiments=[_experiment("a", traffic=0.6), _experiment("b", traffic=0.6)])
    with pytest.raises(ValidationError, match="cannot be overridden"):
        _experiment(
            "e",
            variants=[
                {"name": "a", "share": 0.5},
                {"name": "b", "share": 0.5, "overrides": {"requires_item": True}},
            ],
        )

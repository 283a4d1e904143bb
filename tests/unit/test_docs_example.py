"""The example configuration in docs/ stays loadable and builds every surface it declares."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.retrieval.popularity import PopularityIndex
from recloop.serving.components import Resources
from recloop.serving.surfaces import build_pipelines

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "recloop.example.toml"


def test_example_config_loads_and_builds_every_surface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_CONFIG", str(EXAMPLE))
    settings = Settings()
    assert set(settings.surfaces) == {"home", "trending", "similar"}
    assert settings.surfaces["similar"].requires_item
    with ThreadPoolExecutor(1) as executor:
        pipelines = build_pipelines(
            settings.surfaces,
            Resources(
                PopularityIndex(),
                catalog=None,  # type: ignore[arg-type]
                features=object(),  # type: ignore[arg-type]
                rec_log=object(),  # type: ignore[arg-type]
            ),
            settings.serving.budget,
            executor,
        )
    assert [slot.source.name for slot in pipelines["home"].sources] == [
        "session",
        "covisitation",
        "als",
        "interests",
        "trending",
        "popular",
        "fresh",
        "newest",
    ]
    assert [rule.name for rule in pipelines["home"].rules] == [
        "business",
        "cap-creator",
        "recently-shown",
        "freshness",
        "mmr",
    ]
    assert [s.name for s in settings.train.sources] == [
        "covisitation",
        "ease",
        "als",
        "content",
        "two-tower",
    ]


def test_the_experiment_example_in_the_docs_is_valid_configuration() -> None:
    import re
    import tomllib

    from recloop.experiments.assignment import variant_surfaces

    text = (EXAMPLE.parent / "experiments.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    settings = Settings(**tomllib.loads(block.group(1)))
    (experiment,) = settings.experiments
    assert experiment.control == "control"
    assert [g.metric for g in experiment.guardrails] == ["hide_rate", "latency_p99"]
    built = variant_surfaces(settings.surfaces, settings.experiments)
    assert built["home[click-only-ranker=click-only]"].ranker.params == {"weights": {"click": 1.0}}


def test_the_staged_canary_example_in_the_docs_is_valid_configuration() -> None:
    import re
    import tomllib

    text = (EXAMPLE.parent / "experiments.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    ramped = [b for b in blocks if "ramp = " in b]
    assert len(ramped) == 1
    (experiment,) = Settings(**tomllib.loads(ramped[0])).experiments
    assert experiment.shares(0) == {"stable": 0.99, "v2": 0.01}
    assert experiment.variants[1].model_version is not None


def test_the_shadow_example_in_the_docs_is_valid_configuration() -> None:
    import re
    import tomllib

    from recloop.serving.shadow import shadow_surface

    text = (EXAMPLE.parent / "experiments.md").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.DOTALL) if "[[shadows]]" in b]
    assert len(blocks) == 1
    settings = Settings(**tomllib.loads(blocks[0]))
    (shadow,) = settings.shadows
    built = shadow_surface(settings.surfaces, shadow)
    assert built.ranker.params == {"weights": {"click": 1.0}}
    assert built.exploration.name == "none"


def test_the_interleaving_example_in_the_docs_is_valid_configuration() -> None:
    import re
    import tomllib

    from recloop.experiments.assignment import variant_surfaces

    text = (EXAMPLE.parent / "experiments.md").read_text()
    blocks = [
        b for b in re.findall(r"```toml\n(.*?)```", text, re.DOTALL) if 'kind = "interleave"' in b
    ]
    assert len(blocks) == 1
    settings = Settings(**tomllib.loads(blocks[0]))
    built = variant_surfaces(settings.surfaces, settings.experiments)
    team = built["home[ranker-interleaved=click-only]"]
    assert team.ranker.params == {"weights": {"click": 1.0}}
    assert team.exploration.name == "none"

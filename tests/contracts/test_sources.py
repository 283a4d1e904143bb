"""Every candidate source a surface may name, checked the same way.

Parametrized over ``retrieval.source_table``'s tables: ``SOURCES`` (lookups in the popularity
snapshot, cold-start sources) and ``MODEL_SOURCES`` (derived from the registry of trained
models, so a new trained model's sources are checked as soon as it is listed). Each source
is built by name exactly as a surface builds it, over the checkerboard world's snapshot and
a model version holding every registered model fitted on the world.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from recloop.config import BudgetSettings, SurfaceConfig
from recloop.config.surfaces import SourceSlotConfig
from recloop.domain import Candidate
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.popularity import PopularityIndex
from recloop.retrieval.protocols import CandidateSource
from recloop.retrieval.registry import MODEL_KINDS
from recloop.retrieval.source_table import MODEL_SOURCES, SOURCES
from recloop.serving.components import Resources, build_source
from recloop.serving.surfaces import build_pipeline
from tests.contracts.support import CALL_MS_BOUND, COSTS, Fitted, per_call_ms
from tests.contracts.world import (
    APP,
    ASKERS,
    BEST_CLICK_RATE,
    FRESH_AGE_DAYS,
    MOST_POPULAR,
    NEWEST,
    SAME_GROUP_SHARE,
    TRENDING,
    Catalog,
    World,
    group_of,
    same_group_share,
)

pytestmark = pytest.mark.unit

KIND = "candidate source"
NAMES = [*SOURCES, *MODEL_SOURCES]
each_source = pytest.mark.parametrize("name", NAMES)

#: What each source that does not learn from the world answers an asker of ``group``:
#: planted in the world (see ``world``). A trained source answers from the asker's group.
KNOWN_ANSWERS: dict[str, Callable[[list[str], str], bool]] = {
    "popular": lambda found, group: found[0] == MOST_POPULAR,
    "trending": lambda found, group: found[0] == TRENDING,
    "click-rate": lambda found, group: found[0] == BEST_CLICK_RATE,
    "newest": lambda found, group: (
        found[: len(FRESH_AGE_DAYS)] == list(FRESH_AGE_DAYS) and found[0] == NEWEST
    ),
    "same-category": lambda found, group: (
        all(group_of(i) == group for i in found) and ASKERS[group].anchor not in found
    ),
    "interests": lambda found, group: all(group_of(i) == group for i in found),
    "fresh": lambda found, group: set(found) <= set(FRESH_AGE_DAYS) and group_of(found[0]) == group,
}


def _personal(found: list[str], group: str) -> bool:
    return len(found) >= 3 and same_group_share(found[:5], group) >= SAME_GROUP_SHARE


@pytest.fixture(scope="module")
def models(fitted: Fitted, world: World) -> ModelIndex:
    """A model version holding every registered model, each under its kind."""
    index = ModelIndex()
    titles = dict(zip(world.item_ids, world.training_data.items.titles, strict=True))
    bundle = ModelBundle("contracts", {kind: fitted(kind) for kind in MODEL_KINDS}, titles)
    index.publish(APP, bundle)
    return index


@pytest.fixture(scope="module")
def resources(world: World, models: ModelIndex) -> Resources:
    """What serving builds sources from, over the world."""
    popularity = PopularityIndex()
    popularity.publish(APP, world.popularity())
    return Resources(popularity=popularity, catalog=Catalog(world.item_ids), models=models)


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    """The pool a pipeline runs sources in."""
    with ThreadPoolExecutor(2) as pool:
        yield pool


def _source(name: str, resources: Resources) -> CandidateSource:
    return build_source(name, {}, resources, f"sources.{name}")


def _ids(found: list[Candidate]) -> list[str]:
    return [c.item_id for c in found]


@each_source
def test_knows_the_answer_the_world_plants(name: str, resources: Resources) -> None:
    if name not in MODEL_SOURCES:
        assert name in KNOWN_ANSWERS, f"add the known answer of {name!r} to KNOWN_ANSWERS"
    knows = KNOWN_ANSWERS.get(name, _personal)
    source = _source(name, resources)
    for group, asker in ASKERS.items():
        found = _ids(source.retrieve(asker.context(), 10))
        assert found, group
        assert knows(found, group), (group, found)


@each_source
def test_tags_its_candidates_and_respects_k(name: str, resources: Resources) -> None:
    source = _source(name, resources)
    assert source.name == name
    ctx = ASKERS["a"].context()
    # Serving asks for at least one candidate (a quota is at least 1).
    for k in (1, 3, 100):
        found = source.retrieve(ctx, k)
        assert 1 <= len(found) <= k
        assert len(set(_ids(found))) == len(found)
        for candidate in found:
            assert candidate.source == name
            assert math.isfinite(candidate.score)
            assert candidate.reason


@each_source
def test_never_serves_a_consumed_suppressed_or_blocked_item(
    name: str, resources: Resources, world: World, executor: ThreadPoolExecutor
) -> None:
    # Serving's promise for every source: what the user consumed or dismissed, and what the
    # catalog blocks, is never served. The items the source itself ranks best are the ones
    # dismissed and blocked, so the check bites whatever the source answers.
    asker = ASKERS["a"]
    own = [
        i
        for i in _ids(_source(name, resources).retrieve(asker.context(excluded=frozenset()), 20))
        if i not in asker.consumed
    ]
    assert len(own) >= 2, own
    suppressed, blocked = own[0], own[1]
    # Blocked after the last snapshot: only the catalog knows it yet.
    shop = Resources(
        popularity=resources.popularity,
        catalog=Catalog(world.item_ids, blocked=frozenset({blocked})),
        models=resources.models,
    )
    surface = SurfaceConfig(
        sources=[SourceSlotConfig(name=name, quota=50, timeout_ms=10_000)], fallback=["popular"]
    )
    budget = BudgetSettings(retrieve_ms=10_000)
    pipeline = build_pipeline("contracts", surface, shop, budget, executor)
    never = asker.consumed | {suppressed, blocked}
    served = pipeline.run(asker.context(excluded=asker.consumed | {suppressed}), 5)
    assert served.items
    assert not {item.item_id for item in served.items} & never
    assert all(name in item.sources for item in served.items), "served from the fallback"


@each_source
def test_is_deterministic(name: str, resources: Resources) -> None:
    source = _source(name, resources)
    ctx = ASKERS["b"].context()
    assert source.retrieve(ctx, 20) == source.retrieve(ctx, 20)


@each_source
def test_answers_an_unknown_app_or_user_without_an_error(name: str, resources: Resources) -> None:
    source = _source(name, resources)
    assert source.retrieve(ASKERS["a"].context(app_id="elsewhere"), 10) == []
    stranger = ASKERS["a"].context()
    for ctx in (
        type(stranger)(app_id=APP, request_id="r", surface="s", user_id="nobody", now=stranger.now),
        ASKERS["a"].context(anchored=False),
    ):
        assert len(source.retrieve(ctx, 10)) <= 10


@each_source
def test_reports_its_cost(name: str, resources: Resources) -> None:
    source = _source(name, resources)
    ctx = ASKERS["a"].context()
    cost = COSTS[(KIND, name)]
    cost["call_ms"] = per_call_ms(lambda: source.retrieve(ctx, 50))
    assert cost["call_ms"] <= CALL_MS_BOUND

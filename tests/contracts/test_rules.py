"""Every rerank rule a surface may name, checked the same way.

Parametrized over ``serving.components.RULES``; each rule is built by name with the
parameters in ``RULE_PARAMS``, over the checkerboard world's snapshot and content model, and
asked to reshape a slate that ranks every ``a`` item above every ``b`` item.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from recloop.domain import ScoredItem, Slate
from recloop.rerank.protocols import RerankRule
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.popularity import PopularityIndex
from recloop.serving.components import RULES, Resources, build_rule
from tests.contracts.support import CALL_MS_BOUND, COSTS, Fitted, per_call_ms
from tests.contracts.world import APP, ASKERS, CATEGORY, NEWEST, Catalog, World, group_of

pytestmark = pytest.mark.unit

KIND = "rerank rule"
NAMES = list(RULES)
each_rule = pytest.mark.parametrize("name", NAMES)

#: The parameters each rule is built with: what makes its known answer show.
RULE_PARAMS: dict[str, dict[str, Any]] = {
    "cap": {"attribute": "category", "max_items": 2, "window": 4},
    "mmr": {"lambda": 0.5},
    "freshness": {"boost": 1.0},
    "recently-shown": {"max_shown": 2},
    "business": {
        "exclude": [{"attribute": "category", "value": CATEGORY["b"]}],
        "pin": [{"item_id": "a09", "position": 0}],
    },
}

#: Items the user was served recently, and how often (read by ``recently-shown``).
SHOWN = {"a00": 3, "a01": 1}

#: What each rule makes of the ranked slate (every ``a`` item, then every ``b`` item).
KNOWN_ANSWERS: dict[str, Callable[[list[str]], bool]] = {
    # Two of a category in any four consecutive places: the head alternates pairs.
    "cap": lambda out: out[:4] == ["a00", "a01", "b00", "b01"],
    # The head is all ``a``; diversity brings a ``b`` item into the first three.
    "mmr": lambda out: out[0] == "a00" and any(group_of(i) == "b" for i in out[:3]),
    # The item created an hour ago rises from the middle of the slate to the top.
    "freshness": lambda out: out[0] == NEWEST,
    # Shown three times without a click: last; shown once: kept.
    "recently-shown": lambda out: out[-1] == "a00" and out[0] == "a01",
    "business": lambda out: out[0] == "a09" and all(group_of(i) == "a" for i in out),
}


class _ServedLists:
    """The recommendation log, as far as ``recently-shown`` reads it."""

    def shown_counts(
        self,
        app_id: str,
        user_id: str,
        since: datetime,
        limit: int = 50,
        until: datetime | None = None,
        surface: str | None = None,
    ) -> dict[str, int]:
        return dict(SHOWN) if app_id == APP else {}


@pytest.fixture(scope="module")
def resources(world: World, fitted: Fitted) -> Resources:
    """What serving builds rules from, over the world."""
    popularity = PopularityIndex()
    popularity.publish(APP, world.popularity())
    models = ModelIndex()
    models.publish(APP, ModelBundle("contracts", {"content": fitted("content")}))
    return Resources(
        popularity=popularity,
        catalog=Catalog(world.item_ids),
        models=models,
        rec_log=_ServedLists(),  # type: ignore[arg-type]
    )


def _rule(name: str, resources: Resources) -> RerankRule:
    assert name in RULE_PARAMS, f"add the parameters of {name!r} to RULE_PARAMS"
    return build_rule(name, RULE_PARAMS[name], resources, f"rules.{name}")


def _slate(world: World) -> Slate:
    """Every ``a`` item, then every ``b`` item, in id order, scores falling."""
    ids = sorted(world.item_ids, key=lambda i: (group_of(i), i))
    n = len(ids)
    return Slate(tuple(ScoredItem(i, float(n - r), "src", "why") for r, i in enumerate(ids)))


@each_rule
def test_knows_the_answer(name: str, resources: Resources, world: World) -> None:
    assert name in KNOWN_ANSWERS, f"add the known answer of {name!r} to KNOWN_ANSWERS"
    out = _rule(name, resources).apply(_slate(world), ASKERS["a"].context()).item_ids()
    assert KNOWN_ANSWERS[name](out), out


@each_rule
def test_never_adds_an_item_nor_lengthens_the_slate(
    name: str, resources: Resources, world: World
) -> None:
    # The slate reaching the rules holds only eligible items: a rule that served anything
    # else could serve a consumed or blocked one.
    rule = _rule(name, resources)
    ctx = ASKERS["a"].context()
    full = _slate(world)
    for slate in (full, Slate(full.items[::3]), Slate(full.items[:1]), Slate(())):
        out = rule.apply(slate, ctx).item_ids()
        assert set(out) <= set(slate.item_ids())
        assert len(set(out)) == len(out) <= len(slate.items)


@each_rule
def test_is_deterministic_and_declares_itself(
    name: str, resources: Resources, world: World
) -> None:
    rule = _rule(name, resources)
    assert isinstance(rule.mandatory, bool)
    assert rule.name
    ctx = ASKERS["b"].context()
    assert rule.apply(_slate(world), ctx) == rule.apply(_slate(world), ctx)


@each_rule
def test_reports_its_cost(name: str, resources: Resources, world: World) -> None:
    rule = _rule(name, resources)
    slate, ctx = _slate(world), ASKERS["a"].context()
    cost = COSTS[(KIND, name)]
    cost["call_ms"] = per_call_ms(lambda: rule.apply(slate, ctx))
    assert cost["call_ms"] <= CALL_MS_BOUND

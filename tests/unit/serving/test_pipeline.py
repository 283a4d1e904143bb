"""The pipeline built by hand: budgets, fallbacks, mandatory filters, ranking failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.domain import Candidate, RequestContext, ScoredItem, Slate
from recloop.explore.policies import ExplorationPolicy, NoExplorationPolicy
from recloop.features.candidates import FeatureMatrix, MergedCandidate
from recloop.ranking.protocols import Ranker, Scores
from recloop.ranking.source_scores import SourceScoreConfig, SourceScoreRanker
from recloop.rerank.eligibility import ExcludedItemsFilter
from recloop.rerank.protocols import CandidateFilter, RerankRule
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.model_source import ModelSource
from recloop.retrieval.protocols import CandidateSource, RetrievalQuery
from recloop.serving.budget import Budget, StageTrace
from recloop.serving.pipeline import Pipeline, ServedSlate, SourceSlot

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


# --- Fakes --------------------------------------------------------------------------------------


class ListSource:
    """Returns fixed (item, score) pairs, at most k of them."""

    def __init__(self, name: str, found: Sequence[tuple[str, float]]) -> None:
        self.name = name
        self._found = list(found)
        self.calls = 0

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        self.calls += 1
        return [Candidate(i, self.name, s, f"from {self.name}") for i, s in self._found[:k]]


class SlowSource(ListSource):
    """Answers only once released (or after 5 s): far past any timeout used here."""

    def __init__(self, name: str, found: Sequence[tuple[str, float]]) -> None:
        super().__init__(name, found)
        self.release = threading.Event()

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        self.release.wait(5.0)
        return super().retrieve(query, k)


class FailingSource:
    def __init__(self, name: str) -> None:
        self.name = name

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        raise RuntimeError(f"{self.name} is down")


class DropFilter:
    """Drops fixed ids, counting its calls."""

    name = "drop"

    def __init__(self, drop: set[str]) -> None:
        self._drop = drop
        self.calls = 0

    def keep(
        self, candidates: Sequence[MergedCandidate], ctx: RequestContext
    ) -> list[MergedCandidate]:
        self.calls += 1
        return [c for c in candidates if c.item_id not in self._drop]


class FailingFilter:
    name = "broken"

    def keep(
        self, candidates: Sequence[MergedCandidate], ctx: RequestContext
    ) -> list[MergedCandidate]:
        raise ConnectionError("catalog unreachable")


class RaisingRanker:
    version = "raising-1"

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        raise RuntimeError("model exploded")


class ConstantRanker:
    """Returns a fixed vector whatever it is given (NaN, or the wrong length)."""

    version = "constant-1"

    def __init__(self, fill: float, extra_rows: int = 0) -> None:
        self._fill = fill
        self._extra_rows = extra_rows

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        return Scores(np.full(len(features.item_ids) + self._extra_rows, self._fill))


class FailingRule:
    name = "flaky-rule"

    def __init__(self, mandatory: bool) -> None:
        self.mandatory = mandatory

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        raise RuntimeError("rule broke")


class ReverseRule:
    name = "reverse"
    mandatory = False

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        return Slate(slate.items[::-1])


# --- Helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-src")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def slot(source: CandidateSource, quota: int = 100, timeout_ms: float = 2000.0) -> SourceSlot:
    return SourceSlot(source, quota, timeout_ms)


def make_pipeline(
    executor: ThreadPoolExecutor,
    slots: Sequence[SourceSlot],
    *,
    filters: Sequence[CandidateFilter] = (),
    ranker: Ranker | None = None,
    rules: Sequence[RerankRule] = (),
    fallback: CandidateSource | list[CandidateSource] | None = None,
    budget: Budget | None = None,
    policy: ExplorationPolicy | None = None,
) -> Pipeline:
    names = [s.source.name for s in slots]
    return Pipeline(
        name="test",
        sources=slots,
        filters=filters,
        ranker=ranker or SourceScoreRanker(names),
        rules=rules,
        policy=policy or NoExplorationPolicy(),
        fallback=fallback or ListSource("popular", []),
        budget=budget or Budget(retrieve_ms=2000.0),
        executor=executor,
    )


def context(excluded: frozenset[str] = frozenset()) -> RequestContext:
    return RequestContext(
        app_id="app",
        request_id="r1",
        surface="test",
        user_id="u1",
        now=T0,
        excluded_item_ids=excluded,
    )


def served_ids(served: ServedSlate) -> list[str]:
    return [item.item_id for item in served.items]


def stage(served: ServedSlate, name: str) -> StageTrace:
    matches = [t for t in served.trace if t.stage == name]
    assert len(matches) == 1, f"expected one {name} stage in {served.trace}"
    return matches[0]


# --- Tests --------------------------------------------------------------------------------------


def test_an_item_recalled_by_several_sources_keeps_every_source(
    executor: ThreadPoolExecutor,
) -> None:
    first = ListSource("first", [("x", 1.0), ("shared", 0.5)])
    second = ListSource("second", [("shared", 2.0), ("z", 1.0)])
    pipeline = make_pipeline(executor, [slot(first), slot(second)])

    served = pipeline.run(context(), 10)

    by_id = {item.item_id: item for item in served.items}
    assert set(by_id) == {"x", "shared", "z"}
    assert by_id["shared"].sources == ("first", "second")
    # Credited to the source that scored it highest against its own best: second's top
    # item, first's second; the reason is the credited source's.
    assert by_id["shared"].source == "second"
    assert by_id["shared"].reason == "from second"
    assert dict(by_id["shared"].source_scores) == {"first": 0.5, "second": 1.0}
    assert by_id["x"].sources == ("first",)
    assert by_id["z"].sources == ("second",)
    assert not served.fallback


def test_a_tie_in_support_keeps_the_first_finder_and_its_reason(
    executor: ThreadPoolExecutor,
) -> None:
    first = ListSource("first", [("shared", 3.0)])
    second = ListSource("second", [("shared", 2.0)])
    served = make_pipeline(executor, [slot(first), slot(second)]).run(context(), 10)
    (item,) = served.items
    assert (item.source, item.reason) == ("first", "from first")


def test_a_healthy_pipeline_serves_by_score_without_fallback(executor: ThreadPoolExecutor) -> None:
    source = ListSource("only", [("low", 1.0), ("high", 3.0), ("mid", 2.0)])
    pipeline = make_pipeline(executor, [slot(source)])

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["high", "mid", "low"]
    assert not served.fallback
    assert all(not t.degraded for t in served.trace)
    assert served.model_version == "source-scores-1"


def test_source_score_ranker_weights_the_sources(executor: ThreadPoolExecutor) -> None:
    a = ListSource("a", [("from-a", 1.0)])
    b = ListSource("b", [("from-b", 1.0)])
    ranker = SourceScoreRanker(["a", "b"], SourceScoreConfig(weights={"b": 3.0}))
    pipeline = make_pipeline(executor, [slot(a), slot(b)], ranker=ranker)

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["from-b", "from-a"]
    assert [item.score for item in served.items] == pytest.approx([3.0, 1.0])


def test_a_source_past_its_timeout_is_dropped_and_traced_as_timeout(
    executor: ThreadPoolExecutor,
) -> None:
    slow = SlowSource("slow", [("late", 9.0)])
    fast = ListSource("fast", [("quick", 1.0)])
    pipeline = make_pipeline(executor, [slot(slow, timeout_ms=20.0), slot(fast)])

    try:
        served = pipeline.run(context(), 10)
    finally:
        slow.release.set()

    assert stage(served, "retrieve:slow").outcome == "timeout"
    assert stage(served, "retrieve:fast").outcome == "ok"
    assert served_ids(served) == ["quick"]
    assert served.fallback


def test_the_retrieve_budget_caps_a_slow_sources_own_timeout(
    executor: ThreadPoolExecutor,
) -> None:
    slow = SlowSource("slow", [("late", 9.0)])
    fast = ListSource("fast", [("quick", 1.0)])
    pipeline = make_pipeline(
        executor,
        # The fast source first: the stage budget is shared, counted from the stage's start.
        # It runs inline, so a loaded machine cannot make it miss the 20 ms budget too.
        [SourceSlot(fast, 100, 2000.0, inline=True), slot(slow, timeout_ms=5000.0)],
        budget=Budget(retrieve_ms=20.0),
    )

    try:
        served = pipeline.run(context(), 10)
    finally:
        slow.release.set()

    assert stage(served, "retrieve:slow").outcome == "timeout"
    assert served_ids(served) == ["quick"]


def test_a_failing_source_is_traced_as_error_and_the_others_serve(
    executor: ThreadPoolExecutor,
) -> None:
    pipeline = make_pipeline(
        executor, [slot(FailingSource("broken")), slot(ListSource("ok", [("a", 1.0)]))]
    )

    served = pipeline.run(context(), 10)

    assert stage(served, "retrieve:broken").outcome == "error"
    assert "broken is down" in stage(served, "retrieve:broken").detail
    assert served_ids(served) == ["a"]
    assert served.fallback


def test_a_source_whose_model_failed_to_load_is_traced_as_fallback_and_flags_the_list(
    executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    models = ModelIndex()
    # The version's "als" model was damaged: the loader left it out and named it in failed;
    # "fresh" is a model this version never had.
    models.publish("app", ModelBundle("v2", {}, failed=frozenset({"als"})))
    pipeline = make_pipeline(
        executor,
        [
            slot(ModelSource("als", models)),
            slot(ModelSource("fresh", models)),
            slot(ListSource("ok", [("a", 1.0)])),
        ],
    )

    with caplog.at_level("ERROR"):
        served = pipeline.run(context(), 10)

    assert stage(served, "retrieve:als").outcome == "fallback"
    assert "v2" in stage(served, "retrieve:als").detail
    assert stage(served, "retrieve:fresh").outcome == "empty"  # absent, not failed
    assert served_ids(served) == ["a"]
    assert served.fallback
    assert not caplog.records  # logged once by the loader, not on every request


def test_when_every_source_fails_the_fallback_source_serves(
    executor: ThreadPoolExecutor,
) -> None:
    fallback = ListSource("popular", [("p1", 5.0), ("p2", 4.0)])
    pipeline = make_pipeline(
        executor, [slot(FailingSource("a")), slot(FailingSource("b"))], fallback=fallback
    )

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["p1", "p2"]
    fallback_stages = [t for t in served.trace if t.stage.startswith("fallback:")]
    assert [t.stage for t in fallback_stages] == ["fallback:popular"]
    assert fallback_stages[0].outcome == "fallback"
    assert served.fallback


def test_when_every_source_is_empty_the_fallback_source_serves(
    executor: ThreadPoolExecutor,
) -> None:
    fallback = ListSource("popular", [("p1", 5.0)])
    pipeline = make_pipeline(executor, [slot(ListSource("a", []))], fallback=fallback)

    served = pipeline.run(context(), 10)

    assert stage(served, "retrieve:a").outcome == "empty"
    assert served_ids(served) == ["p1"]
    assert served.fallback


def test_the_fallback_is_not_asked_when_a_source_recalled_something(
    executor: ThreadPoolExecutor,
) -> None:
    fallback = ListSource("popular", [("p1", 5.0)])
    pipeline = make_pipeline(executor, [slot(ListSource("a", [("a1", 1.0)]))], fallback=fallback)

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["a1"]
    assert fallback.calls == 0
    assert not any(t.stage.startswith("fallback:") for t in served.trace)


def test_when_filters_remove_every_candidate_the_fallback_is_filtered_too(
    executor: ThreadPoolExecutor,
) -> None:
    fallback = ListSource("popular", [("banned", 9.0), ("p1", 5.0)])
    drop = DropFilter({"a1", "banned"})
    pipeline = make_pipeline(
        executor, [slot(ListSource("a", [("a1", 1.0)]))], filters=[drop], fallback=fallback
    )

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["p1"]
    assert drop.calls == 2
    assert served.fallback


def test_a_fallback_chain_moves_past_a_source_with_nothing_servable(
    executor: ThreadPoolExecutor,
) -> None:
    # Fallback sources are "tried in order when no configured source yields a servable item":
    # a first fallback whose every item is filtered out must not end the chain.
    chain = [ListSource("popular", [("consumed", 9.0)]), ListSource("newest", [("fresh", 1.0)])]
    pipeline = make_pipeline(
        executor,
        [slot(ListSource("a", [("consumed", 1.0)]))],
        filters=[ExcludedItemsFilter()],
        fallback=chain,
    )

    served = pipeline.run(context(frozenset({"consumed"})), 10)

    assert served_ids(served) == ["fresh"]
    assert served.fallback


def test_a_failing_fallback_serves_an_empty_list_marked_as_fallback(
    executor: ThreadPoolExecutor,
) -> None:
    pipeline = make_pipeline(
        executor, [slot(FailingSource("a"))], fallback=FailingSource("popular")
    )

    served = pipeline.run(context(), 10)

    assert served.items == ()
    assert stage(served, "fallback:popular").outcome == "error"
    assert served.fallback


def test_a_failing_mandatory_filter_fails_the_request(executor: ThreadPoolExecutor) -> None:
    pipeline = make_pipeline(
        executor, [slot(ListSource("a", [("a1", 1.0)]))], filters=[FailingFilter()]
    )

    with pytest.raises(ConnectionError, match="catalog unreachable"):
        pipeline.run(context(), 10)


def test_filters_run_in_order_and_are_traced(executor: ThreadPoolExecutor) -> None:
    source = ListSource("a", [("x", 3.0), ("y", 2.0), ("z", 1.0)])
    pipeline = make_pipeline(
        executor, [slot(source)], filters=[ExcludedItemsFilter(), DropFilter({"z"})]
    )

    served = pipeline.run(context(frozenset({"x"})), 10)

    assert served_ids(served) == ["y"]
    assert stage(served, "filter:excluded").detail == "3 -> 2"
    assert stage(served, "filter:drop").detail == "2 -> 1"


@pytest.mark.parametrize(
    "ranker",
    [RaisingRanker(), ConstantRanker(float("nan")), ConstantRanker(1.0, extra_rows=1)],
    ids=["raises", "nan", "wrong-length"],
)
def test_a_broken_ranker_serves_in_source_order_traced_as_error(
    ranker: Ranker, executor: ThreadPoolExecutor
) -> None:
    first = ListSource("first", [("low", 1.0), ("high", 9.0)])
    second = ListSource("second", [("mid", 5.0), ("low", 1.0)])
    pipeline = make_pipeline(executor, [slot(first), slot(second)], ranker=ranker)

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["low", "high", "mid"]
    assert stage(served, f"rank:{ranker.version}").outcome == "error"
    assert served.fallback
    scores = [item.score for item in served.items]
    assert all(np.isfinite(scores))
    assert scores == sorted(scores, reverse=True)


def test_a_failing_optional_rule_is_skipped(executor: ThreadPoolExecutor) -> None:
    source = ListSource("a", [("x", 2.0), ("y", 1.0)])
    pipeline = make_pipeline(
        executor, [slot(source)], rules=[FailingRule(mandatory=False), ReverseRule()]
    )

    served = pipeline.run(context(), 10)

    assert served_ids(served) == ["y", "x"]
    assert stage(served, "rerank:flaky-rule").outcome == "error"
    assert stage(served, "rerank:reverse").outcome == "ok"


def test_a_failing_mandatory_rule_fails_the_request(executor: ThreadPoolExecutor) -> None:
    source = ListSource("a", [("x", 2.0)])
    pipeline = make_pipeline(executor, [slot(source)], rules=[FailingRule(mandatory=True)])

    with pytest.raises(RuntimeError, match="rule broke"):
        pipeline.run(context(), 10)


def test_output_is_at_most_k_with_propensity_one(executor: ThreadPoolExecutor) -> None:
    source = ListSource("a", [(f"i{n}", float(n)) for n in range(30)])
    pipeline = make_pipeline(executor, [slot(source)])

    served = pipeline.run(context(), 7)

    assert served_ids(served) == [f"i{n}" for n in range(29, 22, -1)]
    assert [item.propensity for item in served.items] == [1.0] * 7
    assert stage(served, "explore:none").outcome == "ok"


class BrokenPolicy:
    """An exploration policy whose evidence cannot be read (a bandit with Redis down)."""

    name = "broken"

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        raise ConnectionError("online store unreachable")


def test_a_failing_exploration_policy_serves_the_ranked_head_and_says_so(
    executor: ThreadPoolExecutor,
) -> None:
    source = ListSource("a", [(f"i{n}", float(n)) for n in range(30)])
    pipeline = make_pipeline(executor, [slot(source)], policy=BrokenPolicy())

    served = pipeline.run(context(), 5)

    assert served_ids(served) == [f"i{n}" for n in range(29, 24, -1)]
    assert [item.propensity for item in served.items] == [1.0] * 5
    assert stage(served, "explore:broken").outcome == "fallback"
    assert served.fallback


def test_each_source_is_asked_for_its_quota(executor: ThreadPoolExecutor) -> None:
    source = ListSource("a", [(f"i{n}", float(n)) for n in range(30)])
    pipeline = make_pipeline(executor, [slot(source, quota=4)])

    served = pipeline.run(context(), 10)

    assert sorted(served_ids(served)) == ["i0", "i1", "i2", "i3"]


# --- Invariants ---------------------------------------------------------------------------------

POOL = [f"i{n}" for n in range(12)]
found_lists = st.lists(
    st.tuples(st.sampled_from(POOL), st.floats(min_value=0.0, max_value=100.0)), max_size=15
)


@settings(max_examples=150, deadline=None)
@given(
    first=found_lists,
    second=found_lists,
    fallback=found_lists,
    excluded=st.frozensets(st.sampled_from(POOL)),
    k=st.integers(min_value=1, max_value=12),
)
def test_no_excluded_item_is_ever_served_and_at_most_k_are(
    executor: ThreadPoolExecutor,
    first: list[tuple[str, float]],
    second: list[tuple[str, float]],
    fallback: list[tuple[str, float]],
    excluded: frozenset[str],
    k: int,
) -> None:
    pipeline = make_pipeline(
        executor,
        [slot(ListSource("first", first)), slot(ListSource("second", second))],
        filters=[ExcludedItemsFilter()],
        fallback=ListSource("popular", fallback),
    )

    served = pipeline.run(context(excluded), k)

    ids = served_ids(served)
    assert not set(ids) & excluded
    assert len(ids) <= k
    assert len(set(ids)) == len(ids)
    recalled = {i for i, _ in first + second} - excluded
    expected_pool = recalled if recalled else {i for i, _ in fallback} - excluded
    assert set(ids) <= expected_pool
    assert len(ids) == min(k, len(expected_pool))
    assert all(item.propensity == 1.0 for item in served.items)


class InMemorySource(ListSource):
    """A source that says it computes in memory; records the thread it ran on."""

    in_memory = True

    def __init__(self, name: str, found: Sequence[tuple[str, float]], busy_ms: float = 0.0) -> None:
        super().__init__(name, found)
        self.busy_ms = busy_ms
        self.threads: list[str] = []

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        self.threads.append(threading.current_thread().name)
        started = time.thread_time()
        while (time.thread_time() - started) * 1000.0 < self.busy_ms:
            pass
        return super().retrieve(query, k)


def test_a_cheap_in_memory_source_moves_into_the_request_thread(
    executor: ThreadPoolExecutor,
) -> None:
    cheap = InMemorySource("cheap", [("a", 1.0)])
    costly = InMemorySource("costly", [("b", 1.0)], busy_ms=3.0)
    plain = ListSource("plain", [("c", 1.0)])
    pipeline = make_pipeline(executor, [slot(cheap), slot(costly), slot(plain)])
    here = threading.current_thread().name

    runs = [pipeline.run(context(), 10) for _ in range(3)]

    # The first call runs in the pool, under its timeout; once it is known to be cheap, in
    # the request's thread. A costly one stays in the pool.
    assert cheap.threads[0] != here
    assert cheap.threads[1:] == [here, here]
    assert here not in costly.threads
    assert all(served_ids(served) == ["a", "b", "c"] for served in runs)


def test_an_in_memory_source_that_timed_out_stays_in_the_pool_under_its_timeout(
    executor: ThreadPoolExecutor,
) -> None:
    slow = SlowSource("slow", [("s", 1.0)])
    slow.in_memory = True  # type: ignore[attr-defined]
    fast = ListSource("fast", [("f", 1.0)])
    pipeline = make_pipeline(executor, [slot(slow, timeout_ms=20.0), slot(fast)])
    try:
        first = pipeline.run(context(), 10)
        second = pipeline.run(context(), 10)
    finally:
        slow.release.set()
    assert stage(first, "retrieve:slow").outcome == "timeout"
    assert stage(second, "retrieve:slow").outcome == "timeout"
    assert served_ids(second) == ["f"]


class RecordingGate:
    """Admits every other item of what it is shown, and records what it was shown."""

    name = "every-other"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def admit(self, items: Sequence[ScoredItem], ctx: RequestContext) -> list[ScoredItem]:
        self.seen.extend(i.item_id for i in items)
        return list(items)[::2]


def test_the_gate_reads_ranked_items_a_chunk_at_a_time_with_their_source_scores(
    executor: ThreadPoolExecutor,
) -> None:
    a = ListSource("a", [(f"i{n:03d}", 100.0 - n) for n in range(100)])
    b = ListSource("b", [("i001", 4.0), ("i050", 2.0)])
    gate = RecordingGate()
    pipeline = Pipeline(
        name="test",
        sources=[slot(a), slot(b)],
        filters=[],
        gates=[gate],
        ranker=SourceScoreRanker(["a", "b"], SourceScoreConfig(weights={"b": 0.0})),
        rules=[],
        policy=NoExplorationPolicy(),
        fallback=ListSource("popular", []),
        budget=Budget(retrieve_ms=2000.0),
        executor=executor,
    )

    served = pipeline.run(context(), 5)

    # 15 wanted (5 x overfetch 3), every other admitted: two chunks of 20 checked.
    assert gate.seen == [f"i{n:03d}" for n in range(40)]
    assert served_ids(served) == [f"i{n:03d}" for n in range(0, 30, 2)][:5]
    by_id = {item.item_id: item for item in served.items}
    assert by_id["i000"].source_scores == (("a", 1.0),)
    assert by_id["i000"].sources == ("a",)
    assert by_id["i002"].source_scores == (("a", round(98.0 / 100.0, 4)),)
    assert by_id["i002"].score == pytest.approx(98.0 / 100.0, rel=1e-6)


class DropRule:
    """Removes fixed ids, keeping the others' order."""

    name = "drop-rule"
    mandatory = True

    def __init__(self, drop: set[str]) -> None:
        self._drop = drop

    def apply(self, slate: Slate, ctx: RequestContext) -> Slate:
        return Slate(tuple(i for i in slate.items if i.item_id not in self._drop))


def test_an_explained_run_names_what_each_stage_recalled_removed_and_moved(
    executor: ThreadPoolExecutor,
) -> None:
    source = ListSource("only", [("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)])
    pipeline = make_pipeline(
        executor,
        [slot(source)],
        filters=[DropFilter({"d"})],
        rules=[DropRule({"b"}), ReverseRule()],
    )

    served = pipeline.run(context(), 10, explain=True)

    recalled = stage(served, "retrieve:only").items
    assert [(i.item_id, i.change, i.score) for i in recalled] == [
        ("a", "recalled", 4.0),
        ("b", "recalled", 3.0),
        ("c", "recalled", 2.0),
        ("d", "recalled", 1.0),
    ]
    assert [(i.item_id, i.change) for i in stage(served, "filter:drop").items] == [("d", "removed")]
    (removed,) = stage(served, "rerank:drop-rule").items
    assert (removed.item_id, removed.change, removed.before) == ("b", "removed", 2)
    # One removal is not read as the items below it moving: the rule moved nothing else.
    moved = {
        i.item_id: (i.change, i.before, i.after) for i in stage(served, "rerank:reverse").items
    }
    assert moved == {"a": ("demoted", 1, 2), "c": ("promoted", 2, 1)}
    assert served_ids(served) == ["c", "a"]


def test_a_run_not_explained_records_no_item(executor: ThreadPoolExecutor) -> None:
    source = ListSource("only", [("a", 4.0), ("b", 3.0), ("c", 2.0)])
    pipeline = make_pipeline(
        executor,
        [slot(source)],
        filters=[DropFilter({"c"})],
        rules=[DropRule({"b"}), ReverseRule()],
    )

    served = pipeline.run(context(), 10)

    assert served.trace
    assert all(t.items == () for t in served.trace)
    assert served_ids(served) == ["a"]

"""The recommendation pipeline: retrieve, filter, features, rank, rerank, explore.

Each stage has a budget and a fallback, and every request carries a trace of what each
stage did. Mandatory filters and rules are never skipped: if one fails, the request fails
rather than serve an item that must not be shown.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from recloop.domain import Candidate, RequestContext, ScoredItem, Slate
from recloop.errors import ConfigError
from recloop.explore.policies import (
    ExplorationPolicy,
    FeatureExplorationPolicy,
    NoExplorationPolicy,
    Support,
    SupportedPolicy,
)
from recloop.features.candidates import (
    FeatureMatrix,
    FeatureReader,
    MergedCandidate,
    join_columns,
    merge_candidates,
    source_score_feature,
    source_score_features,
)
from recloop.ranking.protocols import Ranker
from recloop.rerank.protocols import CandidateFilter, RerankRule, SlateGate
from recloop.retrieval.protocols import CandidateSource, SourceNotLoaded
from recloop.serving.budget import Budget, Outcome, StageTrace, Stopwatch, TracedItem

log = logging.getLogger(__name__)
_NO_EXPLORATION = NoExplorationPolicy()

#: Items gathered per requested item before rerank rules pick the final k.
OVERFETCH = 3
#: The smallest chunk a gate checks at once.
MIN_GATE_CHUNK = 20
#: A source that computes in this process's memory (``in_memory = True`` on the source, so
#: it never waits on I/O) runs in the request's thread while its recent cost, in CPU time,
#: stays under this many milliseconds: handing sub-millisecond work to a thread costs more
#: in hand-offs of the GIL than the work itself. A costlier one runs in the pool, under its
#: timeout.
INLINE_BELOW_MS = 1.0
#: A source's recorded cost is the highest it has taken, decayed by this factor per call:
#: one slow call sends it to the pool for a few dozen calls, not for good.
COST_DECAY = 0.9


@dataclass(frozen=True, slots=True)
class SourceSlot:
    """A source in a surface: how many candidates to ask for and how long to wait."""

    source: CandidateSource
    quota: int
    timeout_ms: float
    inline: bool = False  # always run in the request's thread: for in-memory lookups only


@dataclass(frozen=True, slots=True)
class ServedSlate:
    """The pipeline's answer: the final items, what served them, and how it went."""

    items: tuple[ScoredItem, ...]
    model_version: str
    fallback: bool
    trace: tuple[StageTrace, ...]
    # A stage had nothing trained yet and its stand-in served (a new app): not a failure.
    cold: bool = False
    # Computes the served policy's probability of every (item, position) for this request,
    # on demand (shadow mode's support check); None when the policy cannot say.
    support: Callable[[], Support] | None = None


class Pipeline:
    """One surface's pipeline, built from configuration by ``serving.surfaces``."""

    def __init__(
        self,
        *,
        name: str,
        sources: Sequence[SourceSlot],
        filters: Sequence[CandidateFilter],
        ranker: Ranker,
        gates: Sequence[SlateGate] = (),
        rules: Sequence[RerankRule],
        policy: ExplorationPolicy,
        fallback: CandidateSource | Sequence[CandidateSource],
        budget: Budget,
        executor: Executor,
        feature_reader: FeatureReader | None = None,
        default_features: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.sources = tuple(sources)
        self.filters = tuple(filters)
        self.gates = tuple(gates)
        self.ranker = ranker
        self.rules = tuple(rules)
        self.policy = policy
        # A policy that scores candidates by their features (LinUCB) gets the matrix the
        # request was ranked with; decided once here, not per request.
        self._feature_policy = policy if isinstance(policy, FeatureExplorationPolicy) else None
        self._supported = policy if isinstance(policy, SupportedPolicy) else None
        if self._feature_policy is not None and feature_reader is None:
            # Without online features every candidate would look the same to it.
            raise ConfigError(
                f"surfaces.{name}.exploration: {policy.name!r} scores candidates by their "
                f"online features; set surfaces.{name}.online_features = true"
            )
        # Fallbacks are tried in order until one yields a servable item.
        self.fallbacks: tuple[CandidateSource, ...] = (
            tuple(fallback) if isinstance(fallback, Sequence) else (fallback,)
        )
        self.budget = budget
        self._executor = executor
        self.feature_reader = feature_reader
        self._default_features = tuple(default_features)
        # Slots whose place (the request's thread or the pool) follows their recent cost.
        self._adaptive = tuple(
            not slot.inline and bool(getattr(slot.source, "in_memory", False))
            for slot in self.sources
        )
        # Their recorded cost (ms of CPU): a first call runs in the pool, under its timeout.
        self._cost_ms = [INLINE_BELOW_MS] * len(self.sources)

    @property
    def model_version(self) -> str:
        """What a response names as the model that served it."""
        return self.ranker.version

    def run(self, ctx: RequestContext, k: int, *, explain: bool = False) -> ServedSlate:
        """Build the list for one request.

        ``explain``: each stage's trace also names the items it recalled, removed or moved
        (``debug=true``); off, no per-item record is made.
        """
        trace: list[StageTrace] = []
        # Rerank rules choose among more than k items (diversity needs alternatives).
        want = k * OVERFETCH
        candidates = self._filter(self._retrieve(ctx, trace, explain), ctx, trace, explain)
        ranked = self._rank(candidates, ctx, trace)
        slate = self._gate(ranked, ctx, want, trace, explain)
        version = ranked.version
        for fallback in self.fallbacks:
            if slate.items:
                break
            candidates = self._fall_back(fallback, ctx, k, trace, explain)
            ranked = self._rank(candidates, ctx, trace)
            slate = self._gate(ranked, ctx, want, trace, explain)
            version = ranked.version
        slate = self._rerank(slate, ctx, trace, explain)
        watch = Stopwatch()
        # The policy sees the whole reranked list: items below the first k are what it may
        # explore with.
        support: Callable[[], Support] | None = None
        try:
            if self._feature_policy is not None:
                explored = self._feature_policy.explore_with_features(
                    slate, ctx, k, ranked.features
                )
            else:
                explored = self.policy.explore(slate, ctx, k)
            if self._supported is not None:
                support = functools.partial(self._supported.support, slate, ctx, k)
            trace.append(StageTrace(f"explore:{self.policy.name}", watch.ms(), "ok"))
        except Exception as exc:
            # A policy that cannot read its evidence (a bandit's counters) must not cost
            # the list: the ranked head is served, with propensity 1, and the trace says so.
            log.exception(
                "exploration policy %s failed; the ranked list is served", self.policy.name
            )
            explored = _NO_EXPLORATION.explore(slate, ctx, k)
            support = functools.partial(_NO_EXPLORATION.support, slate, ctx, k)
            trace.append(
                StageTrace(f"explore:{self.policy.name}", watch.ms(), "fallback", str(exc))
            )
        slate = explored
        return ServedSlate(
            items=slate.items,
            model_version=version,
            fallback=any(t.degraded for t in trace),
            trace=tuple(trace),
            cold=any(t.outcome == "cold" for t in trace),
            support=support,
        )

    def _inline(self, i: int) -> bool:
        """Whether slot ``i`` runs in the request's thread on this request."""
        if self.sources[i].inline:
            return True
        return self._adaptive[i] and self._cost_ms[i] < INLINE_BELOW_MS

    def _observe(self, i: int, cost_ms: float) -> None:
        # Unlocked: a lost update between concurrent requests only delays a move.
        self._cost_ms[i] = max(cost_ms, self._cost_ms[i] * COST_DECAY)

    def _retrieve(
        self, ctx: RequestContext, trace: list[StageTrace], explain: bool = False
    ) -> list[MergedCandidate]:
        watch = Stopwatch()
        inline = [self._inline(i) for i in range(len(self.sources))]
        # Threaded sources start first so they run while the inline ones answer.
        futures: dict[int, Future[tuple[list[Candidate], float]]] = {
            i: self._executor.submit(_timed_retrieve, slot.source, ctx, slot.quota)
            for i, slot in enumerate(self.sources)
            if not inline[i]
        }
        results: list[list[Candidate]] = []
        for i, slot in enumerate(self.sources):
            stage = f"retrieve:{slot.source.name}"
            deadline_ms = min(slot.timeout_ms, self.budget.retrieve_ms)
            outcome: Outcome = "ok"
            detail = ""
            found: list[Candidate] = []
            started = watch.ms()
            try:
                if inline[i]:
                    found, cost_ms = _timed_retrieve(slot.source, ctx, slot.quota)
                else:
                    timeout_s = max(0.0, deadline_ms - watch.ms()) / 1000.0
                    found, cost_ms = futures[i].result(timeout=timeout_s)
                self._observe(i, cost_ms)
                results.append(found)
                if not found:
                    outcome = "empty"
            except FutureTimeout:
                futures[i].cancel()
                # Its cost is unknown but high: it stays in the pool, under its timeout.
                self._observe(i, deadline_ms)
                outcome, detail = "timeout", f"no answer within {deadline_ms:g} ms"
            except SourceNotLoaded as exc:
                # Logged and counted once when the version loaded, not on every request.
                outcome, detail = "fallback", str(exc)
            except Exception as exc:
                log.exception("candidate source %s failed", slot.source.name)
                outcome, detail = "error", f"{type(exc).__name__}: {exc}"
            elapsed = watch.ms() if not inline[i] else watch.ms() - started
            recalled = _recalled(found) if explain else ()
            trace.append(StageTrace(stage, elapsed, outcome, detail, recalled))
        return merge_candidates(results)

    def _filter(
        self,
        candidates: list[MergedCandidate],
        ctx: RequestContext,
        trace: list[StageTrace],
        explain: bool = False,
    ) -> list[MergedCandidate]:
        for candidate_filter in self.filters:
            watch = Stopwatch()
            before = len(candidates)
            given = candidates
            # No try/except: an eligibility filter that fails must fail the request.
            candidates = candidate_filter.keep(candidates, ctx)
            elapsed = watch.ms()
            removed: tuple[TracedItem, ...] = ()
            if explain:
                kept = {c.item_id for c in candidates}
                removed = tuple(
                    TracedItem(c.item_id, "removed") for c in given if c.item_id not in kept
                )
            trace.append(
                StageTrace(
                    f"filter:{candidate_filter.name}",
                    elapsed,
                    "ok",
                    f"{before} -> {len(candidates)}",
                    removed,
                )
            )
        return candidates

    def _gate(
        self,
        ranked: _Ranked,
        ctx: RequestContext,
        want: int,
        trace: list[StageTrace],
        explain: bool = False,
    ) -> Slate:
        if not self.gates:
            return Slate(ranked.items(0, len(ranked)))
        watch = Stopwatch()
        admitted: list[ScoredItem] = []
        refused: list[TracedItem] = []
        chunk = max(want, MIN_GATE_CHUNK)
        checked = 0
        # No try/except: a gate that fails must fail the request.
        # Items are built chunk by chunk: the ones below the last chunk checked never are.
        while checked < len(ranked) and len(admitted) < want:
            items: Sequence[ScoredItem] = ranked.items(checked, checked + chunk)
            checked += len(items)
            given = items
            for gate in self.gates:
                items = gate.admit(items, ctx)
            if explain:
                passed = {i.item_id for i in items}
                refused.extend(
                    TracedItem(i.item_id, "removed", i.score)
                    for i in given
                    if i.item_id not in passed
                )
            admitted.extend(items)
        trace.append(
            StageTrace(
                "gate:" + "+".join(g.name for g in self.gates),
                watch.ms(),
                "ok",
                f"{len(admitted)} of {checked} checked admitted",
                tuple(refused),
            )
        )
        return Slate(tuple(admitted[:want]))

    def _fall_back(
        self,
        fallback: CandidateSource,
        ctx: RequestContext,
        k: int,
        trace: list[StageTrace],
        explain: bool = False,
    ) -> list[MergedCandidate]:
        watch = Stopwatch()
        stage = f"fallback:{fallback.name}"
        try:
            found = fallback.retrieve(ctx, max(k * 5, 100))
        except Exception as exc:
            log.exception("fallback source %s failed", fallback.name)
            trace.append(StageTrace(stage, watch.ms(), "error", str(exc)))
            return []
        trace.append(
            StageTrace(
                stage,
                watch.ms(),
                "fallback",
                "no earlier source had a servable item",
                _recalled(found) if explain else (),
            )
        )
        return self._filter(merge_candidates([found]), ctx, trace, explain)

    def _features(
        self, candidates: list[MergedCandidate], ctx: RequestContext, trace: list[StageTrace]
    ) -> FeatureMatrix:
        names = [slot.source.name for slot in self.sources]
        recalled_by: set[str] = set().union(*(c.source_scores for c in candidates))
        names += sorted(recalled_by - set(names))
        matrix = source_score_features(candidates, names)
        if self.feature_reader is None or not candidates:
            return matrix
        watch = Stopwatch()
        try:
            online = self.feature_reader.matrix(
                ctx.app_id,
                ctx.user_id,
                matrix.item_ids,
                session_id=ctx.session_id,
                device=ctx.device,
                surface=ctx.surface,
                now=ctx.now,
            )
            trace.append(StageTrace("features", watch.ms(), "ok"))
        except Exception as exc:
            # Defaults (zeros) keep the request going; the trace and metrics count it.
            log.warning("online features unavailable: %s", exc)
            online = FeatureMatrix(
                matrix.item_ids,
                self._default_features,
                np.zeros((len(matrix.item_ids), len(self._default_features))),
            )
            trace.append(
                StageTrace("features", watch.ms(), "fallback", f"defaults: {type(exc).__name__}")
            )
        return join_columns(matrix, online)

    def _rank(
        self, candidates: list[MergedCandidate], ctx: RequestContext, trace: list[StageTrace]
    ) -> _Ranked:
        """The candidates in ranked order, with the name of the ranker that ordered them."""
        features = self._features(candidates, ctx, trace)
        watch = Stopwatch()
        order: Sequence[int]
        try:
            ranked = self.ranker.score(features, ctx)
            scores = ranked.combined
            if len(scores) != len(candidates) or not np.all(np.isfinite(scores)):
                raise ValueError("ranker returned a wrong-sized or non-finite score vector")
            # Stable sort: equal scores keep the order the sources gave.
            order = np.argsort(-scores, kind="stable").tolist()
            outcome: Outcome = "fallback" if ranked.fallback else "cold" if ranked.cold else "ok"
            detail = ranked.fallback or ranked.cold
            version = ranked.version or self.ranker.version
        except Exception as exc:
            log.exception("ranker %s failed", self.ranker.version)
            scores = np.linspace(1.0, 0.0, num=len(candidates), endpoint=False)
            order = range(len(candidates))
            outcome, detail = "error", f"{type(exc).__name__}: {exc}; served in source order"
            version = "source-order"
        elapsed = watch.ms()
        if outcome != "error" and elapsed > self.budget.rank_ms:
            # Ranking cannot be interrupted; a slow ranker still serves, and the trace says so.
            detail = "; ".join(
                d
                for d in (detail, f"over budget ({elapsed:.1f} > {self.budget.rank_ms:g} ms)")
                if d
            )
        trace.append(StageTrace(f"rank:{self.ranker.version}", elapsed, outcome, detail))
        heads = ranked.by_objective if outcome != "error" else {}
        return _Ranked(candidates, list(order), scores, features, version, heads)

    def _rerank(
        self, slate: Slate, ctx: RequestContext, trace: list[StageTrace], explain: bool = False
    ) -> Slate:
        for rule in self.rules:
            watch = Stopwatch()
            given = slate
            if rule.mandatory:
                slate = rule.apply(slate, ctx)
                elapsed = watch.ms()
                changes = _rule_changes(given.items, slate.items) if explain else ()
                trace.append(StageTrace(f"rerank:{rule.name}", elapsed, "ok", "", changes))
                continue
            try:
                slate = rule.apply(slate, ctx)
                elapsed = watch.ms()
                changes = _rule_changes(given.items, slate.items) if explain else ()
                trace.append(StageTrace(f"rerank:{rule.name}", elapsed, "ok", "", changes))
            except Exception as exc:
                log.exception("rerank rule %s failed; skipped", rule.name)
                trace.append(StageTrace(f"rerank:{rule.name}", watch.ms(), "error", str(exc)))
        return slate


def _recalled(found: Sequence[Candidate]) -> tuple[TracedItem, ...]:
    """A source's candidates as an explained trace names them."""
    return tuple(TracedItem(c.item_id, "recalled", c.score) for c in found)


def _rule_changes(
    before: Sequence[ScoredItem], after: Sequence[ScoredItem]
) -> tuple[TracedItem, ...]:
    """What a rerank rule did: the items it removed, added and moved.

    Moves are counted among the items the rule kept, so one removal does not read as every
    later item promoted by one place.
    """
    kept = {i.item_id for i in after}
    changes = [
        TracedItem(i.item_id, "removed", i.score, before=n)
        for n, i in enumerate(before, 1)
        if i.item_id not in kept
    ]
    survivors = [i.item_id for i in before if i.item_id in kept]
    was = {item_id: n for n, item_id in enumerate(survivors, 1)}
    for n, i in enumerate(after, 1):
        old = was.get(i.item_id)
        if old is None:
            changes.append(TracedItem(i.item_id, "added", i.score, after=n))
        elif n != old:
            changes.append(
                TracedItem(
                    i.item_id, "demoted" if n > old else "promoted", i.score, before=old, after=n
                )
            )
    return tuple(changes)


def _timed_retrieve(
    source: CandidateSource, ctx: RequestContext, quota: int
) -> tuple[list[Candidate], float]:
    """The source's candidates, and the CPU time (ms) its thread spent finding them."""
    started = time.thread_time()
    found = source.retrieve(ctx, quota)
    return found, (time.thread_time() - started) * 1000.0


class _Ranked:
    """The candidates in ranked order; each ``ScoredItem`` is built only when asked for.

    The gate reads the ranked list a chunk at a time and stops once it has enough items,
    so the items (and their logged source scores) below that are never built.
    """

    __slots__ = ("_candidates", "_features", "_heads", "_order", "_scores", "version")

    def __init__(
        self,
        candidates: Sequence[MergedCandidate],
        order: list[int],
        scores: np.ndarray,
        features: FeatureMatrix,
        version: str,
        heads: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self._candidates = candidates
        self._order = order
        self._scores = scores
        self._features = features
        self._heads = heads or {}
        self.version = version

    def __len__(self) -> int:
        return len(self._order)

    @property
    def features(self) -> FeatureMatrix:
        """The feature matrix the candidates were ranked with (rows in candidate order)."""
        return self._features

    def items(self, start: int, stop: int) -> tuple[ScoredItem, ...]:
        """The items at ranks ``start`` to ``stop`` (exclusive), best first."""
        rows = self._order[start:stop]
        logged = _source_scores(self._features, rows)
        candidates = self._candidates
        scores = self._scores[rows].tolist() if rows else []
        heads = [
            (name, values[rows].tolist())
            for name, values in self._heads.items()
            if len(values) == len(candidates)
        ]
        out = []
        for i, (row, score, pairs) in enumerate(zip(rows, scores, logged, strict=True)):
            candidate = candidates[row]
            source = _credited(candidate, pairs)
            out.append(
                ScoredItem(
                    item_id=candidate.item_id,
                    score=float(score),
                    source=source,
                    reason=candidate.reasons.get(source, candidate.reason),
                    sources=candidate.sources,
                    source_scores=pairs,
                    heads=tuple((name, round(float(v[i]), 6)) for name, v in heads),
                )
            )
        return tuple(out)


def _credited(candidate: MergedCandidate, pairs: Sequence[tuple[str, float]]) -> str:
    """The source that most supported a candidate: the one that scored it highest relative
    to its own best candidate of the request (its normalised score), the first finder on a
    tie. Its reason is the one the response gives, so a reason names the anchor of the
    source that did most to put the item there, not of whichever source merged first."""
    best, best_score = candidate.source, -1.0
    for source, score in pairs:
        if score > best_score or (score == best_score and source == candidate.source):
            best, best_score = source, score
    return best if best in candidate.reasons else candidate.source


def _source_scores(
    features: FeatureMatrix, rows: Sequence[int]
) -> list[tuple[tuple[str, float], ...]]:
    """Each of ``rows``' non-zero normalised source scores, by source name, rounded for the
    log (one tuple per row, in the order of ``rows``)."""
    prefix = source_score_feature("")
    columns = [(c, n[len(prefix) :]) for c, n in enumerate(features.names) if n.startswith(prefix)]
    if not columns or not rows:
        return [() for _ in rows]
    block = features.values[np.asarray(rows, dtype=np.intp)][:, [c for c, _ in columns]]
    out: list[list[tuple[str, float]]] = [[] for _ in rows]
    at, cols = np.nonzero(block)
    values = block[at, cols].tolist()
    for i, col, value in zip(at.tolist(), cols.tolist(), values, strict=True):
        out[i].append((columns[col][1], round(float(value), 4)))
    return [tuple(pairs) for pairs in out]

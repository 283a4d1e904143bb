"""LinUCB as serving runs it: the context, the nightly evidence, and the policy's draws."""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recloop.domain import RequestContext
from recloop.explore.linucb import LinUCB, LinUCBConfig, LinUCBParams, TrainedLinUCB
from recloop.explore.policies import FeatureExplorationPolicy
from recloop.features.bandit_context import (
    CONTEXT_DIM,
    CONTEXT_FEATURES,
    INPUT_FEATURES,
    ContextEvidence,
    context,
    serving_context,
)
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import FEATURE_NAMES, PRIOR_CTR
from recloop.ranking.learned import RankerModels
from recloop.training.linucb import fit_linucb, training_context
from tests.factories import make_slate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
AFFINITY = CONTEXT_FEATURES.index("user_category_affinity")


def _ctx(request_id: str, app_id: str = "a") -> RequestContext:
    return RequestContext(
        app_id=app_id, request_id=request_id, surface="home", user_id="u", now=NOW
    )


def _matrix(
    item_ids: list[str], seed: int = 0, affine: frozenset[str] = frozenset()
) -> FeatureMatrix:
    """A request's matrix as the pipeline builds it: source scores, then FEATURE_NAMES."""
    rng = np.random.default_rng(seed)
    values = np.zeros((len(item_ids), 1 + len(FEATURE_NAMES)))
    values[:, 0] = rng.uniform(0.1, 1.0, len(item_ids))
    col = {name: 1 + i for i, name in enumerate(FEATURE_NAMES)}
    values[:, col["item_ctr_30d"]] = rng.uniform(0.005, 0.1, len(item_ids))
    values[:, col["item_engagement_7d"]] = rng.integers(0, 500, len(item_ids))
    values[:, col["item_age_hours"]] = rng.uniform(0, 2000, len(item_ids))
    values[:, col["user_creator_affinity"]] = rng.uniform(0, 0.2, len(item_ids))
    values[:, col["session_same_category_share"]] = rng.uniform(0, 0.3, len(item_ids))
    values[:, col["user_category_affinity"]] = [float(i in affine) for i in item_ids]
    values[:, col["context_hour"]] = 13.0
    return FeatureMatrix(tuple(item_ids), ("source_score:popular", *FEATURE_NAMES), values)


def _affinity_evidence(rows: int = 2000, seed: int = 1) -> ContextEvidence:
    """Clicks that follow the category affinity alone (70% against 5%)."""
    rng = np.random.default_rng(seed)
    inputs = np.column_stack(
        [
            rng.uniform(0.005, 0.1, rows),
            rng.integers(0, 500, rows),
            rng.uniform(0, 2000, rows),
            rng.integers(0, 2, rows),
            rng.uniform(0, 0.2, rows),
            rng.uniform(0, 0.3, rows),
        ]
    )
    x = context(inputs, positions=rng.integers(0, 10, rows))
    clicked = rng.random(rows) < np.where(x[:, AFFINITY] > 0, 0.7, 0.05)
    return ContextEvidence.fit(x, clicked.astype(float))


# --- The context ---------------------------------------------------------------------------------


def test_the_context_transforms_each_input_as_documented() -> None:
    inputs = np.array(
        [
            [PRIOR_CTR, 0.0, 0.0, 0.0, 0.0, 0.0],
            [PRIOR_CTR * math.e, 1000.0, 168.0, 0.5, 0.25, 1.0],
            [0.0, -3.0, -1.0, 2.0, -1.0, 5.0],  # defaults and out-of-range values
            [np.nan] * 6,  # the item is missing from the request's matrix
        ]
    )
    x = context(inputs, positions=np.array([0, 2, 6, 0]))
    assert x.shape == (4, CONTEXT_DIM)
    assert x[:, 0].tolist() == [1.0] * 4
    assert x[:, 1] == pytest.approx([0.0, 1.0, 0.0, 0.0])
    assert x[:, 2] == pytest.approx([0.0, 1.0, 0.0, 0.0])
    assert x[:, 3] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert x[:, 4:7].tolist() == [[0, 0, 0], [0.5, 0.25, 1], [1, 0, 1], [0, 0, 0]]
    assert x[:, 7] == pytest.approx([1.0, 0.5, 1 / 3, 1.0])
    assert context(inputs)[:, 7].tolist() == [1.0] * 4  # serving: everything at the top
    with pytest.raises(ValueError, match="expected inputs"):
        context(np.ones((2, 3)))


def test_serving_and_training_compute_the_same_context_for_the_same_features() -> None:
    ids = [f"i{m}" for m in range(6)]
    matrix = _matrix(ids, affine=frozenset({"i2"}))
    # The training set holds FEATURE_NAMES as columns, with the served position and label.
    table = pa.table(
        {
            **{name: matrix.values[:, 1 + i].tolist() for i, name in enumerate(FEATURE_NAMES)},
            "position": [0] * len(ids),
            "label_click": [0] * len(ids),
        }
    )
    offline, _ = training_context(table)
    # Asked in another order, with an item the matrix lacks.
    online = serving_context(matrix, ["i5", "i0", "gone", "i2", "i1", "i4", "i3"])
    assert online[[1, 4, 3, 6, 5, 0]] == pytest.approx(offline[[0, 1, 2, 3, 4, 5]])
    assert online[2] == pytest.approx(context(np.full((1, len(INPUT_FEATURES)), np.nan))[0])
    assert online[3, AFFINITY] == 1.0


def test_a_matrix_without_online_features_gives_every_item_the_same_context() -> None:
    ids = ("a", "b", "c")
    bare = FeatureMatrix(ids, ("source_score:popular",), np.array([[1.0], [0.5], [0.1]]))
    rows = serving_context(bare, list(ids))
    assert np.all(rows == rows[0])
    assert np.all(serving_context(None, list(ids)) == rows[0])
    assert serving_context(bare, []).shape == (0, CONTEXT_DIM)


# --- The evidence and its fit ----------------------------------------------------------------


def test_the_evidence_is_the_closed_form_ridge_regression() -> None:
    x = np.array([[1.0, 0.5], [1.0, -0.5], [1.0, 2.0]])
    x = np.column_stack([x, np.zeros((3, CONTEXT_DIM - 2))])
    r = np.array([1.0, 0.0, 1.0])
    evidence = ContextEvidence.fit(x, r)
    assert evidence.gram == pytest.approx(x.T @ x)
    assert evidence.moments == pytest.approx(x.T @ r)
    assert (evidence.rows, evidence.clicks) == (3, 2.0)
    a_inv, theta = evidence.posterior(ridge=2.0)
    a = 2.0 * np.eye(CONTEXT_DIM) + x.T @ x
    assert a_inv == pytest.approx(np.linalg.inv(a))
    assert theta == pytest.approx(np.linalg.solve(a, x.T @ r))
    # The first two weights by hand: A's top-left block is [[2+3, 2], [2, 2+4.5]], b = [2, 2.5].
    assert theta[:2] == pytest.approx(np.linalg.solve([[5.0, 2.0], [2.0, 6.5]], [2.0, 2.5]))


def test_the_nightly_evidence_equals_online_updates_on_the_same_rows() -> None:
    evidence = _affinity_evidence(rows=500)
    rng = np.random.default_rng(1)  # the same draws _affinity_evidence made
    inputs = np.column_stack(
        [
            rng.uniform(0.005, 0.1, 500),
            rng.integers(0, 500, 500),
            rng.uniform(0, 2000, 500),
            rng.integers(0, 2, 500),
            rng.uniform(0, 0.2, 500),
            rng.uniform(0, 0.3, 500),
        ]
    )
    x = context(inputs, positions=rng.integers(0, 10, 500))
    clicked = (rng.random(500) < np.where(x[:, AFFINITY] > 0, 0.7, 0.05)).astype(float)
    online = LinUCB(LinUCBConfig(dim=CONTEXT_DIM, ridge=1.5), _NoFeatures())
    online.update(x, clicked)
    assert evidence.posterior(1.5)[1] == pytest.approx(online.theta, abs=1e-9)


class _NoFeatures:
    def features(self, items: object, ctx: object) -> np.ndarray:
        raise AssertionError("not called")


def test_evidence_survives_a_save_and_load_and_refuses_bad_shapes(tmp_path: Path) -> None:
    evidence = _affinity_evidence(rows=100)
    evidence.save(tmp_path / "linucb.json")
    loaded = ContextEvidence.load(tmp_path / "linucb.json")
    assert loaded.names == CONTEXT_FEATURES
    assert loaded.gram == pytest.approx(evidence.gram)
    assert loaded.moments == pytest.approx(evidence.moments)
    assert (loaded.rows, loaded.clicks) == (evidence.rows, evidence.clicks)
    (tmp_path / "bad.json").write_text(
        '{"names": ["bias"], "gram": [[1, 0], [0, 1]], "moments": [0], "rows": 1, "clicks": 0}'
    )
    with pytest.raises(ValueError, match="shapes disagree"):
        ContextEvidence.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="expected context rows"):
        ContextEvidence.fit(np.ones((2, 3)), np.ones(2))


def _part(rows: list[tuple[float, float, int, int]]) -> pa.Table:
    """Training-set rows of (ctr, category affinity, position, clicked); other features 0."""
    columns: dict[str, list[float]] = {name: [0.0] * len(rows) for name in FEATURE_NAMES}
    columns["item_ctr_30d"] = [r[0] for r in rows]
    columns["user_category_affinity"] = [r[1] for r in rows]
    return pa.table(
        {
            **columns,
            "position": [r[2] for r in rows],
            "label_click": [r[3] for r in rows],
            "request_id": [f"q{n}" for n in range(len(rows))],
        }
    )


def test_fit_linucb_reads_every_part_of_the_training_set() -> None:
    parts = {
        "train": _part([(0.02, 1.0, 0, 1), (0.04, 0.0, 3, 0)]),
        "validation": _part([(0.01, 0.0, 1, 0)]),
        "test": _part([(0.02, 1.0, 2, 1)]),
    }
    fitted = fit_linucb(parts)
    assert fitted.evidence is not None
    assert fitted.skipped is None
    x = np.vstack([training_context(p)[0] for p in parts.values()])
    r = np.array([1.0, 0.0, 0.0, 1.0])
    assert fitted.evidence.gram == pytest.approx(x.T @ x)
    assert fitted.evidence.moments == pytest.approx(x.T @ r)
    assert x[:, 7] == pytest.approx([1.0, 1 / math.log2(5), 1 / math.log2(3), 0.5])
    assert fitted.report["rows"] == 4
    assert fitted.report["clicks"] == 2.0
    assert set(fitted.report["theta_ridge_1"]) == set(CONTEXT_FEATURES)
    empty = fit_linucb({"train": _part([])})
    assert empty.evidence is None
    assert empty.skipped == "no labelled impressions"
    with pytest.raises(ValueError, match="lacks columns"):
        fit_linucb({"train": _part([(0.02, 1.0, 0, 1)]).drop_columns(["position"])})


# --- The policy ---------------------------------------------------------------------------------


def _policy(evidence: ContextEvidence | None, **params: object) -> TrainedLinUCB:
    return TrainedLinUCB(LinUCBParams.model_validate(params), lambda app_id: evidence)


def test_the_serving_policy_reads_features_and_satisfies_both_protocols() -> None:
    policy = _policy(None)
    assert isinstance(policy, FeatureExplorationPolicy)
    assert policy.name == "linucb"


def test_without_evidence_the_explore_slots_are_a_uniform_draw_from_the_pool() -> None:
    n, k, requests = 5, 2, 4000
    policy = _policy(None, pool=n)
    matrix = _matrix([f"i{m}" for m in range(n)], affine=frozenset({"i3"}))
    counts: Counter[tuple[str, int]] = Counter()
    for m in range(requests):
        served = policy.explore_with_features(make_slate(n), _ctx(f"r{m}"), k, matrix)
        assert len({item.item_id for item in served.items}) == k
        for j, item in enumerate(served.items):
            assert 0.0 < item.propensity <= 1.0
            counts[item.item_id, j] += 1
    for m in range(n):
        for j in range(k):
            assert counts[f"i{m}", j] / requests == pytest.approx(1 / n, abs=0.03)


def test_logged_propensities_match_how_often_the_policy_serves_each_position() -> None:
    n, k, requests = 6, 3, 3000
    ids = [f"i{m}" for m in range(n)]
    # A warm temperature: no position is nearly certain, every estimate is tested.
    evidence = _affinity_evidence(rows=300)
    policy = _policy(evidence, temperature=0.3, alpha=0.5)
    matrix = _matrix(ids, affine=frozenset({"i2", "i4"}))
    counts: Counter[tuple[str, int]] = Counter()
    logged: dict[tuple[str, int], list[float]] = {}
    for m in range(requests):
        for j, item in enumerate(
            policy.explore_with_features(make_slate(n), _ctx(f"r{m}"), k, matrix).items
        ):
            assert 0.0 < item.propensity <= 1.0
            counts[item.item_id, j] += 1
            logged.setdefault((item.item_id, j), []).append(item.propensity)
    wide = _policy(evidence, temperature=0.3, alpha=0.5, propensity_draws=40_000)
    estimate = wide.position_probabilities(make_slate(n), _ctx("estimate"), k, matrix)
    assert np.allclose(estimate.probabilities.sum(axis=0), 1.0)
    assert len({c for c, _ in counts}) == n  # every item was served somewhere
    for i, item_id in enumerate(estimate.item_ids):
        for j in range(k):
            empirical = counts[item_id, j] / requests
            assert estimate.probabilities[i, j] == pytest.approx(empirical, abs=0.03)
            if counts[item_id, j] >= 100:  # each logged propensity, on average
                assert float(np.mean(logged[item_id, j])) == pytest.approx(empirical, abs=0.03)


def test_the_first_position_follows_the_softmax_of_the_upper_bounds() -> None:
    evidence = _affinity_evidence()
    policy = _policy(evidence, temperature=0.2, propensity_draws=40_000)
    ids = [f"i{m}" for m in range(8)]
    matrix = _matrix(ids, affine=frozenset({"i5"}))
    logits = policy.upper_bounds("a", make_slate(8).items, matrix) / 0.2
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    estimate = policy.position_probabilities(make_slate(8), _ctx("r"), 3, matrix)
    assert estimate.probabilities[:, 0] == pytest.approx(softmax, abs=0.01)


def test_learned_evidence_serves_the_items_whose_features_go_with_clicks() -> None:
    policy = _policy(_affinity_evidence(), temperature=0.02, alpha=0.3)
    ids = [f"i{m}" for m in range(20)]
    matrix = _matrix(ids, affine=frozenset({"i7", "i13"}))
    for m in range(50):
        served = policy.explore_with_features(make_slate(20), _ctx(f"r{m}"), 5, matrix)
        assert set(served.item_ids()[:2]) == {"i7", "i13"}
        assert served.items[0].propensity > 0.3
    # Another user, whose affinity is to other items, is served those: the context is per
    # request.
    other = _matrix(ids, affine=frozenset({"i1"}))
    assert policy.explore_with_features(make_slate(20), _ctx("x"), 5, other).item_ids()[0] == "i1"


def test_the_same_request_id_and_evidence_replay_the_same_list() -> None:
    policy = _policy(_affinity_evidence(), temperature=0.5)
    matrix = _matrix([f"i{m}" for m in range(20)])
    first = policy.explore_with_features(make_slate(20), _ctx("same"), 6, matrix)
    assert policy.explore_with_features(make_slate(20), _ctx("same"), 6, matrix) == first
    lists = {
        tuple(policy.explore_with_features(make_slate(20), _ctx(f"r{m}"), 6, matrix).item_ids())
        for m in range(20)
    }
    assert len(lists) > 1


def test_explore_slots_keep_the_ranker_head() -> None:
    policy = _policy(_affinity_evidence(), explore_slots=2, pool=10)
    matrix = _matrix([f"i{m}" for m in range(30)], affine=frozenset({"i8"}))
    for m in range(30):
        served = policy.explore_with_features(make_slate(30), _ctx(f"r{m}"), 5, matrix)
        assert served.item_ids()[:3] == ["i0", "i1", "i2"]
        assert [item.propensity for item in served.items[:3]] == [1.0] * 3
        assert all(3 <= int(i[1:]) < 10 for i in served.item_ids()[3:])
    assert _policy(None).explore(make_slate(3), _ctx("r"), 0).items == ()


def test_the_posterior_is_computed_once_per_evidence_and_per_app() -> None:
    models = RankerModels()
    policy = TrainedLinUCB(LinUCBParams(), models.linucb)
    assert policy.posterior("a") is None
    first = _affinity_evidence(rows=200)
    models.publish("a", None, first)
    posterior = policy.posterior("a")
    assert posterior is not None
    assert policy.posterior("a")[0] is posterior[0]  # type: ignore[index]
    assert policy.posterior("other") is None
    second = _affinity_evidence(rows=400, seed=2)
    models.publish("a", None, second)
    assert policy.posterior("a")[1] == pytest.approx(second.posterior(1.0)[1])  # type: ignore[index]
    models.publish("a", None)
    assert policy.posterior("a") is None


def test_evidence_of_another_context_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = ContextEvidence(("bias", "retired"), np.eye(2), np.zeros(2), 1, 0.0)
    policy = _policy(old)
    with caplog.at_level(logging.WARNING):
        assert policy.posterior("a") is None
        assert policy.posterior("a") is None
    assert sum("not used" in r.getMessage() for r in caplog.records) == 1
    served = policy.explore_with_features(make_slate(5), _ctx("r"), 3, _matrix(["i0"]))
    assert len(served.items) == 3

"""Matrix factorization sources: known users, folded-in new users, anchors, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from recloop.retrieval.factors import ALSModel, BPRModel
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import RecallQuery

pytestmark = pytest.mark.unit


def _world() -> TrainingData:
    rng = np.random.default_rng(1)
    users, items, ts = [], [], []
    for u in range(120):
        group = "a" if u % 2 == 0 else "b"
        for step in range(10):
            users.append(f"u{u}")
            items.append(f"{group}{rng.integers(0, 15)}")
            ts.append(u * 1000.0 + step)
    return TrainingData(Interactions.from_records(users, items, ts))


@pytest.fixture(scope="module", params=["als", "bpr"])
def model(request: pytest.FixtureRequest) -> ALSModel | BPRModel:
    if request.param == "als":
        return ALSModel(factors=8, iterations=10, regularization=0.1).fit(_world())
    return BPRModel(factors=8, iterations=200, learning_rate=0.05).fit(_world())


def _share(found: list[str], prefix: str) -> float:
    return sum(i.startswith(prefix) for i in found) / max(len(found), 1)


def test_a_known_user_gets_items_of_their_taste(model: ALSModel) -> None:
    found = [r.item_id for r in model.recall(RecallQuery(user_id="u0"), 10)]
    assert len(found) == 10
    assert _share(found, "a") >= 0.9


def test_a_new_user_is_folded_in_from_the_history(model: ALSModel) -> None:
    found = model.recall(RecallQuery(user_id="stranger", history=("b1", "b2", "b3")), 8)
    assert _share([r.item_id for r in found], "b") >= 0.7
    assert {r.because for r in found} <= {"b1", "b2", "b3"}
    assert not {r.item_id for r in found} & {"b1", "b2", "b3"}


def test_nothing_known_recalls_nothing(model: ALSModel) -> None:
    assert model.recall(RecallQuery(user_id="stranger"), 5) == []
    assert model.recall(RecallQuery(anchor_item_id="unknown"), 5) == []


def test_excluded_items_are_never_returned(model: ALSModel) -> None:
    exclude = frozenset(f"a{i}" for i in range(10))
    found = model.recall(RecallQuery(user_id="u0", exclude=exclude), 20)
    assert not {r.item_id for r in found} & exclude


def test_a_saved_model_recalls_the_same(model: ALSModel, tmp_path: Path) -> None:
    model.save(tmp_path)
    loaded = type(model).load(tmp_path)
    for query in (RecallQuery(user_id="u3"), RecallQuery(history=("a2",))):
        assert [r.item_id for r in loaded.recall(query, 10)] == [
            r.item_id for r in model.recall(query, 10)
        ]


def test_als_fold_in_is_the_als_user_step() -> None:
    """The closed form used for new users agrees with implicit's own user recalculation."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    data = _world()
    model = ALSModel(factors=8, iterations=10, regularization=0.1, alpha=10.0).fit(data)
    rows = [data.interactions.item_index(t) for t in ("b1", "b2", "b3")]
    assert None not in rows
    with threadpool_limits(1, "blas"):  # implicit warns about a threaded BLAS otherwise
        reference = AlternatingLeastSquares(factors=8, regularization=0.1, alpha=10.0)
    reference.item_factors = model.item_factors_
    reference.user_factors = model.user_factors_
    user_items = sp.csr_matrix(
        (np.ones(3, dtype=np.float32), ([0, 0, 0], rows)), shape=(1, data.interactions.n_items)
    )
    expected = np.asarray(reference.recalculate_user(0, user_items)).ravel()
    folded = model.user_vector(RecallQuery(history=("b1", "b2", "b3")))
    assert folded is not None
    np.testing.assert_allclose(folded, expected, rtol=0.05, atol=0.05)

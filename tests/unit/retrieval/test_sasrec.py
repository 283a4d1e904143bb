"""SASRecModel: numpy-vs-torch parity, a known-answer world, persistence, the recall contract.

The known-answer world is a cycle: every user walks items ``i -> i+1 (mod N)`` from a
random start, so the next item is known, and only the order says which it is (every item
is equally popular and co-occurs with as many others).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import RecallQuery, RetrievalModel
from recloop.retrieval.sasrec import (
    LN_EPS,
    SASRecModel,
    encode_sequence,
    training_windows,
    user_sequences,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.unit

N_ITEMS = 30
FAST: dict[str, Any] = {
    "dim": 32,
    "blocks": 1,
    "max_len": 10,
    "dropout": 0.1,
    "epochs": 12,
    "batch_size": 64,
    "lr": 3e-3,
    "negatives": 16,
}


def item(i: int) -> str:
    return f"i{i % N_ITEMS:02d}"


def cycle_world(n_users: int = 300, seed: int = 0) -> TrainingData:
    """Users walk the cycle from random starts, 4 to 12 steps each."""
    rng = np.random.default_rng(seed)
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for step in range(int(rng.integers(4, 13))):
            users.append(f"u{u:03d}")
            items.append(item(start + step))
            times.append(1000.0 * u + step)
    return TrainingData(Interactions.from_records(users, items, times))


def walk(start: int, steps: int) -> tuple[str, ...]:
    """A history of ``steps`` cycle items from ``start``, most recent first."""
    return tuple(item(start + s) for s in reversed(range(steps)))


@pytest.fixture(scope="module")
def model() -> SASRecModel:
    return SASRecModel(**FAST).fit(cycle_world())


def test_is_a_retrieval_model(model: SASRecModel) -> None:
    """Pins: the class satisfies the RetrievalModel protocol and records its kind."""
    as_protocol: RetrievalModel = model
    assert as_protocol.kind == "sasrec"
    assert dict(SASRecModel.serves) == {"sasrec": "history"}


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_the_next_item_of_a_cycle_comes_first(sampling: str) -> None:
    """Pins: a known answer. After a walk ending at item j, item j+1 is in the top 3 for
    nearly every j, with sampled negatives of either kind (popularity sampling with logQ)."""
    m = SASRecModel(**{**FAST, "sampling": sampling}).fit(cycle_world())
    hits = 0
    for start in range(N_ITEMS):
        got = [r.item_id for r in m.recall(RecallQuery(history=walk(start, 5)), 3)]
        hits += item(start + 5) in got
    assert hits >= 0.9 * N_ITEMS


def popularity_world(seed: int = 0) -> TrainingData:
    """No order at all: users draw 8 of 50 items by Zipf popularity, in random order."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 51)
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for u in range(300):
        for step, j in enumerate(rng.choice(50, 8, replace=False, p=p / p.sum())):
            users.append(f"u{u:03d}")
            items.append(f"p{j:02d}")
            times.append(float(step))
    return TrainingData(Interactions.from_records(users, items, times))


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_without_order_the_popular_items_come_first(sampling: str) -> None:
    """Pins: the logQ correction. Where order says nothing, the next item is a popular one,
    and the model must say so; popularity-drawn negatives without the correction would push
    popular items down (measured: 0.27-0.39 of the top 5 among the 8 most popular, against
    0.77-0.96 with it)."""
    m = SASRecModel(**{**FAST, "sampling": sampling}).fit(popularity_world())
    rng = np.random.default_rng(9)
    shares = []
    for _ in range(20):
        history = tuple(f"p{j:02d}" for j in rng.choice(np.arange(20, 50), 4, replace=False))
        got = [r.item_id for r in m.recall(RecallQuery(history=history), 5)]
        shares.append(np.mean([int(t[1:]) < 8 for t in got]))
    assert np.mean(shares) >= 0.6


def test_full_softmax_learns_the_cycle_too() -> None:
    """Pins: ``negatives=0`` trains with the full softmax, and it learns the known answer."""
    m = SASRecModel(**{**FAST, "negatives": 0}).fit(cycle_world())
    firsts = [m.recall(RecallQuery(history=walk(s, 4)), 1)[0].item_id for s in range(N_ITEMS)]
    assert sum(f == item(s + 4) for s, f in enumerate(firsts)) >= 0.9 * N_ITEMS


def test_as_many_negatives_as_items_is_the_full_softmax() -> None:
    """Pins: ``negatives`` at or above the catalogue's size trains the full softmax."""
    data = cycle_world(60)
    params = {**FAST, "epochs": 2}
    full = SASRecModel(**{**params, "negatives": 0}).fit(data)
    many = SASRecModel(**{**params, "negatives": N_ITEMS}).fit(data)
    np.testing.assert_array_equal(full.item_vectors[1], many.item_vectors[1])


def test_order_matters(model: SASRecModel) -> None:
    """Pins: the model reads order, not a bag of items: the same items reversed point the
    other way round the cycle (the item after the most recent one comes first)."""
    forward = model.recall(RecallQuery(history=walk(10, 4)), 1)[0].item_id
    assert forward == item(14)
    backward = tuple(reversed(walk(10, 4)))  # 10 is now the most recent
    assert model.recall(RecallQuery(history=backward), 1)[0].item_id != item(14)


@pytest.mark.parametrize(("blocks", "heads", "n"), [(1, 1, 1), (2, 2, 5), (3, 4, 12)])
def test_numpy_forward_matches_torch(blocks: int, heads: int, n: int) -> None:
    """Pins: serving's numpy encoder computes the torch network's eval-mode output at the
    last position, on random weights, with the input left-padded in a batch beside longer
    and shorter sequences (padding never leaks into a real position)."""
    from recloop.retrieval.sasrec_net import NetSpec, SASRecNet

    torch.manual_seed(blocks)
    spec = NetSpec(
        n_items=50, dim=16, blocks=blocks, heads=heads, max_len=12, dropout=0.5, ln_eps=LN_EPS
    )
    net = SASRecNet(spec)
    with torch.no_grad():
        for p in net.parameters():  # LayerNorms and biases away from their 1 / 0 start
            p.add_(0.3 * torch.randn_like(p))
    net.eval()
    weights = net.export()
    rng = np.random.default_rng(n)
    seqs = [rng.choice(50, size, replace=False) for size in (n, 12, 1, 7)]
    batch = np.full((len(seqs), 12), spec.n_items, dtype=np.int64)
    for row, s in enumerate(seqs):
        batch[row, 12 - len(s) :] = s
    with torch.no_grad():
        expected = net(torch.from_numpy(batch))[:, -1].numpy()
    for row, s in enumerate(seqs):
        got = encode_sequence(weights, s, blocks=blocks, heads=heads)
        np.testing.assert_allclose(got, expected[row], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(
            weights["item_emb"] @ got, weights["item_emb"] @ expected[row], atol=1e-5, rtol=1e-5
        )


def test_save_and_load_recall_the_same(model: SASRecModel, tmp_path: Path) -> None:
    """Pins: a saved model loads with the same params and recalls the same items and scores."""
    model.save(tmp_path)
    loaded = SASRecModel.load(tmp_path)
    assert loaded.params() == model.params()
    for start in (0, 7, 23):
        query = RecallQuery(history=walk(start, 6), exclude=frozenset({item(start + 7)}))
        assert loaded.recall(query, 10) == model.recall(query, 10)


def test_load_rejects_another_kind(tmp_path: Path) -> None:
    (tmp_path / "sasrec.json").write_text('{"kind": "two-tower", "format": 1}')
    with pytest.raises(ValueError, match="no sasrec model"):
        SASRecModel.load(tmp_path)


def test_serves_without_torch(model: SASRecModel, tmp_path: Path) -> None:
    """Pins: loading and recalling import neither torch nor the training module."""
    model.save(tmp_path)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from recloop.retrieval.models import RecallQuery\n"
        "from recloop.retrieval.sasrec import SASRecModel\n"
        f"m = SASRecModel.load(Path({str(tmp_path)!r}))\n"
        "print(m.recall(RecallQuery(history=('i03', 'i02')), 1)[0].item_id)\n"
        "assert 'torch' not in sys.modules and 'recloop.retrieval.sasrec_net' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "i04"


def test_never_returns_excluded_or_input_items(model: SASRecModel) -> None:
    """Pins: neither ``exclude``, nor the history, session or anchor come back; ``because``
    is always one of the input items."""
    history = walk(0, 5)
    query = RecallQuery(
        history=history,
        session=(item(9),),
        anchor_item_id=item(20),
        exclude=frozenset({item(21), item(22)}),
    )
    got = model.recall(query, N_ITEMS)
    inputs = {*history, item(9), item(20)}
    assert len(got) == N_ITEMS - len(inputs) - 2
    assert not {r.item_id for r in got} & (inputs | query.exclude)
    assert {r.because for r in got} <= inputs
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)


def test_the_anchor_is_the_latest_input(model: SASRecModel) -> None:
    """Pins: on a "similar" surface the anchor counts as the most recent item."""
    got = model.recall(RecallQuery(history=walk(0, 3), anchor_item_id=item(15)), 1)
    assert got[0].item_id == item(16)


def test_nothing_known_recalls_nothing(model: SASRecModel) -> None:
    """Pins: a query with no known item (unknown user, unknown items) gets []."""
    assert model.recall(RecallQuery(user_id="stranger"), 5) == []
    assert model.recall(RecallQuery(history=("unknown",)), 5) == []
    assert model.recall(RecallQuery(history=walk(0, 3)), 0) == []
    assert model.score_items(RecallQuery(history=("unknown",)), [item(1)]) == [None]


def test_score_items_agree_with_recall(model: SASRecModel) -> None:
    """Pins: the ranker-feature scores of candidates are the scores recall gives them, and
    an unknown candidate gets None."""
    query = RecallQuery(history=walk(4, 5))
    recalled = model.recall(query, 5)
    scores = model.score_items(query, [*(r.item_id for r in recalled), "unknown"])
    assert scores[-1] is None
    np.testing.assert_allclose(scores[:-1], [r.score for r in recalled], rtol=1e-5)


def test_only_the_most_recent_max_len_items_are_read(model: SASRecModel) -> None:
    """Pins: a history longer than ``max_len`` is cut to its most recent items."""
    long = walk(3, 25)
    assert model.recall(RecallQuery(history=long), 3) == model.recall(
        RecallQuery(history=long[: model.max_len]), 3
    )


def test_same_seed_same_model() -> None:
    """Pins: training is deterministic under a seed, and another seed trains another model."""
    data = cycle_world(100)
    params = {**FAST, "epochs": 2}
    a, b = SASRecModel(**params).fit(data), SASRecModel(**params).fit(data)
    c = SASRecModel(**{**params, "seed": 1}).fit(data)
    ids, va = a.item_vectors
    np.testing.assert_array_equal(va, b.item_vectors[1])
    assert not np.array_equal(va, c.item_vectors[1])
    assert len(ids) == N_ITEMS


def test_on_epoch_sees_each_epoch_and_can_stop() -> None:
    """Pins: the callback runs after each epoch with a servable model; True stops there."""
    seen: list[int] = []

    def on_epoch(epoch: int, m: SASRecModel) -> bool:
        seen.append(epoch)
        assert m.recall(RecallQuery(history=walk(0, 3)), 2)
        return epoch == 2

    m = SASRecModel(**{**FAST, "epochs": 5}).fit(cycle_world(50), on_epoch=on_epoch)
    assert seen == [1, 2]
    assert m.epochs_run == 2


def test_a_time_budget_stops_training() -> None:
    """Pins: ``max_seconds`` cuts training short and still leaves a servable model."""
    m = SASRecModel(**{**FAST, "epochs": 10_000, "max_seconds": 0.5}).fit(cycle_world(50))
    assert 1 <= m.epochs_run < 10_000
    assert m.recall(RecallQuery(history=walk(0, 3)), 2)


def test_sequences_keep_each_items_latest_time_and_ties_keep_row_order() -> None:
    """Pins: a repeated item sits at its last occurrence; equal times keep the given order;
    users are independent."""
    inter = Interactions.from_records(
        ["u", "u", "u", "u", "v", "v"],
        ["a", "b", "a", "c", "c", "b"],
        [1.0, 2.0, 3.0, 3.0, 5.0, 5.0],
    )
    seqs = user_sequences(TrainingData(inter))
    named = [[inter.item_ids[i] for i in s] for s in seqs]
    assert named == [["b", "a", "c"], ["c", "b"]]


def test_windows_cover_every_target_once() -> None:
    """Pins: a long sequence is cut from the end into windows of max_len + 1 that share one
    item, so every item but the first is a target exactly once; one-item users drop out."""
    seq = np.arange(12, dtype=np.int64)
    windows = training_windows([seq, np.array([5], dtype=np.int64)], max_len=4)
    assert [w.tolist() for w in windows] == [
        [7, 8, 9, 10, 11],
        [3, 4, 5, 6, 7],
        [0, 1, 2, 3],
    ]
    targets = sorted(t for w in windows for t in w[1:].tolist())
    assert targets == list(range(1, 12))


def test_rejects_bad_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="heads must divide dim"):
        SASRecModel(dim=10, heads=3)
    with pytest.raises(ValueError, match="sampling"):
        SASRecModel(sampling="hard")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRecModel().recall(RecallQuery(history=("a",)), 1)

"""TwoTowerModel on a synthetic world where users prefer one category of items.

Trains for a few epochs on 300 users x 200 items (5 categories, Zipf popularity inside
each); every test names the behaviour it pins.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recloop.retrieval.interactions import Interactions, ItemTable, TrainingData
from recloop.retrieval.models import RecallQuery, RetrievalModel
from recloop.retrieval.two_tower import TwoTowerModel, _training_histories, age_buckets

pytest.importorskip("torch")

pytestmark = pytest.mark.unit

N_CATEGORIES = 5
DAY = 86400.0
T0 = 1.7e9
FAST = {"epochs": 5, "batch_size": 256, "seed": 0}


@dataclass(frozen=True)
class World:
    """Training data plus each user's held-out last interaction."""

    data: TrainingData
    category: dict[str, int]  # item id -> category
    held_out: dict[str, tuple[str, float]]  # user id -> (item id, timestamp)

    @property
    def inter(self) -> Interactions:
        return self.data.interactions

    def history(self, user_id: str) -> tuple[str, ...]:
        """The user's training items, most recent first."""
        row = self.inter.user_index(user_id)
        assert row is not None
        return tuple(self.inter.item_ids[i] for i in self.inter.histories()[row])

    def popular(self) -> list[str]:
        """Training items, most interacted with first."""
        counts = np.bincount(self.inter.items, minlength=self.inter.n_items)
        return [self.inter.item_ids[i] for i in np.argsort(-counts, kind="stable")]


def make_world(
    *,
    n_users: int = 300,
    n_items: int = 200,
    per_user: int = 20,
    in_category: float = 0.9,
    skew: float = 1.0,
    seed: int = 0,
    n_categories: int = N_CATEGORIES,
) -> World:
    """User ``u`` prefers category ``u % C``: ``in_category`` of their picks come from it.

    Item ``j`` is in category ``j % C`` with popularity ``1 / (j // C + 1) ** skew``. Each
    user has ``per_user`` distinct items at increasing times; the last one is held out.
    Half the items have a creation time, half the users a device, and every user was shown
    a few items of other categories without engaging (hard negatives).
    """
    rng = np.random.default_rng(seed)
    item_ids = [f"i{j:03d}" for j in range(n_items)]
    category = np.arange(n_items) % n_categories
    weight = 1.0 / (np.arange(n_items) // n_categories + 1.0) ** skew
    everywhere = weight / weight.sum()
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    shown: list[tuple[str, str]] = []
    held_out: dict[str, tuple[str, float]] = {}
    for u in range(n_users):
        user_id = f"u{u:03d}"
        inside = np.where(category == u % n_categories, weight, 0.0)
        inside /= inside.sum()
        chosen: list[int] = []
        while len(chosen) < per_user:
            p = inside if rng.random() < in_category else everywhere
            j = int(rng.choice(n_items, p=p))
            if j not in chosen:
                chosen.append(j)
        ts = np.sort(rng.uniform(0.0, 30 * DAY, per_user)) + T0
        users += [user_id] * (per_user - 1)
        items += [item_ids[j] for j in chosen[:-1]]
        times += ts[:-1].tolist()
        held_out[user_id] = (item_ids[chosen[-1]], float(ts[-1]))
        others = np.flatnonzero(category != u % n_categories)
        shown += [(user_id, item_ids[j]) for j in rng.choice(others, 3, replace=False)]
    inter = Interactions.from_records(users, items, times, item_vocabulary=item_ids)
    created = np.where(np.arange(n_items) % 2 == 0, T0 - np.arange(n_items) * DAY, np.nan)
    table = ItemTable(
        tuple(item_ids),
        tuple(None for _ in item_ids),
        tuple("" for _ in item_ids),
        tuple(f"c{c}" for c in category),
        created,
    )
    negatives = (
        np.array([inter.user_index(u) for u, _ in shown], dtype=np.int64),
        np.array([inter.item_index(t) for _, t in shown], dtype=np.int64),
    )
    devices = {f"u{u:03d}": {"device": ("ios", "web")[u % 2]} for u in range(0, n_users, 2)}
    data = TrainingData(inter, table, negatives, devices)
    return World(data, {t: int(c) for t, c in zip(item_ids, category, strict=True)}, held_out)


def fit(data: TrainingData, content: Any = None, **params: Any) -> TwoTowerModel:
    """A model trained with FAST settings overridden by ``params``."""
    return TwoTowerModel(**{**FAST, **params}).fit(data, content=content)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def model(world: World) -> TwoTowerModel:
    return fit(world.data)


def query_for(world: World, user_id: str, **extra: Any) -> RecallQuery:
    """What the service would ask for this user at their held-out interaction's time."""
    return RecallQuery(
        user_id=user_id,
        history=world.history(user_id),
        now_ts=world.held_out[user_id][1],
        **extra,
    )


def recall_at(world: World, lists: dict[str, list[str]]) -> float:
    return float(np.mean([world.held_out[u][0] in got for u, got in lists.items()]))


def test_is_a_retrieval_model(model: TwoTowerModel) -> None:
    """Pins: the class satisfies the RetrievalModel protocol and records its kind."""
    as_protocol: RetrievalModel = model
    assert as_protocol.kind == "two-tower"
    assert TwoTowerModel(**model.params()).params() == model.params()


def test_beats_popularity_on_held_out_interactions(world: World, model: TwoTowerModel) -> None:
    """Pins: the towers learn the users' categories: Recall@20 on each user's held-out last
    item clearly beats the most-popular list (both exclude the user's training items)."""
    popular = world.popular()
    mine: dict[str, list[str]] = {}
    baseline: dict[str, list[str]] = {}
    for user_id in world.held_out:
        query = query_for(world, user_id, exclude=frozenset(world.history(user_id)))
        mine[user_id] = [r.item_id for r in model.recall(query, 20)]
        seen = set(query.history)
        baseline[user_id] = [t for t in popular if t not in seen][:20]
    ours, theirs = recall_at(world, mine), recall_at(world, baseline)
    assert ours > 0.45
    assert ours > theirs + 0.2, (ours, theirs)


def test_save_and_load_recall_the_same(world: World, model: TwoTowerModel, tmp_path: Path) -> None:
    """Pins: save/load round-trips params, vectors and recall output exactly."""
    model.save(tmp_path)
    loaded = TwoTowerModel.load(tmp_path)
    assert loaded.params() == model.params()
    ids, vectors = model.item_vectors
    loaded_ids, loaded_vectors = loaded.item_vectors
    assert loaded_ids == ids
    np.testing.assert_array_equal(loaded_vectors, vectors)
    queries = [query_for(world, u) for u in ("u000", "u001", "u123")]
    queries += [
        RecallQuery(user_id="stranger", history=("i003", "i008"), device="ios", now_ts=T0),
        RecallQuery(),
    ]
    for query in queries:
        assert loaded.recall(query, 25) == model.recall(query, 25)
        np.testing.assert_array_equal(loaded.user_vector(query), model.user_vector(query))


def test_a_forgotten_user_is_encoded_as_a_stranger_and_not_saved(
    world: World, tmp_path: Path
) -> None:
    """Pins: forgetting a user answers them as an unknown user with the same history, now and
    after save and load; the others' answers do not change."""
    model = fit(world.data)
    gone, kept = query_for(world, "u001"), query_for(world, "u000")
    stranger = RecallQuery(history=gone.history, now_ts=gone.now_ts)
    kept_before = model.recall(kept, 25)

    assert model.forget_users(["u001", "nobody"]) == 1
    model.save(tmp_path)
    loaded = TwoTowerModel.load(tmp_path)

    for answering in (model, loaded):
        assert answering.recall(gone, 25) == model.recall(stranger, 25)
        assert answering.recall(kept, 25) == kept_before
    assert "u001" not in (tmp_path / "two_tower.json").read_text()


def test_load_rejects_another_kind(tmp_path: Path) -> None:
    """Pins: loading a directory that holds another model kind fails loudly."""
    (tmp_path / "two_tower.json").write_text(json.dumps({"kind": "als", "format": 1}))
    with pytest.raises(ValueError, match="two-tower"):
        TwoTowerModel.load(tmp_path)


def test_never_returns_excluded_session_or_history_items(
    world: World, model: TwoTowerModel
) -> None:
    """Pins: recall never returns query.exclude, session, history or anchor items, and asks
    for no more than the catalogue can give."""
    rng = np.random.default_rng(1)
    ids = list(world.inter.item_ids)
    for user_id in list(world.held_out)[:40]:
        exclude = frozenset(rng.choice(ids, 30, replace=False).tolist())
        session = tuple(rng.choice(ids, 3, replace=False).tolist())
        query = query_for(world, user_id, exclude=exclude, session=session, anchor_item_id=ids[7])
        got = [r.item_id for r in model.recall(query, 50)]
        assert len(got) == 50
        assert not set(got) & (exclude | set(session) | set(query.history) | {ids[7]})
    everything = RecallQuery(user_id="u000", history=tuple(ids[:150]))
    rest = model.recall(everything, 500)
    assert {r.item_id for r in rest} == set(ids[150:])
    assert model.recall(query_for(world, "u000"), 0) == []


def test_scores_and_reasons(world: World, model: TwoTowerModel) -> None:
    """Pins: results are best first, scored by the inner product of the numpy user vector and
    the item vectors, and ``because`` names the history item closest to each result."""
    ids, vectors = model.item_vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    query = query_for(world, "u002")
    user = model.user_vector(query)
    assert user.dtype == np.float32
    assert np.linalg.norm(user) == pytest.approx(1.0, rel=1e-5)
    got = model.recall(query, 20)
    row = {t: i for i, t in enumerate(ids)}
    scores = [r.score for r in got]
    assert scores == sorted(scores, reverse=True)
    seeds = [row[t] for t in query.history[: model.history_len]]
    for r in got:
        assert r.score == pytest.approx(float(vectors[row[r.item_id]] @ user), abs=1e-5)
        best = seeds[int(np.argmax(vectors[seeds] @ vectors[row[r.item_id]]))]
        assert r.because == ids[best]
    cold = model.recall(RecallQuery(user_id="u002"), 5)
    assert len(cold) == 5
    assert all(r.because is None for r in cold)


def test_unknown_user_follows_their_history(world: World, model: TwoTowerModel) -> None:
    """Pins: a user not seen in training gets the unknown-user row plus their history: with a
    history in category c, most results are items of c."""
    for c in range(N_CATEGORIES):
        history = tuple(t for t, cat in world.category.items() if cat == c)[:6]
        got = model.recall(RecallQuery(user_id="newcomer", history=history, now_ts=T0), 20)
        share = np.mean([world.category[r.item_id] == c for r in got])
        assert share >= 0.7, (c, share)
        assert all(r.because in history for r in got)


def test_history_is_strictly_earlier_in_time() -> None:
    """Pins no leakage: a training example's history holds only items strictly earlier than
    it (same-second interactions do not see each other), most recent and distinct first."""
    users = np.array([0, 1, 0, 0, 0, 1, 0], dtype=np.int64)
    items = np.array([10, 11, 12, 13, 10, 14, 15], dtype=np.int64)
    times = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
    got = _training_histories(users, items, times, n_items=99, max_len=2)
    assert got.tolist() == [
        [99, 99],  # user 0's first
        [99, 99],  # user 1's first
        [10, 99],  # t=2 does not see its same-second sibling
        [10, 99],
        [13, 12],  # t=3: the two t=2 items, the later row first
        [11, 99],
        [10, 13],  # item 10, seen again at t=3, is back in front
    ]


def test_age_buckets() -> None:
    """Pins: age is log2 days since creation, clipped, with 0 for an unknown creation time."""
    created = np.array([np.nan, 0.0, -DAY, -3 * DAY, -1e6 * DAY, DAY])
    assert age_buckets(created, 0.0).tolist() == [0, 1, 2, 3, 11, 1]


def test_log_q_correction_restores_popular_items() -> None:
    """Pins what log-Q correction does on a popularity-skewed world.

    In-batch negatives are drawn in proportion to popularity, so uncorrected training
    over-penalises popular items and learns roughly log P(item | user) - log P(item): its top
    lists all but lose the head. Subtracting log Q during training removes that bias, so the
    served scores keep the head's share close to how often the held-out items are head
    items. (Correction therefore *raises* the head's share; a model that under-served popular
    items would need the opposite knob.) The corrected model also recalls better.
    """
    world = make_world(skew=2.0, seed=3)
    head = set(world.popular()[:10])
    true_share = np.mean([t in head for t, _ in world.held_out.values()])
    shares: dict[bool, float] = {}
    recalls: dict[bool, float] = {}
    for logq in (True, False):
        model = fit(world.data, logq_correction=logq)
        lists = {
            u: [
                r.item_id
                for r in model.recall(query_for(world, u, exclude=frozenset(world.history(u))), 20)
            ]
            for u in world.held_out
        }
        shares[logq] = float(np.mean([np.mean([t in head for t in got]) for got in lists.values()]))
        recalls[logq] = recall_at(world, lists)
    assert shares[False] < 0.25 * true_share, (shares, true_share)
    assert shares[True] > 0.5 * true_share, (shares, true_share)
    assert recalls[True] > recalls[False] + 0.1, recalls


def test_content_must_align_with_items(world: World) -> None:
    """Pins: a content matrix that does not match the item vocabulary is refused."""
    with pytest.raises(ValueError, match="content"):
        TwoTowerModel(epochs=0).fit(world.data, content=np.zeros((3, 4)))


def test_same_seed_same_model() -> None:
    """Pins reproducibility: the same data, content and seed give the same item vectors."""
    small = make_world(n_users=40, n_items=30, per_user=6)
    content = np.random.default_rng(0).normal(size=(small.inter.n_items, 4))
    a = fit(small.data, epochs=1, content=content)
    b = fit(small.data, epochs=1, content=content)
    np.testing.assert_array_equal(a.item_vectors[1], b.item_vectors[1])


_SERVE_BLOCKED = """
import json, sys
from pathlib import Path
for name in json.loads(sys.argv[3]):
    sys.modules[name] = None  # any "import <name>" now raises ImportError
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import RecallQuery
from recloop.retrieval.two_tower import TwoTowerModel

model = TwoTowerModel.load(Path(sys.argv[1]))
query = RecallQuery(**json.loads(sys.argv[2]))
got = [[r.item_id, r.score, r.because] for r in model.recall(query, 20)]
try:
    TwoTowerModel().fit(TrainingData(Interactions.from_records(["u"], ["i"], [0.0])))
    error = None
except RuntimeError as exc:
    error = str(exc)
print(json.dumps({"recalled": got, "fit_error": error}))
"""


@pytest.fixture
def saved(model: TwoTowerModel, tmp_path: Path) -> Path:
    model.save(tmp_path)
    return tmp_path


@pytest.mark.parametrize("blocked", [["torch"], ["torch", "faiss"]], ids=["torch", "faiss"])
def test_serves_without_torch(
    world: World, model: TwoTowerModel, saved: Path, blocked: list[str]
) -> None:
    """Pins: a saved model loads and recalls with torch unimportable, with the same answers,
    and also without faiss (exact numpy search); fitting without torch says to install the
    deep extra."""
    history = world.history("u005")
    fields = {"user_id": "u005", "history": list(history), "now_ts": T0, "exclude": ["i000"]}
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_BLOCKED, str(saved), json.dumps(fields), json.dumps(blocked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    query = RecallQuery(user_id="u005", history=history, now_ts=T0, exclude=frozenset({"i000"}))
    expected = model.recall(query, 20)
    assert [(t, b) for t, _, b in out["recalled"]] == [(r.item_id, r.because) for r in expected]
    assert [s for _, s, _ in out["recalled"]] == pytest.approx(
        [r.score for r in expected], abs=1e-5
    )
    assert "recloop[deep]" in out["fit_error"]


def with_new_items(world: World, new: dict[str, int]) -> tuple[Interactions, dict[str, int]]:
    """The world's interactions with ``new`` items (id -> category) that nobody engaged with,
    and every item's category."""
    old = world.inter
    inter = Interactions.from_records(
        [old.user_ids[u] for u in old.users],
        [old.item_ids[i] for i in old.items],
        old.timestamps,
        item_vocabulary=[*old.item_ids, *new],
    )
    return inter, {**world.category, **new}


@pytest.mark.parametrize("side", ["text", "category"])
def test_side_information_places_new_items(side: str) -> None:
    """Pins: item texts (hashed when fit gets no content matrix) and categories feed the item
    tower, so an item nobody interacted with lands nearest the items that share its text or
    its category."""
    words = ["jazz saxophone trumpet", "football goal striker", "pasta recipe basil"]
    small = make_world(n_users=120, n_items=60, per_user=10, n_categories=3)
    new = {"new-jazz": 0, "new-football": 1, "new-pasta": 2}
    inter, category = with_new_items(small, new)
    ids = inter.item_ids
    table = ItemTable(
        ids,
        tuple(None for _ in ids),
        tuple(words[category[t]] if side == "text" else "" for t in ids),
        tuple(f"c{category[t]}" if side == "category" else None for t in ids),
        np.full(len(ids), np.nan),
    )
    model = fit(TrainingData(inter, table), epochs=8)
    _, vectors = model.item_vectors
    centres = [
        np.mean([vectors[i] for i, t in enumerate(ids) if category[t] == c and t not in new], 0)
        for c in range(3)
    ]
    for item_id, c in new.items():
        closeness = [float(vectors[ids.index(item_id)] @ centre) for centre in centres]
        assert int(np.argmax(closeness)) == c, (item_id, closeness)


def test_hard_negatives_push_down_shown_but_ignored_items(world: World) -> None:
    """Pins: shown negatives train. Each category gets a "trap" item that its users are all
    shown and none engage with; its category alone puts it in their top 20 when hard
    negatives are off, and training on them as negatives keeps it out."""
    traps = {f"trap{c}": c for c in range(N_CATEGORIES)}
    inter, category = with_new_items(world, traps)
    ids = inter.item_ids
    table = ItemTable(
        ids,
        tuple(None for _ in ids),
        tuple("" for _ in ids),
        tuple(f"c{category[t]}" for t in ids),
        np.full(len(ids), np.nan),
    )
    trap_of = {u: f"trap{int(u[1:]) % N_CATEGORIES}" for u in world.held_out}
    shown = (
        np.array([inter.user_index(u) for u in trap_of], dtype=np.int64),
        np.array([inter.item_index(t) for t in trap_of.values()], dtype=np.int64),
    )
    data = TrainingData(inter, table, shown)
    caught: dict[bool, float] = {}
    for hard in (True, False):
        model = fit(data, use_hard_negatives=hard)
        caught[hard] = float(
            np.mean(
                [
                    trap_of[u] in {r.item_id for r in model.recall(query_for(world, u), 20)}
                    for u in trap_of
                ]
            )
        )
    assert caught[False] > 0.5, caught
    assert caught[True] < 0.1, caught

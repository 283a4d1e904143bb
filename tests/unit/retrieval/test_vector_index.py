"""VectorIndex: exact answers, HNSW recall, adds and replaces, exclusions, persistence."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from recloop.retrieval.vector_index import VectorIndex

pytestmark = pytest.mark.unit

Kind = Literal["flat", "hnsw"]
F32 = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> F32:
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def brute_force(vectors: F32, query: F32, k: int) -> tuple[list[int], F32]:
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return order.tolist(), scores[order]


def make(n: int, d: int, kind: Kind, seed: int = 0) -> tuple[list[str], F32, VectorIndex]:
    rng = np.random.default_rng(seed)
    ids = [f"i{j}" for j in range(n)]
    vectors = unit_rows(rng, n, d)
    return ids, vectors, VectorIndex.build(ids, vectors, kind=kind)


def test_exact_search_equals_numpy_brute_force() -> None:
    ids, vectors, index = make(2000, 16, "flat")
    assert index.kind == "flat"
    queries = unit_rows(np.random.default_rng(1), 20, 16)
    for q in queries:
        rows, scores = brute_force(vectors, q, 10)
        got = index.search(q, 10)
        assert [i for i, _ in got] == [ids[r] for r in rows]
        np.testing.assert_allclose([s for _, s in got], scores, rtol=1e-5, atol=1e-6)


def test_search_many_equals_single_searches_and_brute_force() -> None:
    ids, vectors, index = make(500, 8, "flat")
    queries = unit_rows(np.random.default_rng(2), 7, 8)
    got_ids, got_scores = index.search_many(queries, 5)
    assert got_scores.shape == (7, 5)
    for q, row_ids, row_scores in zip(queries, got_ids, got_scores, strict=True):
        rows, scores = brute_force(vectors, q, 5)
        assert row_ids == [ids[r] for r in rows]
        np.testing.assert_allclose(row_scores, scores, rtol=1e-5, atol=1e-6)
        assert [i for i, _ in index.search(q, 5)] == row_ids


def test_search_many_pads_short_rows_with_minus_inf() -> None:
    _, _, index = make(3, 4, "flat")
    got_ids, got_scores = index.search_many(unit_rows(np.random.default_rng(0), 2, 4), 5)
    assert [len(r) for r in got_ids] == [3, 3]
    assert np.isneginf(got_scores[:, 3:]).all()
    assert np.isfinite(got_scores[:, :3]).all()


def test_hnsw_recall_at_10_against_exact_is_at_least_095() -> None:
    ids, vectors, index = make(20_000, 32, "hnsw")
    assert index.kind == "hnsw"
    queries = unit_rows(np.random.default_rng(3), 200, 32)
    got_ids, _ = index.search_many(queries, 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean(
        [
            len(set(got) & {ids[r] for r in truth}) / 10
            for got, truth in zip(got_ids, exact, strict=True)
        ]
    )
    assert recall >= 0.95
    # The single-query path answers like the batch one.
    assert [i for i, _ in index.search(queries[0], 10)] == got_ids[0]


def test_auto_kind_follows_the_size_threshold_also_when_add_grows_it() -> None:
    rng = np.random.default_rng(4)
    small = VectorIndex.build(["a", "b"], unit_rows(rng, 2, 4), exact_below=3)
    assert small.kind == "flat"
    assert VectorIndex.build(list("abc"), unit_rows(rng, 3, 4), exact_below=3).kind == "hnsw"
    small.add(["c"], unit_rows(rng, 1, 4))
    assert small.kind == "hnsw"
    assert set(small.ids) == {"a", "b", "c"}
    v = small.vector("a")
    assert v is not None
    assert small.search(v, 1)[0][0] == "a"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_added_id_is_searchable(kind: Kind) -> None:
    _, _, index = make(300, 8, kind)
    new = unit_rows(np.random.default_rng(9), 1, 8)[0]
    index.add(["new"], new[None, :])
    assert "new" in index
    assert len(index) == 301
    top = index.search(new, 3)
    assert top[0][0] == "new"
    assert top[0][1] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(index.vector("new"), new)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_replaced_vector_is_never_returned(kind: Kind) -> None:
    ids, vectors, index = make(300, 8, kind)
    old = vectors[0].copy()
    index.add([ids[0]], (-old)[None, :])  # the opposite direction: now the worst match
    assert len(index) == 300
    assert index.ids.count(ids[0]) == 1
    np.testing.assert_allclose(index.vector(ids[0]), -old)
    assert ids[0] not in [i for i, _ in index.search(old, 20)]
    assert ids[0] not in index.search_many(old[None, :], 20)[0][0]
    assert index.search(-old, 1)[0] == (ids[0], pytest.approx(1.0, abs=1e-5))
    if kind == "flat":  # exhaustive: the id shows once, with its new score
        everything = index.search(old, 300)
        assert [i for i, _ in everything].count(ids[0]) == 1
        assert dict(everything)[ids[0]] == pytest.approx(-1.0, abs=1e-5)
        batch_ids, batch_scores = index.search_many(old[None, :], 300)
        assert batch_ids[0].count(ids[0]) == 1
        assert batch_scores[0][batch_ids[0].index(ids[0])] == pytest.approx(-1.0, abs=1e-5)


def test_many_replaces_compact_and_stay_exact() -> None:
    rng = np.random.default_rng(5)
    ids = [f"i{j}" for j in range(10)]
    index = VectorIndex.build(ids, unit_rows(rng, 10, 6), kind="flat")
    latest: dict[str, F32] = {}
    for _ in range(150):  # 1500 replaces: past the compaction floor
        fresh = unit_rows(rng, 10, 6)
        for item_id, v in zip(ids, fresh, strict=True):
            index.add([item_id], v[None, :])
            latest[item_id] = v
    assert len(index) == 10
    q = unit_rows(rng, 1, 6)[0]
    matrix = np.stack([latest[i] for i in ids])
    rows, scores = brute_force(matrix, q, 10)
    got = index.search(q, 10)
    assert [i for i, _ in got] == [ids[r] for r in rows]
    np.testing.assert_allclose([s for _, s in got], scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exclusions_are_honoured_and_made_up_for(kind: Kind) -> None:
    _, vectors, index = make(400, 8, kind)
    q = vectors[7]
    top = [i for i, _ in index.search(q, 20)]
    excluded = set(top[:10])
    got = index.search(q, 10, exclude=excluded)
    assert len(got) == 10
    assert not excluded & {i for i, _ in got}
    assert [i for i, _ in got] == top[10:20]


def test_excluding_everything_returns_nothing() -> None:
    ids, vectors, index = make(5, 4, "flat")
    assert index.search(vectors[0], 3, exclude=set(ids)) == []
    assert len(index.search(vectors[0], 10, exclude=ids[:2])) == 3


def test_removed_id_is_never_returned() -> None:
    ids, vectors, index = make(50, 4, "hnsw")
    assert index.remove([ids[3], "unknown"]) == 1
    assert ids[3] not in index
    assert index.vector(ids[3]) is None
    assert ids[3] not in [i for i, _ in index.search(vectors[3], 50)]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip_gives_identical_results(kind: Kind, tmp_path: Path) -> None:
    ids, vectors, index = make(1000, 8, kind)
    index.add([ids[0]], unit_rows(np.random.default_rng(6), 1, 8))  # leaves a tombstone
    index.save(tmp_path / "index")
    loaded = VectorIndex.load(tmp_path / "index")
    assert loaded.kind == index.kind
    assert loaded.dim == 8
    assert loaded.ids == index.ids
    assert len(loaded) == len(index)
    queries = unit_rows(np.random.default_rng(7), 10, 8)
    for q in queries:
        assert loaded.search(q, 10, exclude={ids[1]}) == index.search(q, 10, exclude={ids[1]})
    np.testing.assert_array_equal(
        loaded.search_many(queries, 5)[1], index.search_many(queries, 5)[1]
    )
    np.testing.assert_array_equal(loaded.vector(ids[0]), index.vector(ids[0]))
    loaded.add(["late"], vectors[5][None, :])  # a loaded index still takes adds
    assert "late" in [i for i, _ in loaded.search(vectors[5], 2)]


def test_empty_index_returns_nothing() -> None:
    index = VectorIndex(4)
    q = np.ones(4, dtype=np.float32)
    assert index.search(q, 5) == []
    assert len(index) == 0
    assert index.ids == ()
    got_ids, got_scores = index.search_many(q[None, :], 3)
    assert got_ids == [[]]
    assert got_scores.shape == (1, 3)
    assert VectorIndex.build([], np.zeros((0, 4), dtype=np.float32)).search(q, 1) == []


def test_bad_shapes_are_rejected() -> None:
    index = VectorIndex(4)
    with pytest.raises(ValueError, match="4 columns"):
        index.add(["a"], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="ids for"):
        index.add(["a", "b"], np.ones((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="4 columns"):
        index.search(np.ones(5, dtype=np.float32), 1)


def test_single_search_leaves_the_callers_openmp_setting_alone() -> None:
    _, vectors, index = make(100, 4, "flat")
    seen: list[int] = []

    def in_fresh_thread() -> None:  # OpenMP settings are per thread: leave the test's alone
        faiss.omp_set_num_threads(3)
        index.search(vectors[0], 3)
        seen.append(faiss.omp_get_max_threads())

    t = threading.Thread(target=in_fresh_thread)
    t.start()
    t.join()
    assert seen == [3]


def test_add_waits_for_in_flight_searches() -> None:
    _, vectors, index = make(100, 4, "hnsw")
    done = threading.Event()

    def writer() -> None:
        index.add(["late"], vectors[:1])
        done.set()

    with index._lock.read():  # a search in progress
        t = threading.Thread(target=writer)
        t.start()
        assert not done.wait(0.2)
        assert "late" not in index
    t.join(5)
    assert done.is_set()
    assert "late" in index


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_searches_during_adds_never_see_stale_vectors(kind: Kind) -> None:
    rng = np.random.default_rng(8)
    d = 8
    base = unit_rows(rng, 500, d)
    ids = [f"i{j}" for j in range(500)]
    index = VectorIndex.build(ids, base, kind=kind)
    probe = base[0].copy()
    errors: list[BaseException] = []
    stop = threading.Event()
    replaced = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                after_replace = replaced.is_set()
                found = index.search(probe, 5)
                if not after_replace:
                    continue
                for item_id, score in found:
                    # i0 only ever moves away from the probe: its old score must never show.
                    if item_id == "i0" and score > 0.5:
                        raise AssertionError(f"stale i0 returned with score {score}")
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        index.add(["i0"], (-probe)[None, :])
        replaced.set()
        for j in range(200):
            index.add([f"new{j}"], unit_rows(rng, 1, d))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert len(index) == 700


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vectors_reads_many_like_vector_reads_one(kind: Kind) -> None:
    _, vectors, index = make(50, 8, kind)
    index.add(["i3"], vectors[4:5])  # replaced: its new vector, never the old one
    index.remove(["i7"])
    wanted = ["i7", "i3", "nope", "i0", "i49", "i3"]
    at, found = index.vectors(wanted)
    assert at == [1, 3, 4, 5]
    assert found.dtype == np.float32
    assert found.shape == (4, 8)
    for row, position in enumerate(at):
        one = index.vector(wanted[position])
        assert one is not None
        assert np.array_equal(found[row], one)
    none_at, none = index.vectors(["nope"])
    assert none_at == []
    assert none.shape == (0, 8)

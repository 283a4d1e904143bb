"""Retrieval latency per source at 10k and 1M items, and the vector index's recall.

Synthetic data shaped like trained vectors: a power-law spectrum (a few strong directions, a
long tail), as learned factors and embeddings have; user queries drawn the same way. For each
catalogue size it builds the index the service would (exact below 50k items, HNSW above), measures
single-query latency (one thread, as a request does), and compares HNSW results against
exact search on the same vectors (recall@k of the approximate top k). Item-to-item sources
are measured on a neighbour table of the same size (their cost depends on the history
length and neighbours per item, not on the catalogue).

    .venv/bin/python benchmarks/retrieval_latency.py            # 10k and 1M (~6 min)
    .venv/bin/python benchmarks/retrieval_latency.py --quick    # 10k and 100k
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
import numpy as np

from recloop.retrieval.item_item import CoVisitation, ItemNeighbours
from recloop.retrieval.models import RecallQuery
from recloop.retrieval.vector_index import VectorIndex

RESULTS = Path(__file__).parent / "results"
EF_SWEEP = (16, 64, 256)  # the floor; the index widens the beam to 2 * fetch for each query


def clustered(n: int, dim: int, rng: np.random.Generator, topics: int = 1000) -> np.ndarray:
    """Unit vectors around ``topics`` random centres, noise about half a centre's length:
    items of one taste or topic sit together, as in trained factors and text embeddings."""
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, topics, size=n)
    x = centres[which] + rng.standard_normal((n, dim)).astype(np.float32) * (0.5 / dim**0.5)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def learned_like(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors with a power-law spectrum (variance 1/j along axis j), as learned
    factors and embeddings have: a few strong directions, a long tail of weak ones.
    Uniformly random vectors would be the worst case for any ANN index, and unlike data."""
    scale = (1.0 / np.arange(1, dim + 1)) ** 0.5
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (rng.standard_normal((n, dim)) * scale) @ rotation
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def time_queries(fn, queries) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def bench_vectors(
    n: int, dim: int, k: int, n_queries: int, seed: int, data: str
) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    if data == "clustered":
        both = clustered(n + n_queries, dim, rng)
        items, queries = both[:n], both[n:]
    else:
        items, queries = learned_like(n, dim, rng), learned_like(n_queries, dim, rng)
    ids = [f"i{i}" for i in range(n)]
    exclude = [frozenset(f"i{j}" for j in rng.integers(0, n, 50)) for _ in range(n_queries)]
    row: dict[str, object] = {"items": n, "dim": dim, "k": k, "data": data}

    started = time.perf_counter()
    flat = VectorIndex.build(ids, items, kind="flat")
    row["flat_build_s"] = round(time.perf_counter() - started, 2)
    exact = [flat.search(q, k) for q in queries]
    row["flat"] = percentiles(time_queries(lambda q: flat.search(q, k), queries))

    if n >= 50_000:
        started = time.perf_counter()
        hnsw = VectorIndex.build(ids, items, kind="hnsw")
        row["hnsw_build_s"] = round(time.perf_counter() - started, 1)
        for ef in EF_SWEEP:
            hnsw._ef_search = ef  # the benchmark sweeps the floor of the search width
            found = [hnsw.search(q, k) for q in queries]
            recall = np.mean(
                [
                    len({i for i, _ in f} & {i for i, _ in e}) / max(len(e), 1)
                    for f, e in zip(found, exact, strict=True)
                ]
            )
            lat = time_queries(lambda q: hnsw.search(q, k), queries)
            lat_ex = [
                (time.perf_counter(), hnsw.search(q, k, exclude=ex), time.perf_counter())
                for q, ex in zip(queries, exclude, strict=True)
            ]
            row[f"hnsw_ef{ef}"] = {
                **percentiles(lat),
                "recall_vs_exact": round(float(recall), 4),
                "p50_ms_excluding_50": float(
                    np.percentile([(b - a) * 1000 for a, _, b in lat_ex], 50)
                ),
            }
    return row


def bench_item_item(n: int, neighbours: int, history: int, k: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    ids = tuple(f"i{i}" for i in range(n))
    indptr = np.arange(0, (n + 1) * neighbours, neighbours, dtype=np.int64)
    indices = rng.integers(0, n, size=n * neighbours).astype(np.int32)
    scores = np.sort(rng.random(n * neighbours).astype(np.float32).reshape(n, neighbours))[
        :, ::-1
    ].ravel()
    model = CoVisitation()
    model.neighbours_ = ItemNeighbours(ids, indptr, indices, np.ascontiguousarray(scores))
    queries = [
        RecallQuery(history=tuple(ids[j] for j in rng.integers(0, n, history))) for _ in range(300)
    ]
    lat = time_queries(lambda q: model.recall(q, k), queries)
    return {"items": n, "neighbours": neighbours, "history": history, **percentiles(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k items")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=200, help="candidates per query (a quota)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--data",
        choices=["clustered", "powerlaw"],
        default="clustered",
        help="clustered: topics, like trained vectors; powerlaw: no clusters, a hard case",
    )
    parser.add_argument("--sizes", help="comma-separated catalogue sizes (overrides --quick)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, list[dict[str, object]]] = {"vector_index": [], "item_item": []}
    for n in sizes:
        row = bench_vectors(n, args.dim, args.k, args.queries, seed=7, data=args.data)
        report["vector_index"].append(row)
        print(json.dumps(row), flush=True)
        ii = bench_item_item(n, neighbours=100, history=20, k=args.k, seed=7)
        report["item_item"].append(ii)
        print(json.dumps(ii), flush=True)
    print()
    print(f"{'items':>9} {'index':<12} {'p50 ms':>8} {'p99 ms':>8} {'recall':>7}")
    for row in report["vector_index"]:
        flat = row["flat"]
        assert isinstance(flat, dict)
        name = "flat"
        print(
            f"{row['items']:>9,} {name:<12} {flat['p50_ms']:>8.3f} {flat['p99_ms']:>8.3f}   1.000"
        )
        for ef in EF_SWEEP:
            h = row.get(f"hnsw_ef{ef}")
            if isinstance(h, dict):
                print(
                    f"{row['items']:>9,} {'hnsw ef=' + str(ef):<12} {h['p50_ms']:>8.3f} "
                    f"{h['p99_ms']:>8.3f} {h['recall_vs_exact']:>7.3f}"
                )
    for row in report["item_item"]:
        print(
            f"{row['items']:>9,} {'item-item':<12} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}"
            f" {'-':>7}  (history {row['history']}, {row['neighbours']} neighbours each)"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"retrieval_latency-{args.data}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

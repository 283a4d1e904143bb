"""Prefix-index candidates for query suggestions: build time, memory and lookup latency.

In the manner of Lucene's suggester benchmark (``LookupBenchmarkTest``): each structure is
built from the same weighted query log, then answers top-10 completions for prefixes of 1-3
characters, 4-8 characters and whole queries, each taken from a query drawn uniformly from
the log. Every structure runs in a process of its own (``--worker``), so its memory is its
own. A build process builds and saves it (``build`` seconds; ``peak``, how far the build
raised the process's high-water mark; ``disk``, the saved size); a fresh serving process then
opens the saved copy (``load``) and makes every lookup, so ``rss`` is the resident-set
growth of a server that opened it and answered the whole workload (memory-mapped pages that
the lookups touched included).

Structures (all rank by weight, ties by text, and must agree on every answer):

- ``recloop``: ``recloop.suggest.prefix_index.PrefixIndex`` — sorted UTF-8 blob, 8-byte
  heads for ``searchsorted``, a precomputed top-k row for every prefix range of more than
  ``leaf_size`` queries, a scan of the ranks below that; memory-mapped on load.
- ``marisa``: a marisa-trie ``Trie`` of the queries (ranks by key id) plus a marisa
  ``BytesTrie`` from every heavy prefix (more than 256 queries) to its top-k key ids; other
  prefixes enumerate their keys. Needs ``marisa-trie`` (skipped when absent).
- ``dict3``: a Python dict from every prefix of 1-3 characters to its top k, and a sorted
  Python list with ``bisect`` whose range is scanned for longer prefixes.
- ``bisect``: the sorted list alone, every range scanned (the baseline).

For ``recloop`` it also measures word-start lookups (a prefix of a word other than the first)
and typo-tolerant ones: the prefix with one random edit (substitution, insertion, deletion or
transposition, at a random place after the first character), answered by ``complete_fuzzy``;
``recall`` is the share of those whose answer holds the untouched prefix's best completion. The typo
candidates come from a deletion-neighbourhood index; ``typo-scan`` times the alternative of
scanning the vocabulary with rapidfuzz (``process.extract``, OSA distance) for one word.

Query logs (popularity by a stated Zipf law: the i-th distinct query in a seeded random order
weighs ``1 / i``):

- ``synthetic-100k`` / ``synthetic-1m``: word sequences drawn from the MS MARCO and MIRACL
  (en) query words in ``../shared/datasets/queries/``: the first word from the queries' first
  words (probability 0.7) or else from a Zipf law (exponent 1) over the vocabulary ranked by
  frequency; each next word from the words that followed it in real queries (probability
  0.7) or else from the same Zipf law; lengths 1-8 words with probabilities
  .15/.25/.25/.15/.10/.05/.03/.02. Without the data set, made-up words take its place.
- ``msmarco``: the MS MARCO passage and document dev queries (6,980 distinct),
  normalized by ``recloop.suggest.normalize.match_key`` when present (else lower case and
  single spaces).

    nice -n 10 .venv/bin/python benchmarks/suggest_index.py [--quick] [--lookups 5000]

``--quick`` runs 100k only. It prints a table per log and one JSON line with every number.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import os
import pickle
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recloop.suggest.prefix_index import PrefixIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "queries"
K = 10
TOP_K = 32
LEAF = 256
LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8)
LENGTH_P = (0.15, 0.25, 0.25, 0.15, 0.10, 0.05, 0.03, 0.02)
CLASSES = ("1-3", "4-8", "full")


# --- query logs ------------------------------------------------------------------------


def _real_queries(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        path = DATA / name
        if path.exists():
            out += [line.split("\t", 1)[1].strip() for line in path.open() if "\t" in line]
    return out


def _fallback_key(text: str) -> str:
    return " ".join(text.lower().split())


def _match_key() -> tuple[Callable[[str], str], str]:
    try:
        from recloop.suggest import normalize
    except ImportError:
        return _fallback_key, "lower case, single spaces"
    key = getattr(normalize, "match_key", None)
    if key is None:
        return _fallback_key, "lower case, single spaces"
    return (lambda text: str(key(text, "en"))), "recloop.suggest.normalize.match_key(text, 'en')"


def zipf_weights(queries: list[str], seed: int) -> list[tuple[str, float]]:
    """Popularity by Zipf's law over a seeded random order: the i-th query weighs 1 / i."""
    order = list(queries)
    random.Random(seed).shuffle(order)
    return [(q, 1.0 / (i + 1)) for i, q in enumerate(order)]


def synthetic_log(n: int, seed: int) -> list[tuple[str, float]]:
    """``n`` distinct synthetic queries (see the module docstring), Zipf-weighted."""
    rng = random.Random(seed)
    real = _real_queries(
        [
            "topics.msmarco-passage.dev-subset.txt",
            "topics.msmarco-doc.dev.txt",
            "topics.miracl-v1.0-en-train.tsv",
        ]
    )
    sentences = [re.findall(r"[a-z0-9']+", q.lower()) for q in real]
    sentences = [s for s in sentences if s]
    if not sentences:
        syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
        words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(20000)]
        sentences = [rng.choices(words, k=rng.randint(1, 6)) for _ in range(20000)]
    counts = Counter(w for s in sentences for w in s)
    vocab = [w for w, _ in counts.most_common()]
    zipf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))
    firsts = [s[0] for s in sentences]
    following: dict[str, list[str]] = defaultdict(list)
    for s in sentences:
        for a, b in itertools.pairwise(s):
            following[a].append(b)

    def zipf_word() -> str:
        return vocab[bisect.bisect_left(zipf, rng.random() * zipf[-1])]

    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        length = rng.choices(LENGTHS, LENGTH_P)[0]
        words = [rng.choice(firsts) if rng.random() < 0.7 else zipf_word()]
        while len(words) < length:
            after = following.get(words[-1])
            words.append(rng.choice(after) if after and rng.random() < 0.7 else zipf_word())
        query = " ".join(words)
        if query not in seen:
            seen.add(query)
            out.append(query)
    return zipf_weights(out, seed)


def msmarco_log(seed: int) -> tuple[list[tuple[str, float]], str]:
    key, how = _match_key()
    raw = _real_queries(["topics.msmarco-passage.dev-subset.txt", "topics.msmarco-doc.dev.txt"])
    queries = sorted({k for k in (key(q) for q in raw) if k and "\x00" not in k})
    return zipf_weights(queries, seed), how


# --- candidates --------------------------------------------------------------------------


class Candidate(Protocol):
    def complete(self, prefix: str, k: int) -> list[str]: ...
    def save(self, path: Path) -> None: ...


def _ranked(pairs: list[tuple[str, float]]) -> list[str]:
    """Queries heaviest first, ties by text: every candidate ranks this way."""
    return [q for q, _ in sorted(pairs, key=lambda p: (-p[1], p[0]))]


class RecloopCandidate:
    name = "recloop"

    def __init__(self, index: PrefixIndex) -> None:
        self.index = index

    @classmethod
    def build(cls, pairs: list[tuple[str, float]]) -> RecloopCandidate:
        return cls(PrefixIndex.build(pairs, top_k=TOP_K, leaf_size=LEAF))

    def complete(self, prefix: str, k: int) -> list[str]:
        return [c.query for c in self.index.complete(prefix, k)]

    def save(self, path: Path) -> None:
        self.index.save(path)

    @classmethod
    def load(cls, path: Path) -> RecloopCandidate:
        return cls(PrefixIndex.load(path))


class MarisaCandidate:
    name = "marisa"

    def __init__(self, trie: Any, table: Any, rank_of_id: np.ndarray) -> None:
        self.trie, self.table, self.rank_of_id = trie, table, rank_of_id

    @classmethod
    def build(cls, pairs: list[tuple[str, float]]) -> MarisaCandidate:
        import marisa_trie

        ranked = _ranked(pairs)
        trie = marisa_trie.Trie(ranked)
        rank_of_id = np.empty(len(ranked), dtype=np.int32)
        for rank, query in enumerate(ranked):
            rank_of_id[trie[query]] = rank
        id_of_rank = np.argsort(rank_of_id).astype(np.int32)
        # Heavy prefixes: every character prefix shared by more than LEAF queries.
        queries = sorted(ranked)
        rank_by_pos = np.array([rank_of_id[trie[q]] for q in queries], dtype=np.int32)
        heavy: list[tuple[str, bytes]] = []
        stack = [("", 0, len(queries))]
        while stack:
            prefix, lo, hi = stack.pop()
            best = np.sort(np.partition(rank_by_pos[lo:hi], TOP_K - 1)[:TOP_K])
            heavy.append((prefix, id_of_rank[best].astype("<i4").tobytes()))
            depth = len(prefix)
            i = lo
            while i < hi:
                if len(queries[i]) <= depth:
                    i += 1
                    continue
                child = queries[i][: depth + 1]
                j = bisect.bisect_left(queries, child + "\U0010ffff", i, hi)
                if j - i > LEAF:
                    stack.append((child, i, j))
                i = j
        table = marisa_trie.BytesTrie(heavy)
        return cls(trie, table, rank_of_id)

    def complete(self, prefix: str, k: int) -> list[str]:
        packed = self.table.get(prefix)
        if packed:
            ids = np.frombuffer(packed[0], dtype="<i4")[:k]
            return [self.trie.restore_key(int(i)) for i in ids]
        items = self.trie.items(prefix)
        items.sort(key=lambda item: self.rank_of_id[item[1]])
        return [key for key, _ in items[:k]]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True)
        self.trie.save(str(path / "trie.marisa"))
        self.table.save(str(path / "table.marisa"))
        np.save(path / "rank_of_id.npy", self.rank_of_id)

    @classmethod
    def load(cls, path: Path) -> MarisaCandidate:
        import marisa_trie

        trie = marisa_trie.Trie()
        trie.mmap(str(path / "trie.marisa"))
        table = marisa_trie.BytesTrie()
        table.mmap(str(path / "table.marisa"))
        return cls(trie, table, np.load(path / "rank_of_id.npy", mmap_mode="r"))


class BisectCandidate:
    """A sorted list and each position's rank; a lookup scans its range."""

    name = "bisect"

    def __init__(self, queries: list[str], ranks: np.ndarray) -> None:
        self.queries, self.ranks = queries, ranks

    @classmethod
    def build(cls, pairs: list[tuple[str, float]]) -> BisectCandidate:
        ranked = _ranked(pairs)
        rank = {q: i for i, q in enumerate(ranked)}
        queries = sorted(ranked)
        return cls(queries, np.array([rank[q] for q in queries], dtype=np.int32))

    def _scan(self, prefix: str, k: int) -> list[str]:
        lo = bisect.bisect_left(self.queries, prefix)
        hi = bisect.bisect_left(self.queries, prefix + "\U0010ffff", lo)
        ranks = self.ranks[lo:hi]
        small = len(ranks) <= k
        picked = np.arange(len(ranks)) if small else np.argpartition(ranks, k - 1)[:k]
        picked = picked[np.argsort(ranks[picked])]
        return [self.queries[lo + int(i)] for i in picked]

    def complete(self, prefix: str, k: int) -> list[str]:
        return self._scan(prefix, k)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True)
        with (path / "index.pickle").open("wb") as f:
            pickle.dump((self.queries, self.ranks), f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path) -> BisectCandidate:
        with (path / "index.pickle").open("rb") as f:
            return cls(*pickle.load(f))


class Dict3Candidate(BisectCandidate):
    """Top k per prefix of 1-3 characters in a dict; longer prefixes scan like ``bisect``."""

    name = "dict3"

    def __init__(self, queries: list[str], ranks: np.ndarray, short: dict[str, list[str]]) -> None:
        super().__init__(queries, ranks)
        self.short = short

    @classmethod
    def build(cls, pairs: list[tuple[str, float]]) -> Dict3Candidate:
        base = BisectCandidate.build(pairs)
        short: dict[str, list[str]] = {"": []}
        for query in _ranked(pairs):
            for length in range(0, min(3, len(query)) + 1):
                best = short.setdefault(query[:length], [])
                if len(best) < TOP_K:
                    best.append(query)
        return cls(base.queries, base.ranks, short)

    def complete(self, prefix: str, k: int) -> list[str]:
        if len(prefix) <= 3:
            return self.short.get(prefix, [])[:k]
        return self._scan(prefix, k)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True)
        with (path / "index.pickle").open("wb") as f:
            pickle.dump((self.queries, self.ranks, self.short), f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path) -> Dict3Candidate:
        with (path / "index.pickle").open("rb") as f:
            return cls(*pickle.load(f))


CANDIDATES: dict[str, Any] = {
    "recloop": RecloopCandidate,
    "marisa": MarisaCandidate,
    "dict3": Dict3Candidate,
    "bisect": BisectCandidate,
}


# --- workloads -------------------------------------------------------------------------


def prefixes(queries: list[str], lookups: int, seed: int) -> dict[str, list[str]]:
    """Prefixes of each length class, from queries drawn uniformly."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {c: [] for c in CLASSES}
    for cls in CLASSES:
        while len(out[cls]) < lookups:
            q = rng.choice(queries)
            if cls == "full":
                out[cls].append(q)
            elif cls == "1-3":
                out[cls].append(q[: rng.randint(1, 3)])
            elif len(q) >= 4:
                out[cls].append(q[: rng.randint(4, min(8, len(q)))])
    return out


def word_prefixes(queries: list[str], lookups: int, seed: int) -> dict[str, list[str]]:
    """Prefixes of a word other than the first, 1-3 and 4-8 characters."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {"words 1-3": [], "words 4-8": []}
    later = [q for q in queries if " " in q]
    if not later:
        return out
    while len(out["words 1-3"]) < lookups or len(out["words 4-8"]) < lookups:
        word = rng.choice(rng.choice(later).split(" ")[1:])
        if not word:
            continue
        if len(out["words 1-3"]) < lookups:
            out["words 1-3"].append(word[: rng.randint(1, 3)])
        if len(word) >= 4 and len(out["words 4-8"]) < lookups:
            out["words 4-8"].append(word[: rng.randint(4, min(8, len(word)))])
    return out


def with_typo(text: str, rng: random.Random, alphabet: str) -> str:
    """One random edit after the first character (never a space, never a new space)."""
    while True:
        i = rng.randrange(1, len(text))
        kind = rng.choice(("sub", "ins", "del", "swap"))
        if kind == "sub":
            out = text[:i] + rng.choice(alphabet) + text[i + 1 :]
        elif kind == "ins":
            out = text[:i] + rng.choice(alphabet) + text[i:]
        elif kind == "del":
            out = text[:i] + text[i + 1 :]
        elif i + 1 < len(text):
            out = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        else:
            continue
        if out != text and out.count(" ") == text.count(" ") and "  " not in out:
            return out


def typo_prefixes(queries: list[str], lookups: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(prefix, the prefix with one typo) pairs whose edited word allows one typo."""
    rng = random.Random(seed)
    alphabet = "".join(sorted({ch for q in queries[:5000] for ch in q} - {" "}))
    out: dict[str, list[tuple[str, str]]] = {"typo 4-8": [], "typo full": []}
    while any(len(v) < lookups for v in out.values()):
        q = rng.choice(queries)
        for cls, text in (("typo 4-8", q[: rng.randint(4, 8)]), ("typo full", q)):
            last = text.split(" ")[-1]
            # Every word keeps its length class: the typo lands in a word of 5+ characters.
            if len(out[cls]) < lookups and len(last) >= 5 and len(text) >= 4:
                head = text[: len(text) - len(last)]
                out[cls].append((text, head + with_typo(last, rng, alphabet)))
    return out


def timed(fn: Callable[[str], object], inputs: Sequence[str]) -> dict[str, float]:
    times = np.empty(len(inputs))
    clock = time.perf_counter_ns
    for i, text in enumerate(inputs):
        start = clock()
        fn(text)
        times[i] = clock() - start
    return {
        "per_s": round(len(inputs) / (times.sum() / 1e9), 1),
        "p50_us": round(float(np.percentile(times, 50)) / 1e3, 1),
        "p99_us": round(float(np.percentile(times, 99)) / 1e3, 1),
    }


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- one candidate in its own process ------------------------------------------------------


def build_worker(name: str, log_path: Path, out: Path) -> dict[str, Any]:
    """Build one structure from the log and save it to ``out``."""
    with log_path.open("rb") as f:
        pairs: list[tuple[str, float]] = pickle.load(f)
    gc.collect()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    candidate = CANDIDATES[name].build(pairs)
    build_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    candidate.save(out)
    return {
        "build_s": round(build_s, 2),
        "peak_mb": round(max(0, peak) / 2**20, 1),
        "disk_mb": round(_dir_size(out) / 2**20, 1),
    }


def serve_worker(name: str, work_path: Path, index_path: Path) -> dict[str, Any]:
    """Open the saved structure in a fresh process, as a server would, and time lookups."""
    with work_path.open("rb") as f:
        work: dict[str, Any] = pickle.load(f)
    gc.collect()
    before = _rss()
    start = time.perf_counter()
    candidate = CANDIDATES[name].load(index_path)
    result: dict[str, Any] = {"load_ms": round((time.perf_counter() - start) * 1e3, 1)}
    for cls in CLASSES:
        result[cls] = timed(lambda p: candidate.complete(p, K), work[cls])
    if name == "recloop":
        result.update(recloop_extras(candidate.index, work))
    gc.collect()
    # Resident growth once every class was looked up (mapped pages that lookups touched count).
    result["rss_mb"] = round((_rss() - before) / 2**20, 1)
    sample = work["1-3"][:200] + work["4-8"][:200] + work["full"][:200]
    result["answers"] = [candidate.complete(p, K) for p in sample]
    if name == "recloop":
        result.update(typo_scan(work["vocabulary"], work["typo words"]))
    return result


def recloop_extras(index: PrefixIndex, work: dict[str, Any]) -> dict[str, Any]:
    """Word-start and typo-tolerant lookups, and the size of each part of the index."""
    out: dict[str, Any] = {}
    for cls in ("words 1-3", "words 4-8"):
        out[cls] = timed(lambda p: index.complete_words(p, K), work[cls])
    for cls in ("typo 4-8", "typo full"):
        cases = work[cls]
        out[cls] = timed(lambda p: index.complete_fuzzy(p, K), [p for _, p in cases])
        # Recall: the untouched prefix's best completion is among the typed one's answers.
        found = 0
        for prefix, typed in cases:
            best = index.complete(prefix, 1)[0].query
            found += any(c.query == best for c in index.complete_fuzzy(typed, K))
        out[cls]["recall"] = round(found / len(cases), 3)
    out["exact via fuzzy 4-8"] = timed(lambda p: index.complete_fuzzy(p, K), work["exact 4-8"])
    out["bytes"] = index.nbytes_by_part()
    return out


def workload(queries: list[str], lookups: int, seed: int) -> dict[str, Any]:
    """Every lookup the serving workers make, drawn once per log."""
    typo_lookups = max(200, lookups // 5)
    work: dict[str, Any] = prefixes(queries, lookups, seed)
    work.update(word_prefixes(queries, lookups, seed))
    work.update(typo_prefixes(queries, typo_lookups, seed))
    work["exact 4-8"] = work["4-8"][:typo_lookups]
    work["vocabulary"] = sorted({w for q in queries for w in q.split(" ") if w})
    rng = random.Random(seed)
    words = [w for w in work["vocabulary"] if len(w) >= 5] or ["words"]
    work["typo words"] = [
        with_typo(w[: rng.randint(5, min(8, len(w)))], rng, "abcdefghijklmnopqrstuvwxyz")
        for w in (rng.choice(words) for _ in range(min(typo_lookups, 500)))
    ]
    return work


def typo_scan(vocab: list[str], inputs: list[str]) -> dict[str, Any]:
    """One word's typo candidates by a rapidfuzz scan of the vocabulary's word prefixes."""
    from rapidfuzz import process
    from rapidfuzz.distance import OSA

    by_length: dict[int, list[str]] = {}

    def scan(typed: str) -> object:
        allowed = 1 if len(typed) < 8 else 2
        hits = []
        for length in range(len(typed) - allowed, len(typed) + allowed + 1):
            if length not in by_length:
                by_length[length] = sorted({w[:length] for w in vocab})
            hits += process.extract(
                typed, by_length[length], scorer=OSA.distance, score_cutoff=allowed, limit=None
            )
        return hits

    for length in range(3, 11):
        by_length[length] = sorted({w[:length] for w in vocab})  # outside the clock
    return {"typo-scan word": timed(scan, inputs)}


# --- driver -----------------------------------------------------------------------------


def run_log(label: str, pairs: list[tuple[str, float]], lookups: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"queries": len(pairs)}
    with tempfile.TemporaryDirectory() as tmp:
        log_path, work_path = Path(tmp) / "log.pickle", Path(tmp) / "work.pickle"
        with log_path.open("wb") as f:
            pickle.dump(pairs, f, protocol=pickle.HIGHEST_PROTOCOL)
        with work_path.open("wb") as f:
            pickle.dump(workload([q for q, _ in pairs], lookups, seed), f)
        for name in CANDIDATES:
            if name == "marisa":
                try:
                    import marisa_trie  # noqa: F401
                except ImportError:
                    print(f"{label}: marisa-trie is not installed; skipping it")
                    continue
            index_path = Path(tmp) / name
            row: dict[str, Any] = {}
            for mode, data in (("build", log_path), ("serve", work_path)):
                cmd = [sys.executable, __file__, "--worker", f"{mode}:{name}", "--log", str(data)]
                cmd += ["--index", str(index_path)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{label}: {name} {mode} failed\n{done.stderr[-2000:]}")
                    break
                row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            else:
                out[name] = row
                print(f"{label}: {name} done ({row['build_s']} s build)", flush=True)
    reference = out.get("recloop", {}).get("answers")
    for name in CANDIDATES:
        if name in out:
            answers = out[name].pop("answers")
            out[name]["agrees"] = reference is None or answers == reference
    return out


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for label, log in results["logs"].items():
        table = Table(title=f"{label}: {log['queries']:,} queries, top-{K}")
        for col in ("structure", "build s", "rss MB", "peak MB", "disk MB", "load ms", "agrees"):
            table.add_column(col, justify="right")
        for cls in CLASSES:
            table.add_column(f"{cls}\nlookups/s", justify="right")
            table.add_column(f"{cls}\np50/p99 µs", justify="right")
        for name in CANDIDATES:
            row = log.get(name)
            if row is None:
                continue
            cells = [name] + [
                str(row[key]) for key in ("build_s", "rss_mb", "peak_mb", "disk_mb", "load_ms")
            ]
            cells.append("yes" if row["agrees"] else "NO")
            for cls in CLASSES:
                cells += [f"{row[cls]['per_s']:,.0f}", f"{row[cls]['p50_us']}/{row[cls]['p99_us']}"]
            table.add_row(*cells)
        console.print(table)
        extras = log.get("recloop", {})
        side = Table(title=f"{label}: recloop word-start and typo lookups")
        for col in ("lookup", "lookups/s", "p50 µs", "p99 µs", "recall"):
            side.add_column(col, justify="right")
        for key in (
            "words 1-3",
            "words 4-8",
            "exact via fuzzy 4-8",
            "typo 4-8",
            "typo full",
            "typo-scan word",
        ):
            if key in extras:
                row = extras[key]
                side.add_row(
                    key,
                    f"{row['per_s']:,.0f}",
                    str(row["p50_us"]),
                    str(row["p99_us"]),
                    str(row.get("recall", "")),
                )
        console.print(side)
        if "bytes" in extras:
            parts = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in extras["bytes"].items())
            console.print(f"recloop index parts: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k queries only")
    parser.add_argument("--lookups", type=int, default=5000, help="lookups per prefix class")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, name = args.worker.split(":")
        if mode == "build":
            print(json.dumps(build_worker(name, args.log, args.index)))
        else:
            print(json.dumps(serve_worker(name, args.log, args.index)))
        return
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    results: dict[str, Any] = {"k": K, "top_k": TOP_K, "leaf_size": LEAF, "logs": {}}
    ms_pairs, how = msmarco_log(args.seed)
    if ms_pairs:
        results["msmarco_key"] = how
        results["logs"]["msmarco"] = run_log("msmarco", ms_pairs, args.lookups, args.seed)
    for n in sizes:
        label = f"synthetic-{n // 1000}k" if n < 1_000_000 else f"synthetic-{n // 1_000_000}m"
        start = time.perf_counter()
        pairs = synthetic_log(n, args.seed)
        print(f"{label}: generated in {time.perf_counter() - start:.1f} s", flush=True)
        results["logs"][label] = run_log(label, pairs, args.lookups, args.seed)
    print_tables(results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

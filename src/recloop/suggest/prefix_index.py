"""A compact, immutable prefix index over weighted queries: completions, word starts, typos.

``PrefixIndex.build(pairs)`` takes ``(query, weight)`` pairs (normalized text; the weight is
popularity with time decay, computed by the caller) and answers, for a typed prefix, the
``k`` heaviest queries that

- start with it (``complete``),
- have a word that starts with it (``complete_words``: "shoes" finds "running shoes"),
- start with it up to a few typos (``complete_fuzzy``).

Layout. Queries are sorted by their UTF-8 bytes (the same order as by code points) and kept
as one byte blob with offsets, so the queries that start with a prefix are one contiguous
range of positions. Two numbers find that range: ``head``, the first 8 bytes of each key as
a big-endian integer, answers any prefix of up to 8 bytes with two ``searchsorted`` calls,
and a bisection on the blob refines longer ones. Each position holds the rank of its query
by weight (0 = heaviest; ties by query text), so the top k of a range are its k smallest
ranks. A small range is scanned (``leaf_size`` ranks at most); every range of more than
``leaf_size`` keys (one per trie node with that many descendants, at most about
``2 n / leaf_size`` rows) has its ``top_k`` best ranks precomputed, found by its
``(lo, hi)`` pair. So a lookup costs two binary searches and either one table row or a scan
of a few hundred integers, whatever the prefix length; a ``k`` above ``top_k`` on a large
range falls back to a full scan of the range (correct, slower).

Word starts use the same structure over every suffix that begins a word other than the
first (split on single spaces), each pointing into the query blob, so no text is stored
twice; a query found both ways counts as a prefix match.

Typos are counted per word, like the common search engines' typo tolerance: a typed word of
4 to 7 characters may hold 1 edit, one of 8 or more 2 (optimal string alignment distance: an
adjacent transposition is one edit), and shorter words none; the whole prefix holds at most
``max_edits``. The last, partial word matches a word of which some prefix is that close
(prefix edit distance). Candidate words come from a deletion-neighbourhood index over the
distinct words' prefixes of 4 to 8 characters (32-bit hashes of every string reachable by
deleting up to the allowed number of characters): if a typed word ``t`` is within ``d``
edits of a prefix of ``v``, then deleting at most ``d`` characters from ``t[:8]`` and from
``v[:len(t[:8])]`` reaches a common string, so the lookup is complete; the candidates are
then verified with the exact distance. Each corrected prefix is looked up as an exact one.

Everything is a read-only numpy array or an immutable bytes blob: the index is safe to read
from many threads, and ``save`` writes each array to its own file so that ``load`` memory-maps
them (loading takes milliseconds at any size; pages come in as lookups touch them). A
rebuild makes a new index off the request path and ``PrefixIndexSlot.publish`` swaps it in
whole; readers take ``slot.current`` once per request.

``benchmarks/suggest_index.py`` measures this layout against marisa-trie, a dict of short
prefixes and a plain sorted list (build time, memory, lookups/s and p50/p99 by prefix
length, 100k and 1M queries). On those numbers marisa-trie holds plain completions in about
a fifth of the memory, so the completion and word-start tables may move onto it; the methods
above do not depend on the layout.
"""

from __future__ import annotations

import bisect
import itertools
import json
import mmap
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import OSA

#: Version of the on-disk layout; ``load`` refuses another.
FORMAT_VERSION = 1

#: Shortest typed word that may hold a typo, and the length from which it may hold two.
TYPO_MIN_LENGTH = 4
TYPO_TWO_LENGTH = 8
#: Word prefixes longer than this share the deletion index of their first this many
#: characters (longer typed words are checked in full afterwards).
_TYPO_ANCHOR = 8
_TYPO_LEVELS = tuple(range(TYPO_MIN_LENGTH, _TYPO_ANCHOR + 1))

MatchKind = Literal["prefix", "word", "typo"]
Blob = bytes | mmap.mmap
IntArray = npt.NDArray[np.integer[Any]]


def typo_allowance(length: int) -> int:
    """Edits a typed word of ``length`` characters may hold."""
    if length < TYPO_MIN_LENGTH:
        return 0
    return 1 if length < TYPO_TWO_LENGTH else 2


class Completion(NamedTuple):
    """One suggested query: its text, weight, how it matched and with how many edits."""

    query: str
    weight: float
    match: MatchKind
    edits: int = 0


# --- sorted keys with a top-k table ---------------------------------------------------


class _Keys:
    """Byte keys ``blob[starts[i]:ends[i]]`` as a sequence, for ``bisect``."""

    __slots__ = ("_blob", "_ends", "_starts")

    def __init__(self, blob: Blob, starts: IntArray, ends: IntArray) -> None:
        self._blob = blob
        self._starts = starts
        self._ends = ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> bytes:
        return self._blob[self._starts[i] : self._ends[i]]


@dataclass(frozen=True)
class _RangeTopK:
    """Sorted keys (into a blob), their ranks, and the best ranks of every large range."""

    keys: _Keys
    head: npt.NDArray[np.uint64]
    ranks: npt.NDArray[np.int32]
    table_keys: npt.NDArray[np.uint64]  # lo * (n + 1) + hi, sorted
    table_rows: npt.NDArray[np.int32]  # (rows, top_k), ascending, -1 pads
    leaf_size: int
    distinct: bool  # whether one rank may sit at several positions (word starts)

    def range(self, key: bytes) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the keys that start with ``key``."""
        n = len(self.head)
        if not key:
            return 0, n
        if len(key) <= 8:
            lo_head = int.from_bytes(key.ljust(8, b"\x00"), "big")
            hi_head = int.from_bytes(key.ljust(8, b"\xff"), "big")
            # UTF-8 never holds 0xff, so hi_head + 1 cannot overflow for a real key.
            bounds = self.head.searchsorted(
                np.array([lo_head, min(hi_head + 1, 2**64 - 1)], np.uint64)
            )
            return int(bounds[0]), int(bounds[1])
        first = int.from_bytes(key[:8], "big")
        bounds = self.head.searchsorted(np.array([first, first + 1], np.uint64))
        lo = bisect.bisect_left(self.keys, key, int(bounds[0]), int(bounds[1]))
        hi = bisect.bisect_left(self.keys, key + b"\xff", lo, int(bounds[1]))
        return lo, hi

    def top(self, lo: int, hi: int, k: int) -> list[int]:
        """The ``k`` smallest distinct ranks in ``[lo, hi)``, ascending."""
        if hi <= lo or k <= 0:
            return []
        if hi - lo > self.leaf_size and k <= self.table_rows.shape[1]:
            n = len(self.head)
            code = lo * (n + 1) + hi
            j = int(self.table_keys.searchsorted(np.uint64(code)))
            if j < len(self.table_keys) and int(self.table_keys[j]) == code:
                row = self.table_rows[j, :k]
                return [int(r) for r in row if r >= 0]
        best: list[int] = _smallest(self.ranks[lo:hi], k, self.distinct).tolist()
        return best


def _smallest(ranks: npt.NDArray[np.int32], k: int, distinct: bool) -> npt.NDArray[np.int32]:
    """The ``k`` smallest (distinct, when asked) values, ascending."""
    if distinct:
        if len(ranks) > 4 * k:
            # Duplicates are rare: the 4k smallest nearly always hold k distinct ones.
            part = np.unique(np.partition(ranks, 4 * k)[: 4 * k + 1])
            if len(part) >= k:
                return part[:k]
        return np.unique(ranks)[:k]
    if len(ranks) > k:
        ranks = np.partition(ranks, k - 1)[:k]
    return np.sort(ranks)


def _heads(keys: list[bytes]) -> npt.NDArray[np.uint64]:
    joined = b"".join(key[:8].ljust(8, b"\x00") for key in keys)
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64)


def _lcp(keys: list[bytes], head: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Bytes each sorted key shares with the one before it (-1 for the first)."""
    lcp = np.full(len(keys), -1, dtype=np.int32)
    if len(keys) < 2:
        return lcp
    lcp[1:] = 0
    # Eight bytes at a time, only for the pairs that agreed on all eight bytes so far.
    pairs = np.arange(1, len(keys))
    heads_now, heads_before = head[1:], head[:-1]
    offset = 0
    while True:
        diff = heads_now ^ heads_before
        same = np.ones(len(pairs), dtype=bool)
        shared = np.zeros(len(pairs), dtype=np.int32)
        for byte in range(8):
            same &= ((diff >> np.uint64(56 - 8 * byte)) & np.uint64(0xFF)) == 0
            shared += same
        lcp[pairs] += shared
        # Equal heads mean eight more equal bytes, unless both keys ended (equal keys).
        pairs = pairs[shared == 8]
        offset += 8
        ended = [i for i in pairs.tolist() if len(keys[i]) <= offset or len(keys[i - 1]) <= offset]
        if ended:
            lcp[ended] = [min(len(keys[i]), len(keys[i - 1])) for i in ended]
            pairs = np.setdiff1d(pairs, ended)
        if not len(pairs):
            return lcp
        picked = pairs.tolist()
        heads_now = _heads([keys[i][offset:] for i in picked])
        heads_before = _heads([keys[i - 1][offset:] for i in picked])


def _range_table(
    lcp: npt.NDArray[np.int32],
    ranks: npt.NDArray[np.int32],
    leaf_size: int,
    top_k: int,
    distinct: bool,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
    """The best ``top_k`` ranks of every prefix range with more than ``leaf_size`` keys.

    The keys sharing their first ``depth`` bytes are the runs where ``lcp >= depth``; a range
    that stays the same over several depths (one child) is stored once.
    """
    n = len(ranks)
    codes: dict[int, npt.NDArray[np.int32]] = {}
    depth = 0
    while True:
        starts = np.flatnonzero(lcp < depth) if depth else np.zeros(1 if n else 0, np.int64)
        ends = np.append(starts[1:], n)
        heavy = (ends - starts) > leaf_size
        if not heavy.any():
            break
        for lo, hi in zip(starts[heavy].tolist(), ends[heavy].tolist(), strict=True):
            code = lo * (n + 1) + hi
            if code not in codes:
                codes[code] = _smallest(ranks[lo:hi], top_k, distinct)
        depth += 1
    table_keys = np.array(sorted(codes), dtype=np.uint64)
    rows = np.full((len(table_keys), top_k), -1, dtype=np.int32)
    for j, code in enumerate(table_keys.tolist()):
        best = codes[code]
        rows[j, : len(best)] = best
    return table_keys, rows


def _offsets(lengths: Iterable[int]) -> IntArray:
    """Start of each key and the end of the last; 4 bytes each while the text allows."""
    offsets = np.concatenate([[0], np.cumsum(np.fromiter(lengths, dtype=np.int64))])
    dtype = np.uint32 if offsets[-1] < 2**32 else np.uint64
    return offsets.astype(dtype)


# --- typo candidates --------------------------------------------------------------------


def _deletions(text: str, edits: int) -> set[str]:
    """Every string reachable from ``text`` by deleting at most ``edits`` characters."""
    out = {text}
    frontier = {text}
    for _ in range(edits):
        frontier = {s[:i] + s[i + 1 :] for s in frontier for i in range(len(s))}
        out |= frontier
    return out


def _hashes(strings: Iterable[str]) -> npt.NDArray[np.uint32]:
    return np.fromiter((zlib.crc32(s.encode()) for s in strings), dtype=np.uint32)


@dataclass(frozen=True)
class _TypoLevel:
    """Deletion neighbourhoods of the distinct word prefixes of one length."""

    hashes: npt.NDArray[np.uint32]  # sorted
    groups: npt.NDArray[np.int32]  # the prefix group each hash came from
    group_lo: npt.NDArray[np.int32]  # the group's words in the sorted vocabulary
    group_hi: npt.NDArray[np.int32]


def _typo_level(words: list[str], level: int) -> _TypoLevel:
    allowed = typo_allowance(level)
    hashes: list[npt.NDArray[np.uint32]] = []
    group_ids: list[int] = []
    lo_list: list[int] = []
    hi_list: list[int] = []
    i = 0
    while i < len(words):
        stem = words[i][:level]
        j = i + 1
        while j < len(words) and words[j][:level] == stem:
            j += 1
        # A word shorter than level - allowed is more edits away than any typed word allows.
        if len(stem) >= level - allowed:
            variants = _hashes(_deletions(stem, allowed))
            hashes.append(variants)
            group_ids.extend([len(lo_list)] * len(variants))
            lo_list.append(i)
            hi_list.append(j)
        i = j
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)
    groups = np.array(group_ids, dtype=np.int32)
    order = np.argsort(all_hashes, kind="stable")
    return _TypoLevel(
        all_hashes[order],
        groups[order],
        np.array(lo_list, dtype=np.int32),
        np.array(hi_list, dtype=np.int32),
    )


def _prefix_distance(typed: str, word: str, allowed: int) -> tuple[int, int] | None:
    """The fewest edits between ``typed`` and a prefix of ``word``, and that prefix's length."""
    best: tuple[int, int] | None = None
    for length in range(max(0, len(typed) - allowed), min(len(word), len(typed) + allowed) + 1):
        edits = OSA.distance(typed, word[:length], score_cutoff=allowed)
        if edits <= allowed and (best is None or edits < best[0]):
            best = (edits, length)
    return best


# --- the index ------------------------------------------------------------------------


class PrefixIndex:
    """Top-k weighted completions for a prefix; immutable, built whole, shared by threads."""

    def __init__(
        self,
        *,
        blob: Blob,
        offsets: IntArray,
        order: npt.NDArray[np.int32],
        weights: npt.NDArray[np.float64],
        main: _RangeTopK,
        words: _RangeTopK,
        vocabulary_blob: Blob,
        vocabulary_offsets: IntArray,
        typo_levels: dict[int, _TypoLevel],
        params: dict[str, int],
    ) -> None:
        self._blob = blob
        self._offsets = offsets
        self._order = order  # rank -> sorted position
        self._weights = weights  # by rank
        self._main = main
        self._words = words
        self._vocabulary_blob = vocabulary_blob
        self._vocabulary_offsets = vocabulary_offsets
        self._vocabulary = _Keys(vocabulary_blob, vocabulary_offsets[:-1], vocabulary_offsets[1:])
        self._typo_levels = typo_levels
        self.params = params

    # -- building

    @classmethod
    def build(
        cls,
        pairs: Iterable[tuple[str, float]],
        *,
        top_k: int = 32,
        leaf_size: int = 256,
    ) -> PrefixIndex:
        """Index ``(query, weight)`` pairs; a query given twice gets the sum of its weights.

        ``top_k`` ranks are kept for every range of more than ``leaf_size`` keys; a lookup
        for more than ``top_k`` queries scans such a range instead.

        Raises:
            ValueError: an empty query, one holding NUL, or a weight that is not finite.
        """
        if top_k < 1 or leaf_size < 1:
            raise ValueError("top_k and leaf_size must be at least 1")
        totals: dict[str, float] = {}
        for query, weight in pairs:
            if not query or "\x00" in query:
                raise ValueError(f"query {query!r}: must be non-empty text without NUL")
            if not np.isfinite(weight):
                raise ValueError(f"query {query!r}: weight must be finite, got {weight}")
            totals[query] = totals.get(query, 0.0) + float(weight)
        queries = sorted(totals)  # code point order = UTF-8 byte order
        keys = [q.encode() for q in queries]
        n = len(keys)
        blob = b"".join(keys)
        offsets = _offsets(len(key) for key in keys)
        weight_by_pos = np.fromiter((totals[q] for q in queries), dtype=np.float64, count=n)
        # Heaviest first, ties by text: positions are already in text order.
        order = np.lexsort((np.arange(n), -weight_by_pos)).astype(np.int32)
        ranks = np.empty(n, dtype=np.int32)
        ranks[order] = np.arange(n, dtype=np.int32)
        head = _heads(keys)
        table_keys, table_rows = _range_table(_lcp(keys, head), ranks, leaf_size, top_k, False)
        main = _RangeTopK(
            _Keys(blob, offsets[:-1], offsets[1:]),
            head,
            ranks,
            table_keys,
            table_rows,
            leaf_size,
            False,
        )
        words = cls._build_words(blob, keys, offsets, ranks, order, top_k, leaf_size)
        vocab = sorted({word for query in queries for word in query.split(" ") if word})
        vocab_keys = [w.encode() for w in vocab]
        vocab_offsets = _offsets(len(w) for w in vocab_keys)
        vocab_blob = b"".join(vocab_keys)
        return cls(
            blob=blob,
            offsets=offsets,
            order=order,
            weights=weight_by_pos[order],
            main=main,
            words=words,
            vocabulary_blob=vocab_blob,
            vocabulary_offsets=vocab_offsets,
            typo_levels={level: _typo_level(vocab, level) for level in _TYPO_LEVELS},
            params={"top_k": top_k, "leaf_size": leaf_size},
        )

    @staticmethod
    def _build_words(
        blob: bytes,
        keys: list[bytes],
        offsets: IntArray,
        ranks: npt.NDArray[np.int32],
        order: npt.NDArray[np.int32],
        top_k: int,
        leaf_size: int,
    ) -> _RangeTopK:
        starts: list[int] = []
        ends: list[int] = []
        entry_ranks: list[int] = []
        suffixes: list[bytes] = []
        # Heaviest query first, so that a stable sort leaves equal suffixes in rank order.
        for rank, pos in enumerate(order.tolist()):
            key = keys[pos]
            base = int(offsets[pos])
            at = key.find(b" ")
            while at >= 0:
                if at + 1 < len(key) and key[at + 1] != 0x20:
                    suffixes.append(key[at + 1 :])
                    starts.append(base + at + 1)
                    ends.append(base + len(key))
                    entry_ranks.append(rank)
                at = key.find(b" ", at + 1)
        by_text = sorted(range(len(suffixes)), key=suffixes.__getitem__)
        sorted_suffixes = [suffixes[i] for i in by_text]
        pick = np.array(by_text, dtype=np.int64)
        dtype = offsets.dtype
        start_arr = np.array(starts, dtype=dtype)[pick] if pick.size else np.zeros(0, dtype)
        end_arr = np.array(ends, dtype=dtype)[pick] if pick.size else np.zeros(0, dtype)
        rank_arr = (
            np.array(entry_ranks, dtype=np.int32)[pick] if pick.size else np.zeros(0, np.int32)
        )
        head = _heads(sorted_suffixes)
        table_keys, table_rows = _range_table(
            _lcp(sorted_suffixes, head), rank_arr, leaf_size, top_k, True
        )
        return _RangeTopK(
            _Keys(blob, start_arr, end_arr), head, rank_arr, table_keys, table_rows, leaf_size, True
        )

    # -- reading

    def __len__(self) -> int:
        return len(self._order)

    def _completions(
        self, ranks: list[int], matches: Iterable[MatchKind], edits: Iterable[int]
    ) -> list[Completion]:
        if not ranks:
            return []
        # One gather per array instead of a numpy scalar access per field.
        positions = self._order[ranks]
        starts = self._offsets[positions].tolist()
        ends = self._offsets[positions + 1].tolist()
        weights = self._weights[ranks].tolist()
        blob = self._blob
        return [
            Completion(blob[a:b].decode(), w, m, e)
            for a, b, w, m, e in zip(starts, ends, weights, matches, edits, strict=False)
        ]

    def _prefix_ranks(self, prefix: str, k: int) -> list[int]:
        lo, hi = self._main.range(prefix.encode())
        return self._main.top(lo, hi, k)

    def complete(self, prefix: str, k: int = 10) -> list[Completion]:
        """The ``k`` heaviest queries that start with ``prefix`` (all queries when empty)."""
        ranks = self._prefix_ranks(prefix, k)
        return self._completions(ranks, itertools.repeat("prefix"), itertools.repeat(0))

    def complete_words(self, prefix: str, k: int = 10) -> list[Completion]:
        """The ``k`` heaviest queries with a word starting with ``prefix``.

        A query that starts with ``prefix`` is a ``prefix`` match, any other a ``word`` match.
        """
        if k <= 0:
            return []
        key = prefix.encode()
        first = self._prefix_ranks(prefix, k)
        lo, hi = self._words.range(key)
        later = self._words.top(lo, hi, k + len(first))
        at_start = set(first)
        merged = sorted(at_start.union(later))[:k]
        matches: list[MatchKind] = ["prefix" if r in at_start else "word" for r in merged]
        return self._completions(merged, matches, itertools.repeat(0))

    def complete_fuzzy(
        self, prefix: str, k: int = 10, *, max_edits: int = 2, max_expansions: int = 64
    ) -> list[Completion]:
        """The ``k`` heaviest queries that start with ``prefix`` up to per-word typos.

        Each typed word may hold ``typo_allowance(len(word))`` edits and the whole prefix at
        most ``max_edits``; the last word may match the start of a longer one. Exact matches
        count too (``edits == 0``, match ``prefix``), so the answer is a superset of
        ``complete`` up to ``k``. At most ``max_expansions`` corrected prefixes are looked up,
        fewest edits first.
        """
        if k <= 0:
            return []
        tokens = prefix.split(" ")
        options = [
            self._word_options(token, min(typo_allowance(len(token)), max_edits), last)
            for last, token in zip([False] * (len(tokens) - 1) + [True], tokens, strict=True)
        ]
        corrected = _combinations(options, max_edits)[:max_expansions]
        found: dict[int, int] = {}
        for text, edits in corrected:
            for rank in self._prefix_ranks(text, k):
                if edits < found.get(rank, max_edits + 1):
                    found[rank] = edits
        best = sorted(found)[:k]
        matches: list[MatchKind] = ["typo" if found[r] else "prefix" for r in best]
        return self._completions(best, matches, [found[r] for r in best])

    def _word_options(self, token: str, allowed: int, partial: bool) -> list[tuple[str, int]]:
        """Spellings to try for one typed word: itself, then close vocabulary words."""
        options = {token: 0}
        if allowed <= 0:
            return [(token, 0)]
        level = min(len(token), _TYPO_ANCHOR)
        table = self._typo_levels.get(level)
        if table is None or not len(table.hashes):
            return [(token, 0)]
        probes = np.unique(_hashes(_deletions(token[:level], allowed)))
        lo = table.hashes.searchsorted(probes, side="left")
        hi = table.hashes.searchsorted(probes, side="right")
        groups = np.unique(np.concatenate([table.groups[a:b] for a, b in zip(lo, hi, strict=True)]))
        seen: set[int] = set()
        for group in groups.tolist():
            for i in range(int(table.group_lo[group]), int(table.group_hi[group])):
                if i in seen:
                    continue
                seen.add(i)
                word = self._vocabulary[i].decode()
                if partial:
                    hit = _prefix_distance(token, word, allowed)
                    if hit is not None:
                        text = word[: hit[1]]
                        if hit[0] < options.get(text, allowed + 1):
                            options[text] = hit[0]
                else:
                    edits = OSA.distance(token, word, score_cutoff=allowed)
                    if edits <= allowed and edits < options.get(word, allowed + 1):
                        options[word] = edits
        return sorted(options.items(), key=lambda item: (item[1], item[0]))

    # -- saving

    def save(self, path: Path) -> None:
        """Write the index into the directory ``path`` (created; must not hold an index)."""
        path.mkdir(parents=True, exist_ok=True)
        if (path / "meta.json").exists():
            raise FileExistsError(f"{path} already holds an index")
        (path / "queries.bin").write_bytes(bytes(self._blob))
        (path / "vocabulary.bin").write_bytes(bytes(self._vocabulary_blob))
        for name, array in self._arrays().items():
            np.save(path / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        meta = {"format": FORMAT_VERSION, "count": len(self), **self.params}
        # Written last: a directory without it is an interrupted save.
        (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    def _arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "offsets": self._offsets,
            "order": self._order,
            "weights": self._weights,
            "vocabulary_offsets": self._vocabulary_offsets,
        }
        for prefix, table in (("main", self._main), ("words", self._words)):
            arrays[f"{prefix}_head"] = table.head
            arrays[f"{prefix}_ranks"] = table.ranks
            arrays[f"{prefix}_table_keys"] = table.table_keys
            arrays[f"{prefix}_table_rows"] = table.table_rows
        arrays["words_starts"] = self._words.keys._starts
        arrays["words_ends"] = self._words.keys._ends
        for level, typo in self._typo_levels.items():
            arrays[f"typo{level}_hashes"] = typo.hashes
            arrays[f"typo{level}_groups"] = typo.groups
            arrays[f"typo{level}_group_lo"] = typo.group_lo
            arrays[f"typo{level}_group_hi"] = typo.group_hi
        return arrays

    @classmethod
    def load(cls, path: Path) -> PrefixIndex:
        """Open a saved index; its arrays are memory-mapped, not read.

        Raises:
            ValueError: the directory holds another format version or no complete index.
        """
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise ValueError(f"{path}: no saved index (meta.json missing)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: index format {meta.get('format')}, expected {FORMAT_VERSION}"
            )

        def array(name: str) -> np.ndarray[Any, Any]:
            loaded: np.ndarray[Any, Any] = np.load(
                path / f"{name}.npy", mmap_mode="r", allow_pickle=False
            )
            return loaded

        blob = _map(path / "queries.bin")
        offsets = array("offsets")
        top_k, leaf_size = int(meta["top_k"]), int(meta["leaf_size"])

        def range_top_k(prefix: str, keys: _Keys, distinct: bool) -> _RangeTopK:
            return _RangeTopK(
                keys,
                array(f"{prefix}_head"),
                array(f"{prefix}_ranks"),
                array(f"{prefix}_table_keys"),
                array(f"{prefix}_table_rows"),
                leaf_size,
                distinct,
            )

        return cls(
            blob=blob,
            offsets=offsets,
            order=array("order"),
            weights=array("weights"),
            main=range_top_k("main", _Keys(blob, offsets[:-1], offsets[1:]), False),
            words=range_top_k(
                "words", _Keys(blob, array("words_starts"), array("words_ends")), True
            ),
            vocabulary_blob=_map(path / "vocabulary.bin"),
            vocabulary_offsets=array("vocabulary_offsets"),
            typo_levels={
                level: _TypoLevel(
                    array(f"typo{level}_hashes"),
                    array(f"typo{level}_groups"),
                    array(f"typo{level}_group_lo"),
                    array(f"typo{level}_group_hi"),
                )
                for level in _TYPO_LEVELS
            },
            params={"top_k": top_k, "leaf_size": leaf_size},
        )

    def nbytes(self) -> int:
        """Bytes the index's arrays and text take (in memory, or on disk once saved)."""
        return sum(self.nbytes_by_part().values())

    def nbytes_by_part(self) -> dict[str, int]:
        """Bytes per part: queries (text, offsets, weights), prefix, words, typos."""
        parts = {"queries": len(self._blob), "prefix": 0, "words": 0, "typos": 0}
        parts["typos"] += len(self._vocabulary_blob)
        for name, array in self._arrays().items():
            part = name.split("_")[0]
            key = {"main": "prefix", "words": "words"}.get(
                part, "typos" if part.startswith(("typo", "vocabulary")) else "queries"
            )
            parts[key] += int(array.nbytes)
        return parts


def _map(path: Path) -> Blob:
    """A read-only memory map of a file (``mmap`` refuses empty files: those read as b"")."""
    if path.stat().st_size == 0:
        return b""
    with path.open("rb") as handle:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _combinations(options: list[list[tuple[str, int]]], budget: int) -> list[tuple[str, int]]:
    """Every way of spelling the prefix from each word's options within ``budget`` edits."""
    out: list[tuple[str, int]] = []

    def walk(i: int, parts: list[str], spent: int) -> None:
        if i == len(options):
            out.append((" ".join(parts), spent))
            return
        for text, edits in options[i]:
            if spent + edits <= budget:
                parts.append(text)
                walk(i + 1, parts, spent + edits)
                parts.pop()

    walk(0, [], 0)
    out.sort(key=lambda item: item[1])
    return out


class PrefixIndexSlot:
    """The index that requests read; a rebuild publishes a new one whole.

    Readers take ``current`` once per request and keep using that object, so a swap never
    shows them half of two indexes; the old index lives until its last reader lets go.
    """

    def __init__(self, index: PrefixIndex | None = None) -> None:
        self._index = index if index is not None else PrefixIndex.build(())

    @property
    def current(self) -> PrefixIndex:
        """The index to read."""
        return self._index

    def publish(self, index: PrefixIndex) -> PrefixIndex:
        """Swap in ``index`` (one reference assignment) and return the one it replaces."""
        previous, self._index = self._index, index
        return previous

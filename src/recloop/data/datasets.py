"""Loaders and evaluation splits for public recommendation data sets (read from a given path).

The project bundles none of these files. Two formats are read:

* RecBole atomic files (MovieLens-100k: ``ml-100k.inter``, ``ml-100k.item``): tab-separated,
  with a ``name:type`` header;
* S3-Rec / SASRec sequence files (Amazon Beauty, Yelp, LastFM, Amazon Video Games): one
  line ``user item_1 item_2 ...`` per user in chronological order (SASRec's ``Video.txt``
  has one ``user item`` pair per line; lines of the same user are appended in order), plus
  optional ``*_item2attributes.json`` (item id to attribute ids).

The split functions are pure functions of the loaded arrays and return a :class:`Split`:
training data for the test evaluation, validation cases, test cases, and the (smaller)
training data for the validation evaluation. Every split gives its training data the whole
item catalog as vocabulary, so an item first seen in evaluation is a known item with no
interactions, as a new catalog item would be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from recloop.evaluation.retrieval_metrics import EvalCase
from recloop.retrieval.interactions import FloatArray, Interactions, ItemTable, TrainingData

__all__ = [
    "InteractionLog",
    "Split",
    "leave_one_out",
    "load_item_attributes",
    "load_movielens_inter",
    "load_movielens_items",
    "load_sequences",
    "random_split",
    "time_split",
]

ObjectArray = npt.NDArray[np.object_]
_YEAR_SECONDS = 365.2425 * 86_400.0


class InteractionLog(NamedTuple):
    """Interactions as parallel arrays (unpacks as ``users, items, timestamps``)."""

    users: ObjectArray  # str user ids
    items: ObjectArray  # str item ids
    timestamps: FloatArray  # seconds since the epoch (or order positions)


@dataclass(frozen=True)
class Split:
    """An evaluation split.

    Fit on ``train`` and evaluate ``test``; fit on ``valid_train`` and evaluate ``valid``.
    ``train`` includes the validation interactions, ``valid_train`` does not (it is ``train``
    itself when the protocol has no validation part).
    """

    train: TrainingData
    valid: list[EvalCase]
    test: list[EvalCase]
    valid_train: TrainingData


def _header_columns(header: str) -> dict[str, int]:
    return {name.split(":")[0]: i for i, name in enumerate(header.rstrip("\n").split("\t"))}


def load_movielens_inter(path: Path | str, min_rating: float | None = 4.0) -> InteractionLog:
    """Read a RecBole ``.inter`` file; keep ratings >= ``min_rating`` (all when None).

    Rows keep the file's order; ids are strings as in the file.
    """
    users: list[str] = []
    items: list[str] = []
    stamps: list[float] = []
    with Path(path).open(encoding="utf-8") as f:
        cols = _header_columns(f.readline())
        ui, ii, ri, ti = cols["user_id"], cols["item_id"], cols["rating"], cols["timestamp"]
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < len(cols):
                continue
            if min_rating is not None and float(parts[ri]) < min_rating:
                continue
            users.append(parts[ui])
            items.append(parts[ii])
            stamps.append(float(parts[ti]))
    return InteractionLog(_objects(users), _objects(items), np.asarray(stamps, dtype=np.float64))


def load_movielens_items(path: Path | str) -> ItemTable:
    """Read a RecBole ``.item`` file (title, release year, genres) into an ``ItemTable``.

    ``texts`` is "title year genres"; ``categories`` the first genre; ``created_ts`` the
    start of the release year (NaN when unknown).
    """
    ids: list[str] = []
    titles: list[str | None] = []
    texts: list[str] = []
    categories: list[str | None] = []
    created: list[float] = []
    with Path(path).open(encoding="utf-8") as f:
        cols = _header_columns(f.readline())
        for line in f:
            parts = line.rstrip("\n").split("\t")
            parts += [""] * (len(cols) - len(parts))
            title = parts[cols["movie_title"]].strip() if "movie_title" in cols else ""
            year = parts[cols["release_year"]].strip() if "release_year" in cols else ""
            genres = parts[cols["class"]].split() if "class" in cols else []
            ids.append(parts[cols["item_id"]])
            titles.append(title or None)
            texts.append(" ".join(x for x in (title, year, " ".join(genres)) if x))
            categories.append(genres[0] if genres else None)
            created.append((int(year) - 1970) * _YEAR_SECONDS if year.isdigit() else np.nan)
    return ItemTable(
        tuple(ids), tuple(titles), tuple(texts), tuple(categories), np.asarray(created)
    )


def load_sequences(path: Path | str) -> dict[str, tuple[str, ...]]:
    """Read an S3-Rec/SASRec sequence file: user id to items in chronological order.

    Each line is ``user item ...``; several lines of one user are appended in file order.
    """
    out: dict[str, list[str]] = {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                out.setdefault(parts[0], []).extend(parts[1:])
    return {u: tuple(s) for u, s in out.items()}


def load_item_attributes(path: Path | str, prefix: str = "attr_") -> ItemTable:
    """Read an S3-Rec ``*_item2attributes.json`` into an ``ItemTable``.

    The files hold attribute ids only, so each item's text is its attributes as tokens
    (``attr_12 attr_40 ...``, in file order, repeats kept); no titles or categories.
    """
    raw: dict[str, list[int]] = json.loads(Path(path).read_text(encoding="utf-8"))
    ids = tuple(raw)
    texts = tuple(" ".join(f"{prefix}{a}" for a in raw[i]) for i in ids)
    return ItemTable(ids, (None,) * len(ids), texts, (None,) * len(ids), np.full(len(ids), np.nan))


def _objects(values: Sequence[str]) -> ObjectArray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _training(
    log: InteractionLog,
    mask: npt.NDArray[np.bool_],
    items: ItemTable | None,
    vocabulary: Sequence[str],
) -> TrainingData:
    interactions = Interactions.from_records(
        log.users[mask].tolist(),
        log.items[mask].tolist(),
        log.timestamps[mask],
        item_vocabulary=vocabulary,
    )
    return TrainingData(interactions, items if items is not None else ItemTable.empty())


def _recent_first(items: Sequence[str]) -> tuple[str, ...]:
    """Distinct items, most recent first, from a chronological list."""
    seen: set[str] = set()
    out: list[str] = []
    for item in reversed(items):
        if item not in seen:
            seen.add(item)
            out.append(item)
    return tuple(out)


def _by_user(log: InteractionLog, mask: npt.NDArray[np.bool_]) -> dict[str, list[str]]:
    """The masked rows' items per user, in time order (ties keep row order)."""
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(log.timestamps[idx], kind="stable")]
    out: dict[str, list[str]] = {}
    for u, it in zip(log.users[idx].tolist(), log.items[idx].tolist(), strict=True):
        out.setdefault(u, []).append(it)
    return out


def _window_cases(
    before: dict[str, list[str]], window: dict[str, list[str]], now_ts: float | None
) -> list[EvalCase]:
    """A case per user with history in ``before`` and new items in ``window``."""
    cases: list[EvalCase] = []
    for user in sorted(window):
        history = before.get(user)
        if not history:
            continue
        exclude = frozenset(history)
        relevant = frozenset(window[user]) - exclude
        if relevant:
            cases.append(EvalCase(user, _recent_first(history), relevant, exclude, now_ts))
    return cases


def time_split(
    log: InteractionLog,
    *,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    items: ItemTable | None = None,
) -> Split:
    """Global time cut: the last ``test_fraction`` of interactions is test, the
    ``valid_fraction`` before it validation, everything earlier training.

    The cut times are quantiles of the interaction timestamps, so the fractions count
    interactions, not calendar time. An interaction exactly at a cut belongs to the later
    part, so every training interaction is strictly before its cut. Test cases are the users
    with interactions both before and after the test cut: history and ``exclude`` are
    everything before the test cut (validation period included; ``train`` holds it too),
    ``relevant`` their items after the cut that they had not interacted with before it,
    ``now_ts`` the cut. Validation cases are built the same way at the validation cut against
    ``valid_train``, with items between the two cuts as relevant.
    """
    if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1 - test_fraction:
        raise ValueError("need 0 < test_fraction < 1 and 0 <= valid_fraction < 1 - test_fraction")
    ts = log.timestamps
    t_test = float(np.quantile(ts, 1.0 - test_fraction))
    t_valid = float(np.quantile(ts, 1.0 - test_fraction - valid_fraction))
    vocabulary = sorted(set(log.items.tolist()))
    train_mask = ts < t_test
    valid_train_mask = ts < t_valid
    test_cases = _window_cases(_by_user(log, train_mask), _by_user(log, ~train_mask), t_test)
    valid_cases = _window_cases(
        _by_user(log, valid_train_mask), _by_user(log, train_mask & ~valid_train_mask), t_valid
    )
    return Split(
        _training(log, train_mask, items, vocabulary),
        valid_cases,
        test_cases,
        _training(log, valid_train_mask, items, vocabulary),
    )


def random_split(
    log: InteractionLog,
    *,
    train_fraction: float = 0.75,
    seed: int = 42,
    items: ItemTable | None = None,
) -> Split:
    """Per-user stratified random split: each user's interactions are shuffled and the first
    ``round(train_fraction * n)`` go to training, the rest to test (as Microsoft
    Recommenders' ``python_stratified_split``). No validation part; ``now_ts`` is None.

    Test cases are users with both parts non-empty; history is their training items, most
    recent first; ``relevant`` their test items not also among their training items.
    """
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    train_mask = np.zeros(len(log.users), dtype=bool)
    order = np.argsort(log.users.astype(str), kind="stable")
    users_sorted = log.users[order]
    bounds = np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1
    for rows in np.split(order, bounds):
        if len(rows) == 0:
            continue
        shuffled = rng.permutation(rows)
        train_mask[shuffled[: round(train_fraction * len(rows))]] = True
    vocabulary = sorted(set(log.items.tolist()))
    cases = _window_cases(_by_user(log, train_mask), _by_user(log, ~train_mask), None)
    train = _training(log, train_mask, items, vocabulary)
    return Split(train, [], cases, train)


def leave_one_out(
    sequences: Mapping[str, Sequence[str]],
    *,
    items: ItemTable | None = None,
    step_seconds: float = 1.0,
) -> Split:
    """Leave-one-out by order, the S3-Rec/SASRec full-ranking protocol.

    For a user with items ``s[0..n-1]`` (n >= 3): the test target is ``s[-1]``, the
    validation target ``s[-2]``.

    * ``valid_train`` holds ``s[:-2]``; a validation case has history ``s[:-2]`` (distinct,
      most recent first), ``exclude`` = set(``s[:-2]``), relevant {``s[-2]``}.
    * ``train`` holds ``s[:-1]``: the validation item is added to the training data, and a
      test case has history ``s[:-1]``, ``exclude`` = set(``s[:-1]``), relevant {``s[-1]``}.
      (S3-Rec feeds ``s[:-1]`` as the input sequence and masks those items at test time.)

    A target that the user already had earlier in the sequence stays a case although it is
    excluded, so it counts as a miss, as in S3-Rec's masked full ranking. Users with fewer
    than 3 items have all their items in both training sets and no cases. The files carry no
    times, so a row's timestamp is its position in its user's sequence times ``step_seconds``
    and ``now_ts`` is None.
    """
    users: list[str] = []
    seq_items: list[str] = []
    stamps: list[float] = []
    in_train: list[bool] = []
    in_valid_train: list[bool] = []
    valid_cases: list[EvalCase] = []
    test_cases: list[EvalCase] = []
    vocabulary: set[str] = set()
    for user, seq in sequences.items():
        n = len(seq)
        vocabulary.update(seq)
        for pos, item in enumerate(seq):
            users.append(user)
            seq_items.append(item)
            stamps.append(pos * step_seconds)
            in_train.append(n < 3 or pos < n - 1)
            in_valid_train.append(n < 3 or pos < n - 2)
        if n < 3:
            continue
        valid_history = list(seq[:-2])
        test_history = list(seq[:-1])
        valid_cases.append(
            EvalCase(
                user, _recent_first(valid_history), frozenset({seq[-2]}), frozenset(valid_history)
            )
        )
        test_cases.append(
            EvalCase(
                user, _recent_first(test_history), frozenset({seq[-1]}), frozenset(test_history)
            )
        )
    log = InteractionLog(_objects(users), _objects(seq_items), np.asarray(stamps, dtype=float))
    vocab = sorted(vocabulary)
    return Split(
        _training(log, np.asarray(in_train, dtype=bool), items, vocab),
        valid_cases,
        test_cases,
        _training(log, np.asarray(in_valid_train, dtype=bool), items, vocab),
    )

"""The suggestion model: what ``recloop train`` learns about queries, as the request path reads it.

One row per suggestible query, keyed by its match key (``normalize.match_key``), with

- ``display``: the stored form most users typed, what a suggestion shows;
- ``weight``: the popularity the prefix index ranks by: searches counted with a
  ``half_life_hours`` decay, plus the catalog prior when the catalog names the query;
- ``users``: distinct users who searched it (k-anonymity: a searched query has a row only
  with at least ``min_users`` of them; a catalog-derived one needs none);
- ``searches``, ``successes``, ``reformulations``: every search of it, those followed by
  engagement in the same session before the next search, and those followed within
  ``reformulation_s`` by another search with no engagement between;
- ``window_searches``, ``window_successes``: the same in the last ``zero_result_days``,
  and ``zero_result``: searched at least ``zero_result_min_searches`` times there, never
  with success;
- ``trend``: the short count's excess over the long count's rate (0 when not rising);
- ``catalog``: whether the catalog names it (a title, category, tag or "category tag").

Beside the rows: the ``PrefixIndex`` over match keys (weighted by ``weight``), the
trending rows, the co-click links (query -> items engaged after it, and item -> queries
that led to it), and each category's queries. Every part is immutable once built; a new
model is published whole (``SuggestionModels.publish``) and a request reads one model.

On disk (``save``/``load``), a directory: ``meta.json``, ``index/`` (the prefix index,
memory-mapped on load), and three Parquet tables (``queries``, ``links``, ``categories``).
Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from recloop.suggest.prefix_index import PrefixIndex

#: Version of the on-disk layout; ``load`` refuses another.
FORMAT_VERSION: Final = 1
#: The model's directory inside a model version.
MODEL_DIR: Final = "suggestions"
#: Links kept per query and per item, and queries kept per category.
MAX_LINKS: Final = 20
MAX_CATEGORY_QUERIES: Final = 50
MAX_TRENDING: Final = 100

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]


#: The per-query statistics, in the order the model stores them.
STAT_COLUMNS: Final = (
    "weight",
    "users",
    "searches",
    "successes",
    "reformulations",
    "window_searches",
    "window_successes",
    "trend",
    "catalog",
    "zero_result",
)


@dataclass(frozen=True, slots=True)
class QueryStats:
    """The per-query columns, aligned by row."""

    keys: tuple[str, ...]
    display: tuple[str, ...]
    weight: FloatArray
    users: IntArray
    searches: IntArray
    successes: IntArray
    reformulations: IntArray
    window_searches: IntArray
    window_successes: IntArray
    trend: FloatArray
    catalog: npt.NDArray[np.bool_]
    zero_result: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.keys)

    def table(self) -> pa.Table:
        """The columns as an Arrow table."""
        columns: dict[str, Any] = {"key": list(self.keys), "display": list(self.display)}
        columns.update({name: getattr(self, name) for name in STAT_COLUMNS})
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table) -> QueryStats:
        """Read what ``table`` wrote."""

        def column(name: str, dtype: type[Any]) -> Any:
            return table.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)

        ints = {
            name: column(name, np.int32)
            for name in (
                "users",
                "searches",
                "successes",
                "reformulations",
                "window_searches",
                "window_successes",
            )
        }
        return cls(
            keys=tuple(table.column("key").to_pylist()),
            display=tuple(table.column("display").to_pylist()),
            weight=column("weight", np.float64),
            trend=column("trend", np.float64),
            catalog=column("catalog", np.bool_),
            zero_result=column("zero_result", np.bool_),
            **ints,
        )


@dataclass(frozen=True, slots=True)
class Links:
    """Rows of queries (or of anything) with weights, grouped by a string key."""

    rows: Mapping[str, tuple[tuple[int, float], ...]]

    def get(self, key: str) -> tuple[tuple[int, float], ...]:
        """The (row, weight) pairs of ``key``, heaviest first; none when unknown."""
        return self.rows.get(key, ())

    def __len__(self) -> int:
        return sum(len(v) for v in self.rows.values())


@dataclass(frozen=True)
class SuggestionModel:
    """Everything the request path reads about queries; immutable.

    ``query_items`` maps a query row to the items engaged after it; ``item_queries`` maps
    an item to the query rows that led to it; ``categories`` maps a category to its
    queries. All are (item or row, weight) pairs, heaviest first.
    """

    version: str
    built_at: datetime
    stats: QueryStats
    index: PrefixIndex
    trending: tuple[int, ...]
    query_items: Mapping[int, tuple[tuple[str, float], ...]]
    item_queries: Links
    categories: Links
    success_prior: float
    params: Mapping[str, Any] = field(default_factory=dict)
    cold: bool = False  # built from the store without training (no version yet)
    row_of: Mapping[str, int] = field(init=False, repr=False)
    max_weight: float = field(init=False, repr=False)
    max_trend: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Derived once: every request looks rows up by match key.
        object.__setattr__(self, "row_of", {k: i for i, k in enumerate(self.stats.keys)})
        empty = not len(self.stats)
        object.__setattr__(self, "max_weight", 0.0 if empty else float(self.stats.weight.max()))
        object.__setattr__(self, "max_trend", 0.0 if empty else float(self.stats.trend.max()))

    def __len__(self) -> int:
        return len(self.stats)

    def row(self, key: str) -> int | None:
        """The row of a match key, or None when the model does not hold it."""
        return self.row_of.get(key)

    def popularity(self, row: int) -> float:
        """``log1p(weight) / log1p(max weight)``: the heaviest query 1, others below."""
        if self.max_weight <= 0:
            return 0.0
        return math.log1p(float(self.stats.weight[row])) / math.log1p(self.max_weight)

    def trend_share(self, row: int) -> float:
        """The query's rise against the model's most rising query (0 when none rises)."""
        if self.max_trend <= 0:
            return 0.0
        return float(self.stats.trend[row]) / self.max_trend

    # -- saving -----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the model into the directory ``path`` (created; must not hold a model)."""
        path.mkdir(parents=True, exist_ok=True)
        if (path / "meta.json").exists():
            raise FileExistsError(f"{path} already holds a suggestion model")
        self.index.save(path / "index")
        pq.write_table(self.stats.table(), path / "queries.parquet")
        links = [
            (row, item, weight)
            for row, items in sorted(self.query_items.items())
            for item, weight in items
        ]
        pq.write_table(
            pa.table(
                {
                    "query_row": pa.array([r for r, _, _ in links], pa.int32()),
                    "item_id": pa.array([i for _, i, _ in links], pa.string()),
                    "weight": pa.array([w for _, _, w in links], pa.float64()),
                }
            ),
            path / "links.parquet",
        )
        by_item = [
            (item, row, weight)
            for item, rows in sorted(self.item_queries.rows.items())
            for row, weight in rows
        ]
        by_category = [
            (category, row, weight)
            for category, rows in sorted(self.categories.rows.items())
            for row, weight in rows
        ]
        for name, rows in (("item_queries", by_item), ("categories", by_category)):
            pq.write_table(
                pa.table(
                    {
                        "key": pa.array([k for k, _, _ in rows], pa.string()),
                        "query_row": pa.array([r for _, r, _ in rows], pa.int32()),
                        "weight": pa.array([w for _, _, w in rows], pa.float64()),
                    }
                ),
                path / f"{name}.parquet",
            )
        meta = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "built_at": self.built_at.isoformat(),
            "queries": len(self),
            "trending": list(self.trending),
            "success_prior": self.success_prior,
            "params": dict(self.params),
        }
        # Written last: a directory without it is an interrupted save.
        (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> SuggestionModel:
        """Open a saved model (its prefix index memory-mapped).

        Raises:
            ValueError: the directory holds another format or no complete model.
        """
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise ValueError(f"{path}: no saved suggestion model (meta.json missing)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: suggestion model format {meta.get('format')}, expected {FORMAT_VERSION}"
            )
        stats = QueryStats.from_table(pq.read_table(path / "queries.parquet"))
        links = pq.read_table(path / "links.parquet")
        query_items: dict[int, list[tuple[str, float]]] = {}
        for row, item, weight in zip(
            links.column("query_row").to_pylist(),
            links.column("item_id").to_pylist(),
            links.column("weight").to_pylist(),
            strict=True,
        ):
            query_items.setdefault(int(row), []).append((str(item), float(weight)))
        return cls(
            version=str(meta["version"]),
            built_at=datetime.fromisoformat(meta["built_at"]),
            stats=stats,
            index=PrefixIndex.load(path / "index"),
            trending=tuple(int(r) for r in meta["trending"]),
            query_items={r: tuple(v) for r, v in query_items.items()},
            item_queries=_read_links(path / "item_queries.parquet"),
            categories=_read_links(path / "categories.parquet"),
            success_prior=float(meta["success_prior"]),
            params=dict(meta.get("params", {})),
        )


def _read_links(path: Path) -> Links:
    table = pq.read_table(path)
    grouped: dict[str, list[tuple[int, float]]] = {}
    for key, row, weight in zip(
        table.column("key").to_pylist(),
        table.column("query_row").to_pylist(),
        table.column("weight").to_pylist(),
        strict=True,
    ):
        grouped.setdefault(str(key), []).append((int(row), float(weight)))
    return Links({k: tuple(v) for k, v in grouped.items()})


def top_links(
    pairs: Iterable[tuple[str, int, float]], limit: int
) -> dict[str, tuple[tuple[int, float], ...]]:
    """(key, row, weight) triples grouped by key, the ``limit`` heaviest of each first."""
    grouped: dict[str, list[tuple[int, float]]] = {}
    for key, row, weight in pairs:
        grouped.setdefault(key, []).append((row, weight))
    return {
        key: tuple(sorted(rows, key=lambda rw: (-rw[1], rw[0]))[:limit])
        for key, rows in grouped.items()
    }


class SuggestionModels:
    """The suggestion model each app serves now; a new one is published whole."""

    def __init__(self) -> None:
        self._models: dict[str, SuggestionModel] = {}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> SuggestionModel | None:
        """The app's model, or None before its first trained version."""
        return self._models.get(app_id)

    def publish(self, app_id: str, model: SuggestionModel | None) -> None:
        """Swap in ``model`` for the app (None: the app has no trained model now)."""
        with self._lock:
            models = dict(self._models)
            if model is None:
                models.pop(app_id, None)
            else:
                models[app_id] = model
            # One reference swap: readers see the old dict or the new one, whole.
            self._models = models

    def apps(self) -> frozenset[str]:
        """Apps with a trained model."""
        return frozenset(self._models)


def empty_stats() -> QueryStats:
    """Columns of no query."""
    return stats_of([], [], {})


def stats_of(
    keys: Sequence[str], display: Sequence[str], columns: Mapping[str, Sequence[Any]]
) -> QueryStats:
    """``QueryStats`` from plain sequences (absent numeric columns are zeros)."""
    n = len(keys)

    def col(name: str, dtype: type[Any]) -> Any:
        values = columns.get(name)
        return np.zeros(n, dtype) if values is None else np.asarray(values, dtype=dtype)

    return QueryStats(
        keys=tuple(keys),
        display=tuple(display),
        weight=col("weight", np.float64),
        users=col("users", np.int32),
        searches=col("searches", np.int32),
        successes=col("successes", np.int32),
        reformulations=col("reformulations", np.int32),
        window_searches=col("window_searches", np.int32),
        window_successes=col("window_successes", np.int32),
        trend=col("trend", np.float64),
        catalog=col("catalog", np.bool_),
        zero_result=col("zero_result", np.bool_),
    )

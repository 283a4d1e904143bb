"""Popularity within a user segment (region, country, locale): the prior for new users.

A user who has just arrived has no history for the collaborative sources to work with, but
often a region or a locale; what people there engage with is a better first guess than what
everyone engages with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from recloop.retrieval.interactions import TrainingData
from recloop.retrieval.models import Recalled, RecallQuery, Seeds
from recloop.retrieval.round_robin import round_robin

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

_DAY_S = 86_400.0


class SegmentPopularModel:
    """The most engaged-with items among users sharing an attribute value.

    Args:
        attributes: the user attributes that define segments, most specific first.
        half_life_days: an engagement's weight halves every this many days before the end of
            training.
        min_users: segments with fewer users are not kept (their counts are noise).
        top_n: items kept per segment.
        max_history: users with this many engaged items or more get nothing (the trained
            sources know them better).
    """

    kind: ClassVar[str] = "segment-popular"
    serves: ClassVar[Mapping[str, Seeds]] = {"segment-popular": "history"}

    def __init__(
        self,
        *,
        attributes: Sequence[str] = ("region", "country", "locale"),
        half_life_days: float = 14.0,
        min_users: int = 5,
        top_n: int = 500,
        max_history: int = 5,
    ) -> None:
        self.attributes = tuple(attributes)
        self.half_life_days = half_life_days
        self.min_users = min_users
        self.top_n = top_n
        self.max_history = max_history
        self.segments_: dict[str, list[tuple[str, float]]] = {}

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """How fast engagements decay."""
        return {"half_life_days": trial.suggest_float("half_life_days", 1.0, 180.0, log=True)}

    def params(self) -> dict[str, Any]:
        """The hyper-parameters."""
        return {
            "attributes": list(self.attributes),
            "half_life_days": self.half_life_days,
            "min_users": self.min_users,
            "top_n": self.top_n,
            "max_history": self.max_history,
        }

    @staticmethod
    def _key(attribute: str, value: str) -> str:
        return f"{attribute}={value}"

    def fit(self, data: TrainingData) -> Self:
        """Count decayed engagements per segment and keep each segment's top items."""
        x = data.interactions
        self.segments_ = {}
        if len(x) == 0:
            return self
        decay = 0.5 ** ((x.timestamps.max() - x.timestamps) / _DAY_S / self.half_life_days)
        for attribute in self.attributes:
            segment_of_user = np.full(x.n_users, -1, dtype=np.int64)
            values: dict[str, int] = {}
            for user_id, attrs in data.user_attributes.items():
                row = x.user_index(user_id)
                value = attrs.get(attribute)
                if row is not None and isinstance(value, str | int | float) and str(value):
                    segment_of_user[row] = values.setdefault(str(value), len(values))
            users_per_segment = np.bincount(
                segment_of_user[segment_of_user >= 0], minlength=len(values)
            )
            segment = segment_of_user[x.users]
            for value, s in values.items():
                if users_per_segment[s] < self.min_users:
                    continue
                mask = segment == s
                counts = np.bincount(
                    x.items[mask], weights=(x.weights * decay)[mask], minlength=x.n_items
                )
                top = np.argsort(-counts, kind="stable")[: self.top_n]
                self.segments_[self._key(attribute, value)] = [
                    (x.item_ids[i], float(counts[i])) for i in top if counts[i] > 0
                ]
        return self

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """The top items of the user's segments, most specific segment first, interleaved."""
        if len(query.history) >= self.max_history:
            return []
        given = dict(query.attributes)
        lists = [
            (given[a], self.segments_.get(self._key(a, given[a]), []))
            for a in self.attributes
            if a in given
        ]
        skip = set(query.exclude) | set(query.history) | set(query.session)
        ranked = [(value, [item_id for item_id, _ in items]) for value, items in lists]
        return [
            Recalled(item_id, 1.0 / (1 + rank), None, f"Popular in {value}")
            for rank, (item_id, value) in enumerate(round_robin(ranked, skip, k))
        ]

    def save(self, path: Path) -> None:
        """Write the segments' lists and the hyper-parameters."""
        (path / "segments.json").write_text(json.dumps(self.segments_))
        (path / "params.json").write_text(json.dumps(self.params()))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls(**json.loads((path / "params.json").read_text()))
        segments = json.loads((path / "segments.json").read_text())
        model.segments_ = {k: [(i, float(s)) for i, s in v] for k, v in segments.items()}
        return model

"""The ranker role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix


@dataclass(frozen=True, slots=True)
class Scores:
    """The combined score used for ordering, and each objective's score when there are several."""

    combined: np.ndarray
    by_objective: Mapping[str, np.ndarray] = field(default_factory=dict)
    fallback: str = ""  # why the planned ranker did not rank, when it failed to
    cold: str = ""  # why it could not rank yet (nothing trained), when it could not
    version: str = ""  # the ranker that scored, when it is not the one configured


class Ranker(Protocol):
    """Scores every row of a feature matrix; higher is better."""

    version: str

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        """One combined score per row."""
        ...

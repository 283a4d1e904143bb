"""A ranker with no training: a weighted sum of the sources' normalised scores."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix, source_score_feature
from recloop.ranking.protocols import Scores


class SourceScoreConfig(BaseModel):
    """Weight of each source's normalised score; sources not named weigh 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(default_factory=dict)


class SourceScoreRanker:
    """Orders candidates by a blend of what the sources thought of them."""

    version = "source-scores-1"

    def __init__(self, sources: list[str], config: SourceScoreConfig | None = None) -> None:
        self.config = config or SourceScoreConfig()
        self._weights: Mapping[str, float] = {s: self.config.weights.get(s, 1.0) for s in sources}

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        """The weighted sum of ``source_score:*`` columns."""
        combined = np.zeros(len(features.item_ids), dtype=np.float64)
        for source, weight in self._weights.items():
            combined += weight * features.column(source_score_feature(source))
        return Scores(combined=combined)

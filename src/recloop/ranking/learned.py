"""The learned ranker: gradient-boosted trees per objective, calibrated, combined by weights.

A trained ranker is a folder: ``ranker.json`` (features, heads, calibration, the position
served) and one LightGBM model file per head. Each head predicts a calibrated probability:
- ``click``: the item is clicked when shown;
- ``satisfaction``: showing it ends in a long view, like, share or purchase.
The serving score is a weighted sum of the heads, so CTR is never the only goal: a
click-only ranker learns that clickbait works.

Position is a training feature. At serving every candidate is scored as if shown at the
same position (``serving_position``), so the learned position bias cancels out instead of
ranking items by where an earlier ranker happened to put them.

A ranker also says what serves (``serve``): ``learned`` (its heads), or, when training's
gate found the heads worse than simpler orderings on the latest data, ``blend`` (the
sources' scores blended as before any training) or ``source:NAME`` (one source's order,
the blend breaking its ties). Either is a choice, not a failure: the response is not a
fallback, and its ``modelVersion`` names the choice.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recloop.domain import RequestContext
from recloop.features.bandit_context import ContextEvidence
from recloop.features.candidates import FeatureMatrix, source_score_feature
from recloop.ranking.calibration import Calibrator, sigmoid
from recloop.ranking.category_codes import CategoryCodes
from recloop.ranking.protocols import Ranker, Scores

log = logging.getLogger(__name__)

#: The training feature that holds the shown position (0 = top).
POSITION_FEATURE = "position"
#: The sum of the ranker's ``source_score:*`` features: the sources' blend, unweighted, as
#: one feature, so that trees can start from the blend's order and correct it.
SCORE_SUM_FEATURE = "source_score_sum"
#: The heads a ranker may have.
HEADS = ("click", "satisfaction")
MANIFEST = "ranker.json"
#: The ranker's folder inside a model version.
RANKER_DIR = "ranker"
#: What a ranker may serve: its heads, the sources' blend, or one source's order.
LEARNED = "learned"
BLEND = "blend"
SOURCE_PREFIX = "source:"

Objective = Literal["binary", "lambdarank"]
T = TypeVar("T")


def correct_downsampling(q: np.ndarray, negative_rate: float) -> np.ndarray:
    """Undo negative downsampling: a model that saw a share ``negative_rate`` of negatives
    overstates the odds by ``1 / negative_rate``."""
    if negative_rate >= 1.0:
        return q
    out: np.ndarray = q * negative_rate / (q * negative_rate + 1.0 - q)
    return out


@dataclass(frozen=True)
class Head:
    """One objective's booster and how its output becomes a probability."""

    name: str
    booster: lgb.Booster
    objective: Objective
    negative_rate: float
    calibrator: Calibrator
    # Dense codes for the categorical columns (None: a head trained on the raw hashes).
    codes: CategoryCodes | None = None

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The booster's raw score for design rows ``x``."""
        if self.codes is not None:
            x = self.codes.apply(x)
        # One thread: a request is already one of several running at once.
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)

    def uncalibrated(self, x: np.ndarray) -> np.ndarray:
        """The booster's probability with the downsampling undone (a raw score for
        lambdarank, which has no probability scale)."""
        raw = self.raw(x)
        if self.objective == "lambdarank":
            # Squashed so that both calibrators take it; monotone, so rank order is kept.
            return sigmoid(raw)
        return correct_downsampling(sigmoid(raw), self.negative_rate)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities."""
        return self.calibrator.apply(self.uncalibrated(x))


def score_sum(matrix: FeatureMatrix, features: Sequence[str]) -> np.ndarray:
    """Each row's sum of the ``source_score:*`` columns among ``features`` (a missing
    column counts 0, as a source that did not recall)."""
    index = {name: i for i, name in enumerate(matrix.names)}
    cols = [index[f] for f in features if f.startswith(_SOURCE_SCORE) and f in index]
    if not cols:
        return np.zeros(len(matrix.item_ids), dtype=np.float64)
    total: np.ndarray = np.asarray(matrix.values[:, cols], dtype=np.float64).sum(axis=1)
    return total


_SOURCE_SCORE = source_score_feature("")


@dataclass(frozen=True)
class RankerModel:
    """A trained ranker: the features it reads, in order, and its heads."""

    version: str
    features: tuple[str, ...]
    heads: Mapping[str, Head]
    serving_position: float = 0.0
    serve: str = LEARNED  # what orders candidates: LEARNED, BLEND or "source:NAME"

    def design(self, matrix: FeatureMatrix) -> np.ndarray:
        """The model's input: its features in its order, from the request's columns.

        A feature the request lacks is zero; position is fixed to ``serving_position``;
        ``SCORE_SUM_FEATURE`` is the sum of the model's source-score columns (``score_sum``).
        """
        x = np.zeros((len(matrix.item_ids), len(self.features)), dtype=np.float64)
        index = {name: i for i, name in enumerate(matrix.names)}
        for col, name in enumerate(self.features):
            if name == POSITION_FEATURE:
                x[:, col] = self.serving_position
            elif name == SCORE_SUM_FEATURE:
                x[:, col] = score_sum(matrix, self.features)
            elif name in index:
                x[:, col] = matrix.values[:, index[name]]
        return x

    def at_serving_position(self, x: np.ndarray) -> np.ndarray:
        """A copy of design rows ``x`` with the position set to the served one."""
        out = np.array(x, dtype=np.float64, copy=True)
        if POSITION_FEATURE in self.features:
            out[:, self.features.index(POSITION_FEATURE)] = self.serving_position
        return out

    def predict(self, matrix: FeatureMatrix) -> dict[str, np.ndarray]:
        """Each head's calibrated probability for every row."""
        x = self.design(matrix)
        return {name: head.predict(x) for name, head in self.heads.items()}

    def save(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write the folder ``load`` reads."""
        path.mkdir(parents=True, exist_ok=True)
        heads = {}
        for name, head in self.heads.items():
            head.booster.save_model(str(path / f"{name}.lgb"))
            heads[name] = {
                "objective": head.objective,
                "negative_rate": head.negative_rate,
                "calibration": head.calibrator.as_dict(),
                **({"category_codes": head.codes.as_dict()} if head.codes is not None else {}),
            }
        manifest = {
            "kind": "lightgbm",
            "version": self.version,
            "features": list(self.features),
            "serving_position": self.serving_position,
            "serve": self.serve,
            "heads": heads,
            **(extra or {}),
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> RankerModel:
        """The ranker saved in ``path``."""
        manifest = json.loads((path / MANIFEST).read_text())
        heads = {
            name: Head(
                name=name,
                booster=lgb.Booster(model_file=str(path / f"{name}.lgb")),
                objective=spec["objective"],
                negative_rate=float(spec["negative_rate"]),
                calibrator=Calibrator.from_dict(spec["calibration"]),
                codes=CategoryCodes.from_dict(spec["category_codes"])
                if "category_codes" in spec
                else None,
            )
            for name, spec in manifest["heads"].items()
        }
        return cls(
            version=str(manifest["version"]),
            features=tuple(manifest["features"]),
            heads=heads,
            serving_position=float(manifest.get("serving_position", 0.0)),
            serve=str(manifest.get("serve", LEARNED)),
        )


class RankerModels:
    """The trained models of the ranking stage each app serves: the learned ranker, and the
    click evidence LinUCB explores with (``ContextEvidence``). Both come from one model
    version and are swapped together; a loader publishes, request threads read."""

    def __init__(self) -> None:
        self._models: dict[str, RankerModel] = {}
        self._evidence: dict[str, ContextEvidence] = {}
        self._damaged: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> RankerModel | None:
        """The app's ranker, or None before one is trained (or when it did not load)."""
        return self._models.get(app_id)

    def damaged(self, app_id: str) -> str | None:
        """Why the app's served version has a ranker that did not load; None if it loaded
        or the version has none."""
        return self._damaged.get(app_id)

    def linucb(self, app_id: str) -> ContextEvidence | None:
        """The app's LinUCB evidence, or None before one is fitted."""
        return self._evidence.get(app_id)

    def publish(
        self,
        app_id: str,
        model: RankerModel | None,
        evidence: ContextEvidence | None = None,
        *,
        damaged: str | None = None,
    ) -> None:
        """Swap the app's ranker and LinUCB evidence (None removes one: the version has
        none); ``damaged`` says why the version's ranker did not load, if it did not."""
        with self._lock:
            # Readers take no lock: each reads one whole dict, the old one or the new one.
            self._models = _with(self._models, app_id, model)
            self._evidence = _with(self._evidence, app_id, evidence)
            self._damaged = _with(self._damaged, app_id, damaged)


def _with(table: Mapping[str, T], key: str, value: T | None) -> dict[str, T]:
    """A copy of ``table`` with ``key`` set to ``value`` (removed when None)."""
    out = dict(table)
    if value is None:
        out.pop(key, None)
    else:
        out[key] = value
    return out


class LearnedRankerConfig(BaseModel):
    """How a surface combines the heads, and what it ranks by before a ranker is trained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(
        default_factory=lambda: {"click": 1.0, "satisfaction": 0.5},
        description="Weight of each head's calibrated probability in the serving score.",
    )

    fallback_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Source-score weights that rank until a ranker is trained (or if it fails).",
    )

    @field_validator("weights")
    @classmethod
    def _known_heads(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(HEADS))
        if unknown:
            raise ValueError(f"unknown heads {unknown}; known: {', '.join(HEADS)}")
        if not any(w > 0 for w in weights.values()):
            raise ValueError("at least one head needs a positive weight")
        return weights


class LearnedRanker:
    """Ranks by the app's trained ranker; without one, by ``fallback`` and says so."""

    version = "learned"

    def __init__(
        self, models: RankerModels, fallback: Ranker, config: LearnedRankerConfig | None = None
    ) -> None:
        self._models = models
        self._fallback = fallback
        self.config = config or LearnedRankerConfig()

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        """The weighted sum of the heads' probabilities."""
        model = self._models.get(ctx.app_id)
        if model is None:
            damaged = self._models.damaged(ctx.app_id)
            if damaged is not None:
                return self._fall_back(features, ctx, damaged)
            scores = self._fallback.score(features, ctx)
            return Scores(
                scores.combined,
                scores.by_objective,
                cold=f"no trained ranker yet; ranked by {self._fallback.version}",
                version=self._fallback.version,
            )
        if model.serve != LEARNED:
            return self._chosen(features, ctx, model.serve)
        try:
            heads = model.predict(features)
        except Exception as exc:
            # A broken model file must not take the surface down: rank by the sources.
            log.exception("ranker %s failed", model.version)
            return self._fall_back(features, ctx, f"ranker failed ({type(exc).__name__})")
        combined = np.zeros(len(features.item_ids), dtype=np.float64)
        for name, weight in self.config.weights.items():
            if name in heads:
                combined += weight * heads[name]
        return Scores(combined, heads)

    def _chosen(self, features: FeatureMatrix, ctx: RequestContext, serve: str) -> Scores:
        """The ordering training's gate chose over the heads: the blend, or one source's."""
        blend = self._fallback.score(features, ctx)
        if serve == BLEND:
            return Scores(blend.combined, version=f"{BLEND}:{self._fallback.version}")
        source = serve.removeprefix(SOURCE_PREFIX)
        primary = features.column(source_score_feature(source)).astype(np.float64)
        # The blend breaks the source's ties (and orders what it did not recall) without
        # ever overturning its order: a rank share far below its scores' resolution.
        order = np.argsort(-blend.combined, kind="stable")
        tie_break = np.empty(len(order), dtype=np.float64)
        tie_break[order] = np.linspace(1.0, 0.0, num=len(order), endpoint=False)
        return Scores(primary + 1e-7 * tie_break, version=f"{SOURCE_PREFIX}{source}")

    def _fall_back(self, features: FeatureMatrix, ctx: RequestContext, why: str) -> Scores:
        scores = self._fallback.score(features, ctx)
        return Scores(
            scores.combined,
            scores.by_objective,
            fallback=f"{why}; ranked by {self._fallback.version}",
            version=self._fallback.version,
        )

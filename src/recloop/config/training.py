"""What ``recloop train`` fits and how: sources, the ranker, tuning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from recloop.config.section import Section


class TrainSourceConfig(Section):
    """One trained source: its model kind and hyper-parameters (over the tuned ones)."""

    name: str
    kind: str | None = None  # the model class; defaults to the name
    params: dict[str, Any] = Field(default_factory=dict)


def default_train_sources() -> list[TrainSourceConfig]:
    """The retrieval models ``recloop train`` fits by default."""
    return [
        TrainSourceConfig(name="covisitation"),
        TrainSourceConfig(name="item-knn"),
        TrainSourceConfig(name="ease"),
        TrainSourceConfig(name="als"),
        TrainSourceConfig(name="content"),
        TrainSourceConfig(name="two-tower"),
        TrainSourceConfig(name="segment-popular"),
    ]


class RankerTrainSettings(Section):
    """How ``recloop train`` fits the learned ranker on labelled impressions."""

    enabled: bool = True
    objective: Literal["binary", "lambdarank"] = "binary"
    heads: tuple[Literal["click", "satisfaction"], ...] = ("click", "satisfaction")
    negative_rate: float = Field(
        default=0.3, gt=0, le=1, description="Share of negative impressions kept for training."
    )
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"
    stopping_metric: Literal["auto", "auc", "ndcg"] = Field(
        default="auto",
        description="What early stopping watches on the validation part: AUC over all rows, "
        "or NDCG@10 within each list; auto: AUC for binary, NDCG for lambdarank.",
    )
    num_leaves: int = Field(default=31, ge=2)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_rounds: int = Field(default=400, ge=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    min_data_in_leaf: int = Field(default=50, ge=1)
    min_positives: int = Field(
        default=30, ge=1, description="A head with fewer positive training rows is not trained."
    )
    threads: int = Field(default=2, ge=1, le=64)


class TrainSettings(Section):
    """What ``recloop train`` fits and how it validates."""

    sources: list[TrainSourceConfig] = Field(default_factory=default_train_sources)
    ranker: RankerTrainSettings = RankerTrainSettings()
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="The latest share of time held out to evaluate."
    )
    tune_trials: int = Field(default=20, ge=1, description="Optuna trials per source (--tune).")
    min_interactions: int = Field(default=20, ge=1)

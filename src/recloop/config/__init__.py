"""Settings: one typed object, read from ``recloop.toml`` and ``RECLOOP_*`` variables.

One module per part: ``surfaces`` (pipelines as data), ``serving`` (budgets, caches,
ingestion), ``training`` (what ``recloop train`` fits), ``experiments`` (experiments and
shadows), ``suggestions`` (query suggestions), ``retention`` (what ``recloop gc`` keeps),
``schedule`` (retraining by itself), ``logs`` (the service's log lines), and ``settings``
(the whole, and where it is read from). Import from here.
"""

from recloop.config.experiments import (
    VARIANT_OVERRIDES,
    ExperimentConfig,
    GuardrailConfig,
    ShadowConfig,
    VariantConfig,
    default_guardrails,
)
from recloop.config.logs import LoggingSettings
from recloop.config.retention import RetentionSettings
from recloop.config.schedule import ScheduleSettings
from recloop.config.serving import BudgetSettings, IngestSettings, ServingSettings
from recloop.config.settings import Settings
from recloop.config.suggestions import SuggestionSettings, SuggestionWeights
from recloop.config.surfaces import (
    ComponentConfig,
    SourceSlotConfig,
    SurfaceConfig,
    default_surfaces,
)
from recloop.config.training import (
    CleaningConfig,
    LabelConfig,
    LabelRules,
    PromotionSettings,
    RankerTrainSettings,
    TrainSettings,
    TrainSourceConfig,
    default_train_sources,
)

__all__ = [
    "VARIANT_OVERRIDES",
    "BudgetSettings",
    "CleaningConfig",
    "ComponentConfig",
    "ExperimentConfig",
    "GuardrailConfig",
    "IngestSettings",
    "LabelConfig",
    "LabelRules",
    "LoggingSettings",
    "PromotionSettings",
    "RankerTrainSettings",
    "RetentionSettings",
    "ScheduleSettings",
    "ServingSettings",
    "Settings",
    "ShadowConfig",
    "SourceSlotConfig",
    "SuggestionSettings",
    "SuggestionWeights",
    "SurfaceConfig",
    "TrainSettings",
    "TrainSourceConfig",
    "VariantConfig",
    "default_guardrails",
    "default_surfaces",
    "default_train_sources",
]

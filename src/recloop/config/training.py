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
        # The next item from the order of the user's recent items (a transformer).
        TrainSourceConfig(name="sasrec"),
    ]


class CleaningConfig(Section):
    """Thresholds of the cleaning steps; the defaults suit human traffic on a typical app."""

    repeat_window_s: float = Field(
        default=5.0,
        ge=0,
        description="An event at most this long after the previous one with the same user, "
        "item, type and session is a repeat and dropped.",
    )
    max_events_per_minute: int = Field(
        default=60,
        ge=1,
        description="A user with more events than this in one calendar minute is a bot.",
    )
    bot_min_clicks: int = Field(
        default=30, ge=1, description="Clicks from which a user's click-through rate is judged."
    )
    bot_max_ctr: float = Field(
        default=0.8,
        ge=0,
        description="A user with at least bot_min_clicks clicks and clicks/impressions above "
        "this is a bot (with no impressions, any such user is).",
    )
    dwell_cap_multiple: float = Field(
        default=10.0,
        gt=0,
        description="A view's value (dwell) is capped at this multiple of its item's median.",
    )
    late_after_s: float = Field(
        default=3600.0,
        ge=0,
        description="An event whose server_ts is more than this after the event_ts its client "
        "stamped is late (a wrong clock and a late upload look alike here: the report's clock "
        "offsets tell them apart per session).",
    )
    clock_tolerance_s: float = Field(
        default=2.0,
        ge=0,
        description="A session whose clock differs from the server's by more than this is "
        "moved onto the server's timeline; smaller differences are network latency.",
    )


class LabelRules(Section):
    """What counts as positive, negative, and ambiguous on one surface."""

    positive_events: tuple[str, ...] = Field(
        default=("purchase", "like", "share", "add_to_cart"),
        description="Events that make an impression a satisfaction positive.",
    )
    view_positive_min_ms: float = Field(
        default=30_000.0, ge=0, description="A view at least this long is a positive too."
    )
    negative_events: tuple[str, ...] = Field(
        default=("skip", "hide", "not_interested", "report"),
        description="Events that make an impression a satisfaction negative.",
    )


class LabelConfig(Section):
    """Attribution and labelling settings (``[train.labels]``); rules may differ by surface.

    Engagement joins the impression it came from by ``requestId`` whatever the client's
    clock says; events without one join the latest earlier impression of the same user and
    item on the server's timeline. Windows and the delay are seconds.
    """

    attribution_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="Engagement later than this after the list (after the first event that "
        "names its requestId, on the client's own clock) is not credited to it.",
    )
    label_delay_s: float = Field(
        default=3600.0,
        ge=0,
        description="An impression is labelled once this long has passed since it was served "
        "(server clock) or the user has been active this long after it (their own clock); "
        "younger ones may still get late conversions and are left out.",
    )
    default_rules: LabelRules = LabelRules()
    surface_rules: dict[str, LabelRules] = Field(default_factory=dict)

    def rules_for(self, surface: str) -> LabelRules:
        """The rules of a surface, or the default ones."""
        return self.surface_rules.get(surface, self.default_rules)


class RankerTrainSettings(Section):
    """How ``recloop train`` fits the learned ranker on labelled impressions."""

    enabled: bool = True
    objective: Literal["auto", "binary", "lambdarank"] = Field(
        default="auto",
        description="auto: lambdarank when the training set has candidate lists recalled from "
        "interactions (they are rankings of hundreds of items), binary on served lists alone.",
    )
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
    cat_smooth: float = Field(
        default=50.0,
        ge=0,
        description="Smoothing (and L2) of splits on categorical features (item_category, "
        "item_creator: hashed codes, most with few rows); LightGBM's default is 10.",
    )
    min_data_per_group: int = Field(
        default=200, ge=1, description="Rows a category needs to get a split of its own."
    )
    min_positives: int = Field(
        default=30, ge=1, description="A head with fewer positive training rows is not trained."
    )
    threads: int = Field(default=2, ge=1, le=64)
    from_interactions: bool = Field(
        default=True,
        description="Also learn from what the sources recalled for users before the latest "
        "time slice, labelled by what they engaged with next: the ranker trains on imported "
        "histories with no served lists, and served lists do not make it forget the rest.",
    )
    max_cases: int = Field(
        default=5000,
        ge=10,
        description="Users asked for candidates at the cut-off, at most: the ranker's rows "
        "from interactions (the sources' metrics ask 2000 of them).",
    )
    max_negatives: int = Field(
        default=100, ge=1, description="Negatives kept per training list of candidates."
    )
    ips_clip: float = Field(
        default=10.0,
        ge=1,
        description="Served impressions weigh 1 / propensity, clipped at this; the report "
        "says how much weight clipping removed.",
    )
    cross_fit_folds: int = Field(
        default=5,
        ge=1,
        description="Cross-fit the ranker over this many folds of users (by a stable hash of "
        "the user id): each fold's candidate lists are scored by a ranker fitted on the "
        "other folds' users, so the gate judges every user's list, not the test fifth, and "
        "the ranker that serves learns from every user but an early-stopping share. 1: no "
        "cross-fitting (users split once into train, validation and test).",
    )
    cross_fit_below_lists: int = Field(
        default=2000,
        ge=0,
        description="Cross-fit only while the test part would hold fewer lists than this "
        "(candidate lists of test users and served lists of the latest slice with a click): "
        "past it the gate has lists enough, and fitting folds + 1 rankers on every user's "
        "whole candidate list would cost time and memory for less. Counted before the "
        "candidates are recalled, so it counts test users, of whom only those whose next "
        "item was recalled make a list the gate can judge (on Beauty 407 of 964). 2000: an "
        "imported history is always cross-fitted (max_cases users are asked, a fifth of them "
        "test); a running service stops once its latest slice holds about 2,000 clicked lists.",
    )
    gate: bool = Field(
        default=True,
        description="Judge what serves on the latest data: the sources' blend, unless the "
        "new ranker, the current one or a single source's order beats it there with 95% "
        "confidence; the report says which and why. Off: the new ranker serves.",
    )
    gate_measure: Literal["auto", "interactions", "logged"] = Field(
        default="auto",
        description="What the gate judges on: NDCG@10 on held-out interactions, or the "
        "IPS-weighted DCG@10 of served lists reordered by each alternative; auto: whichever "
        "has more test lists with a positive (interactions on a tie). A named measure with "
        "too few lists gives way to the other.",
    )


class PromotionSettings(Section):
    """The gates a new model version passes before ``recloop train`` promotes it; a
    blocked version stays in the registry with its reasons (``recloop models list``)."""

    min_validation_users: int = Field(
        default=10,
        ge=1,
        description="Every trained source must have been validated on at least this many "
        "users, with finite metrics.",
    )
    metric: Literal["recall@10", "recall@50", "recall@100", "recall@500", "ndcg@10"] = Field(
        default="recall@100",
        description="The validation metric the new version is compared on with the one "
        "served: its best source and its sources' merged lists.",
    )
    max_regression: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Blocks when the best source's or the merged metric falls by more than "
        "this share of the served version's, both asked on the new validation users.",
    )
    max_ranker_regression: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Blocks when the new learned ranker (or the ordering the new version "
        "would serve) scores, on the latest test lists, more than this share below the "
        "served version's ranker on the same lists, and is worse with 95% confidence.",
    )
    max_tied_lists: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="The share of the learned ranker's test lists it may give one raw score "
        "for every row, at most: past it the ranker has collapsed (it orders nothing).",
    )
    max_ece: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="The calibration error (ECE) of each ranker head on its test rows, at most.",
    )
    latency_requests: int = Field(
        default=200,
        ge=0,
        description="Requests the new version's sources (and ranker) answer for the latency "
        "check: the latest served requests' users, else validation users. 0: no check.",
    )
    latency_quantile: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Blocks when this quantile of a source's recall time exceeds its deadline "
        "(the smallest timeout_ms of the surfaces that name it, within "
        "serving.budget.retrieve_ms), or of the ranker's time per list exceeds "
        "serving.budget.rank_ms.",
    )


class TrainSettings(Section):
    """What ``recloop train`` fits and how it validates."""

    sources: list[TrainSourceConfig] = Field(default_factory=default_train_sources)
    ranker: RankerTrainSettings = RankerTrainSettings()
    promotion: PromotionSettings = PromotionSettings()
    validation_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="The share held out to evaluate: of the time span (split time), or of "
        "each user's interactions (split user or random).",
    )
    validation_split: Literal["auto", "time", "user", "random"] = Field(
        default="auto",
        description="What validation holds out. time: everything after a cut-off in time "
        "(a live service's users come back). user: each user's own latest interactions, "
        "for imported histories whose users came once each. random: a random share of "
        "each user's interactions, for data whose order means little. auto: time, unless "
        "it finds under a quarter of the users it could ask; then user.",
    )
    tune_trials: int = Field(default=20, ge=1, description="Optuna trials per source (--tune).")
    min_interactions: int = Field(default=20, ge=1)
    cleaning: CleaningConfig = CleaningConfig()
    labels: LabelConfig = LabelConfig()

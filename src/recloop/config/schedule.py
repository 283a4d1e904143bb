"""When the service retrains by itself: cadences per job and the triggers between them."""

from __future__ import annotations

from pydantic import Field

from recloop.config.section import Section


class ScheduleSettings(Section):
    """``[schedule]``: retraining on a cadence and on triggers, by one process per deployment
    (the leading ``recloop serve`` process, or ``recloop worker``). Off unless enabled.

    Two jobs, each the code path of ``recloop train`` with its promotion gates: ``train``
    refits every source with its recorded hyper-parameters, the ranker and the suggestion
    index; ``tune`` searches the sources' hyper-parameters again first (``--tune``), the
    slow and thorough one. A trigger starts a ``train``.
    """

    enabled: bool = Field(
        default=False, description="Run the scheduler (in `recloop serve` or `recloop worker`)."
    )
    in_service: bool = Field(
        default=True,
        description="Run it in `recloop serve` (its leading process). false: only "
        "`recloop worker` runs it, for deployments that train apart from serving.",
    )
    apps: list[str] = Field(
        default_factory=lambda: ["default"],
        description="The apps whose models are retrained, one run at a time.",
    )
    check_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the leader reads its clocks and monitors and decides.",
    )
    train_every_h: float = Field(
        default=24.0,
        ge=0,
        description="Cadence of the train job (0: triggers only).",
    )
    tune_every_h: float = Field(
        default=168.0,
        ge=0,
        description="Cadence of the tune job (0: never); a tune run counts as a train run.",
    )
    drift_psi: float = Field(
        default=0.25,
        ge=0,
        description="Retrain when a ranker feature's or the score's PSI exceeds this (with "
        "serving.drift's p-value and minimum sampled requests); 0: no drift trigger.",
    )
    ctr_drop: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Retrain when a surface's online CTR over the last ctr_window_h is this "
        "share or more below its level over the ctr_trailing_h before; 0: no CTR trigger.",
    )
    ctr_window_h: float = Field(
        default=1.0, gt=0, description="The recent window of the CTR trigger."
    )
    ctr_trailing_h: float = Field(
        default=24.0,
        gt=0,
        description="The trailing window the recent CTR is compared with (just before it).",
    )
    ctr_min_impressions: int = Field(
        default=2000,
        ge=1,
        description="Impressions each window needs before the CTR trigger reads it.",
    )
    new_events: int = Field(
        default=0,
        ge=0,
        description="Retrain when this many events arrived since the last run (one counted "
        "query per check); 0: no event-volume trigger.",
    )
    new_items: int = Field(
        default=0,
        ge=0,
        description="Retrain when the catalog grew by this many items since the last run; "
        "0: no item-volume trigger.",
    )
    min_interval_h: float = Field(
        default=6.0,
        ge=0,
        description="A trigger starts no run until this long after the last run started (a "
        "drift the new version does not fix must not retrain in a loop).",
    )
    failure_backoff_h: float = Field(
        default=1.0,
        ge=0,
        description="After a failed run nothing starts for this long, doubled with each "
        "further failure in a row, up to max_backoff_h.",
    )
    max_backoff_h: float = Field(
        default=24.0, ge=0, description="The longest wait after failures in a row."
    )
    run_timeout_h: float = Field(
        default=6.0,
        gt=0,
        description="A training run still going after this long is stopped and failed.",
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="The training process's CPU niceness (0: as the service's): serving's "
        "threads come first on a shared machine.",
    )
    keep_runs: int = Field(default=500, ge=1, description="Run records kept per app, newest first.")

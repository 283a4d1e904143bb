"""How many snapshots, training sets and model versions `recloop gc` keeps."""

from __future__ import annotations

from pydantic import Field

from recloop.config.section import Section


class RetentionSettings(Section):
    """What `recloop gc` (and the service, every ``interval_h``) keeps.

    The newest ``keep_*`` of each kind stay, per app; so does whatever a protected model
    version needs, whatever the counts: the served one, the one served before it, the
    versions experiments, shadows or ``pinned`` name, and those a running service has
    loaded, with the snapshot and training set each was trained from.
    """

    keep_versions: int = Field(
        default=5, ge=1, description="Model versions kept per app, newest first."
    )
    keep_snapshots: int = Field(
        default=3, ge=1, description="Snapshots kept per app, newest first."
    )
    keep_datasets: int = Field(
        default=3, ge=1, description="Training sets kept per app, newest first."
    )
    min_age_h: float = Field(
        default=6.0,
        ge=0,
        description="Nothing younger than this is removed: a training run in progress may "
        "still be reading the snapshot it took, or writing its training set.",
    )
    pinned: list[str] = Field(
        default_factory=list,
        description="Model versions kept whatever the counts (with their snapshots and "
        "training sets), beside those experiments and shadows name.",
    )
    interval_h: float = Field(
        default=0.0,
        ge=0,
        description="How often the leading service process runs `recloop gc --delete` "
        "(0: never; run the command instead).",
    )

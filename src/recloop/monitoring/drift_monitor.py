"""The service's drift state per app: the served version's feature and score windows, the
embedding shift measured when the version was loaded, and the head's share of impressions.

Written by the request path (a sampled request's rows, a served list's head count) and the
model loader; read at scrape time (``gauges``) and by whatever decides to retrain
(``state``: the same numbers and the reasons they count as drift).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from recloop.config.drift import DriftSettings
from recloop.monitoring.drift import DriftReference, DriftWindow, FeatureDrift, finite
from recloop.monitoring.metrics import GaugeSample


@dataclass(frozen=True)
class EmbeddingShift:
    """One source's embeddings (``item`` or ``user``) between two versions."""

    source: str
    entity: str
    shift: float
    ids: int
    previous: str


@dataclass(frozen=True)
class DriftState:
    """What an app's drift looks like now, and which parts of it are over their threshold."""

    app_id: str
    version: str | None
    requests: float
    features: tuple[FeatureDrift, ...]
    score: FeatureDrift | None
    embeddings: tuple[EmbeddingShift, ...]
    head_share: float | None
    # Over threshold, and what a retraining answers: the ranker's features and score.
    drifted: tuple[str, ...] = field(default=())
    # Over threshold, and for a person: a new version's embeddings moved (a retraining
    # caused it; another would not help), the head takes the impressions (exploration and
    # coverage answer that).
    warnings: tuple[str, ...] = field(default=())


@dataclass
class _Head:
    head: float = 0.0
    served: float = 0.0


class DriftMonitor:
    """Every app's drift, as the service sees it (one per process)."""

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self._windows: dict[str, DriftWindow] = {}
        self._embeddings: dict[str, tuple[EmbeddingShift, ...]] = {}
        self._heads: dict[str, _Head] = {}
        self._lock = threading.Lock()
        self._requests = itertools.count()

    def publish(self, app_id: str, reference: DriftReference | None) -> None:
        """The app now serves ``reference``'s version (None: a version without one): its
        live counts start afresh."""
        with self._lock:
            windows = dict(self._windows)
            if reference is None:
                windows.pop(app_id, None)
            else:
                windows[app_id] = DriftWindow(reference, self.settings.window_rows)
            self._windows = windows  # readers take no lock

    def sampled(self) -> bool:
        """Whether this ranked request is one of the sample (one in ``sample_every``)."""
        return self.settings.enabled and next(self._requests) % self.settings.sample_every == 0

    def window(self, app_id: str, version: str) -> DriftWindow | None:
        """The live window of ``version``, if it is the one the app's reference describes."""
        window = self._windows.get(app_id)
        return window if window is not None and window.reference.version == version else None

    def embeddings_shifted(self, app_id: str, shifts: tuple[EmbeddingShift, ...]) -> None:
        """The embedding shift measured when the app's served version was loaded."""
        with self._lock:
            self._embeddings = {**self._embeddings, app_id: shifts}

    def served(self, app_id: str, head: int, items: int) -> None:
        """One served list: ``head`` of its ``items`` are head items. Decayed like the
        feature windows, so the share follows recent traffic."""
        if items <= 0:
            return
        with self._lock:
            counts = self._heads.get(app_id)
            if counts is None:
                counts = self._heads[app_id] = _Head()
            counts.head += head
            counts.served += items
            if counts.served > self.settings.window_rows:
                counts.head *= 0.5
                counts.served *= 0.5

    def apps(self) -> list[str]:
        """Apps with any drift measure."""
        return sorted(set(self._windows) | set(self._embeddings) | set(self._heads))

    def state(self, app_id: str) -> DriftState:
        """The app's drift now, with what is over its threshold named in ``drifted`` (what
        retraining answers) and ``warnings`` (what it does not)."""
        settings = self.settings
        window = self._windows.get(app_id)
        features = tuple(window.features()) if window is not None else ()
        score = window.score() if window is not None else None
        requests = window.requests if window is not None else 0.0
        with self._lock:
            head = self._heads.get(app_id)
            share = head.head / head.served if head is not None and head.served else None
        embeddings = self._embeddings.get(app_id, ())
        drifted: list[str] = []
        if requests >= settings.min_requests:
            for drift in (*features, *((score,) if score is not None else ())):
                if drift.psi > settings.psi_threshold and drift.p_value < settings.p_value:
                    drifted.append(f"{drift.name}: PSI {drift.psi:.2f}")
        warnings: list[str] = []
        for shift in embeddings:
            if shift.shift > settings.embedding_shift_threshold:
                warnings.append(f"{shift.source} {shift.entity} embeddings: {shift.shift:.2f}")
        if share is not None and share > settings.head_share_threshold:
            warnings.append(f"head share: {share:.2f}")
        return DriftState(
            app_id,
            window.reference.version if window is not None else None,
            requests,
            features,
            score,
            embeddings,
            share,
            tuple(drifted),
            tuple(warnings),
        )

    def gauges(self) -> Iterator[GaugeSample]:
        """Scrape-time gauges of every app's drift (labels: app, feature, source, entity;
        features are the ranker's, a fixed set)."""
        for app_id in self.apps():
            yield from _app_gauges(self.state(app_id))


_HELP: Mapping[str, str] = {
    "recloop_drift_feature_psi": "Population stability index of a ranker feature: the "
    "sampled ranked rows since the served version loaded against its training rows, by "
    "app and feature.",
    "recloop_drift_feature_p_value": "Chi-square test p-value of a ranker feature's sampled "
    "rows against its training rows (over the sampled requests: conservative), by app and "
    "feature.",
    "recloop_drift_score_psi": "Population stability index of the ranker's serving score "
    "against its score on the held-out training rows, by app.",
    "recloop_drift_score_p_value": "Chi-square test p-value of the ranker's serving score "
    "against the held-out rows', by app.",
    "recloop_drift_sampled_requests": "Ranked requests in the drift window (decayed), by app.",
    "recloop_drift_embedding_shift": "Mean cosine distance of the same ids' embeddings "
    "between the served version and the one served before it (rotation-aligned), by app, "
    "source and entity (item, user).",
    "recloop_drift_head_share": "Share of served impressions going to the head (the most "
    "popular serving.drift.head_share of active items), recent traffic, by app.",
    "recloop_drift_detected": "1 when a ranker feature or its score has drifted over its "
    "threshold (serving.drift): what a retraining answers; else 0, by app.",
}


def _app_gauges(state: DriftState) -> Iterator[GaugeSample]:
    app = {"app": state.app_id}
    if state.version is not None:
        yield (
            "recloop_drift_sampled_requests",
            _HELP["recloop_drift_sampled_requests"],
            app,
            state.requests,
        )
    for drift in state.features:
        labels = {**app, "feature": drift.name}
        yield (
            "recloop_drift_feature_psi",
            _HELP["recloop_drift_feature_psi"],
            labels,
            finite(drift.psi),
        )
        yield (
            "recloop_drift_feature_p_value",
            _HELP["recloop_drift_feature_p_value"],
            labels,
            finite(drift.p_value),
        )
    if state.score is not None:
        yield (
            "recloop_drift_score_psi",
            _HELP["recloop_drift_score_psi"],
            app,
            finite(state.score.psi),
        )
        yield (
            "recloop_drift_score_p_value",
            _HELP["recloop_drift_score_p_value"],
            app,
            finite(state.score.p_value),
        )
    for shift in state.embeddings:
        labels = {**app, "source": shift.source, "entity": shift.entity}
        yield (
            "recloop_drift_embedding_shift",
            _HELP["recloop_drift_embedding_shift"],
            labels,
            finite(shift.shift),
        )
    if state.head_share is not None:
        yield ("recloop_drift_head_share", _HELP["recloop_drift_head_share"], app, state.head_share)
    yield (
        "recloop_drift_detected",
        _HELP["recloop_drift_detected"],
        app,
        float(bool(state.drifted)),
    )

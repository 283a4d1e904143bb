"""Trained models as the service holds them: loaded per app, swapped whole on a new version.

Which kinds may be loaded is ``retrieval.registry``'s closed table: a saved model names its
kind, and a manifest never holds an import path.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from recloop.retrieval.models import RetrievalModel
from recloop.retrieval.registry import model_class


def load_model(kind: str, path: Path) -> RetrievalModel:
    """Load one saved model of a known kind.

    Raises:
        ValueError: the kind is not one recloop knows.
    """
    return model_class(kind).load(path)


@dataclass(frozen=True)
class ModelBundle:
    """One app's loaded model version: its models by source name, and item titles."""

    version: str
    models: Mapping[str, RetrievalModel] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)
    data_as_of: datetime | None = None  # catalog changes after this are not in the models
    failed: frozenset[str] = frozenset()  # sources of the version whose models did not load

    def model(self, name: str) -> RetrievalModel | None:
        """The model served under ``name``, if this version has one."""
        return self.models.get(name)


class ModelIndex:
    """The bundles the service serves, per app; request threads read, a watcher publishes."""

    def __init__(self) -> None:
        self._bundles: dict[str, ModelBundle] = {}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> ModelBundle | None:
        """The app's live bundle, or None before its first model version."""
        return self._bundles.get(app_id)

    def publish(self, app_id: str, bundle: ModelBundle) -> None:
        """Swap in a bundle; requests already running finish on the old one."""
        with self._lock:
            bundles = dict(self._bundles)
            bundles[app_id] = bundle
            # Replacing the dict (not mutating it) keeps readers lock-free.
            self._bundles = bundles

    def apps(self) -> dict[str, str]:
        """Version served per app."""
        return {app: bundle.version for app, bundle in self._bundles.items()}

"""Keeps the served models current: loads a newly promoted version without a restart, and
makes items created since training retrievable by the models that can take them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

from recloop.features.bandit_context import EVIDENCE_FILE, ContextEvidence
from recloop.monitoring.drift import DRIFT_REFERENCE, DriftReference
from recloop.monitoring.drift_monitor import DriftMonitor, EmbeddingShift
from recloop.ranking.learned import MANIFEST, RANKER_DIR, RankerModel, RankerModels
from recloop.registry.artifacts import DamagedVersion, ModelRegistry
from recloop.registry.in_use import InUseMarks
from recloop.retrieval.bundle import ModelBundle, ModelIndex, load_model
from recloop.retrieval.interactions import item_text
from recloop.retrieval.models import KnowsUsers, RetrievalModel
from recloop.serving.drift_sampling import embedding_shifts
from recloop.store.protocols import Catalog, CatalogCursor
from recloop.suggest.model import MODEL_DIR as SUGGESTIONS_DIR
from recloop.suggest.model import SuggestionModel, SuggestionModels

log = logging.getLogger(__name__)

_PAGE = 5000


class _NothingLoads(DamagedVersion):
    """Not one source of a version loads (each failure was counted already)."""


@runtime_checkable
class TakesNewItems(Protocol):
    """A model that can add items without retraining (content embeddings)."""

    def add_items(self, ids: list[str], texts: list[str], titles: list[str | None]) -> int:
        """Embed and index the items; returns how many were added."""
        ...


class ModelLoader:
    """Loads each app's promoted model version and follows the catalog for new items.

    Args:
        registry: where versions and the promotion pointer live.
        index: where loaded bundles are published for the sources.
        catalog: followed for items created after training.
        on_error: called when a load fails (the loaded version keeps serving).
        rankers: where each version's learned ranker is published, if it has one.
        pinned: versions kept loaded beside the promoted one (experiment variants that pin
            a version), each with the index and rankers its pipelines read.
        suggestions: where each version's suggestion model is published, if it has one.
        forgotten: the users of an app deleted so far, whom every loaded version forgets.
        drift: told each served version's drift reference, and how far its embeddings
            moved from the version served before it in this process.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        index: ModelIndex,
        catalog: Catalog,
        on_error: Callable[[], None] = lambda: None,
        rankers: RankerModels | None = None,
        pinned: Mapping[str, tuple[ModelIndex, RankerModels]] | None = None,
        suggestions: SuggestionModels | None = None,
        forgotten: Callable[[str], Collection[str]] | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self._drift = drift
        self._forgotten = forgotten
        self._registry = registry
        self._marks = InUseMarks(registry.root)
        self._suggestions = suggestions
        self._pinned = dict(pinned or {})
        self._missing: set[str] = set()
        self._rankers = rankers
        self._index = index
        self._catalog = catalog
        self._on_error = on_error
        self._lock = threading.Lock()
        self._cursor: CatalogCursor | None = None
        # A promoted version that could not be loaded, per app: not tried again (its files
        # would be hashed on every step) until another version is promoted.
        self._refused: dict[str, str] = {}

    def versions(self) -> dict[str, tuple[str | None, str | None, tuple[str, ...]]]:
        """Each app's promoted version, the version this process serves (None: none), and
        the sources of the served version whose models failed to load."""
        loaded = self._index.apps()
        apps = sorted(set(self._registry.apps()) | set(loaded))
        out: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {}
        for app in apps:
            bundle = self._index.get(app)
            failed = tuple(sorted(bundle.failed)) if bundle is not None else ()
            out[app] = (self._registry.current(app), loaded.get(app), failed)
        return out

    def step(self) -> None:
        """Load what was promoted since the last step, then index new catalog items."""
        with self._lock:
            loaded = self._index.apps()
            for app_id in self._registry.apps():
                version = self._registry.current(app_id)
                if (
                    version is None
                    or loaded.get(app_id) == version
                    or self._refused.get(app_id) == version
                ):
                    continue
                if self._serve(app_id, version):
                    self._refused.pop(app_id, None)
                    continue
                self._refused[app_id] = version
                if app_id not in loaded:
                    # Nothing serves yet: the newest older version that loads whole does.
                    for older in reversed(self._registry.versions(app_id)):
                        if older < version and self._serve(app_id, older):
                            log.warning(
                                "app %s serves model version %s: the promoted %s is damaged",
                                app_id,
                                older,
                                version,
                            )
                            break
            self._load_pinned()
            self._mark_in_use()
            try:
                self._follow_catalog()
            except Exception:
                # New items wait for the next step; the loaded models keep serving.
                log.exception("could not add new catalog items to the loaded models")
                self._on_error()

    def _mark_in_use(self) -> None:
        """Tell ``recloop gc`` which versions this process holds, so it keeps their files."""
        held: dict[str, set[str]] = {}
        for index in (self._index, *(index for index, _ in self._pinned.values())):
            for app_id, version in index.apps().items():
                held.setdefault(app_id, set()).add(version)
        for app_id, versions in held.items():
            self._marks.record(app_id, versions)

    def _serve(self, app_id: str, version: str) -> bool:
        """Load a version and publish it; False (counted) when it cannot serve."""
        try:
            bundle = self._load(app_id, version)
            ranker, damaged = self._load_ranker(app_id, version)
            evidence = self._load_evidence(app_id, version)
            suggestions = self._load_suggestions(app_id, version)
            reference = self._load_reference(app_id, version)
        except Exception as exc:
            log.exception("could not load model version %s of %s", version, app_id)
            if not isinstance(exc, _NothingLoads):  # each source's failure was counted
                self._on_error()
            return False
        self._forget(app_id, bundle)
        before = self._index.get(app_id)
        self._index.publish(app_id, bundle)
        if self._drift is not None:
            self._drift.publish(app_id, reference)
            if before is not None and before.version != version:
                self._drift.embeddings_shifted(app_id, _shifts(before, bundle))
        # Again: a deletion followed while this version loaded reached only the old one.
        self._forget(app_id, bundle)
        if self._rankers is not None:
            self._rankers.publish(app_id, ranker, evidence, damaged=damaged)
        if self._suggestions is not None:
            # Swapped with the version: a version without one serves cold.
            self._suggestions.publish(app_id, suggestions)
        log.info("serving model version %s for app %s", version, app_id)
        # Re-read the catalog: items newer than this version's data need adding.
        self._cursor = None
        return True

    def _forget(self, app_id: str, bundle: ModelBundle) -> None:
        """Drop deleted users from a version written before they were deleted."""
        users = self._forgotten(app_id) if self._forgotten is not None else ()
        if users:
            for model in bundle.models.values():
                if isinstance(model, KnowsUsers):
                    model.forget_users(users)

    def _damaged(self, app_id: str, version: str, part: str) -> bool:
        """Whether any file of ``part`` (a directory or file of the version) is damaged."""
        return any(
            name == part or name.startswith(part + "/")
            for name in self._registry.damaged(app_id, version)
        )

    def _load_pinned(self) -> None:
        apps = self._registry.apps()
        for version, (index, rankers) in self._pinned.items():
            loaded = index.apps()
            if (
                apps
                and version not in self._missing
                and not any(version in self._registry.versions(a) for a in apps)
            ):
                # Its variant falls back to the sources that need no model, and says so.
                log.warning("pinned model version %s is in no app's registry", version)
                self._missing.add(version)
            for app_id in apps:
                if loaded.get(app_id) == version or version not in self._registry.versions(app_id):
                    continue
                try:
                    bundle = self._load(app_id, version)
                    self._forget(app_id, bundle)
                    index.publish(app_id, bundle)
                    ranker, damaged = self._load_ranker(app_id, version)
                    rankers.publish(
                        app_id, ranker, self._load_evidence(app_id, version), damaged=damaged
                    )
                    log.info("keeping model version %s of app %s loaded", version, app_id)
                except Exception:
                    log.exception("could not load pinned model version %s of %s", version, app_id)
                    self._on_error()

    def _load(self, app_id: str, version: str) -> ModelBundle:
        """A version's models; one whose files are damaged or will not load is left out
        (counted, and named in ``failed``). Raises when no listed model loads, or when the
        manifest or the titles are damaged."""
        damaged = self._registry.damaged(app_id, version)
        broken = sorted(n for n in damaged if "/" not in n)
        if broken:
            raise DamagedVersion(f"model version {version} of {app_id}: {broken} damaged")
        manifest = self._registry.manifest(app_id, version)
        root = self._registry.path(app_id, version)
        models: dict[str, RetrievalModel] = {}
        failed: list[str] = []
        for entry in manifest.models:
            try:
                if any(n.startswith(entry.name + "/") for n in damaged):
                    raise DamagedVersion(f"{entry.name}: its files differ from their checksums")
                models[entry.name] = load_model(entry.kind, root / entry.name)
            except Exception:
                log.exception(
                    "source %s of model version %s of %s failed", entry.name, version, app_id
                )
                self._on_error()
                failed.append(entry.name)
        if manifest.models and not models:
            raise _NothingLoads(f"model version {version} of {app_id}: no source loads")
        titles_path = root / "titles.json"
        titles = json.loads(titles_path.read_text()) if titles_path.exists() else {}
        as_of = manifest.extra.get("data_as_of")
        return ModelBundle(
            version,
            models,
            titles,
            datetime.fromisoformat(as_of) if as_of else None,
            failed=frozenset(failed),
        )

    def _load_ranker(self, app_id: str, version: str) -> tuple[RankerModel | None, str | None]:
        """The version's ranker, or None; and why, when it has one that did not load."""
        if self._rankers is None and not self._pinned:
            return None, None
        path = self._registry.path(app_id, version) / RANKER_DIR
        # A version trained before any list was served has no ranker: sources rank alone.
        if not (path / MANIFEST).exists():
            return None, None
        if self._damaged(app_id, version, RANKER_DIR):
            # The sources still serve, ordered by the blend; the failure is counted, and each
            # response says it is a fallback, not the cold state of a new app.
            log.error("the ranker of model version %s of %s is damaged", version, app_id)
            self._on_error()
            return None, f"the ranker of model version {version} is damaged"
        return RankerModel.load(path), None

    def _load_evidence(self, app_id: str, version: str) -> ContextEvidence | None:
        if self._rankers is None and not self._pinned:
            return None
        path = self._registry.path(app_id, version) / EVIDENCE_FILE
        if not path.exists() or self._damaged(app_id, version, EVIDENCE_FILE):
            # Trained before any list was served, or before LinUCB's evidence was fitted:
            # LinUCB explores uniformly until a version brings some.
            return None
        try:
            return ContextEvidence.load(path)
        except Exception:
            # Unreadable evidence must not keep the version's models from serving: LinUCB
            # falls back as if there were none, and the failure is counted.
            log.exception("could not load the LinUCB evidence of version %s of %s", version, app_id)
            self._on_error()
            return None

    def _load_reference(self, app_id: str, version: str) -> DriftReference | None:
        if self._drift is None:
            return None
        path = self._registry.path(app_id, version) / DRIFT_REFERENCE
        if not path.exists() or self._damaged(app_id, version, DRIFT_REFERENCE):
            return None  # trained before references were kept, or without a ranker
        try:
            return DriftReference.load(path)
        except Exception:
            # Drift goes unmeasured for this version; its models serve all the same.
            log.exception("could not load the drift reference of %s of %s", version, app_id)
            self._on_error()
            return None

    def _load_suggestions(self, app_id: str, version: str) -> SuggestionModel | None:
        if self._suggestions is None:
            return None
        path = self._registry.path(app_id, version) / SUGGESTIONS_DIR
        if not (path / "meta.json").exists():
            return None  # trained with suggestions off, or before they existed
        if self._damaged(app_id, version, SUGGESTIONS_DIR):
            log.error("the suggestion model of version %s of %s is damaged", version, app_id)
            self._on_error()
            return None
        try:
            return SuggestionModel.load(path)
        except Exception:
            # The version's other models still serve; suggestions fall back to the cold state.
            log.exception("could not load the suggestion model of %s of %s", version, app_id)
            self._on_error()
            return None

    def _follow_catalog(self) -> None:
        while True:
            changes = self._catalog.changes_since(self._cursor, _PAGE)
            new: dict[str, list[str]] = {}
            indexes = [self._index, *(index for index, _ in self._pinned.values())]
            for index in indexes:
                new.clear()
                for change in changes:
                    bundle = index.get(change.app_id)
                    if (
                        change.is_active
                        and bundle is not None
                        and (bundle.data_as_of is None or change.updated_at > bundle.data_as_of)
                    ):
                        new.setdefault(change.app_id, []).append(change.item_id)
                for app_id, item_ids in new.items():
                    self._add_items(index, app_id, item_ids)
            if changes:
                self._cursor = changes[-1].cursor
            if len(changes) < _PAGE:
                return

    def _add_items(self, index: ModelIndex, app_id: str, item_ids: list[str]) -> None:
        bundle = index.get(app_id)
        if bundle is None:
            return
        takers = [m for m in bundle.models.values() if isinstance(m, TakesNewItems)]
        items = [i for i in (self._catalog.get_item(app_id, t) for t in item_ids) if i]
        if not items:
            return
        titles = bundle.titles
        if isinstance(titles, dict):
            titles.update((i.item_id, i.title) for i in items if i.title)
        for model in takers:
            model.add_items(
                [i.item_id for i in items],
                [item_text(i.title, i.description, i.tags) for i in items],
                [i.title for i in items],
            )


def _shifts(before: ModelBundle, after: ModelBundle) -> tuple[EmbeddingShift, ...]:
    """The embedding shift between two loaded versions; none when it cannot be measured
    (a model without the vectors it should have): monitoring never blocks a load."""
    try:
        return embedding_shifts(before, after)
    except Exception:
        log.exception(
            "could not compare the embeddings of %s and %s", before.version, after.version
        )
        return ()

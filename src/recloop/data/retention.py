"""``recloop gc``: old snapshots, training sets and model versions removed, what matters kept.

Every training run writes a full snapshot, maybe a training set, and a model version; they
pile up. Retention keeps, per app, the newest ``retention.keep_versions`` versions,
``keep_snapshots`` snapshots and ``keep_datasets`` training sets, and whatever the counts
say, every *protected* version with its lineage (the snapshot it was trained from and the
training set its ranker learned from):

* the served version (``CURRENT``) and the one served before it (a rollback's target);
* the versions an experiment's variant or a shadow names, and ``retention.pinned``;
* the versions a running service process holds loaded (``registry.in_use``).

Nothing younger than ``retention.min_age_h`` is removed (a training run may still be
reading its snapshot or writing its training set). Half-written directories (no manifest)
and the staging directories of crashed writers go once they are that old.

Removal is safe beside a running service and a promotion: a version is removed under the
registry's lock, after reading the served pointer, the promotion record and the in-use
marks again, and it is first renamed into a hidden ``.trash-*`` directory, so it is never
listed, loadable or promotable half-deleted; a crash leaves only trash, which the next run
sweeps. Snapshots and training sets are renamed the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from recloop.config import RetentionSettings, Settings
from recloop.registry.artifacts import ModelRegistry
from recloop.registry.in_use import InUseMarks
from recloop.store import Audit

Kind = Literal["version", "snapshot", "dataset", "leftover"]

TRASH = ".trash-"
_SNAPSHOT_MANIFEST = "manifest.json"
_DATASET_METADATA = "metadata.json"
_RANKER_REPORT = "ranker_report.json"
#: A mark of a process that has not checked its models for this long belongs to one that
#: stopped (services check every ``serving.model_refresh_s``).
MIN_MARK_AGE_S = 3600.0


@dataclass(frozen=True)
class Entry:
    """One thing retention may keep or remove."""

    kind: Kind
    app_id: str | None
    name: str
    path: Path
    created_at: datetime  # the manifest's time (the data's, in a simulation); orders newest
    age_s: float  # since the directory was last written, on this machine's clock
    size: int = 0
    snapshot: str | None = None  # a version's or a training set's snapshot
    training_set: str | None = None  # a version's recorded training set, when it has one
    recorded: bool = False  # whether a version records whether it used a training set

    @property
    def label(self) -> str:
        """``app/name`` (or the name alone when the app is not known)."""
        return f"{self.app_id}/{self.name}" if self.app_id else self.name


@dataclass(frozen=True)
class Inventory:
    """Everything under the data directory and the registry retention looks at."""

    versions: tuple[Entry, ...] = ()
    snapshots: tuple[Entry, ...] = ()
    datasets: tuple[Entry, ...] = ()
    leftovers: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Protection:
    """The versions kept whatever the counts, per app, with why, and their lineage."""

    versions: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    snapshots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    datasets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def version(self, app_id: str | None, name: str) -> tuple[str, ...]:
        """Why a version is protected (empty: it is not)."""
        return tuple(self.versions.get(app_id or "", {}).get(name, ()))


@dataclass(frozen=True)
class Decision:
    """An entry and why it stays or goes."""

    entry: Entry
    why: str


@dataclass
class RetentionPlan:
    """What a run keeps and what it removes."""

    keep: list[Decision] = field(default_factory=list)
    remove: list[Decision] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """What removing everything planned frees."""
        return sum(d.entry.size for d in self.remove)


@dataclass
class RetentionReport:
    """What a run removed, and what it left after all (protected meanwhile, or failed)."""

    removed: list[Entry] = field(default_factory=list)
    skipped: list[Decision] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """What the removals freed."""
        return sum(e.size for e in self.removed)


# --- selection (pure) -------------------------------------------------------------------------


def select(
    inventory: Inventory,
    protection: Protection,
    policy: RetentionSettings,
) -> RetentionPlan:
    """Decide what stays and what goes (see the module's docstring for the rules)."""
    plan = RetentionPlan()
    min_age_s = policy.min_age_h * 3600.0
    for app_id, versions in _by_app(inventory.versions).items():
        newest = _newest(versions, policy.keep_versions)
        for entry in versions:
            reasons = list(protection.version(app_id, entry.name))
            if entry.name in newest:
                reasons.append(f"among the newest {policy.keep_versions}")
            _decide(plan, entry, reasons, min_age_s)
    # Lineage is matched by name whatever the app: names are unique to the data they hold,
    # and a training set whose snapshot is gone has no app to match by.
    for entries, keep, held in (
        (inventory.snapshots, policy.keep_snapshots, protection.snapshots),
        (inventory.datasets, policy.keep_datasets, protection.datasets),
    ):
        lineage = {name for names in held.values() for name in names}
        for group in _by_app(entries).values():
            newest = _newest(group, keep)
            for entry in group:
                reasons = []
                if entry.name in lineage:
                    reasons.append("trained a protected version")
                if entry.name in newest:
                    reasons.append(f"among the newest {keep}")
                _decide(plan, entry, reasons, min_age_s)
    for entry in inventory.leftovers:
        if entry.name.startswith(TRASH):
            plan.remove.append(Decision(entry, "left by an interrupted gc"))
        elif entry.age_s < min_age_s:
            plan.keep.append(Decision(entry, "may still be being written"))
        else:
            plan.remove.append(Decision(entry, "half-written, and older than min_age_h"))
    return plan


def _decide(plan: RetentionPlan, entry: Entry, reasons: list[str], min_age_s: float) -> None:
    if not reasons and entry.age_s < min_age_s:
        reasons.append("younger than min_age_h")
    if reasons:
        plan.keep.append(Decision(entry, "; ".join(reasons)))
    else:
        plan.remove.append(Decision(entry, "older than what is kept, and not protected"))


def _by_app(entries: Iterable[Entry]) -> dict[str | None, list[Entry]]:
    out: dict[str | None, list[Entry]] = {}
    for entry in entries:
        out.setdefault(entry.app_id, []).append(entry)
    return out


def _newest(entries: list[Entry], n: int) -> set[str]:
    ordered = sorted(entries, key=lambda e: (e.created_at, e.name), reverse=True)
    return {e.name for e in ordered[:n]}


# --- what is protected ------------------------------------------------------------------------


def named_versions(settings: Settings) -> dict[str, str]:
    """The versions the settings name, whatever the app, with who names them."""
    named: dict[str, list[str]] = {}
    for experiment in settings.experiments:
        for variant in experiment.variants:
            if variant.model_version:
                named.setdefault(variant.model_version, []).append(
                    f"experiment {experiment.name} variant {variant.name}"
                )
    for shadow in settings.shadows:
        if shadow.model_version:
            named.setdefault(shadow.model_version, []).append(f"shadow {shadow.name}")
    for version in settings.retention.pinned:
        named.setdefault(version, []).append("pinned (retention.pinned)")
    return {version: ", ".join(who) for version, who in named.items()}


def protection(
    registry: ModelRegistry,
    named: Mapping[str, str],
    mark_age_s: float,
    *,
    now: float | None = None,
) -> Protection:
    """Read, now, which versions are protected and the snapshots and training sets they
    were trained from."""
    marks = InUseMarks(registry.root)
    versions: dict[str, dict[str, tuple[str, ...]]] = {}
    snapshots: dict[str, set[str]] = {}
    datasets: dict[str, set[str]] = {}
    for app_id in _registry_apps(registry):
        reasons: dict[str, list[str]] = {}
        current = registry.current(app_id)
        if current:
            reasons.setdefault(current, []).append("served")
        previous = registry.previous(app_id)
        if previous:
            reasons.setdefault(previous, []).append("served before (rollback)")
        for version in marks.held(app_id, mark_age_s, now):
            reasons.setdefault(version, []).append("loaded by a running service")
        available = set(registry.versions(app_id))
        for version, who in named.items():
            if version in available:
                reasons.setdefault(version, []).append(who)
        versions[app_id] = {v: tuple(r) for v, r in reasons.items()}
        for version in reasons:
            snapshot, training_set, recorded = _lineage(registry, app_id, version)
            if snapshot:
                snapshots.setdefault(app_id, set()).add(snapshot)
            if training_set:
                datasets.setdefault(app_id, set()).add(training_set)
            elif snapshot and not recorded:
                # Which training set it used is not recorded: keep every one of its snapshot.
                datasets.setdefault(app_id, set()).add(f"{snapshot}-*")
    return Protection(
        versions,
        {a: tuple(sorted(s)) for a, s in snapshots.items()},
        {a: tuple(sorted(d)) for a, d in datasets.items()},
    )


def _lineage(
    registry: ModelRegistry, app_id: str, version: str
) -> tuple[str | None, str | None, bool]:
    """A version's snapshot, its recorded training set, and whether it records one."""
    try:
        snapshot = registry.manifest(app_id, version).snapshot_version
    except (OSError, ValueError, KeyError):
        return None, None, False
    try:
        report = json.loads((registry.path(app_id, version) / _RANKER_REPORT).read_text())
    except (OSError, ValueError):
        return snapshot, None, False
    training_set = report.get("training_set") if isinstance(report, dict) else None
    if training_set:
        return snapshot, Path(str(training_set)).name, True
    return snapshot, None, isinstance(report, dict) and "impressions" in report


def _expand(protection: Protection, inventory: Inventory) -> Protection:
    """``<snapshot>-*`` patterns in the protected training sets made into names."""
    datasets: dict[str, tuple[str, ...]] = {}
    for app_id, names in protection.datasets.items():
        out: set[str] = set()
        for name in names:
            if name.endswith("-*"):
                out.update(d.name for d in inventory.datasets if d.snapshot == name[:-2])
            else:
                out.add(name)
        datasets[app_id] = tuple(sorted(out))
    return Protection(protection.versions, protection.snapshots, datasets)


# --- what there is ----------------------------------------------------------------------------


def scan(data_dir: Path, registry: ModelRegistry, *, now: float | None = None) -> Inventory:
    """Every version, snapshot and training set, and the leftovers of crashed writers."""
    now = datetime.now(UTC).timestamp() if now is None else now
    versions: list[Entry] = []
    leftovers: list[Entry] = []
    for app_id in _registry_apps(registry):
        app_dir = registry.root / app_id
        for version in registry.versions(app_id):
            path = registry.path(app_id, version)
            try:
                manifest = registry.manifest(app_id, version)
            except (OSError, ValueError, KeyError):
                continue  # removed meanwhile, or unreadable: not ours to judge
            snapshot, training_set, recorded = _lineage(registry, app_id, version)
            versions.append(
                Entry("version", app_id, version, path, _aware(manifest.created_at),
                      _age(path, now), _size(path), snapshot, training_set, recorded)
            )  # fmt: skip
        # A crashed training's staging directory (``.<version>-*``), and interrupted gc's.
        for child in app_dir.iterdir():
            if child.is_dir() and child.name.startswith("."):
                if child.name in (".in-use",):
                    continue
                leftovers.append(_leftover(child, app_id, now))
    snapshots: list[Entry] = []
    snapshot_apps: dict[str, str | None] = {}
    root = data_dir / "snapshots"
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if not child.is_dir():
            continue
        written = _json(child / _SNAPSHOT_MANIFEST)
        if child.name.startswith(".") or written is None:
            leftovers.append(_leftover(child, _str(written, "app_id"), now))
            continue
        owner = _str(written, "app_id")
        snapshot_apps[child.name] = owner
        snapshots.append(
            Entry("snapshot", owner, child.name, child, _time(written, "created_at", child),
                  _age(child, now), _size(child))
        )  # fmt: skip
    datasets: list[Entry] = []
    root = data_dir / "datasets"
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if not child.is_dir():
            continue
        metadata = _json(child / _DATASET_METADATA)
        if child.name.startswith(".") or metadata is None:
            leftovers.append(_leftover(child, None, now))
            continue
        source = _str(metadata, "snapshot") or child.name.rsplit("-", 1)[0]
        owner = snapshot_apps.get(source) or _str(
            _json(data_dir / "snapshots" / source / _SNAPSHOT_MANIFEST), "app_id"
        )
        datasets.append(
            Entry("dataset", owner, child.name, child, _time(metadata, "built_at", child),
                  _age(child, now), _size(child), source)
        )  # fmt: skip
    return Inventory(tuple(versions), tuple(snapshots), tuple(datasets), tuple(leftovers))


def _registry_apps(registry: ModelRegistry) -> list[str]:
    """Every app folder of the registry, with versions or only leftovers."""
    if not registry.root.is_dir():
        return []
    return sorted(
        p.name for p in registry.root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def _leftover(path: Path, app_id: str | None, now: float) -> Entry:
    # Aged by its newest file: a long training still writing deep inside its staging
    # directory touches no top-level entry for hours.
    age = min((_age(p, now) for p in path.rglob("*")), default=_age(path, now))
    age = min(age, _age(path, now))
    return Entry("leftover", app_id, path.name, path, _mtime(path), age, _size(path))


def _json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _str(data: Mapping[str, object] | None, key: str) -> str | None:
    value = data.get(key) if data is not None else None
    return str(value) if value else None


def _time(data: Mapping[str, object], key: str, path: Path) -> datetime:
    try:
        return _aware(datetime.fromisoformat(str(data[key])))
    except (KeyError, ValueError):
        return _mtime(path)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.fromtimestamp(0, UTC)


def _age(path: Path, now: float) -> float:
    try:
        return max(0.0, now - path.stat().st_mtime)
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue  # removed while counted
    return total


# --- plan and removal -------------------------------------------------------------------------


def mark_age_s(settings: Settings) -> float:
    """How recently a process must have touched its in-use mark to count as running."""
    return max(MIN_MARK_AGE_S, 10 * settings.serving.model_refresh_s)


def plan(
    settings: Settings, registry: ModelRegistry, policy: RetentionSettings | None = None
) -> RetentionPlan:
    """What a run would keep and remove now."""
    inventory = scan(settings.data_dir, registry)
    protected = _expand(
        protection(registry, named_versions(settings), mark_age_s(settings)), inventory
    )
    return select(inventory, protected, policy or settings.retention)


def collect(
    plan: RetentionPlan,
    settings: Settings,
    registry: ModelRegistry,
    *,
    on_removed: Callable[[Entry], None] = lambda entry: None,
) -> RetentionReport:
    """Remove what ``plan`` says goes, checking again, just before each, that it is not
    protected now (a promotion, a new pin, a process that loaded it since the plan)."""
    report = RetentionReport()
    named = named_versions(settings)
    age = mark_age_s(settings)

    def fresh() -> Protection:
        return _expand(protection(registry, named, age), scan_lineage_only(settings.data_dir))

    for decision in plan.remove:
        entry = decision.entry
        try:
            if entry.kind == "version" and entry.app_id is not None:
                with registry.locked(entry.app_id):
                    now_protected = fresh().version(entry.app_id, entry.name)
                    if now_protected:
                        report.skipped.append(Decision(entry, "; ".join(now_protected)))
                        continue
                    trash = _to_trash(entry.path)
            elif entry.kind in ("snapshot", "dataset"):
                why = _lineage_now(fresh(), entry)
                if why:
                    report.skipped.append(Decision(entry, why))
                    continue
                trash = _to_trash(entry.path)
            else:
                trash = entry.path if entry.name.startswith(TRASH) else _to_trash(entry.path)
        except FileNotFoundError:
            report.skipped.append(Decision(entry, "already gone"))
            continue
        except OSError as exc:
            report.skipped.append(Decision(entry, f"could not be moved aside: {exc}"))
            continue
        # Out of sight already: what follows may be interrupted and is finished next time.
        shutil.rmtree(trash, ignore_errors=True)
        report.removed.append(entry)
        on_removed(entry)
    for app_id in _registry_apps(registry):
        for mark in InUseMarks(registry.root).stale(app_id, age):
            mark.unlink(missing_ok=True)
    return report


def scan_lineage_only(data_dir: Path) -> Inventory:
    """The training sets and their snapshots (enough to expand ``<snapshot>-*``)."""
    root = data_dir / "datasets"
    datasets = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.is_dir() and not child.name.startswith("."):
            metadata = _json(child / _DATASET_METADATA) or {}
            snapshot = _str(metadata, "snapshot") or child.name.rsplit("-", 1)[0]
            epoch = datetime.fromtimestamp(0, UTC)
            datasets.append(Entry("dataset", None, child.name, child, epoch, 0.0, 0, snapshot))
    return Inventory(datasets=tuple(datasets))


def _lineage_now(protected: Protection, entry: Entry) -> str:
    names = protected.snapshots if entry.kind == "snapshot" else protected.datasets
    if any(entry.name in held for held in names.values()):
        return "now trains a protected version"
    return ""


def _to_trash(path: Path) -> Path:
    """Rename ``path`` to a hidden sibling (atomic): readers stop seeing it at once."""
    trash = path.with_name(f"{TRASH}{path.name}-{uuid.uuid4().hex[:6]}")
    os.rename(path, trash)
    return trash


def run_gc(
    settings: Settings,
    registry: ModelRegistry,
    *,
    audit: Audit | None,
    actor: str,
    now: datetime,
) -> RetentionReport:
    """Plan and remove, recorded in the audit log (``gc.run``, per app) when it removed
    anything."""
    report = collect(plan(settings, registry), settings, registry)
    if audit is not None and report.removed:
        per_app: dict[str, list[Entry]] = {}
        for entry in report.removed:
            per_app.setdefault(entry.app_id or "(unknown app)", []).append(entry)
        for app_id, entries in per_app.items():
            counts: dict[str, object] = {
                kind: sum(1 for e in entries if e.kind == kind)
                for kind in ("version", "snapshot", "dataset", "leftover")
            }
            counts["bytes"] = sum(e.size for e in entries)
            audit.record(app_id, actor, "gc.run", "files", now, counts)
    return report

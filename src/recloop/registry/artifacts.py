"""A local artifact store: one directory per model version, and a pointer to the live one.

Layout under the root::

    <app_id>/<version>/manifest.json     what was trained, on what, with which metrics
    <app_id>/<version>/<source>/...      one directory per trained model
    <app_id>/<version>/ranker/...        the learned ranker, when one was trained
    <app_id>/<version>/linucb.json       LinUCB's click evidence, when a training set was built
    <app_id>/<version>/checksums.json    the SHA-256 of every other file, written last
    <app_id>/CURRENT                     the version the service loads
    <app_id>/PROMOTIONS                  every promotion, one ``<time> <version>`` a line
    <app_id>/.lock                       held while the pointer changes or a version goes

A version is written in a temporary directory and renamed into place, so a reader never
sees half of one; ``CURRENT`` is replaced atomically, so promotion and rollback are one
rename and the previous versions stay on disk. A version's files are checked against its
checksums before it is promoted and when it is loaded (``damaged``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
CHECKSUMS = "checksums.json"
PROMOTIONS = "PROMOTIONS"
LOCK = ".lock"


class DamagedVersion(ValueError):
    """A model version's files differ from what was written; the message names them."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != CHECKSUMS
    )


def write_checksums(directory: Path) -> None:
    """Record the SHA-256 of every file under a version's directory."""
    sums = {name: _sha256(directory / name) for name in _files(directory)}
    (directory / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))


@dataclass(frozen=True)
class ModelEntry:
    """One trained model inside a version."""

    name: str  # the source name the service serves it under
    kind: str  # the model class, as recorded by the model
    params: Mapping[str, Any]
    metrics: Mapping[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0


@dataclass(frozen=True)
class VersionManifest:
    """What a model version holds."""

    version: str
    app_id: str
    created_at: datetime
    snapshot_version: str | None
    models: tuple[ModelEntry, ...]
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def blocked_by(self) -> dict[str, str]:
        """The promotion gates this version failed, by name, with why (empty when every
        gate passed, or for a version trained before the gates were recorded)."""
        verdict = self.extra.get("promotion")
        if not isinstance(verdict, Mapping):
            return {}
        return {
            str(g.get("name")): str(g.get("detail", ""))
            for g in verdict.get("gates", [])
            if isinstance(g, Mapping) and not g.get("passed")
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "version": self.version,
            "app_id": self.app_id,
            "created_at": self.created_at.isoformat(),
            "snapshot_version": self.snapshot_version,
            "models": [
                {
                    "name": m.name,
                    "kind": m.kind,
                    "params": dict(m.params),
                    "metrics": dict(m.metrics),
                    "fit_seconds": m.fit_seconds,
                }
                for m in self.models
            ],
            "notes": list(self.notes),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionManifest:
        """Read what :meth:`as_dict` wrote."""
        return cls(
            version=str(data["version"]),
            app_id=str(data["app_id"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            snapshot_version=data.get("snapshot_version"),
            models=tuple(
                ModelEntry(
                    name=m["name"],
                    kind=m["kind"],
                    params=m.get("params", {}),
                    metrics=m.get("metrics", {}),
                    fit_seconds=float(m.get("fit_seconds", 0.0)),
                )
                for m in data.get("models", [])
            ),
            notes=tuple(data.get("notes", [])),
            extra=data.get("extra", {}),
        )


class ModelRegistry:
    """Versioned model directories under ``root``, one sub-tree per app."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _app(self, app_id: str) -> Path:
        return self.root / app_id

    def path(self, app_id: str, version: str) -> Path:
        """Where a version lives."""
        return self._app(app_id) / version

    @contextmanager
    def writing(self, app_id: str, version: str) -> Iterator[Path]:
        """A fresh directory to write a version into; moved into place when the block ends.

        Nothing is left behind when the block raises. The manifest must be written with
        :meth:`write_manifest` inside the block: a version without one is not listed.
        """
        app_dir = self._app(app_id)
        app_dir.mkdir(parents=True, exist_ok=True)
        if self.path(app_id, version).exists():
            raise FileExistsError(f"model version {version} of app {app_id} already exists")
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=app_dir))
        try:
            yield staging
            write_checksums(staging)
            staging.rename(self.path(app_id, version))
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def write_manifest(directory: Path, manifest: VersionManifest) -> None:
        """Write a version's manifest into the directory being written."""
        (directory / MANIFEST).write_text(json.dumps(manifest.as_dict(), indent=2))

    def manifest(self, app_id: str, version: str) -> VersionManifest:
        """A version's manifest.

        Raises:
            FileNotFoundError: no such version.
        """
        text = (self.path(app_id, version) / MANIFEST).read_text()
        return VersionManifest.from_dict(json.loads(text))

    def damaged(self, app_id: str, version: str) -> dict[str, str]:
        """The files of a version that are not as written: path -> ``missing`` or
        ``changed``. Empty when the version is whole, or when it was written before
        checksums were kept (nothing to check against)."""
        root = self.path(app_id, version)
        try:
            sums: dict[str, str] = json.loads((root / CHECKSUMS).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {CHECKSUMS: "changed"}
        out: dict[str, str] = {}
        for name, expected in sums.items():
            path = root / name
            if not path.is_file():
                out[name] = "missing"
            elif _sha256(path) != expected:
                out[name] = "changed"
        return out

    def versions(self, app_id: str) -> list[str]:
        """Finished versions of the app, oldest first.

        A version's name starts with its time to the second; two made in the same second
        differ only by a random suffix, so they are ordered by when their manifests were
        written (then by name).
        """
        app_dir = self._app(app_id)
        if not app_dir.is_dir():
            return []
        finished: list[tuple[str, int, str]] = []
        for path in app_dir.iterdir():
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                written = (path / MANIFEST).stat().st_mtime_ns
            except FileNotFoundError:  # unfinished, or removed since it was listed
                continue
            finished.append((path.name.split("-", 1)[0], written, path.name))
        return [name for _, _, name in sorted(finished)]

    def apps(self) -> list[str]:
        """Apps with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def current(self, app_id: str) -> str | None:
        """The version the service should serve, or None before the first promotion."""
        try:
            version = (self._app(app_id) / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    @contextmanager
    def locked(self, app_id: str) -> Iterator[None]:
        """Hold the app's registry lock (``flock``, across processes): promotion and
        ``recloop gc`` take it, so a version cannot be promoted while it is being removed."""
        app_dir = self._app(app_id)
        app_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(app_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def promotions(self, app_id: str) -> list[str]:
        """The versions promoted so far, oldest first (repeats kept); empty for a registry
        whose promotions predate the record."""
        try:
            lines = (self._app(app_id) / PROMOTIONS).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split()[-1] for line in lines if line.strip()]

    def previous(self, app_id: str) -> str | None:
        """The version served before the current one (what a rollback returns to): the
        last promotion of another version, else the newest version older than the current."""
        current = self.current(app_id)
        for version in reversed(self.promotions(app_id)):
            if version != current:
                return version
        older = [v for v in self.versions(app_id) if current is not None and v < current]
        return older[-1] if older else None

    def promote(self, app_id: str, version: str) -> None:
        """Make ``version`` the one served; running services pick it up on their next check.

        Raises:
            FileNotFoundError: no such finished version.
            DamagedVersion: the version's files differ from their checksums.
        """
        with self.locked(app_id):
            if version not in self.versions(app_id):
                raise FileNotFoundError(f"no finished model version {version} for app {app_id}")
            damaged = self.damaged(app_id, version)
            if damaged:
                listed = ", ".join(f"{name} ({state})" for name, state in sorted(damaged.items()))
                raise DamagedVersion(
                    f"model version {version} of app {app_id} is damaged: {listed}; not promoted"
                )
            app_dir = self._app(app_id)
            # Recorded before the pointer moves: a crash between the two leaves a record of
            # a promotion that did not happen, which only keeps a version longer.
            with (app_dir / PROMOTIONS).open("a") as log:
                log.write(f"{datetime.now(UTC).isoformat()} {version}\n")
            fd, tmp = tempfile.mkstemp(prefix=".current-", dir=app_dir)
            with os.fdopen(fd, "w") as handle:
                handle.write(version + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, app_dir / CURRENT)

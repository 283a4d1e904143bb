"""``recloop purge``: deleted users removed from the files the store's purge cannot reach.

``DELETE /api/users/{id}`` purges the store and, through the audit log, what every serving
process holds. Snapshots, training sets and saved model versions were written before and
still hold the user: this job rewrites them without the users the audit log says were
deleted. A Parquet file with a ``user_id`` column loses those users' rows (by ``app_id``
when the file has one, else by the app of the snapshot it came from; when that cannot be
told, the id is removed whatever the app). A model version's models that keep something
per user (``KnowsUsers``) are loaded, told to forget, saved in place, and the version's
checksums written again; a version already damaged is left alone and reported.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recloop.registry.artifacts import ModelRegistry, write_checksums
from recloop.retrieval.models import KnowsUsers
from recloop.retrieval.registry import model_class
from recloop.store import USER_DELETE, Audit

_PAGE = 10_000
_MANIFEST = "manifest.json"


@dataclass
class PurgeReport:
    """What a purge removed, and what it could not touch."""

    users: int = 0
    files_rewritten: list[str] = field(default_factory=list)
    rows_removed: int = 0
    models_rewritten: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def deleted_users(audit: Audit) -> dict[str, set[str]]:
    """Every user the audit log says was deleted, per app."""
    out: dict[str, set[str]] = {}
    after = 0
    while records := audit.since(after, _PAGE, USER_DELETE):
        for record in records:
            out.setdefault(record.app_id, set()).add(record.subject)
        after = records[-1].seq
    return out


def purge(data_dir: Path, registry: ModelRegistry, deleted: Mapping[str, set[str]]) -> PurgeReport:
    """Rewrite snapshots, training sets and model versions under ``data_dir`` and
    ``registry`` without the ``deleted`` users (app -> user ids)."""
    report = PurgeReport(users=sum(len(users) for users in deleted.values()))
    if not report.users:
        return report
    for folder in ("snapshots", "datasets"):
        root = data_dir / folder
        for path in sorted(root.rglob("*.parquet")) if root.is_dir() else []:
            removed = _purge_file(path, deleted, _app_of(path, data_dir))
            if removed:
                report.files_rewritten.append(str(path.relative_to(data_dir)))
                report.rows_removed += removed
    for app_id, users in deleted.items():
        for version in registry.versions(app_id):
            _purge_version(registry, app_id, version, users, report)
    return report


def _app_of(path: Path, data_dir: Path) -> str | None:
    """The app of the snapshot a file is in, or that a training set was built from."""
    for parent in path.parents:
        if parent.parent == data_dir / "snapshots":
            return _manifest_app(parent)
        if parent.parent == data_dir / "datasets":
            # A training set's folder is named ``<snapshot version>-<config hash>``.
            return _manifest_app(data_dir / "snapshots" / parent.name.rsplit("-", 1)[0])
    return None


def _manifest_app(snapshot: Path) -> str | None:
    try:
        return str(json.loads((snapshot / _MANIFEST).read_text())["app_id"])
    except (OSError, ValueError, KeyError):
        return None


def _purge_file(path: Path, deleted: Mapping[str, set[str]], app_id: str | None) -> int:
    """Rewrite one Parquet file without the deleted users' rows; how many went."""
    schema = pq.read_schema(path)
    if "user_id" not in schema.names:
        return 0
    table = pq.read_table(path)
    users = table.column("user_id")
    if "app_id" in schema.names:
        drop = pa.array([False] * table.num_rows)
        for app, gone in deleted.items():
            drop = pc.or_(
                drop,
                pc.and_(
                    pc.equal(table.column("app_id"), app), pc.is_in(users, pa.array(list(gone)))
                ),
            )
    else:
        gone = deleted.get(app_id, set()) if app_id else set().union(*deleted.values())
        drop = pc.is_in(users, pa.array(list(gone), pa.string()))
    removed = int(pc.sum(drop).as_py() or 0)
    if removed:
        kept = table.filter(pc.invert(pc.fill_null(drop, False)))
        staging = path.with_name(f".{path.name}.purging")
        pq.write_table(kept, staging)
        os.replace(staging, path)
    return removed


def _purge_version(
    registry: ModelRegistry, app_id: str, version: str, users: set[str], report: PurgeReport
) -> None:
    if registry.damaged(app_id, version):
        report.skipped.append(f"{app_id}/{version}: damaged (not rewritten)")
        return
    root = registry.path(app_id, version)
    changed = False
    for entry in registry.manifest(app_id, version).models:
        cls = model_class(entry.kind)
        if not issubclass(cls, KnowsUsers):
            continue
        model = cls.load(root / entry.name)
        assert isinstance(model, KnowsUsers)
        if not model.forget_users(users):
            continue
        staging = root / f".{entry.name}.purging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        model.save(staging)
        old = root / f".{entry.name}.old"
        os.replace(root / entry.name, old)
        os.replace(staging, root / entry.name)
        shutil.rmtree(old)
        report.models_rewritten.append(f"{app_id}/{version}/{entry.name}")
        changed = True
    if changed:
        write_checksums(root)


def run_purge(
    audit: Audit, data_dir: Path, registry: ModelRegistry, actor: str, now: datetime
) -> PurgeReport:
    """``purge`` of every user the audit log says was deleted, recorded in the audit log
    (``purge.run``, per app) when it removed anything."""
    deleted = deleted_users(audit)
    report = purge(data_dir, registry, deleted)
    if report.rows_removed or report.models_rewritten:
        for app_id in deleted:
            audit.record(
                app_id,
                actor,
                "purge.run",
                "files",
                now,
                {
                    "files": len(report.files_rewritten),
                    "rows": report.rows_removed,
                    "models": len(report.models_rewritten),
                },
            )
    return report

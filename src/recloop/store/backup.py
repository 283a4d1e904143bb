"""Backup and restore of the embedded store: a consistent copy while the service writes.

SQLite's online backup copies the database page by page and starts again when a writer
changes a page it copied, so the copy is one transaction-consistent state of the store,
taken without stopping the service. Model versions are immutable directories, copied as
files beside it (with their pointer to the served version).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from recloop.errors import ConfigError

DATABASE = "recloop.db"
MODELS = "models"


def backup(data_dir: Path, models: Path, target: Path) -> dict[str, int]:
    """Write ``target/recloop.db`` (online backup) and ``target/models``; counts of pages
    and model files copied.

    Raises:
        ConfigError: no embedded store in ``data_dir``, or ``target`` is not empty.
    """
    source = data_dir / DATABASE
    if not source.is_file():
        raise ConfigError(f"data_dir: no embedded store at {source}")
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"target: {target} is not empty")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = target / DATABASE
    os.close(os.open(copy, os.O_CREAT | os.O_WRONLY, 0o600))
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst, pages=4096)
        pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
    dst.close()
    files = 0
    if models.is_dir():
        shutil.copytree(models, target / MODELS)
        files = sum(1 for p in (target / MODELS).rglob("*") if p.is_file())
    return {"pages": pages, "model_files": files}


def restore(source: Path, data_dir: Path, models: Path) -> None:
    """Put a backup in place of an empty data directory's store and models.

    Raises:
        ConfigError: ``source`` is not a backup, fails SQLite's integrity check, or the data
            directory already has a store (restore into a fresh one; stop the service first).
    """
    database = source / DATABASE
    if not database.is_file():
        raise ConfigError(f"source: {source} holds no {DATABASE}")
    with sqlite3.connect(database) as check:
        verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    check.close()
    if verdict != "ok":
        raise ConfigError(f"source: {database} fails SQLite's integrity check ({verdict})")
    if (data_dir / DATABASE).exists():
        raise ConfigError(
            f"data_dir: {data_dir} already has a store; restore into an empty data directory"
        )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = data_dir / f".{DATABASE}.restoring"
    shutil.copyfile(database, staging)
    staging.chmod(0o600)
    os.replace(staging, data_dir / DATABASE)
    if (source / MODELS).is_dir() and not models.exists():
        shutil.copytree(source / MODELS, models)

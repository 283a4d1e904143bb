"""Durable files: what is written is on disk, names included, before it is published."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk.

    A directory is flushed so that the names created or renamed in it survive a power cut;
    on platforms that cannot open a directory this does nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flush every file and directory under ``directory``, and ``directory`` itself, deepest
    first."""
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        fsync_path(path)
    fsync_path(directory)

"""Durable files: flushing files and directories, and a missing file refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.store.durable import fsync_path, fsync_tree

pytestmark = pytest.mark.unit


def test_files_and_directories_are_flushed_and_a_missing_file_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "data.bin").write_bytes(b"x")
    (tmp_path / "a" / "top.txt").write_text("y")

    fsync_tree(tmp_path / "a")
    fsync_path(tmp_path / "a" / "top.txt")
    fsync_path(tmp_path)

    with pytest.raises(FileNotFoundError):
        fsync_path(tmp_path / "missing.txt")

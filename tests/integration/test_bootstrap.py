"""The embedded store is private from its first byte: the data directory and the database
files are readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from recloop.store.bootstrap import ensure_dev_key, prepare_store
from tests.factories import settings_with

pytestmark = pytest.mark.integration


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_embedded_store_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    store = prepare_store(settings_with(data_dir))
    try:
        ensure_dev_key(store, data_dir)  # a write: the WAL and its index exist after it
        files = [data_dir / "recloop.db", data_dir / "dev-key"]
        files += list(data_dir.glob("recloop.db-*"))
        modes = {path.name: oct(_mode(path)) for path in files}
    finally:
        store.close()

    assert _mode(data_dir) == 0o700
    assert len(files) == 4, modes  # the WAL and its index included
    assert set(modes.values()) == {"0o600"}, modes

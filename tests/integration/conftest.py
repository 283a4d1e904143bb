"""Integration fixtures: an empty data directory for the command line, a store with two apps."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from recloop import cli
from recloop.cli import common
from recloop.store import Store
from tests.factories import APP, OTHER_APP, T0


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory for ``recloop`` commands run in ``tmp_path``.

    No recloop.toml or store URL from the outside is picked up, and the consoles are wide
    and fixed so that tables and messages are not wrapped by the terminal's width.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECLOOP_CONFIG", raising=False)
    monkeypatch.delenv("RECLOOP_STORE_URL", raising=False)
    monkeypatch.setenv("RECLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(common.console, "width", 240)
    monkeypatch.setattr(common.err_console, "width", 240)
    return tmp_path / "data"


def run_cli(*args: str) -> Result:
    """Run ``recloop ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli.app, list(args))


@pytest.fixture
def apps(store: Store) -> Store:
    """The store on each backend, with the apps ``APP`` and ``OTHER_APP`` created."""
    store.tenancy.create_app(APP, "App one", T0)
    store.tenancy.create_app(OTHER_APP, "App two", T0)
    return store

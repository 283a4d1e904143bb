"""Shared fixtures: stores on SQLite and PostgreSQL, Redis, settings, a running app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.store import Store, open_store
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.store.migrate import upgrade
from tests.factories import settings_with, surfaces_without_home_exploration
from tests.servers import create_database, or_skip, postgres_cluster, redis_server


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server for the session: RECLOOP_TEST_POSTGRES_URL, or a throwaway one."""
    given = os.environ.get("RECLOOP_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    with or_skip(postgres_cluster()) as (url, _):
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server for the session: RECLOOP_TEST_REDIS_URL, or a throwaway one."""
    given = os.environ.get("RECLOOP_TEST_REDIS_URL")
    if given:
        yield given
        return
    with or_skip(redis_server()) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """An empty database of its own for one test."""
    return create_database(postgres_admin_url, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store, once per backend: the store suite runs against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recloop.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    opened = open_store(store_url)
    upgrade(opened.engine)
    yield opened
    opened.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded settings in a temporary data directory, refreshing models quickly.

    Home's exploration is off, so that tests can pin down the ranked order itself;
    exploration has its own tests. A test module overrides this fixture with
    ``settings_with(tmp_path / "data", ...)`` for settings of its own.
    """
    return settings_with(tmp_path / "data", surfaces=surfaces_without_home_exploration())


@pytest.fixture
def dev_key(settings: Settings) -> str:
    """The development key of a fresh embedded store (all scopes)."""
    store = prepare_store(settings)
    key = ensure_dev_key(store, settings.data_dir)
    store.close()
    assert key is not None
    return key


@pytest.fixture
def client(settings: Settings, dev_key: str) -> Iterator[TestClient]:
    """The app in-process, authenticated with the development key."""
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {dev_key}"
        yield test_client

"""The service's PostgreSQL statements carry a server-side timeout; offline jobs' do not.

The server itself cancels a statement past ``serving.statement_timeout_ms`` (a lock wait, a
slow query), so what a request left running past its deadline does not hold a connection
for as long as the database likes, and the store reports it as unavailable (503), not as a
bug (500).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from recloop.config import Settings
from recloop.errors import StoreUnavailable
from recloop.store import Store, open_store
from recloop.store.bootstrap import prepare_store
from recloop.store.migrate import upgrade
from recloop.store.sql import create_sql_engine

pytestmark = pytest.mark.integration

TIMEOUT_MS = 300


@pytest.fixture
def pg_settings(postgres_url: str, tmp_path: Path) -> Settings:
    store = open_store(postgres_url)
    upgrade(store.engine)
    store.close()
    return Settings(
        data_dir=tmp_path, store_url=postgres_url, serving={"statement_timeout_ms": TIMEOUT_MS}
    )


@pytest.fixture
def stores(pg_settings: Settings) -> Iterator[tuple[Store, Store]]:
    """The store as ``recloop serve`` opens it, and as training and imports do."""
    serving, offline = prepare_store(pg_settings, serving=True), prepare_store(pg_settings)
    try:
        yield serving, offline
    finally:
        serving.close()
        offline.close()


def _show(store: Store, name: str) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(sa.text(f"SHOW {name}")).scalar_one())


def test_only_the_serving_store_has_the_statement_timeout(stores: tuple[Store, Store]) -> None:
    serving, offline = stores
    assert _show(serving, "statement_timeout") == f"{TIMEOUT_MS}ms"
    assert _show(offline, "statement_timeout") == "0"


def test_the_default_for_serving_is_thirty_seconds(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_url)
    upgrade(store.engine)
    store.close()
    served = prepare_store(Settings(data_dir=tmp_path, store_url=postgres_url), serving=True)
    try:
        assert _show(served, "statement_timeout") == "30s"
    finally:
        served.close()


def test_a_statement_past_the_timeout_is_cancelled_by_the_server(
    stores: tuple[Store, Store],
) -> None:
    serving, offline = stores
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError) as raised, serving.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_sleep(5)"))
    took = time.monotonic() - started
    assert isinstance(raised.value.orig, psycopg.errors.QueryCanceled), raised.value
    assert "statement timeout" in str(raised.value.orig)
    assert TIMEOUT_MS / 1000 <= took < 2.0, took
    # Offline work runs as long as it needs.
    with offline.engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_sleep({2 * TIMEOUT_MS / 1000})"))


def test_a_store_call_held_on_a_lock_is_unavailable_within_the_timeout(
    stores: tuple[Store, Store],
) -> None:
    serving, offline = stores
    with offline.engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            serving.catalog.get_item("default", "i1")
        took = time.monotonic() - started
        holder.rollback()
    assert raised.value.from_driver  # the API answers it 503 without the driver's text
    assert took < 2.0, took
    assert serving.catalog.get_item("default", "i1") is None  # and the store serves again


def test_the_timeout_joins_options_the_url_already_gives(postgres_url: str) -> None:
    url = f"{postgres_url}?options=-c%20application_name%3Drecloop-test"
    engine = create_sql_engine(url, statement_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "1234ms"
            assert conn.execute(sa.text("SHOW application_name")).scalar_one() == "recloop-test"
    finally:
        engine.dispose()


def test_sqlite_ignores_the_timeout(tmp_path: Path) -> None:
    engine = create_sql_engine(f"sqlite:///{tmp_path / 'x.db'}", statement_timeout_ms=10)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()

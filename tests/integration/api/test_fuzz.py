"""Schemathesis against the app's own OpenAPI document: no input may cause a server error."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.runtime.process import start_runtime
from recloop.store import open_store
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.store.migrate import upgrade
from tests.factories import settings_with
from tests.servers import create_database

pytestmark = pytest.mark.integration

# The document is read from an app that is never started (building it touches no store).
# schemathesis' lazy `from_fixture` loader does not run on this pytest, so the schema is
# loaded at import, and each case is sent to the running app of the fixture below.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("never-created"))).openapi()
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def prepared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, str]:
    """A migrated store per backend and its development key."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    if request.param == "sqlite":
        app_settings = settings_with(data_dir)
    else:
        # PostgreSQL refuses what SQLite keeps (NUL in text): the fuzz must reach both.
        admin: str = request.getfixturevalue("postgres_admin_url")
        url = create_database(admin, f"fuzz_{uuid.uuid4().hex[:12]}")
        migrated = open_store(url)
        upgrade(migrated.engine)
        migrated.close()
        data_dir.mkdir(parents=True)
        app_settings = settings_with(data_dir, store_url=url)
    store = prepare_store(app_settings)
    key = ensure_dev_key(store, data_dir)
    store.close()
    assert key is not None
    return app_settings, key


@pytest.fixture(scope="module")
def running(prepared: tuple[Settings, str]) -> Iterator[tuple[FastAPI, str]]:
    """One started app per store for every fuzzed operation, with its development key."""
    app_settings, key = prepared
    # The app is given the runtime, so its lifespan (started by schemathesis) only attaches
    # it; closing it stays with this fixture.
    runtime = start_runtime(app_settings)
    try:
        yield create_app(app_settings, runtime=runtime), key
    finally:
        runtime.close()


#: What a sequence leaves behind in the store (the apps and keys stay).
_STATE_TABLES = (
    "events",
    "recommendation_log",
    "shadow_log",
    "suppressions",
    "items",
    "users",
    "audit_log",
)


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("RECLOOP_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_server_error(case: Case, running: tuple[FastAPI, str]) -> None:
    app, key = running

    response = case.call(app=app, headers={"Authorization": f"Bearer {key}"})

    case.validate_response(response, checks=[not_a_server_error])


def test_sequences_of_calls_along_the_links_get_no_server_error(
    prepared: tuple[Settings, str], tmp_path: Path
) -> None:
    """Stateful: calls chained along the document's links (an item put, then read, then
    deleted; a user put, then deleted), with the ids the earlier responses returned. Each
    sequence starts from an empty store and a fresh process state, so that a sequence
    replays the same way."""
    base, key = prepared
    runs = iter(range(1_000_000))

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            app_settings = base.model_copy(
                update={
                    "model_dir": tmp_path / f"m{next(runs)}",
                    # No key-directory read in the background: a sequence's runtime is closed
                    # at its end, and a read still in flight would outlive its pool.
                    "serving": base.serving.model_copy(update={"revocation_check_s": 3600.0}),
                }
            )
            store = open_store(app_settings.resolved_store_url())
            with store.engine.begin() as conn:
                for table in _STATE_TABLES:
                    conn.exec_driver_sql(f"DELETE FROM {table}")
            self.runtime = start_runtime(app_settings, store)
            self.app = create_app(app_settings, runtime=self.runtime)

        def teardown(self) -> None:
            self.runtime.close()

        def call(self, case: Case, **kwargs: Any) -> Any:
            return case.call(app=self.app, headers={"Authorization": f"Bearer {key}"})

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Machine.run(
        settings=settings(
            max_examples=int(os.environ.get("RECLOOP_FUZZ_STATEFUL_EXAMPLES", "25")),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )

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
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, str]]:
    """One started app per store for every fuzzed operation, with its development key."""
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
    assert key is not None
    # The app is given the runtime, so its lifespan (started by schemathesis) only attaches
    # it; closing it stays with this fixture.
    runtime = start_runtime(app_settings, store)
    try:
        yield create_app(app_settings, runtime=runtime), key
    finally:
        runtime.close()


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
    running: tuple[FastAPI, str],
) -> None:
    """Stateful: calls chained along the document's links (an item put, then read, then
    deleted; a user put, then deleted), with the ids the earlier responses returned."""
    app, key = running

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Case, **kwargs: Any) -> Any:
            return case.call(app=app, headers={"Authorization": f"Bearer {key}"})

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Machine.run(
        settings=settings(
            max_examples=int(os.environ.get("RECLOOP_FUZZ_STATEFUL_EXAMPLES", "25")),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )

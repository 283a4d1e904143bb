"""Migrations and the schema module agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from recloop.errors import SchemaOutOfDate
from recloop.store import open_store
from recloop.store.migrate import (
    current_revision,
    downgrade,
    head_revision,
    require_current,
    upgrade,
)
from recloop.store.schema import metadata

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An engine on an empty database (no migrations run)."""
    store = open_store(store_url)
    yield store.engine
    store.close()


def schema_differences(engine: Engine, target: sa.MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, target))


def user_tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgraded_database_matches_the_schema_module(engine: Engine) -> None:
    upgrade(engine)
    assert schema_differences(engine) == []
    assert user_tables(engine) == set(metadata.tables)


def test_empty_database_differs_from_the_schema_module(engine: Engine) -> None:
    # The comparison itself must be able to see a difference.
    differences = schema_differences(engine)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == set(metadata.tables)


def test_comparison_detects_a_drifted_index_type_and_nullability(engine: Engine) -> None:
    # The check above is only worth something if a small drift would show up.
    upgrade(engine)
    drifted = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    sa.Index("ix_drift", drifted.tables["events"].c.surface)
    drifted.tables["items"].c.title.type = sa.Integer()
    drifted.tables["items"].c.locale.nullable = False
    found = schema_differences(engine, drifted)
    flat = [d[0] if isinstance(d, tuple) else d[0][0] for d in found]
    assert sorted(flat) == ["add_index", "modify_nullable", "modify_type"]


def test_downgrade_to_base_drops_every_table_and_upgrade_works_again(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    downgrade(engine, "base")
    assert user_tables(engine) == set()
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_require_current_refuses_an_empty_database(engine: Engine) -> None:
    with pytest.raises(SchemaOutOfDate, match="recloop db upgrade"):
        require_current(engine)


def test_require_current_passes_after_upgrade(engine: Engine) -> None:
    upgrade(engine)
    require_current(engine)


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []

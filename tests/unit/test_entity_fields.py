"""Each entity's fields, declared by hand in only a few places, must agree with the domain.

Rows, snapshot batches and ``*Public`` responses are built by field name, so a field the
domain gains but one of these declarations lacks would be dropped without an error.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from recloop.api.schemas import ItemPublic, UserPublic
from recloop.data.snapshots import (
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    RECOMMENDATION_LOG_SCHEMA,
    USERS_SCHEMA,
)
from recloop.domain import Event, Item, RecommendationRecord, ShadowRecord, User
from recloop.ingest.wire import ItemFields
from recloop.store import schema as t


def names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def columns(table: sa.Table) -> set[str]:
    return {c.name for c in table.columns}


@pytest.mark.parametrize(
    ("table", "entity", "beside"),
    [
        (t.items, Item, {"app_id"}),
        (t.users, User, {"app_id"}),
        (t.events, Event, {"seq"}),
        (t.recommendation_log, RecommendationRecord, set()),
        # The support of each shadow item is kept in the items' JSON.
        (t.shadow_log, ShadowRecord, {"support"}),
    ],
)
def test_a_table_has_a_column_for_each_field_of_its_entity(
    table: sa.Table, entity: type, beside: set[str]
) -> None:
    assert columns(table) ^ names(entity) == beside


@pytest.mark.parametrize(
    ("schema", "entity", "beside"),
    [
        (ITEMS_SCHEMA, Item, set()),
        (USERS_SCHEMA, User, set()),
        (EVENTS_SCHEMA, Event, {"seq"}),
        (RECOMMENDATION_LOG_SCHEMA, RecommendationRecord, set()),
    ],
)
def test_a_snapshot_table_has_a_column_for_each_field_of_its_entity(
    schema: pa.Schema, entity: type, beside: set[str]
) -> None:
    assert set(schema.names) ^ names(entity) == beside


@pytest.mark.parametrize(("model", "entity"), [(ItemPublic, Item), (UserPublic, User)])
def test_a_public_model_shows_every_field_of_its_entity(
    model: type[BaseModel], entity: type
) -> None:
    assert set(model.model_fields) == names(entity)


def test_a_client_writes_every_item_field_but_the_id_and_the_update_time() -> None:
    assert set(ItemFields.model_fields) == names(Item) - {"item_id", "updated_at"}

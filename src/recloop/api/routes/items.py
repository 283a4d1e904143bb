"""The catalog: ``PUT/GET/DELETE /api/items/{itemId}`` and ``POST /api/items``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response

from recloop.api.deadline import store_call
from recloop.api.deps import AdminCaller, IngestCaller, RuntimeDep, ServeCaller
from recloop.api.errors import problem_responses
from recloop.api.schemas import (
    ItemBatchIn,
    ItemIn,
    ItemPublic,
    ItemPut,
    ItemsUpserted,
    RejectedRecord,
)
from recloop.domain import Item
from recloop.errors import InvalidInput, NotFound, PayloadTooLarge
from recloop.ingest.wire import MAX_ID_LENGTH, NO_NUL, to_item, validate_records

router = APIRouter(tags=["catalog"])

MAX_BATCH_ITEMS = 1000
ItemIdPath = Annotated[str, Path(alias="itemId", min_length=1, max_length=MAX_ID_LENGTH), NO_NUL]
_ERRORS = problem_responses(401, 403, 422)


@router.put("/api/items/{itemId}", response_model=ItemPublic, responses=_ERRORS)
async def put_item(
    item_id: ItemIdPath, body: ItemPut, caller: IngestCaller, runtime: RuntimeDep
) -> ItemPublic:
    """Insert or replace an item (every field; absent fields take their defaults)."""
    if body.item_id is not None and body.item_id != item_id:
        raise InvalidInput("itemId", "must match the itemId in the path")
    catalog = runtime.store.catalog

    def write() -> Item | None:
        catalog.upsert_items(caller.app_id, [to_item(body, item_id)], datetime.now(UTC))
        runtime.catalog_changed()
        return catalog.get_item(caller.app_id, item_id)

    stored = await store_call(runtime.settings.serving.store_timeout_s, write)
    assert stored is not None
    return ItemPublic.model_validate(stored)


@router.post(
    "/api/items",
    response_model=ItemsUpserted,
    responses=_ERRORS | problem_responses(413),
)
async def post_items(body: ItemBatchIn, caller: IngestCaller, runtime: RuntimeDep) -> ItemsUpserted:
    """Insert or replace up to 1000 items; each is validated alone, bad ones listed by index."""
    if len(body.items) > MAX_BATCH_ITEMS:
        raise PayloadTooLarge("items", f"at most {MAX_BATCH_ITEMS} items per request")
    good, rejected = validate_records(ItemIn, body.items)

    def write() -> None:
        runtime.store.catalog.upsert_items(
            caller.app_id, [to_item(item, item.item_id) for item in good], datetime.now(UTC)
        )
        if good:
            runtime.catalog_changed()

    await store_call(runtime.settings.serving.store_timeout_s, write)
    return ItemsUpserted(
        upserted=len(good),
        rejected=[RejectedRecord(index=i, field=f, reason=r) for i, f, r in rejected],
    )


@router.get(
    "/api/items/{itemId}", response_model=ItemPublic, responses=_ERRORS | problem_responses(404)
)
async def get_item(item_id: ItemIdPath, caller: ServeCaller, runtime: RuntimeDep) -> ItemPublic:
    """One item, whatever its status."""
    item = await store_call(
        runtime.settings.serving.store_timeout_s,
        runtime.store.catalog.get_item,
        caller.app_id,
        item_id,
    )
    if item is None:
        raise NotFound("itemId", f"no item {item_id!r}")
    return ItemPublic.model_validate(item)


@router.delete("/api/items/{itemId}", status_code=204, responses=_ERRORS | problem_responses(404))
async def delete_item(item_id: ItemIdPath, caller: AdminCaller, runtime: RuntimeDep) -> Response:
    """Delete an item; it is never served again. Its events stay (they are history)."""
    timeout_s = runtime.settings.serving.store_timeout_s
    if not await store_call(timeout_s, runtime.store.catalog.delete_item, caller.app_id, item_id):
        raise NotFound("itemId", f"no item {item_id!r}")
    await store_call(
        timeout_s,
        runtime.store.audit.record,
        caller.app_id,
        caller.key_id,
        "item.delete",
        item_id,
        datetime.now(UTC),
    )
    await store_call(timeout_s, runtime.catalog_changed)
    return Response(status_code=204)

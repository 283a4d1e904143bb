"""``POST /api/events``: one event or ``{events: [...]}``; durable before the 202."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recloop.api.deps import IngestCaller, RuntimeDep
from recloop.api.errors import problem_responses
from recloop.api.schemas import EventBatchIn, EventIn, EventsAccepted, RejectedRecord
from recloop.errors import InvalidInput, PayloadTooLarge

router = APIRouter(tags=["events"])


def _events_of(body: Any, max_batch: int) -> list[Any]:
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
        if not isinstance(events, list):
            raise InvalidInput("events", "must be a list of events")
        if len(events) > max_batch:
            raise PayloadTooLarge("events", f"at most {max_batch} events per request")
        if not events:
            raise InvalidInput("events", "must hold at least one event")
        return events
    if isinstance(body, dict):
        return [body]
    raise InvalidInput("body", 'must be one event object or {"events": [...]}')


@router.post(
    "/api/events",
    status_code=202,
    response_model=EventsAccepted,
    responses=problem_responses(401, 403, 409, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EventIn"},
                            {"$ref": "#/components/schemas/EventBatchIn"},
                        ]
                    }
                }
            },
        }
    },
)
async def post_events(request: Request, caller: IngestCaller, runtime: RuntimeDep) -> Any:
    """Store events. Each is validated alone: good ones are stored, bad ones listed by index.

    An accepted event is on disk before this answers. A repeated ``eventId`` is acknowledged
    as a duplicate and stored once; send your own ``eventId`` to make retries safe. An id sent
    again with a different payload is listed in ``conflicts`` (409 when nothing else of the
    request was stored): the stored event is kept.
    """
    now = runtime.clock()
    # Bounded by the app's body guard (ingest.max_batch_body_bytes), read after the key.
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON: {exc}") from exc
    events = _events_of(body, runtime.settings.ingest.max_batch_events)
    result = await runtime.ingestor.ingest_async(caller.app_id, events, now)
    metrics = runtime.metrics.events
    app = caller.app_id
    metrics.labels(app, "accepted").inc(result.accepted)
    metrics.labels(app, "duplicate").inc(result.duplicates)
    metrics.labels(app, "rejected").inc(len(result.rejected))
    metrics.labels(app, "conflict").inc(len(result.conflicts))
    payload = EventsAccepted(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            RejectedRecord(index=r.index, field=r.field, reason=r.reason) for r in result.rejected
        ],
        conflicts=[
            RejectedRecord(index=r.index, field=r.field, reason=r.reason) for r in result.conflicts
        ],
    ).model_dump(by_alias=True)
    if result.accepted + result.duplicates == 0 and (result.rejected or result.conflicts):
        # Nothing of the request was (or had been) stored: an error status, so clients see it.
        is_batch = isinstance(body, dict) and "events" in body
        problems = [*result.rejected, *result.conflicts]
        errors = [
            {"field": f"events[{r.index}].{r.field}" if is_batch else r.field, "rule": r.reason}
            for r in problems
        ]
        detail = f"{errors[0]['field']}: {errors[0]['rule']}"
        status = 422 if result.rejected else 409
        return JSONResponse({"detail": detail, "errors": errors, **payload}, status_code=status)
    return payload


#: Body models documented in OpenAPI though the route parses the body itself.
BODY_MODELS = (EventIn, EventBatchIn)

"""``GET /api/recommendations`` and ``POST /api/recommendations/feedback``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from recloop.api.deadline import executor_call, store_call
from recloop.api.deps import FeedbackCaller, RuntimeDep, ServeCaller
from recloop.api.errors import problem_responses
from recloop.api.request_log import note
from recloop.api.schemas import (
    FeedbackAccepted,
    FeedbackIn,
    RecommendationsPublic,
    RecommendedItem,
    StagePublic,
    TracedItemPublic,
)
from recloop.domain import Event, EventType
from recloop.errors import InvalidInput, NotFound
from recloop.ingest.wire import MAX_ID_LENGTH, NO_NUL, NO_NUL_IN
from recloop.serving.recommender import RecommendationRequest

router = APIRouter(tags=["recommendations"])

_ERRORS = problem_responses(401, 403, 422)
MAX_EXCLUDED = 1000
OptionalId = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH), NO_NUL]


@router.get(
    "/api/recommendations",
    response_model=RecommendationsPublic,
    responses=_ERRORS | problem_responses(404),
)
async def get_recommendations(
    caller: ServeCaller,
    runtime: RuntimeDep,
    user_id: Annotated[str, Query(alias="userId", min_length=1, max_length=MAX_ID_LENGTH), NO_NUL],
    surface: Annotated[str, Query(min_length=1, max_length=64), NO_NUL] = "home",
    limit: Annotated[int | None, Query(ge=1, le=500)] = None,
    item_id: Annotated[
        str | None,
        Query(alias="itemId", min_length=1, max_length=MAX_ID_LENGTH, description="Anchor item."),
        NO_NUL,
    ] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=64), NO_NUL] = None,
    exclude_ids: Annotated[
        list[str] | None,
        Query(
            alias="excludeIds", description="Item ids never to return; repeat or comma-separate."
        ),
        NO_NUL_IN,
    ] = None,
    session_id: Annotated[
        str | None, Query(alias="sessionId", max_length=MAX_ID_LENGTH), NO_NUL
    ] = None,
    device: Annotated[str | None, Query(max_length=64), NO_NUL] = None,
    locale: Annotated[str | None, Query(max_length=64), NO_NUL] = None,
    debug: Annotated[
        bool,
        Query(
            description="Include each stage's time and outcome, the items each source "
            "recalled and each filter, gate and rerank rule removed or moved."
        ),
    ] = False,
) -> RecommendationsPublic:
    """Recommend items for a user on a surface (home, trending, similar with ``itemId``).

    Never returned: items the user consumed or suppressed, removed or blocked items, and
    ``excludeIds``. Every list is logged under its ``requestId``; events that carry it are
    joined to the impression without the client logging impressions.
    """
    serving = runtime.settings.serving
    if limit is None:
        limit = serving.default_limit
    if limit > serving.max_limit:
        raise InvalidInput("limit", f"must be at most {serving.max_limit}")
    note(app=caller.app_id, user=user_id, surface=surface)
    excluded = frozenset(part for value in exclude_ids or () for part in value.split(",") if part)
    if len(excluded) > MAX_EXCLUDED:
        raise InvalidInput("excludeIds", f"at most {MAX_EXCLUDED} ids")
    # The pipeline runs on the runtime's few request threads: more threads than cores only
    # fight over the interpreter lock, and every request gets slower.
    result = await executor_call(
        runtime.settings.serving.store_timeout_s,
        runtime.request_executor,
        runtime.recommender.recommend,
        caller.app_id,
        RecommendationRequest(
            user_id=user_id,
            surface=surface,
            limit=limit,
            item_id=item_id,
            category=category,
            exclude_ids=excluded,
            session_id=session_id,
            device=device,
            locale=locale,
            explain=debug,
        ),
    )
    note(
        request_id=result.request_id,
        experiment=result.experiment,
        variant=result.variant,
        model_version=result.model_version,
        fallback=result.fallback,
        items=len(result.items),
    )
    return RecommendationsPublic(
        request_id=result.request_id,
        items=[
            RecommendedItem(
                item_id=i.item_id,
                score=i.score,
                reason=i.reason,
                source=i.source,
                sources=list(i.sources) if debug else None,
                source_scores=dict(i.source_scores) if debug else None,
                heads=dict(i.heads) if debug else None,
            )
            for i in result.items
        ],
        model_version=result.model_version,
        experiment=result.experiment,
        variant=result.variant,
        fallback=result.fallback,
        cold=result.cold,
        stages=[
            StagePublic(
                stage=t.stage,
                elapsed_ms=t.elapsed_ms,
                outcome=t.outcome,
                detail=t.detail,
                items=[
                    TracedItemPublic(
                        item_id=i.item_id,
                        change=i.change,
                        score=i.score,
                        before=i.before,
                        after=i.after,
                    )
                    for i in t.items
                ],
            )
            for t in result.trace
        ]
        if debug
        else None,
    )


@router.post(
    "/api/recommendations/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    responses=_ERRORS | problem_responses(404, 503),
)
async def post_feedback(
    body: FeedbackIn, caller: FeedbackCaller, runtime: RuntimeDep
) -> FeedbackAccepted:
    """Suppress an item for a user (not_interested, hide, report), from their next request.

    Stored as an event of the same type too, so that training sees it, through the
    ingestor like every other event (which also drops the user's cached lists).
    """
    item = await store_call(
        runtime.settings.serving.store_timeout_s,
        runtime.store.catalog.get_item,
        caller.app_id,
        body.item_id,
    )
    if item is None:
        raise NotFound("itemId", f"no item {body.item_id!r}")
    now = runtime.clock()
    event = Event(
        app_id=caller.app_id,
        event_id=uuid.uuid4().hex,
        user_id=body.user_id,
        event_type=EventType(body.feedback.value),
        event_ts=now,
        server_ts=now,
        item_id=body.item_id,
        surface=body.surface,
        request_id=body.request_id,
    )
    await runtime.ingestor.store_async(caller.app_id, [event])
    return FeedbackAccepted(suppressed=True, event_id=event.event_id)

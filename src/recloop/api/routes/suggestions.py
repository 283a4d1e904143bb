"""``GET /api/suggestions``, and the admin blocklist: ``GET/PUT
/api/admin/suggestions/blocklist``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from recloop.api.deadline import executor_call
from recloop.api.deps import AdminCaller, RuntimeDep, ServeCaller
from recloop.api.errors import problem_responses
from recloop.api.request_log import note
from recloop.api.schemas import (
    BlocklistIn,
    BlocklistPublic,
    FilteredPublic,
    StagePublic,
    SuggestionPublic,
    SuggestionsPublic,
)
from recloop.errors import StoreUnavailable
from recloop.ingest.wire import MAX_ID_LENGTH, NO_NUL
from recloop.runtime.process import Runtime
from recloop.serving.suggester import Suggester, SuggestionRequest
from recloop.suggest.blocklist import Blocklist, validate_blocklist
from recloop.suggest.normalize import MAX_INPUT_CHARS

router = APIRouter(tags=["suggestions"])

_ERRORS = problem_responses(401, 403, 422)


def _suggester(runtime: Runtime) -> Suggester:
    if runtime.suggester is None:
        raise StoreUnavailable("suggestions: this process serves no suggestion surface")
    return runtime.suggester


@router.get("/api/suggestions", response_model=SuggestionsPublic, responses=_ERRORS)
async def get_suggestions(
    caller: ServeCaller,
    runtime: RuntimeDep,
    user_id: Annotated[str, Query(alias="userId", min_length=1, max_length=MAX_ID_LENGTH), NO_NUL],
    prefix: Annotated[
        str | None,
        Query(
            max_length=MAX_INPUT_CHARS,
            description="What the user typed; empty or absent: suggested searches before "
            "typing (their recent searches, related, trending, popular). At most 200 "
            "characters after normalization.",
        ),
    ] = None,
    locale: Annotated[str | None, Query(max_length=64), NO_NUL] = None,
    session_id: Annotated[
        str | None, Query(alias="sessionId", max_length=MAX_ID_LENGTH), NO_NUL
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=50)] = None,
    surface: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="suggest (autocomplete and zero-prefix), related (with itemId: people "
            "also searched for) or feed (suggested searches for a home feed).",
        ),
    ] = "suggest",
    item_id: Annotated[
        str | None,
        Query(alias="itemId", min_length=1, max_length=MAX_ID_LENGTH, description="Anchor item."),
        NO_NUL,
    ] = None,
    debug: Annotated[
        bool, Query(description="Include each stage, the features and what each rule filtered.")
    ] = False,
) -> SuggestionsPublic:
    """Suggest queries for a user: completions of ``prefix``, or searches before typing.

    Never suggested: what the safety policy and the app's blocklist refuse (blocked terms
    and patterns, sensitive topics, personal data), a query fewer than ``min_users``
    people searched (unless the catalog names it), one whose searches never found anything.
    Every list is logged under its ``requestId``; a search event that carries it and the
    suggestion's ``position`` is joined to the impression.
    """
    note(app=caller.app_id, user=user_id, surface=surface)
    suggester = _suggester(runtime)
    request = SuggestionRequest(
        user_id=user_id,
        prefix=prefix,
        locale=locale,
        session_id=session_id,
        limit=limit if limit is not None else runtime.settings.suggestions.default_limit,
        surface=surface,
        item_id=item_id,
        explain=debug,
    )
    # On the runtime's request threads, like recommendations: more threads than cores only
    # fight over the interpreter lock.
    result = await executor_call(
        runtime.settings.serving.store_timeout_s,
        runtime.request_executor,
        suggester.suggest,
        caller.app_id,
        request,
    )
    note(
        request_id=result.request_id,
        experiment=result.experiment,
        variant=result.variant,
        model_version=result.model_version,
        fallback=result.fallback,
        items=len(result.suggestions),
    )
    return SuggestionsPublic(
        request_id=result.request_id,
        suggestions=[
            SuggestionPublic(
                query=s.query,
                score=s.score,
                reason=s.reason,
                source=s.source,
                sources=list(s.sources) if debug else None,
                features=dict(s.features) if debug else None,
                propensity=s.propensity if debug else None,
            )
            for s in result.suggestions
        ],
        model_version=result.model_version,
        experiment=result.experiment,
        variant=result.variant,
        fallback=result.fallback,
        cold=result.cold,
        prefix=result.prefix if debug else None,
        stages=[
            StagePublic(stage=t.stage, elapsed_ms=t.elapsed_ms, outcome=t.outcome, detail=t.detail)
            for t in result.trace
        ]
        if debug
        else None,
        filtered=[
            FilteredPublic(query=f.query, rule=f.rule, detail=f.detail, source=f.source)
            for f in result.filtered
        ]
        if debug
        else None,
    )


def _public(blocklist: Blocklist) -> BlocklistPublic:
    return BlocklistPublic(
        terms=list(blocklist.terms),
        patterns=list(blocklist.patterns),
        updated_at=blocklist.updated_at,
    )


@router.get(
    "/api/admin/suggestions/blocklist",
    response_model=BlocklistPublic,
    responses=problem_responses(401, 403, 503),
)
async def get_blocklist(caller: AdminCaller, runtime: RuntimeDep) -> BlocklistPublic:
    """The app's suggestion blocklist: terms and patterns added to the configured policy."""
    safety = _suggester(runtime).safety
    try:
        blocklist = await run_in_threadpool(safety.blocklist, caller.app_id)
    except ValueError as exc:
        raise StoreUnavailable(str(exc)) from exc
    return _public(blocklist)


@router.put(
    "/api/admin/suggestions/blocklist",
    response_model=BlocklistPublic,
    responses=_ERRORS | problem_responses(503),
)
async def put_blocklist(
    body: BlocklistIn, caller: AdminCaller, runtime: RuntimeDep
) -> BlocklistPublic:
    """Replace the app's suggestion blocklist.

    Terms are matched like the configured blocked terms (whole words, after normalization,
    look-alike and leetspeak folding); patterns are checked for backtracking shapes and
    speed, and a refused one is a 422 naming it and the rule. The list applies to this
    replica's next request and to the others within ``suggestions.blocklist_refresh_s``.
    """
    safety = _suggester(runtime).safety
    blocklist = await run_in_threadpool(
        validate_blocklist, body.terms, body.patterns, safety.policy, runtime.clock()
    )
    await run_in_threadpool(safety.put, caller.app_id, blocklist)
    await run_in_threadpool(
        runtime.store.audit.record,
        caller.app_id,
        caller.key_id,
        "suggestions.blocklist.put",
        "blocklist",
        runtime.clock(),
        {"terms": len(body.terms), "patterns": len(body.patterns)},
    )
    return _public(blocklist)

"""Users: ``PUT/GET/DELETE /api/users/{userId}``; delete purges everything about the user."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response

from recloop.api.deadline import store_call
from recloop.api.deps import AdminCaller, IngestCaller, RuntimeDep, ServeCaller
from recloop.api.errors import problem_responses
from recloop.api.schemas import UserPublic, UserPut
from recloop.domain import User
from recloop.errors import InvalidInput, NotFound, RecloopError
from recloop.ingest.wire import MAX_ID_LENGTH, NO_NUL, to_user

router = APIRouter(tags=["users"])
log = logging.getLogger(__name__)

UserIdPath = Annotated[str, Path(alias="userId", min_length=1, max_length=MAX_ID_LENGTH), NO_NUL]
_ERRORS = problem_responses(401, 403, 422)


@router.put("/api/users/{userId}", response_model=UserPublic, responses=_ERRORS)
async def put_user(
    user_id: UserIdPath, body: UserPut, caller: IngestCaller, runtime: RuntimeDep
) -> UserPublic:
    """Insert or replace a user's attributes (age group, region, language, interests, ...)."""
    if body.user_id is not None and body.user_id != user_id:
        raise InvalidInput("userId", "must match the userId in the path")
    users = runtime.store.users

    def write() -> User | None:
        users.upsert_users(caller.app_id, [to_user(body.attributes, user_id)], datetime.now(UTC))
        return users.get_user(caller.app_id, user_id)

    stored = await store_call(runtime.settings.serving.store_timeout_s, write)
    assert stored is not None
    return UserPublic.model_validate(stored)


@router.get(
    "/api/users/{userId}", response_model=UserPublic, responses=_ERRORS | problem_responses(404)
)
async def get_user(user_id: UserIdPath, caller: ServeCaller, runtime: RuntimeDep) -> UserPublic:
    """One user."""
    user = await store_call(
        runtime.settings.serving.store_timeout_s,
        runtime.store.users.get_user,
        caller.app_id,
        user_id,
    )
    if user is None:
        raise NotFound("userId", f"no user {user_id!r}")
    return UserPublic.model_validate(user)


@router.delete("/api/users/{userId}", status_code=204, responses=_ERRORS | problem_responses(404))
async def delete_user(user_id: UserIdPath, caller: AdminCaller, runtime: RuntimeDep) -> Response:
    """Purge the user: their profile, events, served lists and suppressions, with an audit
    entry. At once in this process, and within a second in the others, their online features
    and sessions are deleted and the loaded models drop their vectors."""

    def forget() -> bool:
        sessions = runtime.store.users.forget_user(
            caller.app_id, user_id, caller.key_id, datetime.now(UTC)
        )
        if sessions is None:
            return False
        if runtime.deletions is not None:
            try:
                runtime.deletions.step()
            except RecloopError:
                # The deletion is committed; the follower's next step applies it here too.
                log.warning("user %s deleted; forgetting them in this process is retried", user_id)
                runtime.metrics.refresh_errors.inc()
        return True

    if not await store_call(runtime.settings.serving.store_timeout_s, forget):
        raise NotFound("userId", f"nothing stored for user {user_id!r}")
    return Response(status_code=204)

"""Exception handlers: each recloop error class maps to one status code, here and only here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recloop.api.schemas import Problem
from recloop.errors import (
    FieldProblem,
    Forbidden,
    InvalidInput,
    NotFound,
    OnlineStoreUnavailable,
    PayloadTooLarge,
    RecloopError,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[RecloopError], int], ...] = (
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
    (StoreUnavailable, 503),
)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the error body for each status."""
    return {status: {"model": Problem} for status in statuses}


def problem(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    """An error response: ``{detail, errors: [{field, rule}]}``."""
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse({"detail": detail, "errors": errors or []}, status, headers=headers)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def error_response(exc: RecloopError, path: str) -> JSONResponse:
    """The response for a recloop error raised while answering ``path``. A driver's text
    (hosts, ports, queries) is logged, and the client told only which store failed."""
    if isinstance(exc, TooManyRequests):
        response = problem(429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if exc.from_driver:
        log.warning("%s on %s: %s", type(exc).__name__, path, exc)
        if not isinstance(exc, StoreUnavailable):
            return problem(500, "internal error")
        which = "online store" if isinstance(exc, OnlineStoreUnavailable) else "store"
        return problem(503, f"{which}: unavailable; retry after Retry-After seconds")
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            if isinstance(exc, FieldProblem):
                return problem(status, str(exc), [{"field": exc.field, "rule": exc.rule}])
            return problem(status, str(exc))
    log.error("unmapped recloop error on %s: %r", path, exc)
    return problem(500, "internal error")


async def _recloop_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecloopError)
    return error_response(exc, request.url.path)


def _problem_of(error: Mapping[str, Any]) -> dict[str, str]:
    """One validation error as ``{field, rule}``; a body that is not JSON is the body's."""
    if error.get("type") == "json_invalid":
        found = (error.get("ctx") or {}).get("error", error["msg"])
        return {"field": "body", "rule": f"invalid JSON: {found}"}
    return {"field": _field(tuple(error["loc"])), "rule": str(error["msg"])}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_problem_of(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['rule']}" for e in errors) or "invalid request"
    return problem(422, detail, errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return problem(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on an app."""
    app.add_exception_handler(RecloopError, _recloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

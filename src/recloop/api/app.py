"""``create_app(settings)``: the FastAPI application, its lifespan and its OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

import recloop
from recloop.api.body_limit import BodyLimit, BodyLimits
from recloop.api.dashboard import install_dashboard
from recloop.api.deps import KeyCache
from recloop.api.docs import install_docs
from recloop.api.errors import install_error_handlers
from recloop.api.request_log import RequestLog
from recloop.api.routes import (
    events,
    experiments,
    health,
    items,
    recommendations,
    shadows,
    suggestions,
    users,
)
from recloop.config import Settings
from recloop.monitoring.logs import install_format
from recloop.runtime.leadership import Leadership
from recloop.runtime.process import Runtime, freeze_heap, start_runtime


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    *,
    leadership: Leadership | None = None,
    freeze: bool = False,
) -> FastAPI:
    """The application. Stores are opened and models loaded at start-up, not at import.

    Args:
        settings: configuration; read from the environment and ``recloop.toml`` when None.
        runtime: an already started runtime to serve (tests, the demo); the app then
            leaves closing it to the caller.
        leadership: for the runtime the app starts: whether this process runs the work
            that runs once when several processes serve.
        freeze: move what start-up allocated out of the garbage collector's sight (a
            serving process's models), once the runtime it starts is up.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        # Here, not when the app is made: uvicorn sets up its logging in between.
        install_format(settings.logging.format)
        app.state.runtime = runtime or start_runtime(settings, leadership=leadership)
        if owned and freeze:
            freeze_heap()
        app.state.key_cache = KeyCache(settings.serving)
        try:
            yield
        finally:
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="recloop",
        version=recloop.__version__,
        summary="Events in, recommendations out: a self-hostable recommendation loop.",
        lifespan=lifespan,
        # Served from installed files instead (api/docs.py): the defaults load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    install_dashboard(app)
    app.add_middleware(
        BodyLimit,
        limits=BodyLimits(
            batch=settings.ingest.max_batch_body_bytes, other=settings.serving.max_body_bytes
        ),
    )
    # Outermost: a request refused for its body is logged too.
    app.add_middleware(RequestLog, settings=settings.logging, data_dir=settings.data_dir)
    for module in (
        health,
        events,
        recommendations,
        suggestions,
        items,
        users,
        experiments,
        shadows,
    ):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _, defs = models_json_schema(
                [(model, "validation") for model in events.BODY_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                defs.get("$defs", {})
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

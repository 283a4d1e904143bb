"""``/healthz`` (the process answers), ``/readyz`` (it can serve), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from recloop.api.deps import AdminCaller, RuntimeDep
from recloop.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up. Needs no key."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: the store answers. Needs no key; 503 when not ready."""
    try:
        await run_in_threadpool(runtime.store.ping)
    except StoreUnavailable as exc:
        return JSONResponse({"status": "unavailable", "store": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready", "store": "ok"})


@router.get("/metrics", response_class=Response)
def metrics(caller: AdminCaller, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (needs an admin key: scrape with a bearer token)."""
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

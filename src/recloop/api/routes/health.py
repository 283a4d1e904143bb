"""``/healthz`` (the process answers), ``/readyz`` (it can serve), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from recloop.api.deadline import store_call
from recloop.api.deps import AdminCaller, RuntimeDep
from recloop.errors import RecloopError
from recloop.runtime.process import Runtime

router = APIRouter(tags=["operations"])

#: The longest /readyz waits on one dependency: a load balancer's probe must not hang.
READY_TIMEOUT_S = 2.0
#: How long a failed event commit keeps /readyz at 503 when no write has been tried since.
WRITE_FAILURE_S = 10.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up. Needs no key."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness, one check per dependency. Needs no key.

    503 (``unavailable``) when the store cannot be read or events cannot be written: a
    load balancer should send traffic elsewhere. 200 with ``degraded`` when the service
    answers on fallbacks (the online store is away, a promoted model is not loaded) or does
    not know whether writes work again (the last commit failed over ``WRITE_FAILURE_S``
    ago), 200 with ``ready`` otherwise. The body names each check's state, never a driver's
    error.
    """
    checks: dict[str, Any] = {}
    timeout_s = min(READY_TIMEOUT_S, runtime.settings.serving.store_timeout_s)
    checks["store_read"] = await _check(timeout_s, runtime.store.ping)
    checks["store_write"] = _write_state(runtime)
    checks["writer_queue"] = runtime.writer.queued()
    checks["online_store"] = await _check(timeout_s, runtime.online.ping)
    checks["models"] = await _models(timeout_s, runtime)
    unavailable = checks["store_read"] != "ok" or checks["store_write"] in ("failed", "failing")
    degraded = (
        checks["store_write"] != "ok"
        or checks["online_store"] != "ok"
        or any(m["state"] not in ("loaded", "cold") for m in checks["models"].values())
    )
    status = "unavailable" if unavailable else ("degraded" if degraded else "ready")
    headers = {"Retry-After": "1"} if unavailable else None
    return JSONResponse(
        {"status": status, "checks": checks},
        status_code=503 if unavailable else 200,
        headers=headers,
    )


def _write_state(runtime: Runtime) -> str:
    """``ok``; ``failing`` while event commits fail (the last within ``WRITE_FAILURE_S``);
    ``unknown`` when the last commit failed longer ago and none was tried since; ``failed``
    when the writer thread is gone."""
    writer = runtime.writer
    if not writer.running:
        return "failed"
    stats = writer.stats
    if stats.failing_since is None:
        return "ok"
    last = stats.last_failure or stats.failing_since
    return "failing" if time.monotonic() - last < WRITE_FAILURE_S else "unknown"


async def _check(timeout_s: float, probe: Any) -> str:
    try:
        await store_call(timeout_s, probe)
    except RecloopError:
        return "failed"
    return "ok"


async def _models(timeout_s: float, runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Per app: the promoted version, the one served, the served version's sources that
    failed to load, and ``loaded`` / ``loaded, sources failed`` / ``not loaded`` (a promoted
    version this process could not load) / ``cold`` (nothing promoted yet)."""
    try:
        versions = await store_call(timeout_s, runtime.model_loader.versions)
    except (RecloopError, OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for app, (promoted, serving, failed) in versions.items():
        if promoted is None:
            state = "cold"
        elif promoted != serving:
            state = "not loaded"
        else:
            state = "loaded, sources failed" if failed else "loaded"
        out[app] = {"state": state, "promoted": promoted, "serving": serving, "failed": failed}
    return out


@router.get("/metrics", response_class=Response)
def metrics(caller: AdminCaller, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (needs an admin key: scrape with a bearer token). Samples of other
    apps than the key's are left out; the service's own metrics have no app."""
    return Response(
        runtime.metrics.render_for(caller.app_id), media_type="text/plain; version=0.0.4"
    )

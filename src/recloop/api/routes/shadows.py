"""Admin: ``GET /api/admin/shadows`` and ``GET /api/admin/shadows/{name}/report``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from recloop.analysis.shadow_report import ShadowReport, read_shadow_pairs, shadow_report
from recloop.api.deps import AdminCaller, RuntimeDep
from recloop.api.errors import problem_responses
from recloop.api.schemas import ShadowPublic
from recloop.errors import NotFound
from recloop.ingest.wire import NO_NUL

router = APIRouter(tags=["experiments"])

_ERRORS = problem_responses(401, 403)
NamePath = Annotated[str, Path(min_length=1, max_length=63), NO_NUL]


@router.get("/api/admin/shadows", response_model=list[ShadowPublic], responses=_ERRORS)
def list_shadows(caller: AdminCaller, runtime: RuntimeDep) -> list[ShadowPublic]:
    """The configured shadow pipelines: scored and logged on live requests, never served."""
    return [ShadowPublic.of(s) for s in runtime.settings.shadows]


@router.get("/api/admin/shadows/{name}/report", responses=_ERRORS | problem_responses(404))
async def report_shadow(name: NamePath, caller: AdminCaller, runtime: RuntimeDep) -> dict[str, Any]:
    """The shadow's lists against the served ones, and its CTR estimated off-policy.

    Agreement (served items also in the shadow's list, same first item, same item per slot),
    latency and fallbacks on each side, the served lists' CTR per slot, and the shadow's
    CTR per slot by position-based IPS over the served lists' logged propensities, with
    95% bootstrap intervals over requests, the share of shadow slots the served policy could
    never have filled that way, and warnings when the estimate cannot be trusted.
    """
    if name not in {s.name for s in runtime.settings.shadows}:
        raise NotFound("name", f"no shadow {name!r}")
    store = runtime.store

    def build() -> ShadowReport:
        pairs, missing = read_shadow_pairs(
            store.shadow_log, store.rec_log, store.events, caller.app_id, name
        )
        return shadow_report(name, pairs, missing)

    report = await run_in_threadpool(build)
    return report.to_dict()

"""Admin: ``GET /api/admin/experiments`` and ``GET /api/admin/experiments/{name}/report``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from recloop.analysis.guard import Stop, StoppedExperiments
from recloop.analysis.interleaving_report import read_interleaving_report
from recloop.analysis.rollout import RampRecord, RampState, read_report
from recloop.api.deps import AdminCaller, RuntimeDep
from recloop.api.errors import problem_responses
from recloop.api.schemas import ExperimentPublic
from recloop.config import Settings
from recloop.errors import NotFound, StoreUnavailable
from recloop.ingest.wire import NO_NUL
from recloop.runtime.process import ramps_path, stopped_experiments_path

router = APIRouter(tags=["experiments"])

_ERRORS = problem_responses(401, 403)
NamePath = Annotated[str, Path(min_length=1, max_length=63), NO_NUL]


@router.get(
    "/api/admin/experiments",
    response_model=list[ExperimentPublic],
    responses=_ERRORS | problem_responses(503),
)
def list_experiments(caller: AdminCaller, runtime: RuntimeDep) -> list[ExperimentPublic]:
    """The configured experiments and whether each is running now (or was stopped, and why);
    for a staged canary, the stage it serves at."""
    now = datetime.now(UTC)
    stops, ramps = _records(runtime.settings)
    return [
        ExperimentPublic.of(
            e, now, stops[e.name].reason if e.name in stops else None, ramps.get(e.name)
        )
        for e in runtime.settings.experiments
    ]


@router.get(
    "/api/admin/experiments/{name}/report",
    responses=_ERRORS | problem_responses(404, 503),
)
async def report_experiment(
    name: NamePath, caller: AdminCaller, runtime: RuntimeDep
) -> dict[str, Any]:
    """Each variant against the control, read from the served lists and their events.

    Per variant: users, lists, impressions, CTR, satisfied clicks and hides per impression,
    latency. Per treatment: every metric's relative change with its 95% interval and p-value
    (delta-method z-tests over users; a bootstrap for p99 latency), the minimum detectable
    effect, the sample-ratio check, the guardrails and a decision (ship, don't ship, keep
    running, invalid) with its reasons. A staged canary is reported on its current stage; an
    interleaving experiment by its teams' credited clicks, the preference and a sign test.
    Reads the whole log: seconds on millions of events.
    """
    config = next((e for e in runtime.settings.experiments if e.name == name), None)
    if config is None:
        raise NotFound("name", f"no experiment {name!r}")
    store = runtime.store
    if config.kind == "interleave":
        interleaved = await run_in_threadpool(
            read_interleaving_report, config, store.rec_log, store.events, caller.app_id
        )
        return interleaved.to_dict()
    state = _records(runtime.settings)[1].get(name)
    report = await run_in_threadpool(
        read_report, config, store.rec_log, store.events, caller.app_id, state
    )
    return report.to_dict()


def _records(settings: Settings) -> tuple[dict[str, Stop], dict[str, RampState]]:
    """The stopped experiments and the ramps' stages, as every replica reads them.

    Raises:
        StoreUnavailable: a record cannot be read (a 503 naming the file, not a 500).
    """
    try:
        return (
            StoppedExperiments(stopped_experiments_path(settings)).read(),
            RampRecord(ramps_path(settings)).read(),
        )
    except ValueError as exc:
        raise StoreUnavailable(str(exc)) from exc

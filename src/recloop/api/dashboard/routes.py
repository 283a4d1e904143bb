"""The dashboard's pages under ``/dashboard``: server-rendered HTML over what the service
already keeps (the store, the registry, the experiment records, this process's metrics).

Pages read with the signed-in admin's app. The two actions (stop an experiment, promote a
model version) are POST forms with the sign-in's CSRF token, and each writes an audit entry
naming the admin's key.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from recloop.analysis.guard import StoppedExperiments
from recloop.analysis.interleaving_report import read_interleaving_report
from recloop.analysis.outcomes import app_events, served_lists
from recloop.analysis.rollout import RampRecord, read_report
from recloop.api.dashboard import figures
from recloop.api.dashboard.auth import (
    Admin,
    check_key,
    form_token_valid,
    same_origin,
    sign_in,
    sign_out,
    signed_in,
)
from recloop.api.dashboard.charts import line_chart
from recloop.api.dashboard.neighbours import item_neighbours
from recloop.api.deadline import executor_call, store_call
from recloop.api.deps import RuntimeDep
from recloop.api.schemas import ExperimentPublic
from recloop.domain import EventType
from recloop.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    RecloopError,
    TooManyRequests,
    Unauthorized,
)
from recloop.registry.artifacts import DamagedVersion, ModelRegistry
from recloop.registry.runs import RunLog
from recloop.runtime.process import Runtime, ramps_path, stopped_experiments_path
from recloop.serving.recommender import RecommendationRequest

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

#: Sent with every page: no script, style or image from anywhere but the service itself,
#: no framing, no caching of pages that show an app's data.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: The Overview's window of days, and of its "last minute" rates.
ACTIVITY_DAYS = 14
RATE_WINDOW_S = 60.0
#: The most history and items the inspectors list.
HISTORY_SHOWN = 50


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _signed(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}%"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _iso(value: str | None) -> str:
    return "never" if not value else _when(datetime.fromisoformat(value))


templates.env.filters.update(pct=_pct, num=_num, ms=_ms, when=_when, signed=_signed, p=_p, iso=_iso)


def page(
    request: Request, name: str, admin: Admin | None, status: int = 200, **ctx: Any
) -> Response:
    """Render a template with the signed-in admin and the security headers."""
    return templates.TemplateResponse(
        request,
        name,
        {"admin": admin, "page": name.removesuffix(".html"), **ctx},
        status_code=status,
        headers=HEADERS,
    )


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the last value of a repeated one)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _action(request: Request, runtime: Runtime) -> tuple[Admin, dict[str, str]]:
    """The admin and the form of a POST action, after the origin and CSRF checks.

    Raises:
        Forbidden: another site's origin, or a missing or wrong form token.
    """
    admin = await signed_in(request, runtime)
    if not same_origin(request):
        raise Forbidden("Origin: a dashboard form must be sent from the dashboard")
    form = await _form(request)
    if not form_token_valid(admin, form.get("csrf")):
        raise Forbidden("csrf: the form's token is missing or not this sign-in's")
    return admin, form


# -- sign-in -----------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    """Check the key; an admin key is set in the cookies and the browser sent to Overview."""
    if not same_origin(request):
        return page(request, "login.html", None, 403, error="Sign in from the dashboard's page.")
    key = (await _form(request)).get("key", "").strip()
    try:
        key_id = await check_key(request, runtime, key or "")
    except Unauthorized:
        return page(request, "login.html", None, 401, error="Unknown or revoked key.")
    except Forbidden:
        return page(
            request,
            "login.html",
            None,
            403,
            error="This key has no admin scope (a serve or ingest key): the dashboard "
            "needs an admin key.",
        )
    except TooManyRequests:
        return page(
            request, "login.html", None, 429, error="Too many failed sign-ins: wait a minute."
        )
    response = RedirectResponse("/dashboard/", status_code=303, headers=HEADERS)
    sign_in(response, runtime, key_id)
    return response


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    """Forget the sign-in."""
    await _action(request, runtime)
    response = RedirectResponse("/dashboard/login", status_code=303, headers=HEADERS)
    sign_out(response)
    return response


# -- overview ----------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request, runtime: RuntimeDep) -> Response:
    """Traffic, latency per stage, fallbacks, CTR and satisfaction per surface, counts."""
    admin = await signed_in(request, runtime)
    now = datetime.now(UTC)
    store, app_id = runtime.store, admin.app_id
    timeout = runtime.settings.serving.store_timeout_s
    counts = await store_call(timeout, figures.store_counts, store, app_id)
    events_rate, lists_rate = await store_call(
        timeout, figures.recent_rates, store, app_id, now, RATE_WINDOW_S
    )
    activity = await run_in_threadpool(
        figures.read_activity,
        store,
        app_id,
        now,
        ACTIVITY_DAYS,
        runtime.settings.train.labels.default_rules,
    )
    text = runtime.metrics.render_for(app_id).decode()
    days = figures.active_days(activity)
    charts = []
    for figure, title in (
        ("ctr", "CTR per surface and day"),
        ("satisfaction", "Satisfied clicks per impression, per surface and day"),
        ("fallback_rate", "Share of lists served with a fallback, per day"),
    ):
        series = {s: _on(days, activity, s, figure) for s in sorted(activity.surfaces)}
        if any(figures.finite(v) for v in series.values()):
            charts.append(
                line_chart(title, [d[5:] for d in days], series, percent=True, x_label="day (UTC)")
            )
    return page(
        request,
        "overview.html",
        admin,
        counts=counts,
        events_rate=events_rate,
        lists_rate=lists_rate,
        activity=activity,
        surfaces={s: activity.totals(s) for s in sorted(activity.surfaces)},
        charts=charts,
        stages=figures.histogram_quantiles(text, "recloop_stage_seconds", "stage"),
        requests=figures.histogram_quantiles(text, "recloop_recommendation_seconds", "surface"),
        lag=figures.histogram_quantiles(text, "recloop_event_lag_seconds", "app"),
        causes=figures.counter_totals(text, "recloop_fallback_causes", "cause"),
        window_days=ACTIVITY_DAYS,
        rate_window_s=RATE_WINDOW_S,
    )


def _on(days: list[str], activity: figures.Activity, surface: str, figure: str) -> list[float]:
    """A surface's figure on each of ``days`` (NaN where it served nothing)."""
    by_day = dict(zip(activity.days, activity.series(surface, figure), strict=True))
    return [by_day[d] for d in days]


# -- models ------------------------------------------------------------------------------


#: Training runs listed on the models page, newest first.
RUNS_SHOWN = 30


@router.get("/models")
async def models(request: Request, runtime: RuntimeDep, done: str | None = None) -> Response:
    """Every model version: its sources' metrics, ranker, lineage; which one serves; the
    scheduled training runs and why each started."""
    admin = await signed_in(request, runtime)
    registry = ModelRegistry(runtime.settings.resolved_model_dir())
    runs = RunLog(runtime.settings.resolved_model_dir())
    scheduler = runtime.scheduler

    def read() -> dict[str, Any]:
        versions = registry.versions(admin.app_id)
        loaded = runtime.model_loader.versions().get(admin.app_id, (None, None, ()))
        decision = scheduler.last_decisions.get(admin.app_id) if scheduler is not None else None
        return {
            "runs": runs.recent(admin.app_id, RUNS_SHOWN),
            "schedule": runtime.settings.schedule,
            "decision": decision,
            "versions": [registry.manifest(admin.app_id, v) for v in reversed(versions)],
            "current": registry.current(admin.app_id),
            "previous": registry.previous(admin.app_id),
            "promotions": registry.promotions(admin.app_id),
            "loaded": loaded[1],
            "failed": loaded[2],
        }

    return page(request, "models.html", admin, done=done, **await run_in_threadpool(read))


@router.post("/models/promote")
async def promote(request: Request, runtime: RuntimeDep) -> Response:
    """Serve a version (a rollback is the promotion of an older one); audited.

    A version its promotion gates blocked is refused unless the form says ``force``, as
    ``recloop models promote --force``; the audit records the gates it failed. Rolling back
    to the version served before needs no force: it served already.
    """
    admin, form = await _action(request, runtime)
    version = form.get("version", "")
    registry = ModelRegistry(runtime.settings.resolved_model_dir())
    before = registry.current(admin.app_id)
    rollback = version == registry.previous(admin.app_id)
    try:
        blocked = (await run_in_threadpool(registry.manifest, admin.app_id, version)).blocked_by()
        if blocked and not rollback and form.get("force") != "1":
            reasons = "; ".join(f"{name}: {why}" for name, why in blocked.items())
            raise InvalidInput(
                "force",
                f"model version {version} was blocked by its promotion gates ({reasons}); "
                "tick force to serve it anyway",
            )
        await run_in_threadpool(registry.promote, admin.app_id, version)
    except FileNotFoundError as exc:
        raise NotFound("version", f"no finished model version {version!r}") from exc
    except DamagedVersion as exc:
        raise InvalidInput("version", str(exc)) from exc
    forced = bool(blocked) and not rollback
    detail: dict[str, Any] = {"from": before, "via": "dashboard"}
    if forced:
        detail["blocked_by"] = blocked
    await store_call(
        runtime.settings.serving.store_timeout_s,
        runtime.store.audit.record,
        admin.app_id,
        admin.actor,
        "model.promote.force" if forced else "model.promote",
        version,
        datetime.now(UTC),
        detail,
    )
    return RedirectResponse(
        f"/dashboard/models?done={quote(version)}", status_code=303, headers=HEADERS
    )


# -- experiments -------------------------------------------------------------------------


def _experiments(runtime: Runtime) -> list[ExperimentPublic]:
    now = datetime.now(UTC)
    stops = StoppedExperiments(stopped_experiments_path(runtime.settings)).read()
    ramps = RampRecord(ramps_path(runtime.settings)).read()
    return [
        ExperimentPublic.of(
            e, now, stops[e.name].reason if e.name in stops else None, ramps.get(e.name)
        )
        for e in runtime.settings.experiments
    ]


@router.get("/experiments")
async def experiments(request: Request, runtime: RuntimeDep) -> Response:
    """The configured experiments, their variants, shares, stage and state."""
    admin = await signed_in(request, runtime)
    listed = await run_in_threadpool(_experiments, runtime)
    return page(request, "experiments.html", admin, experiments=listed)


@router.get("/experiments/{name}")
async def experiment(request: Request, name: str, runtime: RuntimeDep) -> Response:
    """One experiment's report (the one ``recloop experiment report`` prints), and its stop."""
    admin = await signed_in(request, runtime)
    listed = {e.name: e for e in await run_in_threadpool(_experiments, runtime)}
    config = next((e for e in runtime.settings.experiments if e.name == name), None)
    if config is None or name not in listed:
        raise NotFound("name", f"no experiment {name!r}")
    store = runtime.store
    report: dict[str, Any]
    if config.kind == "interleave":
        interleaved = await run_in_threadpool(
            read_interleaving_report, config, store.rec_log, store.events, admin.app_id
        )
        report = interleaved.to_dict()
    else:
        state = RampRecord(ramps_path(runtime.settings)).read().get(name)
        ab = await run_in_threadpool(
            read_report, config, store.rec_log, store.events, admin.app_id, state
        )
        report = ab.to_dict()
    return page(
        request,
        "experiment.html",
        admin,
        experiment=listed[name],
        kind=config.kind,
        report=report,
    )


@router.post("/experiments/{name}/stop")
async def stop_experiment(request: Request, name: str, runtime: RuntimeDep) -> Response:
    """Stop an experiment now (its users get the surface as configured); audited."""
    admin, form = await _action(request, runtime)
    if name not in {e.name for e in runtime.settings.experiments}:
        raise NotFound("name", f"no experiment {name!r}")
    reason = form.get("reason", "").strip()[:200] or "stopped from the dashboard"
    record = StoppedExperiments(stopped_experiments_path(runtime.settings))
    now = datetime.now(UTC)
    if await run_in_threadpool(record.stop, name, reason, now):
        await store_call(
            runtime.settings.serving.store_timeout_s,
            runtime.store.audit.record,
            admin.app_id,
            admin.actor,
            "experiment.stop",
            name,
            now,
            {"reason": reason, "via": "dashboard"},
        )
    return RedirectResponse(f"/dashboard/experiments/{quote(name)}", 303, headers=HEADERS)


# -- inspectors --------------------------------------------------------------------------


@router.get("/users")
async def user_inspector(
    request: Request,
    runtime: RuntimeDep,
    user: str | None = None,
    surface: str = "home",
) -> Response:
    """A user's profile, history and suppressions, and their next list with its trace."""
    admin = await signed_in(request, runtime)
    surfaces = list(runtime.recommender.surfaces)
    ctx: dict[str, Any] = {"user": user, "surface": surface, "surfaces": surfaces}
    if user:
        ctx.update(await _user(runtime, admin.app_id, user, surface))
    return page(request, "users.html", admin, **ctx)


async def _user(runtime: Runtime, app_id: str, user: str, surface: str) -> dict[str, Any]:
    store, timeout = runtime.store, runtime.settings.serving.store_timeout_s

    def read() -> dict[str, Any]:
        history = store.events.engagement_history(app_id, user, [t.value for t in EventType])
        items = list(dict.fromkeys(item for item, _ in history))  # each item once, latest first
        return {
            "profile": store.users.get_user(app_id, user),
            "history": items[:HISTORY_SHOWN],
            "history_items": len(items),
            "history_events": len(history),
            "suppressed": sorted(store.suppressions.item_ids(app_id, user)),
        }

    found = await store_call(timeout, read)
    try:
        result = await executor_call(
            timeout,
            runtime.request_executor,
            runtime.recommender.recommend,
            app_id,
            RecommendationRequest(
                user_id=user,
                surface=surface,
                limit=runtime.settings.serving.default_limit,
                explain=True,
            ),
        )
    except (InvalidInput, NotFound) as exc:
        return {**found, "error": str(exc)}
    heads = sorted({h for i in result.items for h, _ in i.heads})
    sources = sorted({s for i in result.items for s, _ in i.source_scores})
    return {**found, "result": result, "heads": heads, "sources": sources}


@router.get("/items")
async def item_inspector(
    request: Request, runtime: RuntimeDep, item: str | None = None
) -> Response:
    """An item's catalog entry, how often it was served and clicked (14 days), and its
    neighbours per source."""
    admin = await signed_in(request, runtime)
    ctx: dict[str, Any] = {"item": item}
    if item:
        store = runtime.store
        entry = await store_call(
            runtime.settings.serving.store_timeout_s, store.catalog.get_item, admin.app_id, item
        )
        ctx["entry"] = entry
        if entry is not None:
            now = datetime.now(UTC)
            ctx["exposure"] = await run_in_threadpool(_exposure, runtime, admin.app_id, item, now)
            # On the request threads, as the sources run when they serve.
            ctx["neighbours"] = await executor_call(
                runtime.settings.serving.store_timeout_s,
                runtime.request_executor,
                item_neighbours,
                runtime.recommender.pipelines,
                admin.app_id,
                item,
                now,
            )
    return page(request, "items.html", admin, **ctx)


def _exposure(runtime: Runtime, app_id: str, item: str, now: datetime) -> dict[str, Any]:
    """The item's impressions and clicks per surface over the window, and the lists' sources
    that put it there."""
    since = now - timedelta(days=ACTIVITY_DAYS)
    shown: dict[str, int] = {}
    via: dict[str, int] = {}
    requests: dict[str, str] = {}
    for record in served_lists(runtime.store.rec_log, app_id, since):
        for served in record.items:
            if served.item_id == item:
                shown[record.surface] = shown.get(record.surface, 0) + 1
                via[served.source] = via.get(served.source, 0) + 1
                requests[record.request_id] = record.surface
    clicks: dict[str, int] = {}
    clicked: set[str] = set()
    for event in app_events(runtime.store.events, app_id, since):
        if (
            event.item_id == item
            and event.event_type.value == "click"
            and event.request_id in requests
            and event.request_id not in clicked
        ):
            clicked.add(event.request_id)
            surface = requests[event.request_id]
            clicks[surface] = clicks.get(surface, 0) + 1
    return {"shown": shown, "clicks": clicks, "via": via}


# -- health, suggestions, audit ----------------------------------------------------------


@router.get("/health")
async def health(request: Request, runtime: RuntimeDep) -> Response:
    """Readiness of each dependency, models loaded, guardrail stops; what is not measured."""
    admin = await signed_in(request, runtime)
    timeout = min(2.0, runtime.settings.serving.store_timeout_s)
    checks = {}
    for name, probe in (("store", runtime.store.ping), ("online store", runtime.online.ping)):
        try:
            await store_call(timeout, probe)
            checks[name] = "ok"
        except RecloopError as exc:
            checks[name] = f"failed: {type(exc).__name__}"
    checks["event writer"] = "running" if runtime.writer.running else "stopped"
    versions = runtime.model_loader.versions().get(admin.app_id, (None, None, ()))
    text = runtime.metrics.render_for(admin.app_id).decode()
    stops = StoppedExperiments(stopped_experiments_path(runtime.settings)).read()
    return page(
        request,
        "health.html",
        admin,
        checks=checks,
        queued=runtime.writer.queued(),
        promoted=versions[0],
        serving=versions[1],
        failed=versions[2],
        outcomes=figures.counter_table(text, "recloop_stage_outcomes", "stage", "outcome"),
        drift=figures.samples_named(text, "drift"),
        stops=sorted(stops.values(), key=lambda s: s.at, reverse=True),
    )


@router.get("/suggestions")
async def suggestions(request: Request, runtime: RuntimeDep) -> Response:
    """What the suggestion surface's model counted at training; what is not measured."""
    admin = await signed_in(request, runtime)
    registry = ModelRegistry(runtime.settings.resolved_model_dir())

    def read() -> Any:
        current = registry.current(admin.app_id)
        if current is None:
            return None, None
        return current, registry.manifest(admin.app_id, current).extra.get("suggestions")

    version, counted = await run_in_threadpool(read)
    return page(request, "suggestions.html", admin, version=version, counted=counted)


@router.get("/audit")
async def audit(request: Request, runtime: RuntimeDep) -> Response:
    """The newest entries of the audit log for the admin's app."""
    admin = await signed_in(request, runtime)

    def read() -> list[Any]:
        newest: list[Any] = []
        after = 0
        while True:
            entries = runtime.store.audit.since(after, 1000)
            if not entries:
                break
            newest.extend(e for e in entries if e.app_id == admin.app_id)
            newest = newest[-100:]
            after = entries[-1].seq
        return list(reversed(newest))

    entries = await store_call(runtime.settings.serving.store_timeout_s, read)
    return page(request, "audit.html", admin, entries=entries)

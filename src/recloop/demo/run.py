"""``recloop demo``: the simulated world against the real service, day by day, with a report.

The service runs on the embedded store behind a real HTTP server on 127.0.0.1 (or is called
in-process for speed). The service runs an experiment that splits users between two
variants of the home surface (``demo-home``: popular-only and the full pipeline); each simulated
night refreshes popularity and features and runs ``recloop train`` (retrieval models and
the learned ranker), which the running service loads; the run ends with a terminal table and an HTML
report with charts in the data directory.
"""

from __future__ import annotations

import itertools
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn
from rich.table import Table

from recloop.analysis.outcomes import read_outcomes
from recloop.analysis.render import render_report
from recloop.analysis.report import ExperimentReport, experiment_report
from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.config import (
    ExperimentConfig,
    GuardrailConfig,
    Settings,
    SourceSlotConfig,
    SurfaceConfig,
    VariantConfig,
    default_surfaces,
)
from recloop.config.saved import write_settings
from recloop.config.settings import CONFIG_FILE
from recloop.demo.figures import (
    SOURCE_HISTOGRAM,
    STAGE_HISTOGRAM,
    Buckets,
    clicks_by_source,
    histogram_buckets,
    p99_by_day,
    stage_times,
)
from recloop.demo.inprocess import InProcessClient
from recloop.errors import ConfigError, RecloopError
from recloop.retrieval.source_table import MODEL_SOURCES
from recloop.runtime.process import Runtime, start_runtime
from recloop.simulate.behaviour import Behaviour, BehaviourConfig, Session
from recloop.simulate.clients import HttpClient, ServiceClient
from recloop.simulate.clocks import ClientClockConfig, ServiceClock, ServiceClockConfig
from recloop.simulate.driver import DriverConfig, Simulation, SimulationResult
from recloop.simulate.report import NightlyVersion, ServiceFigures, write_report
from recloop.simulate.search import SearchConfig
from recloop.simulate.world import World, WorldConfig
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.training.job import TrainResult, train

#: The demo's A/B split: variant name -> the surface that serves it. The first is the control.
DEMO_VARIANTS = {"popular": "popular-only", "home": "home"}
#: The experiment the service runs for the demo, on the surface every simulated user asks for.
DEMO_EXPERIMENT = "demo-home"
DEMO_SURFACE = "home"
#: The demo experiment's latency guardrail, relative to the control: the full pipeline's p99
#: may exceed popularity alone's by this many milliseconds, or by DEMO_P99_TOLERANCE of it,
#: whichever is more. Popularity alone does next to no work, so a busy machine slows the
#: pipeline far more than its control: +65-70 ms over the control on a quiet machine,
#: +127 ms with a load average of 5-6 on two cores (a269f95); 250 ms covers that and still
#: catches a source left hanging to its deadline.
DEMO_P99_ALLOWANCE_MS = 250.0
DEMO_P99_TOLERANCE = 1.0
#: An absolute ceiling on the treatment's p99, only a sanity bound: ten times the budget.
DEMO_P99_CEILING_MS = 1000.0

#: The demo's deadline for each source: long enough that none is ever dropped for time.
DEMO_SOURCE_TIMEOUT_MS = 2000.0
#: How many sessions pass between refreshes of the popularity model. The demo refreshes
#: on this schedule instead of a wall-clock timer, so that one seed gives one run.
REFRESH_EVERY_SESSIONS = 25
#: The file that marks a folder as a demo run's, which the next run may replace.
DEMO_MARKER = "DEMO-RUN"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    world: WorldConfig = field(default_factory=WorldConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    days: int = 7
    transport: Literal["http", "inprocess"] = "http"
    train_nightly: bool = True  # run `recloop train` after each simulated day
    # Variant name -> the surface serving it; surfaces not among the defaults go in
    # ``surfaces`` (a benchmark's extra arms, say).
    variants: Mapping[str, str] = field(default_factory=lambda: dict(DEMO_VARIANTS))
    surfaces: Mapping[str, SurfaceConfig] = field(default_factory=dict)
    # Given the running service and the users' behaviour, a hook called for every served
    # list before the user responds (a benchmark judging shadow lists in the same state).
    observer: Callable[[Runtime, Behaviour], Callable[[Session, str], None]] | None = None
    # The clients' clocks and the service's own clock (see recloop.simulate.clocks); by
    # default all three timelines agree.
    clients: ClientClockConfig = field(default_factory=ClientClockConfig)
    service_clock: ServiceClockConfig = field(default_factory=ServiceClockConfig)
    # The search box: search sessions typed with query suggestions between the item
    # sessions (see recloop.simulate.search). Off by default, which serves exactly the
    # item lists of a demo without it.
    search: SearchConfig | None = None


@dataclass(frozen=True)
class DemoOutcome:
    """A finished demo: its measurements, where the report is, how long it took."""

    result: SimulationResult
    report_path: Path
    wall_s: float
    experiment: ExperimentReport | None = None
    trainings: tuple[TrainResult, ...] = ()  # what each night's `recloop train` returned


def demo_configuration(
    settings: Settings,
    data_dir: Path,
    extra: Mapping[str, SurfaceConfig] | None = None,
    variants: Mapping[str, str] | None = None,
) -> Settings:
    """What the demo configures, as a service on its data directory would run it: the
    embedded store in ``data_dir``, a popular-only surface, any ``extra`` surfaces, and with
    two or more ``variants``, the experiment that splits users between them
    (``demo_experiment``). It is saved beside the demo's data as ``recloop.toml``."""
    surfaces = default_surfaces()
    surfaces["popular-only"] = SurfaceConfig(
        sources=[SourceSlotConfig(name="popular", quota=300)], fallback=["newest"]
    )
    surfaces.update(extra or {})
    experiments = [demo_experiment(variants)] if variants and len(variants) > 1 else []
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "store_url": None,
            "surfaces": surfaces,
            "experiments": experiments,
        }
    )


def demo_settings(
    settings: Settings,
    data_dir: Path,
    extra: Mapping[str, SurfaceConfig] | None = None,
    variants: Mapping[str, str] | None = None,
) -> Settings:
    """The settings the demo runs with: ``demo_configuration``, with every source waited
    for and the periodic jobs left to the simulation, so that one seed gives one run."""
    settings = demo_configuration(settings, data_dir, extra, variants)
    surfaces = settings.surfaces
    # One seed must give one run: a source that misses its deadline on a busy machine would
    # change the list, so the demo waits for every source (latencies are still measured).
    surfaces = {
        name: surface.model_copy(
            update={
                "sources": [
                    slot.model_copy(update={"timeout_ms": DEMO_SOURCE_TIMEOUT_MS})
                    for slot in surface.sources
                ]
            }
        )
        for name, surface in surfaces.items()
    }
    serving = settings.serving
    return settings.model_copy(
        update={
            "surfaces": surfaces,
            # The demo refreshes popularity, features and models itself, every
            # REFRESH_EVERY_SESSIONS sessions rather than on a wall-clock timer.
            "serving": serving.model_copy(
                update={
                    "popularity_refresh_s": 86_400.0,
                    "popularity_rebuild_s": 10**9,
                    # New versions and new catalog items are loaded on the same schedule.
                    "model_refresh_s": 86_400.0,
                    "budget": serving.budget.model_copy(
                        update={"retrieve_ms": DEMO_SOURCE_TIMEOUT_MS}
                    ),
                }
            ),
        }
    )


def demo_experiment(variants: Mapping[str, str]) -> ExperimentConfig:
    """The experiment the service runs on ``home``: equal shares, one variant per surface.

    The simulated users all ask for ``home``; the service assigns each a variant (the
    first is the control) and serves it from the variant's surface, as it would for a
    real experiment, and ``recloop experiment report`` reads the outcome from the logs.
    """
    share = 1.0 / len(variants)
    return ExperimentConfig(
        name=DEMO_EXPERIMENT,
        surface=DEMO_SURFACE,
        # A 12-source pipeline is slower than popularity alone by design: it may spend a
        # fixed allowance more than the control, not "no slower than the control". Judged
        # against the control, a loaded machine (which slows both) does not flip the verdict.
        guardrails=[
            GuardrailConfig(metric="hide_rate", bad_direction="up"),
            GuardrailConfig(
                metric="latency_p99",
                bad_direction="up",
                tolerance=DEMO_P99_TOLERANCE,
                allowance=DEMO_P99_ALLOWANCE_MS,
            ),
            GuardrailConfig(metric="latency_p99", bad_direction="up", limit=DEMO_P99_CEILING_MS),
        ],
        variants=[
            VariantConfig(
                name=name, share=share, surface=None if surface == DEMO_SURFACE else surface
            )
            for name, surface in variants.items()
        ],
    )


def run_demo(
    config: DemoConfig, settings: Settings, console: Console, data_dir: Path | None = None
) -> DemoOutcome:
    """Run the simulated loop in ``data_dir`` (default ``DATA_DIR/demo``), print and write
    its report, and leave the folder as a data directory the other commands open as it is
    (its configuration saved in it as ``recloop.toml``)."""
    started = time.perf_counter()
    data_dir = data_dir if data_dir is not None else settings.data_dir / "demo"
    console.rule("recloop demo: a simulated world against the service")
    _clear_previous_run(data_dir, console)
    save_configuration(
        demo_configuration(settings, data_dir, config.surfaces, config.variants), data_dir
    )
    settings = demo_settings(settings, data_dir, config.surfaces, config.variants)
    store = prepare_store(settings)
    key = ensure_dev_key(store, data_dir)
    assert key is not None
    service = config.service_clock
    if service.lead_days < service.min_lead_days(config.days):
        raise ValueError(
            f"a world {service.compression:g} times faster than the service must start at "
            f"least {service.min_lead_days(config.days):.2f} days before it (lead_days), or "
            "its clients' clocks would run ahead of the service's"
        )
    # Midnight, far enough back that the whole run stays in the past of the server's clock.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    back = math.ceil(service.lead_days + config.days / service.compression) + 1
    world = World(config.world, start=today - timedelta(days=back))
    # The service's models and requests see the simulated time, so one seed gives one run:
    # the world's time, or a clock of its own that the world's time drives.
    clock = ServiceClock(world.start, service, arrivals_move_clock=config.transport == "http")
    # Exploration draws are seeded by the request id: ids from a seeded sequence keep one
    # seed one run.
    runtime = start_runtime(settings, store, clock=clock, request_ids=_request_ids(config))
    behaviour = Behaviour(world, config.behaviour)
    console.print(
        f"embedded store in [bold]{data_dir}[/bold]; {len(world.items):,} items and "
        f"{len(world.users):,} users to start; {config.days} simulated days; "
        f"variants: {', '.join(f'{v} (surface {s})' for v, s in config.variants.items())}; "
        f"transport: {config.transport}",
        soft_wrap=True,
    )
    try:
        if config.transport == "http":
            with BackgroundServer(create_app(settings, runtime)) as server:
                client = HttpClient(server.url, key)
                try:
                    result, nights = _simulate(
                        world, behaviour, client, runtime, clock, config, console
                    )
                finally:
                    client.close()
        else:
            # What it receives is stamped with the service's clock, as a server would.
            client_ = InProcessClient(runtime, received_at=clock.received)
            result, nights = _simulate(world, behaviour, client_, runtime, clock, config, console)
        runtime.writer.flush()
        logged = runtime.writer.stats.logs_written
        experiment = _experiment_report(runtime)
        service_figures = _service_figures(runtime, world, clock, result, nights, config)
    finally:
        runtime.close()
    wall_s = time.perf_counter() - started
    report_path = data_dir / "report.html"
    what_ran = describe_variants(
        settings, trains_nightly=config.train_nightly, variants=config.variants
    )
    write_report(
        result,
        report_path,
        config=config.world,
        transport=config.transport,
        wall_s=wall_s,
        logged_lists=logged,
        what_ran=what_ran,
        nights=nights.lines,
        experiment=experiment,
        guardrails=_guardrails(runtime),
        service=service_figures,
    )
    _print_summary(result, console, report_path, wall_s, what_ran)
    if experiment is not None:
        console.print(render_report(experiment), soft_wrap=True)
    console.print(next_steps(data_dir, key, has_experiment=experiment is not None), soft_wrap=True)
    return DemoOutcome(result, report_path, wall_s, experiment, tuple(nights.trainings))


def _clear_previous_run(data_dir: Path, console: Console) -> None:
    """Make ``data_dir`` an empty folder, saying so when a previous demo run is removed.

    Raises:
        ConfigError: the folder holds something other than a previous demo run.
    """
    if data_dir.exists():
        if not data_dir.is_dir():
            raise ConfigError(f"data_dir: {data_dir} is a file, not a folder")
        entries = {entry.name for entry in data_dir.iterdir()}
        if entries:
            # A run of this version leaves its marker; one of an earlier version its
            # report beside its store.
            if DEMO_MARKER not in entries and not {"report.html", "recloop.db"} <= entries:
                raise ConfigError(
                    f"data_dir: {data_dir} holds files that are not a previous demo run's; "
                    "give --data-dir a new or empty folder"
                )
            console.print(
                f"Removing the previous demo run in [bold]{data_dir}[/bold] (give --data-dir "
                "another folder to keep it).",
                soft_wrap=True,
            )
            shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text(
        "This folder was made by `recloop demo`, which replaces it on its next run.\n"
    )


def save_configuration(settings: Settings, data_dir: Path) -> Path:
    """Write ``settings`` to ``data_dir/recloop.toml``, where a command given
    ``--data-dir data_dir`` reads it."""
    path = data_dir / CONFIG_FILE
    write_settings(
        settings,
        path,
        header=(
            "The configuration recloop demo ran its service with. Commands given --data-dir\n"
            "on this folder (or RECLOOP_DATA_DIR) read it. The demo also waited for every\n"
            "source (2 s deadlines) and refreshed popularity, features and models on the\n"
            "simulation's schedule, so that one seed gives one run; neither is saved here."
        ),
        # The folder is given with --data-dir; the demo's store is always the embedded one.
        exclude={"data_dir", "store_url"},
    )
    return path


def next_steps(data_dir: Path, key: str, *, has_experiment: bool = True) -> str:
    """The commands to go on with from a finished demo, with its paths and key."""
    program = _program()
    folder = shlex.quote(_shown_path(data_dir))
    lines = [
        "",
        "[bold]Next[/bold], on this run's data (configuration in "
        f"{_shown_path(data_dir / CONFIG_FILE)}):",
    ]
    if has_experiment:
        lines.append(f"  {program} experiment report {DEMO_EXPERIMENT} --data-dir {folder}")
    lines += [
        f"  {program} models list --data-dir {folder}",
        f"  {program} serve --data-dir {folder}",
        f"  KEY=$(cat {shlex.quote(_shown_path(data_dir / 'dev-key'))})   # its admin key: {key}",
        '  curl "localhost:8000/api/recommendations?userId=u000001&surface=home" '
        '-H "Authorization: Bearer $KEY"',
    ]
    return "\n".join(lines)


def _shown_path(path: Path) -> str:
    """``path`` as a user would type it here: relative below the working directory."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def _program() -> str:
    """How to call ``recloop`` again: as typed when that was a path (``.venv/bin/recloop``),
    else by name."""
    typed = sys.argv[0] if sys.argv else ""
    if Path(typed).name == "recloop" and os.sep in typed:
        found = shutil.which("recloop")
        if found is None or Path(found).resolve() != Path(typed).resolve():
            return shlex.quote(typed)
    return "recloop"


def _request_ids(config: DemoConfig) -> Callable[[], str]:
    """Request ids that follow from the world's seed: ``{seed:08x}{n:024x}``."""
    counter = itertools.count(1)
    return lambda: f"{config.world.seed:08x}{next(counter):024x}"


def _guardrails(runtime: Runtime) -> list[GuardrailConfig]:
    """The demo experiment's guardrails as the service ran them (none without one)."""
    config = next((e for e in runtime.settings.experiments if e.name == DEMO_EXPERIMENT), None)
    return list(config.guardrails) if config is not None else []


@dataclass
class _Nights:
    """What the nights produced: a line each, the trainings and their versions, and the
    stage histograms as they stood before the first day and after each."""

    lines: list[str] = field(default_factory=list)
    trainings: list[TrainResult] = field(default_factory=list)
    versions: list[NightlyVersion] = field(default_factory=list)
    stages: list[Buckets] = field(default_factory=list)


def _service_figures(
    runtime: Runtime,
    world: World,
    clock: ServiceClock,
    result: SimulationResult,
    nights: _Nights,
    config: DemoConfig,
) -> ServiceFigures:
    """What the report shows from the service's side: model versions, the sources
    credited with the clicks (people only), each stage's and source's time."""
    registry = runtime.metrics.registry
    clicks, shown = clicks_by_source(
        runtime.store,
        "default",
        [clock.service_time(day) for day in result.days],
        {surface: variant for variant, surface in config.variants.items()},
        experiment=DEMO_EXPERIMENT if len(config.variants) > 1 else None,
        leave_out={user.user_id for user in world.users if user.is_bot},
    )
    return ServiceFigures(
        versions=nights.versions,
        clicks_by_source=clicks,
        impressions_by_source=shown,
        stages=stage_times(histogram_buckets(registry, STAGE_HISTOGRAM, "stage")),
        sources=stage_times(histogram_buckets(registry, SOURCE_HISTOGRAM, "source")),
        stage_p99_by_day=p99_by_day(nights.stages),
    )


def _experiment_report(runtime: Runtime) -> ExperimentReport | None:
    """The service's own analysis of the demo's experiment, read from its logs."""
    config = next((e for e in runtime.settings.experiments if e.name == DEMO_EXPERIMENT), None)
    if config is None:
        return None
    store = runtime.store
    outcomes = read_outcomes(store.rec_log, store.events, "default", DEMO_EXPERIMENT)
    return experiment_report(config, outcomes)


def _simulate(
    world: World,
    behaviour: Behaviour,
    client: ServiceClient,
    runtime: Runtime,
    clock: ServiceClock,
    config: DemoConfig,
    console: Console,
) -> tuple[SimulationResult, _Nights]:
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        # Bars redrawn in place are for a terminal; a file or a pipe gets a line a day.
        disable=not console.is_terminal,
    )
    tasks: dict[int, TaskID] = {}
    sessions_done = 0
    nights = _Nights()
    day_began = {"at": time.perf_counter(), "sessions": 0}

    def on_day(day: int, sessions: int) -> None:
        tasks[day] = progress.add_task(f"day {day + 1}/{config.days}: sessions", total=sessions)
        day_began.update(at=time.perf_counter(), sessions=sessions)

    def on_session() -> None:
        nonlocal sessions_done
        sessions_done += 1
        progress.advance(tasks[max(tasks)], 1)
        if sessions_done % REFRESH_EVERY_SESSIONS == 0:
            runtime.refresher.refresh()
            runtime.features.step()
            runtime.model_loader.step()

    def on_night(day: int) -> None:
        # Before the night's jobs: what the day's requests added to the stage histograms.
        nights.stages.append(histogram_buckets(runtime.metrics.registry, STAGE_HISTOGRAM, "stage"))
        if day >= 0 and progress.disable:
            console.print(
                f"day {day + 1}/{config.days}: {day_began['sessions']:,.0f} sessions in "
                f"{time.perf_counter() - day_began['at']:.0f} s",
                soft_wrap=True,
            )
        # The nightly jobs: popularity and features up to date, then `recloop train` on
        # everything logged so far, loaded by the running service without a restart.
        runtime.refresher.refresh()
        runtime.features.step()
        if day < 0 or not config.train_nightly:
            return
        runtime.writer.flush()
        task = progress.add_task(f"night {day + 1}: recloop train", total=None)
        started = time.perf_counter()
        try:
            trained = train(runtime.settings, runtime.store, now=clock())
        except RecloopError as exc:
            progress.remove_task(task)
            console.print(f"night {day + 1}: not trained ({exc})", soft_wrap=True)
            return
        nights.trainings.append(trained)
        runtime.model_loader.step()
        progress.update(task, total=1, completed=1)
        seconds = time.perf_counter() - started
        nights.versions.append(
            NightlyVersion(day + 1, trained.version, seconds, _trained_summary(trained))
        )
        nights.lines.append(
            f"night {day + 1}: model version {trained.version} in {seconds:.0f} s: "
            f"{nights.versions[-1].summary}"
        )
        console.print(nights.lines[-1], soft_wrap=True)

    def on_clock(now: datetime) -> None:
        clock.set(now)
        # A person asks again seconds after the last list, by when the service has written
        # it (group commit). Waiting for the writer makes that so on every run: rules that
        # read what was served (recently-shown) must see the same lists, as one seed gives
        # one run.
        runtime.writer.flush()

    simulation = Simulation(
        world,
        behaviour,
        client,
        DriverConfig(
            days=config.days,
            variants=dict(config.variants),
            experiment_surface=DEMO_SURFACE if len(config.variants) > 1 else None,
            clients=config.clients,
            search=config.search,
        ),
        on_night=on_night,
        on_day=on_day,
        on_session=on_session,
        on_clock=on_clock,
        on_deliver=clock.deliver,
        on_served=(
            config.observer(runtime, behaviour)
            if config.observer
            else lambda session, request_id: None
        ),
    )
    with progress:
        return simulation.run(), nights


def _trained_summary(trained: TrainResult) -> str:
    """What a night's training produced, in words."""
    ranker = trained.ranker.report.get("summary", {})
    if trained.ranker.model is None:
        ranked = f"no ranker ({trained.ranker.skipped})"
    else:
        ranked = "ranker AUC " + ", ".join(
            f"{head} {ranker[f'{head}_auc']:.3f}"
            for head in ("click", "satisfaction")
            if f"{head}_auc" in ranker
        )
        gate = trained.ranker.report.get("gate")
        if isinstance(gate, dict) and gate.get("serve"):
            ranked += f"; serves {gate['serve']}"
    recall = trained.merged.get("recall@500")
    merged = f"merged recall@500 {recall:.3f}" if recall is not None else "no validation users"
    return f"{trained.interactions:,} engagements; {merged}; {ranked}"


def describe_variants(
    settings: Settings,
    *,
    trains_nightly: bool = True,
    variants: Mapping[str, str] = DEMO_VARIANTS,
) -> str:
    """What each variant's surface runs, in words, from the configuration it ran with."""
    parts = []
    for variant, surface in variants.items():
        config = settings.surfaces[surface]
        names = [s.name for s in config.sources]
        parts.append(f"{variant} = {' + '.join(names)} ({config.ranker.name} ranker)")
    trained = sorted(
        {s.name for surface in variants.values() for s in settings.surfaces[surface].sources}
        & set(MODEL_SOURCES)
    )
    if not trained:
        note = ""
    elif trains_nightly:
        note = (
            f" The trained sources ({', '.join(trained)}) and the learned ranker recall and "
            "rank nothing on the first day: each simulated night runs `recloop train` on "
            "everything logged so far, and the service loads the new version."
        )
    else:
        note = (
            f" The trained sources ({', '.join(trained)}) recall nothing here: nightly "
            "training was off, so each night only refreshed popularity, trending and newest."
        )
    return (
        "What ran: "
        + "; ".join(parts)
        + ". Consumed, suppressed, removed and blocked items are never served."
        + note
    )


def _print_summary(
    result: SimulationResult, console: Console, report_path: Path, wall_s: float, what_ran: str
) -> None:
    table = Table(title="per day and variant (rates per served impression; p99 in ms)")
    columns = (
        "day",
        "variant",
        "lists",
        "CTR",
        "true",
        "satisf.",
        "hides",
        "cov",
        "new",
        "p99",
    )
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for d in range(len(result.days)):
        for variant in result.variants:
            s = result.per_day[variant][d]
            table.add_row(
                str(d + 1),
                variant,
                f"{s['requests']:,.0f}",
                f"{s['ctr']:.3f}",
                f"{s['true_ctr']:.3f}",
                f"{s['satisfaction']:.3f}",
                f"{s['hide_rate']:.3f}",
                f"{s['coverage']:.2f}",
                f"{s['new_item_share']:.2f}",
                f"{s['latency_p99_ms']:.0f}",
            )
    console.print(table)
    # The oracle: the world's own best lists for the same requests, in the same states.
    totals = Table(title="whole run (true: the world's expected values; oracle: its best lists)")
    totals.add_column("variant")
    for column in (
        "CTR",
        "true CTR",
        "oracle CTR",
        "satisfied/impr.",
        "true satisf.",
        "oracle satisf.",
        "hide rate",
        "coverage",
        "p99 ms",
    ):
        totals.add_column(column, justify="right")
    for variant in result.variants:
        t = result.totals(variant)
        totals.add_row(
            variant,
            f"{t['ctr']:.4f}",
            f"{t['true_ctr']:.4f}",
            f"{t['oracle_true_ctr']:.4f}",
            f"{t['satisfaction']:.4f}",
            f"{t['true_satisfaction']:.4f}",
            f"{t['oracle_true_satisfaction']:.4f}",
            f"{t['hide_rate']:.4f}",
            f"{t['coverage']:.3f}",
            f"{t['latency_p99_ms']:.1f}",
        )
    console.print(totals)
    if result.search_per_day:
        console.print(_search_table(result))
    console.print(
        f"{result.events_sent:,} events sent ({result.late_events:,} late, "
        f"{result.duplicate_events:,} sent twice, {result.bots} bot users). {what_ran} "
        f"Report: [bold]{report_path}[/bold]. Wall time {wall_s:.0f} s.",
        soft_wrap=True,
    )


def _search_table(result: SimulationResult) -> Table:
    """The search box per suggestion variant: the served lists against most-popular
    completion (MPC) and the world's best lists, in the same typing states."""
    table = Table(
        title="search box, whole run (per suggestion list: CTR and expected success of the "
        "served list, of most-popular-completion (MPC) and of the world's best; per search: "
        "success and keystrokes saved)"
    )
    rows = (
        ("searches", "searches", "{:,.0f}"),
        ("suggestion lists", "lists", "{:,.0f}"),
        ("CTR observed", "suggestion_ctr", "{:.3f}"),
        ("CTR true", "true_suggestion_ctr", "{:.3f}"),
        ("CTR of MPC", "baseline_suggestion_ctr", "{:.3f}"),
        ("CTR of world's best", "oracle_suggestion_ctr", "{:.3f}"),
        ("search success observed", "success_rate", "{:.3f}"),
        ("search success true", "true_success_rate", "{:.3f}"),
        ("list's expected success", "list_success", "{:.3f}"),
        ("MPC's expected success", "baseline_list_success", "{:.3f}"),
        ("world's best expected success", "oracle_list_success", "{:.3f}"),
        ("keystrokes saved", "keystrokes_saved", "{:.3f}"),
        ("reformulations / search", "reformulation_rate", "{:.3f}"),
        ("p99 ms", "latency_p99_ms", "{:.1f}"),
    )
    variants = list(result.search_per_day)
    table.add_column("")
    for variant in variants:
        table.add_column(variant, justify="right")
    totals = [result.search_totals(v) for v in variants]
    for label, key, fmt in rows:
        table.add_row(label, *(fmt.format(t[key]) for t in totals))
    return table

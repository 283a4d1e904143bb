"""The ``recloop`` command: serve, db, keys, import, snapshot, dataset, train, models,
experiment, demo."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from recloop.config import Settings
from recloop.domain import Scope
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.training.ranker import RankerFit

app = typer.Typer(
    help="recloop: a self-hostable recommendation platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The durable store's schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
snapshot_app = typer.Typer(
    help="Training-data snapshots: an app's store exported to Parquet under DATA_DIR/snapshots."
)
app.add_typer(snapshot_app, name="snapshot")

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _progress() -> Progress:
    """A progress bar on stderr, so that stdout stays for results."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Start the HTTP service (OpenAPI docs at /docs)."""
    import uvicorn

    from recloop.api.app import create_app
    from recloop.serving.runtime import (
        ensure_dev_key,
        freeze_heap,
        prepare_store,
        start_runtime,
    )

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings()
    try:
        store = prepare_store(settings)
        if settings.is_embedded():
            key = ensure_dev_key(store, settings.data_dir)
            if key is not None:
                console.print(
                    f"Created app [bold]default[/bold] and a development key "
                    f"(saved in {settings.data_dir / 'dev-key'}):\n{key}",
                    soft_wrap=True,
                )
        runtime = start_runtime(settings, store)
    except RecloopError as exc:
        raise _fail(exc) from exc
    freeze_heap()
    console.print(
        f"recloop serving {settings.resolved_store_url()} on http://{host}:{port} (docs: /docs)",
        soft_wrap=True,
    )
    try:
        uvicorn.run(
            create_app(settings, runtime),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )
    finally:
        runtime.close()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables to the newest schema."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision, upgrade

    settings = _settings()
    if settings.is_embedded():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(settings.resolved_store_url())
        before = current_revision(store.engine)
        upgrade(store.engine)
    except RecloopError as exc:
        raise _fail(exc) from exc
    console.print(f"schema: {before or 'empty'} -> {head_revision()}")
    store.close()


@db_app.command("current")
def db_current() -> None:
    """Print the store's schema revision and the newest one this code knows."""
    from recloop.store import open_store
    from recloop.store.migrate import current_revision, head_revision

    settings = _settings()
    if settings.is_embedded() and not (settings.data_dir / "recloop.db").exists():
        console.print(f"store: empty; code: {head_revision()}")
        return
    try:
        store = open_store(settings.resolved_store_url())
        console.print(
            f"store: {current_revision(store.engine) or 'empty'}; code: {head_revision()}"
        )
    except RecloopError as exc:
        raise _fail(exc) from exc
    store.close()


def _scopes(value: str) -> list[Scope]:
    try:
        return [Scope(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"scopes must be among {', '.join(s.value for s in Scope)}", param_hint="--scopes"
        ) from exc


@keys_app.command("create")
def keys_create(
    app_id: Annotated[
        str, typer.Option("--app", help="The app (tenant); created if new.")
    ] = "default",
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: ingest, serve, admin.")
    ] = "ingest,serve",
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
) -> None:
    """Create an API key and print it on the last line (it cannot be shown again)."""
    from recloop.serving.runtime import prepare_store
    from recloop.store.keys import issue_key

    parsed = _scopes(scopes)
    if not parsed:
        raise typer.BadParameter("give at least one scope", param_hint="--scopes")
    settings = _settings()
    now = datetime.now(UTC)
    try:
        store = prepare_store(settings)
        if store.tenancy.create_app(app_id, app_id, now):
            err_console.print(f"created app {app_id!r}")
        key = issue_key(store.tenancy, app_id, parsed, now, name=name)
    except RecloopError as exc:
        raise _fail(exc) from exc
    store.close()
    err_console.print(f"key for app {app_id!r} with scopes {', '.join(s.value for s in parsed)}:")
    print(key)


@keys_app.command("list")
def keys_list(app_id: Annotated[str, typer.Option("--app")] = "default") -> None:
    """List an app's keys (ids and scopes, never secrets)."""
    from recloop.serving.runtime import prepare_store

    store = prepare_store(_settings())
    table = Table("key id", "scopes", "name", "created", "revoked")
    for record in store.tenancy.list_keys(app_id):
        table.add_row(
            record.key_id,
            ",".join(sorted(record.scopes)),
            record.name or "",
            f"{record.created_at:%Y-%m-%d %H:%M}",
            f"{record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "",
        )
    console.print(table)
    store.close()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
) -> None:
    """Revoke a key; running servers stop accepting it within seconds."""
    from recloop.serving.runtime import prepare_store

    store = prepare_store(_settings())
    revoked = store.tenancy.revoke_key(key_id, datetime.now(UTC))
    store.close()
    if not revoked:
        raise _fail(RecloopError(f"no active key {key_id!r}"))
    console.print(f"revoked {key_id}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    kind: Annotated[str, typer.Option(help="items, users or events.")],
    app_id: Annotated[str, typer.Option("--app", help="The app to import into.")] = "default",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 if any row was rejected.")
    ] = False,
) -> None:
    """Import items, users or events from CSV, JSONL or Parquet, with the API's rules."""
    from recloop.ingest.files import count_rows, detect_format
    from recloop.ingest.importer import RecordKind, import_file
    from recloop.serving.runtime import ensure_dev_key, prepare_store

    try:
        record_kind = RecordKind(kind)
    except ValueError as exc:
        raise typer.BadParameter("must be items, users or events", param_hint="--kind") from exc
    settings = _settings()
    try:
        resolved_format = fmt or detect_format(file)
        store = prepare_store(settings)
        if settings.is_embedded():
            ensure_dev_key(store, settings.data_dir)
        if not store.tenancy.app_exists(app_id):
            hint = f"`recloop keys create --app {app_id}`"
            raise RecloopError(f"app {app_id!r} does not exist; create it with {hint}")
        total = count_rows(file, resolved_format)
        with _progress() as progress:
            task = progress.add_task(f"importing {record_kind.value}", total=total)
            report = import_file(
                store,
                app_id,
                record_kind,
                file,
                resolved_format,
                now=datetime.now(UTC),
                on_progress=lambda n: progress.advance(task, n),
            )
    except RecloopError as exc:
        raise _fail(exc) from exc
    store.close()
    summary = Table(title=f"import of {file.name}", show_header=False)
    summary.add_row("rows read", f"{report.read:,}")
    summary.add_row("stored", f"{report.stored:,}")
    if record_kind is RecordKind.EVENTS:
        summary.add_row("duplicates (already stored)", f"{report.duplicates:,}")
    summary.add_row("rejected", f"{report.rejected:,}")
    console.print(summary)
    if report.rejections:
        rejected = Table("line", "field", "rule", title="rejected rows (first 20)")
        for number, field_name, reason in report.rejections[:20]:
            rejected.add_row(str(number), field_name, reason)
        console.print(rejected)
    if strict and report.rejected:
        raise typer.Exit(1)


_SnapshotApp = Annotated[str, typer.Option("--app", help="The app to snapshot.")]


@snapshot_app.callback(invoke_without_command=True)
def snapshot(ctx: typer.Context, app_id: _SnapshotApp = "default") -> None:
    """Take a snapshot (with no subcommand, like `snapshot create`), or list them."""
    if ctx.invoked_subcommand is None:
        _take_snapshot(app_id)


@snapshot_app.command("create")
def snapshot_create(app_id: _SnapshotApp = "default") -> None:
    """Export an app's events, served lists, items and users to a new, immutable snapshot."""
    _take_snapshot(app_id)


def _take_snapshot(app_id: str) -> None:
    from recloop.data.snapshots import TABLES, check_snapshot, take_snapshot
    from recloop.serving.runtime import prepare_store

    settings = _settings()
    root = settings.data_dir / "snapshots"
    try:
        store = prepare_store(settings)
        try:
            check_snapshot(store, app_id)
            totals = {
                "events": store.events.count(app_id),
                "items": store.catalog.count_items(app_id),
            }
            with _progress() as progress:
                tasks = {name: progress.add_task(name, total=totals.get(name)) for name in TABLES}
                snap = take_snapshot(
                    store,
                    root,
                    app_id=app_id,
                    now=datetime.now(UTC),
                    on_progress=lambda name, rows: progress.advance(tasks[name], rows),
                )
                for name, task in tasks.items():
                    progress.update(task, total=snap.manifest.row_counts[name])
        finally:
            store.close()
    except RecloopError as exc:
        raise _fail(exc) from exc
    console.print(f"snapshot {snap.version} of app {app_id!r}")
    counts = Table("table", Column("rows", justify="right"))
    for name in TABLES:
        counts.add_row(name, f"{snap.manifest.row_counts[name]:,}")
    console.print(counts)
    console.print(f"path: {snap.path}", soft_wrap=True)


@snapshot_app.command("list")
def snapshot_list() -> None:
    """List the snapshots in DATA_DIR/snapshots, newest first."""
    from recloop.data.snapshots import list_snapshots

    root = _settings().data_dir / "snapshots"
    try:
        found = list_snapshots(root)
    except RecloopError as exc:
        raise _fail(exc) from exc
    if not found:
        console.print(f"no snapshots in {root}", soft_wrap=True)
        return
    console.print(f"snapshots in {root}, newest first", soft_wrap=True)
    table = Table(
        Column("version", no_wrap=True),
        "app",
        *(Column(name, justify="right") for name in ("events", "served lists", "items", "users")),
    )
    for snap in found:
        m = snap.manifest
        table.add_row(
            snap.version,
            m.app_id,
            *(
                f"{m.row_counts.get(name, 0):,}"
                for name in ("events", "recommendation_log", "items", "users")
            ),
        )
    console.print(table)


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed; one seed gives one run.")] = 7,
    users: Annotated[int, typer.Option(help="Users at the start.")] = 400,
    items: Annotated[int, typer.Option(help="Items at the start.")] = 1500,
    transport: Annotated[str, typer.Option(help="http (a real server) or inprocess.")] = "http",
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Run `recloop train` each simulated night.")
    ] = True,
) -> None:
    """Run a simulated world against the service on the embedded store, with a report."""
    from recloop.simulate.demo import DemoConfig, run_demo
    from recloop.simulate.world import WorldConfig

    if transport not in ("http", "inprocess"):
        raise typer.BadParameter("must be http or inprocess", param_hint="--transport")
    settings = _settings()
    config = DemoConfig(
        world=WorldConfig(seed=seed, initial_users=users, initial_items=items),
        days=days,
        transport="http" if transport == "http" else "inprocess",
        train_nightly=train,
    )
    try:
        run_demo(config, settings, console)
    except RecloopError as exc:
        raise _fail(exc) from exc


dataset_app = typer.Typer(help="Training sets built from snapshots.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(
    snapshot_version: Annotated[
        str | None, typer.Option("--snapshot", help="Snapshot version (default: the newest).")
    ] = None,
) -> None:
    """Clean, label, featurize (point in time) and split a snapshot into a training set."""
    from recloop.data.snapshots import list_snapshots
    from recloop.data.training import build_training_set

    settings = _settings()
    snapshots = list_snapshots(settings.data_dir / "snapshots")
    if snapshot_version is not None:
        snapshots = [s for s in snapshots if s.version == snapshot_version]
    if not snapshots:
        what = f"snapshot {snapshot_version!r}" if snapshot_version else "a snapshot"
        raise _fail(
            RecloopError(f"no {what} in {settings.data_dir / 'snapshots'}; run `recloop snapshot`")
        )
    snapshot = snapshots[0]
    with _progress() as progress:
        task = progress.add_task("features for impressions", total=None)
        try:
            built = build_training_set(
                snapshot,
                settings.data_dir / "datasets",
                on_progress=lambda n: progress.advance(task, n),
            )
        except (RecloopError, ValueError) as exc:
            raise _fail(exc) from exc
    console.print(built.cleaning.render())
    table = Table(
        "part",
        "rows",
        "clicks",
        "satisfied",
        "not satisfied",
        "click, unknown",
        title=f"training set from {snapshot.version}",
    )
    for name, part in built.parts.items():
        positives = built.metadata["positives"][name]
        unknown = built.metadata["unlabelled"][name]
        table.add_row(
            name,
            f"{part.num_rows:,}",
            f"{built.metadata['clicks'][name]:,}",
            f"{positives:,}",
            f"{part.num_rows - positives - unknown:,}",
            f"{unknown:,}",
        )
    console.print(table)
    labels = built.labels
    console.print(
        f"impressions {labels.impressions:,}: {labels.too_recent:,} too recent to label, "
        f"{labels.ambiguous:,} ambiguous (a click, satisfaction unknown); attributed by requestId "
        f"{labels.attributed_by_request:,}, by window {labels.attributed_by_window:,}. "
        f"{len(built.metadata['features'])} features. Boundaries: {built.boundaries.as_dict()}. "
        f"Written to {built.path}",
        soft_wrap=True,
    )


def _print_ranker(fitted: RankerFit) -> None:
    """The learned ranker's test figures: quality, calibration, what it relies on."""
    if fitted.model is None:
        console.print(f"ranker: not trained ({fitted.skipped})", soft_wrap=True)
        return
    report = fitted.report
    nan = float("nan")
    table = Table(
        "head",
        Column("rounds", justify="right"),
        Column("AUC", justify="right"),
        Column("log loss", justify="right"),
        Column("ECE raw → calibrated", justify="right"),
        "top features (share of gain)",
        title=f"learned ranker (test part, {report['rows'].get('test', 0):,} impressions)",
    )
    for name, head in report["heads"].items():
        test = head.get("test", {})
        top = ", ".join(f"{f} {g:.2f}" for f, g in list(head["importance"].items())[:4])
        table.add_row(
            name,
            str(head["rounds"]),
            f"{test.get('auc', nan):.3f}",
            f"{test.get('log_loss', nan):.4f}",
            f"{test.get('ece_uncalibrated', nan):.4f} → {test.get('ece', nan):.4f}",
            top,
        )
    console.print(table)
    for label, ndcg in report.get("test_in_list_ndcg", {}).items():
        console.print(
            f"NDCG@10 within served lists ({label}, {ndcg['lists']} lists): ranker "
            f"{ndcg['ranker']:.4f}, served order {ndcg['logged']:.4f}",
            soft_wrap=True,
        )


@app.command()
def train(
    app_id: Annotated[str, typer.Option("--app", help="The app to train.")] = "default",
    tune: Annotated[
        bool, typer.Option("--tune", help="Search hyper-parameters again (Optuna) first.")
    ] = False,
    trials: Annotated[
        int | None, typer.Option(help="Trials per source when tuning (train.tune_trials).")
    ] = None,
    promote: Annotated[bool, typer.Option(help="Make the new version the one served.")] = True,
) -> None:
    """Snapshot, build training data, fit and validate every retrieval source, publish."""
    from recloop.serving.runtime import prepare_store
    from recloop.training.job import train as run_training

    settings = _settings()
    try:
        store = prepare_store(settings)
        try:
            with _progress() as progress:
                tasks: dict[str, TaskID] = {}

                def report(stage: str, advance: int, total: int | None) -> None:
                    if stage not in tasks:
                        tasks[stage] = progress.add_task(stage, total=total)
                    progress.update(tasks[stage], advance=advance, total=total)

                result = run_training(
                    settings,
                    store,
                    app_id=app_id,
                    retune=tune,
                    trials=trials,
                    promote=promote,
                    progress=report,
                )
        finally:
            store.close()
    except RecloopError as exc:
        raise _fail(exc) from exc
    console.print(
        f"model version {result.version} from snapshot {result.snapshot_version}: "
        f"{result.interactions:,} engagements, {result.users:,} users, {result.items:,} items; "
        f"validated on {result.validation_cases:,} users",
        soft_wrap=True,
    )
    table = Table(
        Column("source", no_wrap=True),
        Column("fit s", justify="right"),
        Column("R@50", justify="right"),
        Column("R@100", justify="right"),
        Column("R@500", justify="right"),
        Column("NDCG@10", justify="right"),
        "tuned",
        title="retrieval sources (validation)",
    )
    metrics = ("recall@50", "recall@100", "recall@500", "ndcg@10")
    for r in result.sources:
        if r.skipped:
            continue
        table.add_row(
            r.name if r.kind == r.name else f"{r.name} ({r.kind})",
            f"{r.fit_seconds:.1f}",
            *(f"{r.metrics.get(k, float('nan')):.4f}" for k in metrics),
            "yes" if r.tuned else "",
        )
    if result.merged:
        table.add_row(
            "merged", "", *(f"{result.merged.get(k, float('nan')):.4f}" for k in metrics), ""
        )
    console.print(table)
    for r in result.sources:
        if r.skipped:
            console.print(f"{r.name}: not trained ({r.skipped})", soft_wrap=True)
    segments = [
        k.removeprefix("recall@100 users ")
        for k in result.merged
        if "users" in k and k.startswith("recall")
    ]
    if segments:
        console.print(
            "merged recall@100 by user segment (engaged items before the cut-off): "
            + ", ".join(
                f"{name}: {result.merged[f'recall@100 users {name}']:.4f} "
                f"({int(result.merged[f'cases users {name}'])} users)"
                for name in segments
            ),
            soft_wrap=True,
        )
    _print_ranker(result.ranker)
    if result.linucb.evidence is not None:
        console.print(
            f"linucb: evidence from {result.linucb.evidence.rows:,} impressions "
            f"({result.linucb.evidence.clicks:,.0f} clicks)",
            soft_wrap=True,
        )
    state = "promoted: running services load it" if result.promoted else "not promoted"
    console.print(f"{result.path} ({state})", soft_wrap=True)


models_app = typer.Typer(help="Model versions: list them, promote one (or roll back).")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
) -> None:
    """Model versions of an app, newest last; the served one is marked."""
    from recloop.registry.artifacts import ModelRegistry

    registry = ModelRegistry(_settings().resolved_model_dir())
    current = registry.current(app_id)
    table = Table(
        "version", "served", "snapshot", "sources (validation recall@100)", "ranker (test AUC)"
    )
    for version in registry.versions(app_id):
        manifest = registry.manifest(app_id, version)
        sources = ", ".join(
            f"{m.name} {m.metrics['recall@100']:.3f}" if "recall@100" in m.metrics else m.name
            for m in manifest.models
        )
        summary = manifest.extra.get("ranker") or {}
        ranker = ", ".join(
            f"{head} {summary[f'{head}_auc']:.3f}"
            for head in ("click", "satisfaction")
            if f"{head}_auc" in summary
        )
        table.add_row(
            version,
            "*" if version == current else "",
            manifest.snapshot_version or "",
            sources,
            ranker or "none",
        )
    console.print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="The version to serve.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
) -> None:
    """Serve ``version`` (a rollback is a promotion of an older one); services pick it up
    within ``serving.model_refresh_s``."""
    from recloop.registry.artifacts import ModelRegistry

    registry = ModelRegistry(_settings().resolved_model_dir())
    try:
        registry.promote(app_id, version)
    except FileNotFoundError as exc:
        raise _fail(exc) from exc
    console.print(f"app {app_id!r} now serves model version {version}")


experiment_app = typer.Typer(
    help="A/B experiments ([[experiments]] in recloop.toml): list them, report one.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("list")
def experiment_list() -> None:
    """The configured experiments: surface, layer, traffic, variants and whether they run."""
    from recloop.experiments.guard import StoppedExperiments
    from recloop.experiments.rollout import RampRecord
    from recloop.serving.runtime import ramps_path, stopped_experiments_path

    settings = _settings()
    now = datetime.now(UTC)
    stops = StoppedExperiments(stopped_experiments_path(settings)).read()
    ramps = RampRecord(ramps_path(settings)).read()
    table = Table("experiment", "surface", "layer", "traffic", "variants", "window", "state")
    for e in settings.experiments:
        window = f"{e.start:%Y-%m-%d} .. " if e.start else "from start .. "
        window += f"{e.stop:%Y-%m-%d}" if e.stop else "open"
        ramp = ramps.get(e.name)
        shares = e.shares(ramp.stage if ramp else 0)
        state = (
            f"stopped {stops[e.name].at:%Y-%m-%d %H:%M}: {stops[e.name].reason}"
            if e.name in stops
            else e.state_at(now)
        )
        if e.ramp and e.name not in stops:
            stage = ramp.stage if ramp else 0
            state += f", ramp stage {stage + 1}/{len(e.ramp)}" + (
                f" since {ramp.since:%Y-%m-%d %H:%M}" + (", complete" if ramp.complete else "")
                if ramp
                else " (not begun)"
            )
        table.add_row(
            e.name,
            e.surface,
            e.layer,
            f"{e.traffic:.0%}",
            " + ".join(v.name for v in e.variants) + " interleaved"
            if e.kind == "interleave"
            else ", ".join(f"{v.name} {shares[v.name]:.0%}" for v in e.variants),
            window,
            state,
        )
    console.print(table)
    if settings.experiment_holdout:
        console.print(f"holdout: {settings.experiment_holdout:.1%} of users in no experiment")


@experiment_app.command("stop")
def experiment_stop(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "stopped by hand",
) -> None:
    """Stop an experiment now: its users get the surface as configured (services pick it up
    within ``experiment_check_s``). Remove it from the configuration to make it final."""
    from recloop.experiments.guard import StoppedExperiments
    from recloop.serving.runtime import stopped_experiments_path

    settings = _settings()
    if name not in {e.name for e in settings.experiments}:
        raise _fail(ValueError(f"no experiment {name!r} in the configuration"))
    record = StoppedExperiments(stopped_experiments_path(settings))
    if record.stop(name, reason, datetime.now(UTC)):
        console.print(f"experiment {name!r} stopped: {reason}")
    else:
        console.print(f"experiment {name!r} was already stopped")


@experiment_app.command("report")
def experiment_report_command(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level.")] = 0.05,
) -> None:
    """Each variant against the control from the served lists and events: CTR, satisfaction,
    hides, p99 latency, sample ratio, power, guardrails and a ship decision."""
    import orjson

    from recloop.experiments.interleaving_report import read_interleaving_report
    from recloop.experiments.render import render_interleaving_report, render_report
    from recloop.experiments.rollout import RampRecord, read_report
    from recloop.serving.runtime import prepare_store, ramps_path

    settings = _settings()
    config = next((e for e in settings.experiments if e.name == name), None)
    if config is None:
        known = ", ".join(e.name for e in settings.experiments) or "none configured"
        raise _fail(ValueError(f"no experiment {name!r} in the configuration ({known})"))
    try:
        state = RampRecord(ramps_path(settings)).read().get(name)
        store = prepare_store(settings)
        try:
            if config.kind == "interleave":
                interleaved = read_interleaving_report(
                    config, store.rec_log, store.events, app_id, alpha=alpha
                )
            else:
                report = read_report(
                    config, store.rec_log, store.events, app_id, state, alpha=alpha
                )
        finally:
            store.close()
    except (RecloopError, ValueError) as exc:
        raise _fail(exc) from exc
    if config.kind == "interleave":
        body, tables = interleaved.to_dict(), render_interleaving_report(interleaved)
    else:
        body, tables = report.to_dict(), render_report(report)
    if as_json:
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        console.print(tables, soft_wrap=True)


@experiment_app.command("power")
def experiment_power(
    surface: Annotated[str, typer.Option(help="The surface the experiment would run on.")],
    days: Annotated[float, typer.Option(min=0.01, help="Its planned length.")] = 14.0,
    share: Annotated[
        float, typer.Option(min=0.0001, max=1.0, help="Each variant's share of the users.")
    ] = 0.5,
    metric: Annotated[str, typer.Option(help="ctr or satisfaction.")] = "ctr",
    effect: Annotated[
        float | None, typer.Option(help="A relative change to size for (0.05 = 5%).")
    ] = None,
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Plan an experiment from the surface's last DAYS of logs: its users, the metric's
    baseline and per-user variance, the smallest change a variant with SHARE of the users
    would detect (80% power, alpha 0.05), and the users an --effect needs."""
    import orjson

    from recloop.experiments.planning import plan_experiment
    from recloop.serving.runtime import prepare_store

    settings = _settings()
    if surface not in settings.surfaces:
        raise _fail(ValueError(f"surface: no surface named {surface!r}"))
    try:
        store = prepare_store(settings)
        try:
            plan = plan_experiment(
                store.rec_log,
                store.events,
                app_id,
                surface,
                now=datetime.now(UTC),
                days=days,
                share=share,
                metric=metric,
                effect=effect,
            )
        finally:
            store.close()
    except (RecloopError, ValueError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    console.print(
        f"surface {surface}, last {days:g} days ({plan.days_of_history:.1f} days of lists "
        f"found): {plan.users:,} users ({plan.bots_left_out} bot-like left out), {metric} "
        f"{plan.baseline:.4f}, per-user variance {plan.unit_variance:.3g}",
        soft_wrap=True,
    )
    console.print(
        f"a variant with {share:.0%} of them ({plan.users_per_variant:,} users) detects a "
        f"change of {plan.mde_relative:.1%} in {metric} (80% power, alpha 0.05)",
        soft_wrap=True,
    )
    if plan.users_needed is not None and effect is not None:
        console.print(
            f"to detect {effect:.1%}: {plan.users_needed:,} users per variant "
            f"({plan.users_needed / max(1, plan.users):.1f}x the users of {days:g} days)",
            soft_wrap=True,
        )


shadow_app = typer.Typer(
    help="Shadow pipelines ([[shadows]] in recloop.toml): scored and logged, never served.",
    no_args_is_help=True,
)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("list")
def shadow_list() -> None:
    """The configured shadows: the surface each follows, its share of requests, its pipeline."""
    settings = _settings()
    table = Table("shadow", "surface", "traffic", "pipeline", "overrides", "model version")
    for s in settings.shadows:
        table.add_row(
            s.name,
            s.surface,
            f"{s.traffic:.0%}",
            s.pipeline or s.surface,
            ", ".join(sorted(s.overrides)) or "-",
            s.model_version or "promoted",
        )
    console.print(table)


@shadow_app.command("report")
def shadow_report_command(
    name: Annotated[str, typer.Argument(help="The shadow.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    resamples: Annotated[int, typer.Option(min=0, help="Bootstrap resamples.")] = 1000,
) -> None:
    """The shadow's lists against the served ones (agreement, latency, fallbacks) and its CTR
    per slot estimated off-policy from the served lists' logged propensities."""
    import orjson

    from recloop.evaluation.ope import BootstrapSpec
    from recloop.experiments.render import render_shadow_report
    from recloop.experiments.shadow_report import read_shadow_pairs, shadow_report
    from recloop.serving.runtime import prepare_store

    settings = _settings()
    if name not in {s.name for s in settings.shadows}:
        known = ", ".join(s.name for s in settings.shadows) or "none configured"
        raise _fail(ValueError(f"no shadow {name!r} in the configuration ({known})"))
    try:
        store = prepare_store(settings)
        try:
            pairs, missing = read_shadow_pairs(
                store.shadow_log, store.rec_log, store.events, app_id, name
            )
        finally:
            store.close()
    except RecloopError as exc:
        raise _fail(exc) from exc
    report = shadow_report(name, pairs, missing, BootstrapSpec(n_resamples=resamples))
    if as_json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        console.print(render_shadow_report(report), soft_wrap=True)


def main() -> None:
    """Entry point of the ``recloop`` script."""
    app()

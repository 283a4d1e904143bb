"""``recloop experiment``: list, stop, report and plan experiments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, audit, console, fail, load_settings
from recloop.errors import RecloopError

experiment_app = typer.Typer(
    help="A/B experiments (the experiments tables of recloop.toml): list them, report one.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("list")
def experiment_list(data_dir: DataDir = None) -> None:
    """The configured experiments: surface, layer, traffic, variants and whether they run."""
    from recloop.analysis.guard import StoppedExperiments
    from recloop.analysis.rollout import RampRecord
    from recloop.runtime.process import ramps_path, stopped_experiments_path

    settings = load_settings(data_dir)
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
    name: Annotated[str, typer.Argument(metavar="NAME", help="The experiment.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "stopped by hand",
    app_id: Annotated[
        str, typer.Option("--app", help="The app whose audit log records the stop.")
    ] = "default",
    data_dir: DataDir = None,
) -> None:
    """Stop an experiment now: its users get the surface as configured.

    Running services pick it up within experiment_check_s. Remove the experiment from the
    configuration to make it final. The stop is recorded in the audit log.
    """
    from recloop.analysis.guard import StoppedExperiments
    from recloop.runtime.process import stopped_experiments_path

    settings = load_settings(data_dir)
    if name not in {e.name for e in settings.experiments}:
        raise fail(ValueError(f"no experiment {name!r} in the configuration"))
    record = StoppedExperiments(stopped_experiments_path(settings))
    if record.stop(name, reason, datetime.now(UTC)):
        audit(settings, app_id, "experiment.stop", name, {"reason": reason, "via": "cli"})
        console.print(f"experiment {name!r} stopped: {reason}")
    else:
        console.print(f"experiment {name!r} was already stopped")


@experiment_app.command("report")
def experiment_report_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The experiment.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    alpha: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="Significance level, 0.0001 to 0.5.")
    ] = 0.05,
    data_dir: DataDir = None,
) -> None:
    """Each variant against the control, from the served lists and events.

    CTR, satisfaction, hides, p99 latency, sample ratio, power, guardrails and a ship
    decision.
    """
    import orjson

    from recloop.analysis.interleaving_report import read_interleaving_report
    from recloop.analysis.render import render_interleaving_report, render_report
    from recloop.analysis.rollout import RampRecord, read_report
    from recloop.runtime.process import ramps_path
    from recloop.store.bootstrap import prepare_store

    settings = load_settings(data_dir)
    config = next((e for e in settings.experiments if e.name == name), None)
    if config is None:
        known = ", ".join(e.name for e in settings.experiments) or "none configured"
        raise fail(ValueError(f"no experiment {name!r} in the configuration ({known})"))
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
        raise fail(exc) from exc
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
    data_dir: DataDir = None,
) -> None:
    """Plan an experiment from a surface's recent logs.

    From the last --days of logs: the surface's users, the metric's baseline and per-user
    variance, the smallest change a variant with --share of the users would detect (80%
    power, alpha 0.05), and the users an --effect needs.
    """
    import orjson

    from recloop.analysis.planning import plan_experiment
    from recloop.store.bootstrap import prepare_store

    settings = load_settings(data_dir)
    if surface not in settings.surfaces:
        raise fail(ValueError(f"surface: no surface named {surface!r}"))
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
        raise fail(exc) from exc
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

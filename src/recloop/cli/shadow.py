"""``recloop shadow``: shadow pipelines and their off-policy reports."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, fail, load_settings
from recloop.errors import RecloopError

shadow_app = typer.Typer(
    help="Shadow pipelines (the shadows tables of recloop.toml): scored and logged, never served.",
    no_args_is_help=True,
)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("list")
def shadow_list(data_dir: DataDir = None) -> None:
    """The configured shadows: the surface each follows, its share of requests, its pipeline."""
    settings = load_settings(data_dir)
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
    name: Annotated[str, typer.Argument(metavar="NAME", help="The shadow.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    resamples: Annotated[int, typer.Option(min=0, help="Bootstrap resamples.")] = 1000,
    data_dir: DataDir = None,
) -> None:
    """A shadow's lists against the served ones, and its CTR estimated off-policy.

    Agreement, latency and fallbacks, and its CTR per slot estimated from the served lists'
    logged propensities.
    """
    import orjson

    from recloop.analysis.render import render_shadow_report
    from recloop.analysis.shadow_report import read_shadow_pairs, shadow_report
    from recloop.evaluation.ope import BootstrapSpec
    from recloop.store.bootstrap import prepare_store

    settings = load_settings(data_dir)
    if name not in {s.name for s in settings.shadows}:
        known = ", ".join(s.name for s in settings.shadows) or "none configured"
        raise fail(ValueError(f"no shadow {name!r} in the configuration ({known})"))
    try:
        store = prepare_store(settings)
        try:
            pairs, missing = read_shadow_pairs(
                store.shadow_log, store.rec_log, store.events, app_id, name
            )
        finally:
            store.close()
    except RecloopError as exc:
        raise fail(exc) from exc
    report = shadow_report(name, pairs, missing, BootstrapSpec(n_resamples=resamples))
    if as_json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        console.print(render_shadow_report(report), soft_wrap=True)

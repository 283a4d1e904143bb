"""``recloop train``: fit, validate and publish a model version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    TaskID,
)
from rich.table import Column, Table

from recloop.cli.common import DataDir, app, console, fail, load_settings, progress_bar
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.training.ranker import RankerFit


#: How the training report names each validation split (train.validation_split).
_SPLITS = {
    "time": "split time: what they did after a cut-off",
    "user": "split user: each user's latest interactions",
    "random": "split random: a random share of each user's interactions",
}


def _print_ranker(fitted: RankerFit) -> None:
    """The learned ranker's test figures: quality, calibration, what it relies on."""
    if fitted.model is None:
        console.print(f"ranker: not trained ({fitted.skipped})", soft_wrap=True)
        return
    report = fitted.report
    nan = float("nan")
    crossed = report.get("cross_fit", {})
    tested = report["rows"].get("test", 0)
    title = f"learned ranker (test part, {tested:,} impressions)"
    if crossed.get("per_fold") and not tested:
        title = "learned ranker (fitted on every fold's users; out-of-fold figures below)"
    table = Table(
        "head",
        Column("rounds", justify="right"),
        Column("AUC", justify="right"),
        Column("log loss", justify="right"),
        Column("ECE raw → calibrated", justify="right"),
        "top features (share of gain)",
        title=title,
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
    if crossed.get("per_fold"):
        console.print(
            f"cross-fitted over {crossed['folds']} folds of users in {crossed['seconds']:.1f} s "
            f"({crossed['why']}); each fold's lists scored by a ranker fitted without them:",
            soft_wrap=True,
        )
    for fold in crossed.get("per_fold", []):
        heads = ", ".join(
            f"{name} {head['rounds']} rounds, AUC {head.get('auc', nan):.3f}"
            for name, head in fold["heads"].items()
        )
        console.print(
            f"  fold {fold['fold']}, {fold['test_users']} users: {heads or fold.get('skipped')}",
            soft_wrap=True,
        )


def _report(path: Path | None, body: dict[str, Any]) -> None:
    """Write ``body`` to ``path`` as JSON (nothing without a path)."""
    if path is not None:
        path.write_text(json.dumps(body, indent=1))


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
    report_json: Annotated[
        Path | None,
        typer.Option(
            "--report-json",
            dir_okay=False,
            help="Also write what the run read and decided (version, data, gates, or the "
            "error) to this file as JSON; the scheduler reads it.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Snapshot, build training data, fit and validate every retrieval source, publish."""
    from recloop.store.bootstrap import prepare_store
    from recloop.training.job import train as run_training

    settings = load_settings(data_dir)
    try:
        store = prepare_store(settings)
        try:
            with progress_bar() as progress:
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
        _report(report_json, {"error": str(exc)})
        raise fail(exc) from exc
    _report(
        report_json,
        {
            "version": result.version,
            "snapshot_version": result.snapshot_version,
            "interactions": result.interactions,
            "users": result.users,
            "items": result.items,
            "validation_cases": result.validation_cases,
            "validation_split": result.validation_split,
            "promoted": result.promoted,
            **result.verdict.as_dict(),
        },
    )
    console.print(
        f"model version {result.version} from snapshot {result.snapshot_version}: "
        f"{result.interactions:,} engagements, {result.users:,} users, {result.items:,} items; "
        f"validated on {result.validation_cases:,} users ({_SPLITS[result.validation_split]})",
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
    for gate in result.verdict.gates:
        mark = "[green]pass[/green]" if gate.passed else "[red]BLOCK[/red]"
        console.print(f"gate {gate.name}: {mark}: {gate.detail}", soft_wrap=True)
    if result.promoted:
        state = "promoted: running services load it"
    elif not result.verdict.passed:
        blocked = ", ".join(g.name for g in result.verdict.blocked_by)
        state = (
            f"not promoted: blocked by {blocked}; `recloop models promote "
            f"{result.version} --force` serves it anyway"
        )
    else:
        state = "not promoted (--no-promote)"
    console.print(f"{result.path} ({state})", soft_wrap=True)

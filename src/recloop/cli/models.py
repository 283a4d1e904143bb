"""``recloop models``: list model versions, promote one or roll back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Column, Table

from recloop.cli.common import (
    DataDir,
    app,
    console,
    err_console,
    fail,
    load_settings,
    resolve_id,
)
from recloop.config import Settings
from recloop.errors import RecloopError

models_app = typer.Typer(help="Model versions: list them, promote one (or roll back).")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Model versions of an app, newest last; the served one is marked."""
    from recloop.registry.artifacts import ModelRegistry

    registry = ModelRegistry(load_settings(data_dir).resolved_model_dir())
    current = registry.current(app_id)
    versions = registry.versions(app_id)
    manifests = {version: registry.manifest(app_id, version) for version in versions}
    # Ids are what `models promote` is given: never cut, however narrow the terminal.
    table = Table(
        Column("version", no_wrap=True, min_width=max(map(len, versions), default=7)),
        "served",
        Column(
            "snapshot",
            no_wrap=True,
            min_width=max((len(m.snapshot_version or "") for m in manifests.values()), default=8),
        ),
        "sources (validation recall@100)",
        "ranker (test AUC)",
    )
    for version in versions:
        manifest = manifests[version]
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
    version: Annotated[
        str,
        typer.Argument(
            metavar="VERSION",
            help="The version to serve, or the start of its id if no other has it.",
        ),
    ],
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Serve a model version; a rollback is the promotion of an older one.

    Running services pick it up within serving.model_refresh_s.
    """
    from recloop.registry.artifacts import DamagedVersion, ModelRegistry

    settings = load_settings(data_dir)
    registry = ModelRegistry(settings.resolved_model_dir())
    try:
        version = resolve_id(version, registry.versions(app_id), "model version")
        registry.promote(app_id, version)
    except (FileNotFoundError, DamagedVersion, RecloopError) as exc:
        raise fail(exc) from exc
    _audit(settings, app_id, "model.promote", version)
    console.print(f"app {app_id!r} now serves model version {version}")


def _audit(settings: Settings, app_id: str, action: str, subject: str) -> None:
    """Record an administrative action in the store's audit log (a store that cannot be
    opened is said, and the action stands)."""
    from recloop.store.bootstrap import prepare_store

    try:
        store = prepare_store(settings)
    except RecloopError as exc:
        err_console.print(f"[yellow]not audited[/yellow] ({exc})")
        return
    try:
        store.audit.record(app_id, "cli", action, subject, datetime.now(UTC))
    finally:
        store.close()

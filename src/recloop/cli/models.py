"""``recloop models``: list model versions and their promotion gates, promote one (a
blocked one with ``--force``, audited) or roll back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from recloop.cli.common import (
    DataDir,
    app,
    audit,
    console,
    fail,
    load_settings,
    resolve_id,
)
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.registry.artifacts import VersionManifest
    from recloop.training.promotion import Verdict

models_app = typer.Typer(help="Model versions: list them, promote one (or roll back).")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Model versions of an app, newest last: the served one, each one's promotion gates.

    Gates: passed, not gated (trained before them), or the gates that blocked
    the version, with their reasons below the table.
    """
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
        "gates",
    )
    blocked: list[str] = []
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
        verdict = _verdict(manifest)
        if verdict is None:
            gates = "not gated"
        elif verdict.passed:
            gates = "passed"
        else:
            gates = "blocked: " + ", ".join(g.name for g in verdict.blocked_by)
            blocked += [f"{version} {g.name}: {g.detail}" for g in verdict.blocked_by]
        table.add_row(
            version,
            "*" if version == current else "",
            manifest.snapshot_version or "",
            sources,
            ranker or "none",
            gates,
        )
    console.print(table)
    for line in blocked:
        console.print(line, soft_wrap=True, markup=False)


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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Serve a version its promotion gates blocked; the audit log records it, "
            "with the gates it failed.",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Serve a model version; a rollback is the promotion of an older one.

    A version the promotion gates blocked is refused unless given --force. Running
    services pick it up within serving.model_refresh_s.
    """
    from recloop.registry.artifacts import DamagedVersion, ModelRegistry

    settings = load_settings(data_dir)
    registry = ModelRegistry(settings.resolved_model_dir())
    try:
        version = resolve_id(version, registry.versions(app_id), "model version")
        verdict = _verdict(registry.manifest(app_id, version))
        failed = () if verdict is None else verdict.blocked_by
        if failed and not force:
            reasons = "; ".join(f"{g.name}: {g.detail}" for g in failed)
            raise RecloopError(
                f"model version {version} was blocked by its promotion gates ({reasons}); "
                "--force serves it anyway"
            )
        registry.promote(app_id, version)
    except (FileNotFoundError, DamagedVersion, RecloopError) as exc:
        raise fail(exc) from exc
    if failed:
        audit(
            settings,
            app_id,
            "model.promote.force",
            version,
            {"blocked_by": {g.name: g.detail for g in failed}},
        )
        console.print(
            f"app {app_id!r} now serves model version {version}, which "
            f"{', '.join(g.name for g in failed)} blocked (forced; audited)"
        )
        return
    audit(settings, app_id, "model.promote", version)
    console.print(f"app {app_id!r} now serves model version {version}")


@models_app.command("rollback")
def models_rollback(
    app_id: Annotated[str, typer.Option("--app", help="The app.")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Serve again the version served before the current one (the last other promotion).

    It was served once, so its gates are not asked again. Running services
    pick it up within serving.model_refresh_s.
    """
    from recloop.registry.artifacts import DamagedVersion, ModelRegistry

    settings = load_settings(data_dir)
    registry = ModelRegistry(settings.resolved_model_dir())
    current = registry.current(app_id)
    previous = registry.previous(app_id)
    if previous is None:
        raise fail(RecloopError(f"app {app_id!r} has no earlier served version to roll back to"))
    try:
        registry.promote(app_id, previous)
    except (FileNotFoundError, DamagedVersion) as exc:
        raise fail(exc) from exc
    audit(settings, app_id, "model.rollback", previous, {"from": current})
    console.print(f"app {app_id!r} now serves model version {previous} again (was {current})")


def _verdict(manifest: VersionManifest) -> Verdict | None:
    """A version's promotion gates, or None for a version trained before they existed."""
    from recloop.training.promotion import Verdict

    recorded = manifest.extra.get("promotion")
    return Verdict.from_dict(recorded) if isinstance(recorded, dict) else None

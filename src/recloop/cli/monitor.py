"""``recloop monitor``: the drift state now, from a running service or from the data dir.

With ``--url`` it reads the service's ``/metrics`` (an admin key: ``--key``, else the data
directory's development key) and prints, per app, the ranker features with the highest
PSI, the score's drift, the embedding shift, coverage and the head's share. Without it, it
measures what the data directory alone can tell: the embedding shift between the promoted
version and the one before it. Exit 0 when nothing is over its threshold
(``serving.drift``), 1 when something is (for cron), 2 when the state cannot be read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, err_console, load_settings
from recloop.config.drift import DriftSettings

Labels = tuple[tuple[str, str], ...]


@dataclass
class AppDrift:
    """One app's drift as read from ``/metrics``."""

    app_id: str
    requests: float = 0.0
    features: dict[str, tuple[float, float]] = field(default_factory=dict)  # psi, p-value
    score: tuple[float, float] | None = None
    embeddings: dict[tuple[str, str], float] = field(default_factory=dict)
    head_share: float | None = None
    coverage: dict[tuple[str, str], float] = field(default_factory=dict)
    detected: bool = False

    def over(self, settings: DriftSettings) -> list[str]:
        """What is over its threshold, in words."""
        out: list[str] = []
        if self.requests >= settings.min_requests:
            drifts = list(self.features.items())
            if self.score is not None:
                drifts.append(("score", self.score))
            for name, (psi, p_value) in drifts:
                if psi > settings.psi_threshold and p_value < settings.p_value:
                    out.append(f"{name}: PSI {psi:.2f} > {settings.psi_threshold:g}")
        for (source, entity), shift in self.embeddings.items():
            if shift > settings.embedding_shift_threshold:
                out.append(
                    f"{source} {entity} embeddings: shift {shift:.2f} > "
                    f"{settings.embedding_shift_threshold:g}"
                )
        if self.head_share is not None and self.head_share > settings.head_share_threshold:
            out.append(f"head share {self.head_share:.2f} > {settings.head_share_threshold:g}")
        return out


def parse_metrics(text: str) -> dict[str, AppDrift]:
    """Each app's drift from a ``/metrics`` exposition. With several processes (``pid``
    labels) each measure is the highest any process reports (a p-value the lowest), the
    sample the sum: as the alert rules combine them."""
    from prometheus_client.parser import text_string_to_metric_families

    apps: dict[str, AppDrift] = {}
    values: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(("recloop_drift_", "recloop_catalog_coverage")):
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            seen = values[sample.name].get(labels)
            value = float(sample.value)
            if seen is None:
                values[sample.name][labels] = value
            elif sample.name == "recloop_drift_sampled_requests":
                values[sample.name][labels] = seen + value
            elif sample.name.endswith("_p_value"):
                values[sample.name][labels] = min(seen, value)
            else:
                values[sample.name][labels] = max(seen, value)

    def entry(labels: Labels) -> AppDrift:
        app_id = dict(labels).get("app", "")
        return apps.setdefault(app_id, AppDrift(app_id))

    for labels, value in values["recloop_drift_sampled_requests"].items():
        entry(labels).requests = value
    for labels, value in values["recloop_drift_feature_psi"].items():
        p_value = values["recloop_drift_feature_p_value"].get(labels, math.nan)
        entry(labels).features[dict(labels)["feature"]] = (value, p_value)
    for labels, value in values["recloop_drift_score_psi"].items():
        entry(labels).score = (value, values["recloop_drift_score_p_value"].get(labels, math.nan))
    for labels, value in values["recloop_drift_embedding_shift"].items():
        named = dict(labels)
        entry(labels).embeddings[(named["source"], named["entity"])] = value
    for labels, value in values["recloop_drift_head_share"].items():
        entry(labels).head_share = value
    for labels, value in values["recloop_drift_detected"].items():
        entry(labels).detected = value > 0
    for labels, value in values["recloop_catalog_coverage"].items():
        named = dict(labels)
        entry(labels).coverage[(named["surface"], named["variant"])] = value
    return apps


def _print_app(drift: AppDrift, settings: DriftSettings, top: int) -> list[str]:
    over = drift.over(settings)
    console.rule(f"app {drift.app_id}")
    console.print(
        f"[bold]features with the highest PSI[/bold] ({drift.requests:.0f} sampled requests)"
    )
    if drift.features:
        table = Table("feature", "PSI", "p-value")
        ranked = sorted(drift.features.items(), key=lambda kv: (-kv[1][0], kv[0]))
        for name, (psi, p_value) in ranked[:top]:
            table.add_row(name, f"{psi:.3f}", f"{p_value:.2g}")
        console.print(table)
    else:
        console.print("  none sampled (no served version with a drift reference, or no traffic)")
    console.print("[bold]score drift[/bold]")
    if drift.score is not None:
        console.print(f"  PSI {drift.score[0]:.3f}, p-value {drift.score[1]:.2g}")
    else:
        console.print("  none (no score reference, or the heads do not rank)")
    _print_embeddings(drift.embeddings)
    console.print("[bold]coverage and head share[/bold]")
    for (surface, variant), share in sorted(drift.coverage.items()):
        console.print(f"  coverage {surface}/{variant}: {share:.1%} of the active catalog")
    if drift.head_share is not None:
        console.print(f"  head share: {drift.head_share:.1%} of served impressions")
    _print_verdict(over)
    return over


def _print_embeddings(shifts: dict[tuple[str, str], float]) -> None:
    console.print("[bold]embedding shift[/bold] (mean cosine distance, aligned)")
    if not shifts:
        console.print("  none (no earlier version loaded, or no source with embeddings)")
    for (source, entity), shift in sorted(shifts.items()):
        console.print(f"  {source} {entity}: {shift:.3f}")


def _print_verdict(over: Iterable[str]) -> None:
    listed = list(over)
    if listed:
        console.print("[red]over threshold:[/red] " + "; ".join(listed))
    else:
        console.print("[green]nothing over threshold[/green]")


def _from_service(url: str, key: str, settings: DriftSettings, top: int) -> list[str]:
    import httpx

    try:
        response = httpx.get(
            url.rstrip("/") + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] could not reach {url}: {exc}")
        raise typer.Exit(2) from exc
    if response.status_code != 200:
        err_console.print(
            f"[red]error:[/red] {url}/metrics answered {response.status_code}: "
            f"{response.text[:200]}"
        )
        raise typer.Exit(2)
    apps = parse_metrics(response.text)
    if not apps:
        console.print("no drift measures yet (nothing served since the service started)")
    over: list[str] = []
    for app_id in sorted(apps):
        over += [f"{app_id}: {o}" for o in _print_app(apps[app_id], settings, top)]
    return over


def _from_registry(model_dir: Path, settings: DriftSettings) -> list[str]:
    from recloop.monitoring.drift import DRIFT_REFERENCE, DriftReference
    from recloop.registry.artifacts import ModelRegistry
    from recloop.retrieval.bundle import ModelBundle, load_model
    from recloop.serving.drift_sampling import embedding_shifts

    registry = ModelRegistry(model_dir)
    over: list[str] = []
    console.print("live measures (features, score, coverage, head share) need the service: --url")
    for app_id in registry.apps():
        current, previous = registry.current(app_id), registry.previous(app_id)
        console.rule(f"app {app_id}")
        console.print(f"promoted version {current}, the one before it {previous}")
        if current is None:
            continue
        reference = registry.path(app_id, current) / DRIFT_REFERENCE
        if reference.exists():
            loaded = DriftReference.load(reference)
            console.print(f"drift reference: {len(loaded.features)} features, {loaded.rows} rows")
        else:
            console.print("drift reference: none (the version was trained without one)")
        shifts: dict[tuple[str, str], float] = {}
        if previous is not None:
            bundles = []
            for version in (previous, current):
                manifest = registry.manifest(app_id, version)
                root = registry.path(app_id, version)
                models = {e.name: load_model(e.kind, root / e.name) for e in manifest.models}
                bundles.append(ModelBundle(version, models))
            shifts = {(s.source, s.entity): s.shift for s in embedding_shifts(*bundles)}
        _print_embeddings(shifts)
        found = AppDrift(app_id, embeddings=shifts).over(settings)
        _print_verdict(found)
        over += [f"{app_id}: {o}" for o in found]
    return over


@app.command()
def monitor(
    url: Annotated[
        str | None,
        typer.Option(help="A running service's base URL (e.g. http://127.0.0.1:8000)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="RECLOOP_KEY",
            help="An admin key for --url (default: the data directory's dev-key).",
            show_default=False,
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Features listed per app.")] = 10,
    data_dir: DataDir = None,
) -> None:
    """Print the drift state: features with the highest PSI, score drift, embedding shift,
    coverage and head share. Exits 1 when something is over its threshold (serving.drift),
    2 when the state cannot be read."""
    settings = load_settings(data_dir)
    thresholds = settings.serving.drift
    if url is not None:
        if key is None:
            dev_key = settings.data_dir / "dev-key"
            if not dev_key.is_file():
                err_console.print(
                    "[red]error:[/red] --url needs an admin key: --key or RECLOOP_KEY"
                )
                raise typer.Exit(2)
            key = dev_key.read_text().strip()
        over = _from_service(url, key, thresholds, top)
    else:
        try:
            over = _from_registry(settings.resolved_model_dir(), thresholds)
        except (OSError, ValueError) as exc:
            err_console.print(f"[red]error:[/red] could not read the model versions: {exc}")
            raise typer.Exit(2) from exc
    if over:
        raise typer.Exit(1)

"""``recloop worker``: the training scheduler apart from serving, one per deployment."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from recloop.cli.common import DataDir, app, console, err_console, fail, load_settings
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.runtime.scheduler import Scheduler


@app.command()
def worker(
    metrics_url: Annotated[
        str | None,
        typer.Option(
            help="A running service's base URL whose metrics give drift and online CTR (e.g. "
            "http://127.0.0.1:8000); without it only the cadences and the volume triggers run.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="RECLOOP_KEY",
            help="An admin key for --metrics-url (default: the data directory's dev-key).",
            show_default=False,
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Decide once, wait for the run it starts, print its record and exit (for "
            "cron); exit 1 when the run failed.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    data_dir: DataDir = None,
) -> None:
    """Run the retraining scheduler of the schedule settings: cadences and triggers, one
    run at a time, each recorded. Of several workers and services, the one holding the
    scheduler's lease runs it (through the store on PostgreSQL)."""
    from recloop.runtime.leadership import scheduler_lease
    from recloop.runtime.readings import ScrapedReadings, store_counts
    from recloop.runtime.scheduler import Scheduler
    from recloop.store.bootstrap import prepare_store

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(data_dir)
    if not settings.schedule.enabled:
        err_console.print(
            "[red]error:[/red] schedule.enabled: the scheduler is off; set enabled = true "
            "under the schedule table of the configuration"
        )
        raise typer.Exit(2)
    if metrics_url is not None and key is None:
        dev_key = settings.data_dir / "dev-key"
        if not dev_key.is_file():
            err_console.print("[red]error:[/red] --metrics-url needs an admin key: --key")
            raise typer.Exit(2)
        key = dev_key.read_text().strip()
    try:
        store = prepare_store(settings)
    except RecloopError as exc:
        raise fail(exc) from exc
    fetch = _fetcher(metrics_url, key) if metrics_url is not None else None
    lease = scheduler_lease(settings)
    readings = ScrapedReadings(settings, store, fetch)
    scheduler = Scheduler(settings, lease, readings, counts=store_counts(store))
    try:
        if once:
            _once(scheduler)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        scheduler.start()
        console.print(
            f"recloop worker: scheduling {', '.join(settings.schedule.apps)} every "
            f"{settings.schedule.check_s:g} s (runs: recloop runs list)",
            soft_wrap=True,
        )
        stop.wait()
    finally:
        scheduler.stop()
        lease.close()
        store.close()


def _once(scheduler: Scheduler) -> None:
    """One decision; the run it starts, waited for."""
    if not scheduler.leadership.leads():
        console.print("another process holds the scheduler's lease: nothing to do")
        return
    started = scheduler.step()
    if started is None:
        for app_id, decision in scheduler.last_decisions.items():
            console.print(f"{app_id}: {decision.reason}", soft_wrap=True)
        return
    console.print(f"{started.app_id}: {started.job} run {started.run_id}: {started.reason}")
    record = scheduler.wait()
    if record is None:
        return
    detail = record.error or (record.version or "")
    console.print(f"{record.run_id}: {record.outcome} {detail}".rstrip(), soft_wrap=True)
    if record.outcome == "failed":
        raise typer.Exit(1)


def _fetcher(url: str, key: str | None) -> Callable[[], str]:
    """Reads the service's metrics; OSError when it cannot."""
    import httpx

    def fetch() -> str:
        try:
            response = httpx.get(
                url.rstrip("/") + "/metrics",
                headers={"Authorization": f"Bearer {key}"} if key else {},
                timeout=10,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise OSError(f"could not read {url}/metrics: {exc}") from exc
        return response.text

    return fetch

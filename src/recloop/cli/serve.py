"""``recloop serve``: the HTTP service on this machine."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
from typing import Annotated

import typer

from recloop.cli.common import DataDir, app, console, fail, load_settings
from recloop.errors import RecloopError


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the store, the online store and the models, 1 to "
            "64 (about one per core); one of them runs what must run once.",
        ),
    ] = 1,
    data_dir: DataDir = None,
) -> None:
    """Start the HTTP service (OpenAPI docs at /docs)."""
    import uvicorn

    from recloop.api.app import create_app
    from recloop.api.workers import leader_lock
    from recloop.errors import ConfigError
    from recloop.runtime.process import freeze_heap, start_runtime
    from recloop.store.bootstrap import ensure_dev_key, prepare_store

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(data_dir)
    try:
        # Said once, before a store is opened or a model loaded: not after a start-up whose
        # banner claims to serve.
        _check_port(host, port)
        store = prepare_store(settings, serving=True)
        if settings.is_embedded():
            key = ensure_dev_key(store, settings.data_dir)
            if key is not None:
                console.print(
                    f"Created app [bold]default[/bold] and a development key "
                    f"(saved in {settings.data_dir / 'dev-key'}):\n{key}",
                    soft_wrap=True,
                )
        if workers > 1:
            store.close()
            if settings.serving.response_cache_ttl_s > 0:
                # A process drops a user's cached list when it stores their event; the
                # other processes would go on serving theirs.
                raise ConfigError(
                    "serving.response_cache_ttl_s: must be 0 with --workers above 1 (a "
                    "cached list is dropped only by the process that stored the user's event)"
                )
            try:
                # Each worker opens it at start; a folder it cannot write is said here, once,
                # not as a worker failing to start over and over.
                leader_lock(settings).close()
            except OSError as exc:
                raise ConfigError(
                    f"data_dir: --workers needs a writable {settings.data_dir / 'run'} for "
                    f"the leader's lock file ({exc.strerror or exc})"
                ) from exc
            if data_dir is not None:
                # Each worker reads its settings from the environment it inherits.
                os.environ["RECLOOP_DATA_DIR"] = str(data_dir)
            _serve_workers(settings.resolved_store_url(), host, port, log_level, workers)
            return
        runtime = start_runtime(settings, store)
    except RecloopError as exc:
        raise fail(exc) from exc
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


def _check_port(host: str, port: int) -> None:
    """Raise ConfigError when ``host:port`` cannot be bound (in use, or not this machine's)."""
    from recloop.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"host: cannot listen on {host!r} ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # uvicorn sets SO_REUSEADDR too: a port left in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port: {host}:{port} is in use; stop what holds it or pass --port"
                ) from exc
            raise ConfigError(
                f"host: cannot listen on {host}:{port} ({exc.strerror or exc})"
            ) from exc


def _serve_workers(store_url: str, host: str, port: int, log_level: str, workers: int) -> None:
    """uvicorn's supervisor with ``workers`` processes, each building its own runtime."""
    import uvicorn

    from recloop.api.workers import WORKERS_ENV
    from recloop.monitoring.metrics import MULTIPROCESS_ENV

    # Each worker writes its metrics here and any one's /metrics sums them: a fresh folder,
    # or a previous run's counts would be summed in too.
    metrics_dir = tempfile.mkdtemp(prefix="recloop-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    os.environ[WORKERS_ENV] = str(workers)
    console.print(
        f"recloop serving {store_url} on http://{host}:{port} with {workers} worker "
        "processes (docs: /docs)",
        soft_wrap=True,
    )
    try:
        uvicorn.run(
            "recloop.api.workers:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

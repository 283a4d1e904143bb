"""``recloop serve``: the HTTP service on this machine."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from recloop.cli.common import app, console, fail, load_settings
from recloop.errors import RecloopError


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Start the HTTP service (OpenAPI docs at /docs)."""
    import uvicorn

    from recloop.api.app import create_app
    from recloop.runtime.process import freeze_heap, start_runtime
    from recloop.store.bootstrap import ensure_dev_key, prepare_store

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
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

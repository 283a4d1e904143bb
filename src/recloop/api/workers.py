"""The app of one of ``recloop serve --workers N``'s processes.

uvicorn starts each worker as a fresh process and calls ``worker_app`` in it: each builds
its own runtime (models, indexes, caches) over the shared store, online store and model
directory. The parent names the worker count in the environment; with more than one, the
workers elect, through a lock file in the data directory, the one that runs what must run
once (``recloop.runtime.leadership``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.runtime.leadership import FileLease, Leadership

#: How many processes serve, set by ``recloop serve`` for its workers.
WORKERS_ENV = "RECLOOP_WORKERS"


def leader_lock(settings: Settings) -> FileLease:
    """The lease the workers of the deployment at ``settings.data_dir`` compete for."""
    return FileLease(settings.data_dir / "run" / "leader.lock")


def worker_app() -> FastAPI:
    """One worker's app (a uvicorn factory: ``recloop.api.workers:worker_app``)."""
    settings = Settings()
    leadership: Leadership | None = None
    if int(os.environ.get(WORKERS_ENV, "1")) > 1:
        leadership = leader_lock(settings)
    return create_app(settings, leadership=leadership, freeze=True)

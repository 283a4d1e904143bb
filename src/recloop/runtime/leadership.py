"""Which of several server processes on one host runs the work that must run once.

``recloop serve --workers N`` starts N processes that share the store, the online store and
the model directory. Most background work is per process (each keeps its own in-memory
indexes and models), but some must run in one process only: judging experiments (a stop or
a ramp's move is recorded once) and, when the online store is shared, folding the event
log into it (twice would count every event twice).

The leader is whoever holds an exclusive lock on a file beside the data. The lock belongs
to the process, so the kernel frees it the moment its holder exits, however it exits; the
others try again on every step of their background work, and one of them takes over.

Replicas on several hosts share no file: on a PostgreSQL store, ``StoreLease`` holds a
session-level advisory lock on a connection of its own instead; the server frees it the
moment that connection ends (its process exits, the host goes, the session is terminated).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from recloop.config import Settings

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """Whether this process should run the work that runs once per deployment."""

    def leads(self) -> bool:
        """True while this process is the leader (it may become one at any call)."""
        ...

    def close(self) -> None:
        """Give the leadership up."""
        ...


class SoleProcess:
    """A process that runs alone: it always leads."""

    def leads(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Nothing to give up."""


class FileLease:
    """Leadership by an exclusive ``flock`` on ``path`` (processes on one host).

    Args:
        path: the lock file, made if absent; every process of one deployment names the same.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._held = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The lock file."""
        return self._path

    def leads(self) -> bool:
        """Hold the lock if it is free; True while this process holds it."""
        with self._lock:
            if self._held or self._fd is None:
                return self._held
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._held = True
            # Whoever reads the file sees the leader's pid (for operators; not used here).
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
            return True

    def close(self) -> None:
        """Release the lock (if held) and close the file."""
        with self._lock:
            if self._fd is None:
                return
            if self._held:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._held = False
            os.close(self._fd)
            self._fd = None


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a lease's name."""
    return int.from_bytes(hashlib.sha256(f"recloop:{name}".encode()).digest()[:8], signed=True)


class StoreLease:
    """Leadership by a PostgreSQL session-level advisory lock (processes on any host).

    The lock is held on a connection of its own, outside the store's pool (a pooled
    connection would carry it to whoever borrows it next). Each ``leads`` checks that the
    connection still answers: a holder whose session was ended knows it no longer leads,
    and retries for the lock on a fresh connection at its next call.

    Args:
        url: the store's SQLAlchemy URL (``postgresql+psycopg://...``).
        name: what is led; every process of one deployment names the same.
    """

    def __init__(self, url: str, name: str) -> None:
        self.key = lock_key(name)
        self.name = name
        self._engine = sa.create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": 5}
        ).execution_options(isolation_level="AUTOCOMMIT")
        self._conn: sa.Connection | None = None
        self._held = False
        self._closed = False
        self._lock = threading.Lock()

    def leads(self) -> bool:
        """Hold the lock if it is free; True while this process holds it."""
        with self._lock:
            if self._closed:
                return False
            try:
                if self._conn is None:
                    self._conn = self._engine.connect()
                if self._held:
                    self._conn.execute(sa.text("SELECT 1"))
                    return True
                got = self._conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                ).scalar_one()
                self._held = bool(got)
                if self._held:
                    log.info("leading %s (advisory lock %d)", self.name, self.key)
                return self._held
            except sa.exc.SQLAlchemyError:
                if self._held:
                    log.warning("lost the leadership of %s: its connection ended", self.name)
                self._drop()
                return False

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Give the lock up (the connection's end frees it) and stop competing."""
        with self._lock:
            self._closed = True
            if self._held and self._conn is not None:
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    self._conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}
                    )
            self._drop()
            self._engine.dispose()


def scheduler_lease(settings: Settings) -> Leadership:
    """The lease the training schedulers of one deployment compete for: through the store
    when it is PostgreSQL (replicas on several hosts), else a lock file beside the data."""
    url = settings.resolved_store_url()
    if url.startswith("postgresql"):
        return StoreLease(url, "scheduler")
    return FileLease(settings.data_dir / "run" / "scheduler.lock")

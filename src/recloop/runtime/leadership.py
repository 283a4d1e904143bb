"""Which of several server processes on one host runs the work that must run once.

``recloop serve --workers N`` starts N processes that share the store, the online store and
the model directory. Most background work is per process (each keeps its own in-memory
indexes and models), but some must run in one process only: judging experiments (a stop or
a ramp's move is recorded once) and, when the online store is shared, folding the event
log into it (twice would count every event twice).

The leader is whoever holds an exclusive lock on a file beside the data. The lock belongs
to the process, so the kernel frees it the moment its holder exits, however it exits; the
others try again on every step of their background work, and one of them takes over.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Protocol


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

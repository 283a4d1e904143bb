"""Which model versions running service processes hold loaded, told through the registry.

Every serving process writes, per app, a small file naming the versions it has loaded (the
served one and any an experiment or shadow pins) and touches it on each model check:

    <app_id>/.in-use/<host>-<pid>     one version a line

``recloop gc`` keeps every version a fresh file names, so it never removes the files of a
version some process still serves, on this host or on another that shares the model
directory (a memory-mapped file removed under a process on a network file system fails it).
A file not touched for a while belongs to a process that has stopped; it is ignored, and
removed by the next ``recloop gc``.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

IN_USE = ".in-use"


def holder() -> str:
    """This process's name in the marks: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


class InUseMarks:
    """The in-use marks under a registry root (see the module's docstring)."""

    def __init__(self, root: Path, name: str | None = None) -> None:
        self.root = root
        self.name = name or holder()
        self._written: dict[str, frozenset[str]] = {}
        self._warned = False

    def _dir(self, app_id: str) -> Path:
        return self.root / app_id / IN_USE

    def record(self, app_id: str, versions: Collection[str]) -> None:
        """Say that this process holds ``versions`` of the app (rewritten when they change,
        touched otherwise). A model directory this process may not write to is said once."""
        wanted = frozenset(versions)
        path = self._dir(app_id) / self.name
        try:
            if self._written.get(app_id) == wanted and path.exists():
                os.utime(path)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".mark-", dir=path.parent)
            with os.fdopen(fd, "w") as handle:
                handle.write("".join(f"{v}\n" for v in sorted(wanted)))
            os.replace(tmp, path)
            self._written[app_id] = wanted
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "cannot mark the model versions this process holds (%s): recloop gc "
                    "keeps only the served and previous ones for it",
                    exc,
                )
                self._warned = True

    def held(self, app_id: str, max_age_s: float, now: float | None = None) -> set[str]:
        """The versions named by a mark touched within ``max_age_s``."""
        now = time.time() if now is None else now
        found: set[str] = set()
        for path in self._marks(app_id):
            try:
                if now - path.stat().st_mtime > max_age_s:
                    continue
                found.update(v for v in path.read_text().split() if v)
            except OSError:
                continue  # removed while read: its process stopped
        return found

    def stale(self, app_id: str, max_age_s: float, now: float | None = None) -> list[Path]:
        """The marks not touched within ``max_age_s`` (their processes have stopped)."""
        now = time.time() if now is None else now
        out: list[Path] = []
        for path in self._marks(app_id):
            try:
                if now - path.stat().st_mtime > max_age_s:
                    out.append(path)
            except OSError:
                continue
        return out

    def _marks(self, app_id: str) -> list[Path]:
        directory = self._dir(app_id)
        if not directory.is_dir():
            return []
        return [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]

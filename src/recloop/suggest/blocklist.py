"""The admin blocklist: terms and patterns an operator adds to an app's safety policy at
run time, without a restart.

Each app's list is a small JSON file beside the model versions (the folder every replica
reads), written atomically. ``SafetyFilters`` holds one compiled ``SafetyFilter`` per app:
the configured policy plus the app's list. A ``put`` on one replica compiles and
publishes the new filter before it returns, so that replica's next request uses it;
``refresh`` (run every ``suggestions.blocklist_refresh_s``) re-reads the files that
changed, so the other replicas follow within that interval. A compiled filter never
changes; a new list is a new filter and one reference swap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from recloop.errors import InvalidInput
from recloop.suggest.regex_guard import pattern_problem
from recloop.suggest.safety import MAX_PATTERNS, MAX_TERMS, SafetyFilter, SafetyPolicy, term_problem

log = logging.getLogger(__name__)

#: At most this many terms in one app's blocklist.
MAX_BLOCKLIST_TERMS: Final = 10_000
FILE_NAME: Final = "blocklist.json"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

Stamp = tuple[int, int]  # (mtime_ns, size) of a blocklist file


@dataclass(frozen=True, slots=True)
class Blocklist:
    """Blocked terms (matched as the safety policy's terms are) and regular expressions."""

    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    updated_at: datetime | None = None


def validate_blocklist(
    terms: Sequence[str], patterns: Sequence[str], base: SafetyPolicy, now: datetime
) -> Blocklist:
    """The blocklist, or ``InvalidInput`` naming the field (``terms[3]``, ``patterns[0]``)
    and the rule it broke; patterns go through ``regex_guard``, and the configured policy's
    patterns count toward ``MAX_PATTERNS``."""
    if len(terms) > MAX_BLOCKLIST_TERMS:
        raise InvalidInput("terms", f"at most {MAX_BLOCKLIST_TERMS} terms (has {len(terms)})")
    if len(terms) + len(base.blocked_terms) > MAX_TERMS:
        raise InvalidInput(
            "terms",
            f"with the {len(base.blocked_terms)} configured terms, at most {MAX_TERMS} in all",
        )
    for i, term in enumerate(terms):
        problem = term_problem(term)
        if problem is not None:
            raise InvalidInput(f"terms[{i}]", problem)
    room = MAX_PATTERNS - len(base.patterns)
    if len(patterns) > room:
        raise InvalidInput(
            "patterns",
            f"at most {room} patterns (the configured policy has {len(base.patterns)} of "
            f"{MAX_PATTERNS})",
        )
    for i, pattern in enumerate(patterns):
        problem = pattern_problem(pattern)
        if problem is not None:
            raise InvalidInput(f"patterns[{i}]", f"{pattern!r}: {problem}")
    return Blocklist(tuple(dict.fromkeys(terms)), tuple(dict.fromkeys(patterns)), now)


def with_blocklist(policy: SafetyPolicy, blocklist: Blocklist) -> SafetyPolicy:
    """``policy`` with the blocklist's terms and patterns added to its global lists."""
    if not blocklist.terms and not blocklist.patterns:
        return policy
    return policy.model_copy(
        update={
            "blocked_terms": policy.blocked_terms + blocklist.terms,
            "patterns": policy.patterns + blocklist.patterns,
        }
    )


def app_folder(app_id: str) -> str:
    """A folder name for the app: its id when that is a safe file name, else a hash."""
    if _SAFE_NAME.fullmatch(app_id) and app_id not in (".", ".."):
        return app_id
    return "app-" + hashlib.sha256(app_id.encode()).hexdigest()[:32]


class BlocklistFile:
    """One app's blocklist on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stamp(self) -> Stamp | None:
        """What changes when the file is rewritten; None when there is no file."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def read(self) -> Blocklist:
        """The stored list (empty when there is none).

        Raises:
            ValueError: the file is not a blocklist.
        """
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return Blocklist()
        try:
            terms = tuple(str(t) for t in raw["terms"])
            patterns = tuple(str(p) for p in raw["patterns"])
            updated = raw.get("updated_at")
            return Blocklist(terms, patterns, datetime.fromisoformat(updated) if updated else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a blocklist ({exc})") from exc

    def app_id(self) -> str | None:
        """The app the stored list belongs to (folder names of odd ids are hashes)."""
        try:
            app_id = json.loads(self.path.read_text()).get("app_id")
        except (OSError, ValueError, AttributeError):
            return None
        return app_id if isinstance(app_id, str) else None

    def write(self, blocklist: Blocklist, app_id: str) -> None:
        """Replace the stored list atomically (readers see the old file or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "app_id": app_id,
            "terms": list(blocklist.terms),
            "patterns": list(blocklist.patterns),
            "updated_at": blocklist.updated_at.isoformat() if blocklist.updated_at else None,
        }
        fd, tmp = tempfile.mkstemp(prefix=".blocklist-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle, ensure_ascii=False, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@dataclass(frozen=True, slots=True)
class _Compiled:
    stamp: Stamp | None
    blocklist: Blocklist
    safety: SafetyFilter


class SafetyFilters:
    """Each app's compiled safety filter: the configured policy plus its blocklist.

    Args:
        policy: the configured policy (``[suggestions.safety]``).
        root: the folder of the apps' blocklists (``<model dir>/suggestions``).
        on_error: called when a stored list cannot be read (the previous filter serves).
    """

    def __init__(
        self, policy: SafetyPolicy, root: Path, on_error: Callable[[], None] = lambda: None
    ) -> None:
        self.policy = policy
        self._base = SafetyFilter(policy)
        self._root = root
        self._on_error = on_error
        self._apps: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def file(self, app_id: str) -> BlocklistFile:
        """The app's blocklist file."""
        return BlocklistFile(self._root / app_folder(app_id) / FILE_NAME)

    def get(self, app_id: str) -> SafetyFilter:
        """The filter a request of the app checks queries with."""
        compiled = self._apps.get(app_id)
        return compiled.safety if compiled is not None else self._base

    def blocklist(self, app_id: str) -> Blocklist:
        """The app's stored list, read now."""
        return self.file(app_id).read()

    def put(self, app_id: str, blocklist: Blocklist) -> None:
        """Store the app's list and serve it from this replica's next request."""
        with self._lock:
            file = self.file(app_id)
            file.write(blocklist, app_id)
            self._publish(app_id, _Compiled(file.stamp(), blocklist, self._compile(blocklist)))

    def refresh(self, app_ids: Sequence[str] = ()) -> None:
        """Re-read the lists that changed on disk (written by another replica): those of
        every app with a folder under the root, and of ``app_ids``."""
        with self._lock:
            names = {app_folder(a): a for a in (*self._apps, *app_ids)}
            if self._root.is_dir():
                for folder in self._root.iterdir():
                    if folder.name not in names and (folder / FILE_NAME).exists():
                        app_id = BlocklistFile(folder / FILE_NAME).app_id()
                        if app_id is not None and app_folder(app_id) == folder.name:
                            names[folder.name] = app_id
            for app_id in names.values():
                file = self.file(app_id)
                stamp = file.stamp()
                current = self._apps.get(app_id)
                if (current.stamp if current is not None else None) == stamp:
                    continue
                try:
                    blocklist = file.read()
                    compiled = _Compiled(stamp, blocklist, self._compile(blocklist))
                except Exception:
                    log.exception("could not read the suggestion blocklist of %s", app_id)
                    self._on_error()
                    continue
                self._publish(app_id, compiled)

    def _compile(self, blocklist: Blocklist) -> SafetyFilter:
        if not blocklist.terms and not blocklist.patterns:
            return self._base
        return SafetyFilter(with_blocklist(self.policy, blocklist))

    def _publish(self, app_id: str, compiled: _Compiled) -> None:
        apps = dict(self._apps)
        apps[app_id] = compiled
        self._apps = apps  # one reference swap: readers see one dict or the other

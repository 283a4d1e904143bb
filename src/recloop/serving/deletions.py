"""A deleted user forgotten by everything a serving process holds.

``DELETE /api/users/{id}`` purges the store and writes a ``user.delete`` entry to the audit
log in one transaction. Every process follows that log: it deletes the user's online
features and session lists, drops their vectors from the loaded models (the promoted
version, pinned ones, and every version it loads later, whose artifacts were written
before the deletion), and drops their cached lists. The process that handled the request
steps at once; the others within their step interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence

from recloop.features.online import counters_key, session_key
from recloop.online.protocols import OnlineStore
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.models import KnowsUsers
from recloop.store import USER_DELETE, Audit

log = logging.getLogger(__name__)

_PAGE = 1000


class DeletionFollower:
    """Applies the audit log's user deletions to this process's online store, models and
    caches.

    Args:
        audit: the store's audit log.
        online: the online store (each process deletes from its own or the shared one).
        indexes: the model indexes whose loaded versions must forget deleted users.
        on_users: told the app and users forgotten (the response cache drops their lists).
    """

    def __init__(
        self,
        audit: Audit,
        online: OnlineStore,
        indexes: Sequence[ModelIndex],
        on_users: Callable[[str, set[str]], None] = lambda app_id, users: None,
    ) -> None:
        self._audit = audit
        self._online = online
        self._indexes = list(indexes)
        self.on_users = on_users
        self._position = 0
        self._forgotten: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def forgotten(self, app_id: str) -> Collection[str]:
        """Every user of the app deleted so far (a model version loaded now forgets them)."""
        return frozenset(self._forgotten.get(app_id, ()))

    def step(self) -> int:
        """Apply the deletions recorded since the last step; how many there were."""
        with self._lock:
            applied = 0
            while True:
                records = self._audit.since(self._position, _PAGE, USER_DELETE)
                if not records:
                    return applied
                by_app: dict[str, set[str]] = {}
                keys: list[str] = []
                for record in records:
                    by_app.setdefault(record.app_id, set()).add(record.subject)
                    keys.append(counters_key(record.app_id, "u", record.subject))
                    keys.extend(
                        session_key(record.app_id, session)
                        for session in record.detail.get("sessions", ())
                    )
                self._online.delete(keys)
                for app_id, users in by_app.items():
                    self._forgotten.setdefault(app_id, set()).update(users)
                    self._forget_in_models(app_id, users)
                    self.on_users(app_id, users)
                self._position = records[-1].seq
                applied += len(records)

    def _forget_in_models(self, app_id: str, users: set[str]) -> None:
        for index in self._indexes:
            bundle = index.get(app_id)
            if bundle is None:
                continue
            for model in bundle.models.values():
                if isinstance(model, KnowsUsers):
                    model.forget_users(users)

"""Opening the store a process will use, and the embedded store's development key."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from recloop.config import Settings
from recloop.domain import Scope
from recloop.store import Store, open_store
from recloop.store.keys import issue_key
from recloop.store.migrate import require_current, upgrade

#: The app an embedded store starts with.
DEFAULT_APP = "default"


def prepare_store(settings: Settings, *, serving: bool = False) -> Store:
    """Open the store; the embedded one is created and migrated on first use.

    ``serving``: for the service, whose statements the server cancels past
    ``serving.statement_timeout_ms`` (PostgreSQL); offline jobs (training, imports, the CLI)
    run theirs without a limit.

    Raises:
        SchemaOutOfDate: a server store is behind the code (run ``recloop db upgrade``).
    """
    if settings.is_embedded():
        # Private from the start: the store holds key hashes and every user's history.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = settings.data_dir / "recloop.db"
        if not settings.store_url and not database.exists():
            # SQLite gives its -wal and -shm files the database file's mode.
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    timeout_ms = settings.serving.statement_timeout_ms if serving else None
    store = open_store(settings.resolved_store_url(), statement_timeout_ms=timeout_ms or None)
    if settings.is_embedded():
        upgrade(store.engine)
    else:
        require_current(store.engine)
    return store


def ensure_dev_key(store: Store, data_dir: Path) -> str | None:
    """On an embedded store with no apps: create the default app and a development key.

    The key is written to ``DATA_DIR/dev-key`` (mode 600) and returned; None when the
    store already had its default app.
    """
    now = datetime.now(UTC)
    if not store.tenancy.create_app(DEFAULT_APP, "Default app", now):
        return None
    key = issue_key(store.tenancy, DEFAULT_APP, list(Scope), now, name="development key")
    path = data_dir / "dev-key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key

"""``recloop backup`` while ``recloop serve`` takes events, then ``recloop restore`` into a
fresh data directory: the copy is whole (SQLite's integrity check) and holds every event
acknowledged before the backup began."""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from recloop.store import open_store, schema
from tests.servers import recloop_command, recloop_env, recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def _recloop(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [recloop_command(), *args],
        env=recloop_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_backup_taken_under_load_restores_whole(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acked: list[str] = []
    stop = threading.Event()
    with recloop_serve(data_dir, tmp_path / "server.log") as (url, _):
        key = (data_dir / "dev-key").read_text().strip()

        def post() -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
                while not stop.is_set():
                    ids = [uuid.uuid4().hex for _ in range(50)]
                    events = [
                        {"eventId": i, "userId": "u1", "itemId": "i1", "eventType": "click"}
                        for i in ids
                    ]
                    if c.post("/api/events", json={"events": events}).status_code == 202:
                        acked.extend(ids)

        writer = threading.Thread(target=post)
        writer.start()
        try:
            while len(acked) < 500:
                stop.wait(0.05)
            before = set(acked)
            made = _recloop(data_dir, "backup", str(tmp_path / "copy"))
        finally:
            stop.set()
            writer.join(timeout=30)
    assert made.returncode == 0, made.stderr

    fresh = tmp_path / "restored"
    restored = _recloop(fresh, "restore", str(tmp_path / "copy"))
    assert restored.returncode == 0, restored.stderr
    again = _recloop(fresh, "restore", str(tmp_path / "copy"))
    assert again.returncode == 1
    assert "already has a store" in " ".join(again.stderr.split())

    store = open_store(f"sqlite:///{fresh / 'recloop.db'}")
    try:
        with store.engine.connect() as conn:
            verdict = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
            stored = set(conn.execute(sa.select(schema.events.c.event_id)).scalars())
    finally:
        store.close()
    assert verdict == "ok"
    assert before <= stored

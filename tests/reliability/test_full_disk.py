"""A full disk under the embedded store: event posts get 503 (never a 202 for an event that
was not stored), ``/readyz`` says the store cannot be written, and both recover once there
is room again."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from recloop.store import open_store, schema
from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

DISK = "8m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of its own (needs root, as CI runs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path: Path) -> None:
    """Write zeros until the disk is full."""
    block = b"\0" * 65536
    with path.open("wb") as filler:
        try:
            while True:
                filler.write(block)
                filler.flush()
        except OSError:
            pass


def test_a_full_disk_refuses_events_honestly_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    data_dir = small_disk / "data"
    with recloop_serve(data_dir, tmp_path / "server.log") as (url, _):
        key = (data_dir / "dev-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            acknowledged: list[str] = []

            def post() -> int:
                event_id = uuid.uuid4().hex
                events = [
                    {
                        "eventId": f"{event_id}-{n}",
                        "userId": f"u{n}",
                        "itemId": "i1",
                        "eventType": "click",
                        "context": {"pad": "x" * 2000},
                    }
                    for n in range(50)
                ]
                response = client.post("/api/events", json={"events": events})
                if response.status_code == 202:
                    acknowledged.extend(e["eventId"] for e in events)
                return response.status_code

            assert post() == 202
            assert client.get("/readyz").json()["checks"]["store_write"] == "ok"
            filler = small_disk / "filler"
            _fill(filler)
            statuses = [post() for _ in range(40)]
            assert 503 in statuses, statuses
            assert set(statuses) <= {202, 503}, statuses

            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["checks"]["store_write"] == "failing"
            assert "disk" not in ready.text.lower()  # states, not a driver's words

            filler.unlink()
            assert post() == 202
            assert client.get("/readyz").status_code == 200

    store = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    try:
        with store.engine.connect() as conn:
            stored = set(conn.execute(sa.select(schema.events.c.event_id)).scalars())
    finally:
        store.close()
    assert set(acknowledged) <= stored

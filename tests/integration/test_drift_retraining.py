"""Drift starts a retraining by itself: a running ``recloop serve`` with ``[schedule]`` on and
no cadence serves a version without drift and starts nothing; after the catalog changes
under the ranker, the service's own drift monitor crosses the threshold and its scheduler
starts a run whose record names the feature and its PSI."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recloop.registry.runs import RunLog, RunRecord
from tests.integration.test_drift import CONFIG, NEW, OLD, _catalog, _serve, _version, _wait_for
from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEDULE = """
[schedule]
enabled = true
check_s = 0.3
train_every_h = 0
tune_every_h = 0
min_interval_h = 0
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "recloop.toml"
    config.write_text(CONFIG + SCHEDULE)
    with recloop_serve(data_dir, tmp_path / "server.log", RECLOOP_CONFIG=str(config)) as (url, _):
        key = (data_dir / "dev-key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            yield client, data_dir


def _first_run(data_dir: Path, timeout_s: float = 30) -> RunRecord:
    runs = RunLog(data_dir / "models")
    deadline = time.monotonic() + timeout_s
    while not runs.recent("default"):
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.1)
    return runs.recent("default")[-1]


def test_drift_over_the_threshold_starts_a_recorded_run(
    server: tuple[httpx.Client, Path],
) -> None:
    client, data_dir = server
    _catalog(client, OLD, "old")
    _wait_for(client, "old")
    _version(data_dir)
    _wait_for(client, "old", version="v1")
    _serve(client, 40, "old")
    time.sleep(1.0)  # three checks of the scheduler
    assert RunLog(data_dir / "models").recent("default") == [], "a run without drift"

    for n in range(12):
        assert client.put(f"/api/items/old{n}", json={"status": "removed"}).status_code == 200
    _catalog(client, NEW, "new")
    _wait_for(client, "new")
    _serve(client, 40, "new")

    run = _first_run(data_dir)
    assert (run.job, run.trigger) == ("train", "drift")
    assert re.fullmatch(r"drift: PSI \d+\.\d\d on (item_category|score) > 0\.25.*", run.reason)
    assert run.data["events"] >= 72  # what the store held when it started

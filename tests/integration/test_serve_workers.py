"""``recloop serve --workers 2``: two processes answer on one port, a scrape of either sums
both, and one of them is the leader."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recloop.api.server import free_port
from tests.servers import recloop_command, recloop_env, recloop_serve

pytestmark = pytest.mark.integration

REQUESTS = 40


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes], Path]]:
    data_dir = tmp_path / "data"
    with recloop_serve(data_dir, tmp_path / "server.log", "--workers", "2") as (url, proc):
        yield url, (data_dir / "dev-key").read_text().strip(), proc, data_dir


def _workers(pid: int) -> set[int]:
    """The server processes uvicorn spawned (not multiprocessing's resource tracker)."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    )
    rows = [line.split(maxsplit=1) for line in out.stdout.strip().splitlines()]
    return {int(p) for p, args in rows if "spawn_main" in args}


def _sample(text: str, name: str) -> dict[str, float]:
    """Every sample of a metric: its label set (as written) -> value."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


def test_two_workers_serve_and_every_scrape_sums_them(
    server: tuple[str, str, subprocess.Popen[bytes], Path],
) -> None:
    url, key, proc, data_dir = server
    headers = {"Authorization": f"Bearer {key}"}
    workers = _workers(proc.pid)
    assert len(workers) == 2
    for n in range(REQUESTS):
        # A new connection each time: the kernel hands each to either process.
        response = httpx.get(
            f"{url}/api/recommendations",
            params={"userId": f"u{n}", "surface": "home"},
            headers=headers,
        )
        assert response.status_code == 200
    time.sleep(1.5)  # the writers flush the served lists' log in the background
    answering: set[int] = set()
    for _ in range(30):
        text = httpx.get(f"{url}/metrics", headers=headers).text
        served = _sample(text, "recloop_recommendations_total")
        assert sum(served.values()) == REQUESTS  # whichever process answers, both counted
        # The store writer's own counters are the answering process's, labelled with it.
        for labels in _sample(text, "recloop_reclog_written_total"):
            answering.add(int(labels.split('"')[1]))
        if len(answering) == 2:
            break
    assert answering == workers
    leader = int((data_dir / "run" / "leader.lock").read_text())
    assert leader in workers


def test_workers_refuse_a_response_cache_they_could_not_keep_consistent(tmp_path: Path) -> None:
    result = subprocess.run(
        [recloop_command(), "serve", "--workers", "2", "--port", str(free_port())],
        env=recloop_env(tmp_path, RECLOOP_SERVING__RESPONSE_CACHE_TTL_S="5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "serving.response_cache_ttl_s: must be 0 with --workers above 1" in " ".join(
        result.stderr.split()
    )


def test_a_killed_leader_is_replaced_and_a_live_worker_leads(
    server: tuple[str, str, subprocess.Popen[bytes], Path],
) -> None:
    url, _, proc, data_dir = server
    lock = data_dir / "run" / "leader.lock"
    leader = int(lock.read_text())
    assert leader in _workers(proc.pid)
    os.kill(leader, signal.SIGKILL)  # no chance to let go: the kernel frees the lock
    deadline = time.monotonic() + 60
    while True:
        workers = _workers(proc.pid)
        text = lock.read_text().strip()
        if leader not in workers and len(workers) == 2 and text and int(text) in workers:
            break
        assert time.monotonic() < deadline, f"no live leader: lock {text!r}, workers {workers}"
        time.sleep(0.2)
    assert httpx.get(f"{url}/readyz").status_code == 200


def test_workers_refuse_a_data_dir_where_the_leader_lock_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("a file where the lock's folder belongs")
    result = subprocess.run(
        [recloop_command(), "serve", "--workers", "2", "--port", str(free_port())],
        env=recloop_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "data_dir: --workers needs a writable" in " ".join(result.stderr.split())

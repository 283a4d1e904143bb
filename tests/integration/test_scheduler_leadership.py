"""The scheduler's leadership through a PostgreSQL store: of several holders (processes on
any host), one leads; when it closes, is killed or loses its session, another takes over."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from recloop.config import Settings
from recloop.monitoring.schedule import Readings
from recloop.registry.runs import RunLog
from recloop.runtime.leadership import FileLease, StoreLease, scheduler_lease
from recloop.runtime.scheduler import Scheduler

pytestmark = pytest.mark.integration


def _until(condition: object, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_holders_one_leads_and_the_other_takes_over_on_close(postgres_url: str) -> None:
    first, second = StoreLease(postgres_url, "scheduler"), StoreLease(postgres_url, "scheduler")
    other = StoreLease(postgres_url, "something-else")
    try:
        assert first.leads()
        assert not second.leads()
        assert first.leads()  # held: asking again keeps it
        assert other.leads()  # another name is another lock
        first.close()
        assert not first.leads()  # closed: it never leads again
        assert second.leads()
    finally:
        for lease in (first, second, other):
            lease.close()


def test_a_holder_whose_session_ends_knows_it_and_another_takes_over(postgres_url: str) -> None:
    first, second = StoreLease(postgres_url, "scheduler"), StoreLease(postgres_url, "scheduler")
    try:
        assert first.leads()
        assert not second.leads()
        plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as admin:
            # The only advisory lock granted in this test's database is the holder's.
            [(ended,)] = admin.execute(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' "
                "AND l.granted AND d.datname = current_database()"
            ).fetchall()
        assert ended == 1
        _until(second.leads)
        assert not first.leads()  # it asks again on a fresh connection: held by the other
    finally:
        first.close()
        second.close()


def test_the_lock_is_freed_when_its_holder_is_killed(postgres_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from recloop.runtime.leadership import StoreLease;"
            f"lease = StoreLease({postgres_url!r}, 'scheduler'); assert lease.leads();"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    waiting = StoreLease(postgres_url, "scheduler")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert not waiting.leads()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        _until(waiting.leads)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        waiting.close()


def test_of_two_schedulers_on_one_store_only_the_leader_starts_a_run(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", store_url=postgres_url, schedule={"enabled": True}
    )
    leases = [scheduler_lease(settings), scheduler_lease(settings)]
    assert all(isinstance(lease, StoreLease) for lease in leases)
    # The child is a stand-in that fails at once: this test is about who starts it.
    schedulers = [
        Scheduler(settings, lease, lambda app_id: Readings(), command=(sys.executable, "-c", ""))
        for lease in leases
    ]
    try:
        started = [s.step() for s in schedulers]
        assert [r is not None for r in started] == [True, False]
        schedulers[0].wait(30)
        [record] = RunLog(settings.resolved_model_dir()).recent("default")
        assert record.outcome == "failed"  # the stand-in wrote no report
        leases[0].close()
        assert schedulers[0].step() is None
        # The other leads now, and backs off after the failure rather than run again.
        assert schedulers[1].step() is None
        assert schedulers[1].last_decisions["default"].reason.startswith("backing off")
    finally:
        for s in schedulers:
            s.stop()
            s.leadership.close()


def test_an_embedded_store_elects_through_a_lock_file(tmp_path: Path) -> None:
    lease = scheduler_lease(Settings(data_dir=tmp_path / "data"))
    try:
        assert isinstance(lease, FileLease)
        assert lease.path == tmp_path / "data" / "run" / "scheduler.lock"
    finally:
        lease.close()

"""Leadership among server processes: one holder of the lock file, handed over on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from recloop.runtime.leadership import FileLease, SoleProcess


def test_a_process_alone_always_leads() -> None:
    alone = SoleProcess()
    assert alone.leads()
    alone.close()
    assert alone.leads()


def test_one_lease_leads_and_the_other_takes_over_when_it_is_given_up(tmp_path: Path) -> None:
    path = tmp_path / "run" / "leader.lock"
    first, second = FileLease(path), FileLease(path)
    try:
        assert first.leads()
        assert not second.leads()
        assert first.leads()  # held: asking again keeps it
        assert path.read_text().strip() == str(os.getpid())
        first.close()
        assert not first.leads()  # closed: it never leads again
        assert second.leads()
    finally:
        first.close()
        second.close()


def test_the_lease_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from recloop.runtime.leadership import FileLease;"
            f"lease = FileLease(Path({str(path)!r})); assert lease.leads();"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lease = FileLease(path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert path.read_text().strip() == str(holder.pid)
        assert not lease.leads()
        holder.send_signal(signal.SIGKILL)  # no chance to release it: the kernel does
        holder.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not lease.leads():
            assert time.monotonic() < deadline, "the killed holder's lock was never freed"
            time.sleep(0.01)
        assert path.read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        lease.close()

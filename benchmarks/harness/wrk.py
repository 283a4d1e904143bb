"""Closed-loop load from wrk (C): a list of requests played once, back to back.

wrk answers "how much does the server take": it costs the machine far less than a Python
client (on 2 cores a Python asyncio client measured a quarter of wrk's rate for single
event posts), so the server keeps the cores. The requests are built here, in Python, and
written to a file that ``closed_loop.lua`` plays once, in order, on wrk's connections: the
same events or users as a Python client would send. Latency percentiles are wrk's own:
one sample per answer, then corrected by wrk for coordinated omission at a connection's
mean interval (a connection that stalled adds the requests it would have sent).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from harness.cpu import cpu_cores, cpu_sample, process_cpu_s
from harness.server import BenchError, Target

SCRIPT = Path(__file__).with_name("closed_loop.lua")
REQUEST_TIMEOUT_S = 30
MISSING = (
    "wrk is not installed: it is the benchmarks' load generator "
    "(Debian: apt-get install wrk, or scripts/install-system-deps.sh bench)"
)


@dataclass(frozen=True)
class HttpRequest:
    """One request to send; ``body`` is JSON."""

    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class WrkRun:
    """What wrk saw, and the CPU the watched processes used meanwhile."""

    requests: int  # answered
    sent: int
    seconds: float  # from the first send to the last answer
    statuses: dict[int, int]
    latency_ms: dict[str, float]  # p50, p95, p99, max
    errors: dict[str, int]  # wrk's counts: connect, read, write, timeout, status (>= 400)
    accepted: int  # summed from POST /api/events answers (tally_events)
    duplicates: int
    rejected: int
    connections: int
    threads: int
    client_cpu_s: float
    cpu_cores: dict[str, float] | None
    complete: bool  # every request answered within the time limit

    def ok(self, status: int = 200) -> int:
        """Answers with ``status``."""
        return self.statuses.get(status, 0)


def wrk_binary() -> str:
    """The wrk command; BenchError saying how to install it where it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise BenchError(MISSING)
    return found


def _interrupt(pid: int, finished: threading.Event) -> None:
    # wrk ignores SIGINT until all its threads run: send it again each second until it is done.
    while not finished.is_set():
        os.kill(pid, signal.SIGINT)
        finished.wait(1.0)


def _reap(proc: subprocess.Popen[str]) -> float:
    """Wait for wrk to exit; the CPU seconds it used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def closed_loop(
    target: Target,
    requests: Sequence[HttpRequest],
    *,
    connections: int,
    watched: Mapping[str, int],
    threads: int = 1,
    tally_events: bool = False,
    timeout_s: float = 600.0,
) -> WrkRun:
    """Send every request once over ``connections``, each sending its next once answered.

    CPU is measured from when wrk has read its requests to its last answer, for each
    process tree in ``watched`` (name -> PID), wrk itself (``client``) and the rest.
    ``tally_events`` sums the ``accepted``, ``duplicates`` and ``rejected`` of the answers.
    """
    if not requests:
        raise BenchError("no requests to send")
    command = [wrk_binary()]
    connections = max(1, min(connections, len(requests)))
    threads = max(1, min(threads, connections))
    per_thread = connections // threads
    with tempfile.TemporaryDirectory(prefix="recloop-wrk-") as tmp:
        listing = Path(tmp) / "requests.txt"
        with listing.open("wb") as out:
            for r in requests:
                out.write(f"{r.method} {r.path}".encode())
                out.write(b" " + r.body + b"\n" if r.body else b"\n")
        command += ["-t", str(threads), "-c", str(per_thread * threads)]
        command += ["-d", f"{math.ceil(timeout_s)}s", "--timeout", f"{REQUEST_TIMEOUT_S}s"]
        command += ["-H", f"Authorization: Bearer {target.key}", "-s", str(SCRIPT)]
        command += [f"{target.url}/", "--", str(listing), str(threads)]
        command += ["events" if tally_events else "plain"]
        errors = Path(tmp) / "stderr"
        with errors.open("w") as err:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            return _follow(proc, len(requests), threads, per_thread * threads, watched, errors)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _follow(
    proc: subprocess.Popen[str],
    total: int,
    threads: int,
    connections: int,
    watched: Mapping[str, int],
    errors: Path,
) -> WrkRun:
    """Read wrk's progress lines, measure CPU around the load, and parse its result."""
    assert proc.stdout is not None
    ready = done = 0
    before = after = None
    init_cpu_s = 0.0  # reading the requests, before the load starts
    result = None
    finished = threading.Event()
    interrupter = threading.Thread(target=_interrupt, args=(proc.pid, finished), daemon=True)
    for line in proc.stdout:
        if line.startswith("@ready"):
            ready += 1
            if ready == threads:
                before, init_cpu_s = cpu_sample(watched), process_cpu_s(proc.pid)
        elif line.startswith("@done"):
            done += 1
            if done == threads:
                after = cpu_sample(watched)
                interrupter.start()
        elif line.startswith("@result "):
            result = orjson.loads(line.removeprefix("@result "))
    finished.set()
    if interrupter.ident is not None:
        interrupter.join()
    client_cpu_s = _reap(proc) - init_cpu_s
    if result is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {errors.read_text()[-2000:]}")
    if after is None:  # the time limit ended it
        after = cpu_sample(watched)
    complete = result["answered"] >= total
    seconds = result["last_answer"] - result["first_sent"] if complete else result["duration_s"]
    return WrkRun(
        requests=result["answered"],
        sent=result["sent"],
        seconds=seconds,
        statuses={int(k): int(v) for k, v in sorted(result["statuses"].items())},
        latency_ms=result["latency_ms"],
        errors={k: int(v) for k, v in result["errors"].items()},
        accepted=int(result["accepted"]),
        duplicates=int(result["duplicates"]),
        rejected=int(result["rejected"]),
        connections=connections,
        threads=threads,
        client_cpu_s=client_cpu_s,
        cpu_cores=cpu_cores(before, after, client_cpu_s),
        complete=complete,
    )

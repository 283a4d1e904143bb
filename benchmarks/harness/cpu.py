"""CPU per process tree and for the whole machine, from /proc (the machine may be shared)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Other work on the machine above this many cores makes the figures suspect.
QUIET_CORES = 0.25


def proc_stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one process, all its threads."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds of a process, its reaped children, and its live direct children."""
    fields = proc_stat(root)
    # utime, stime, cutime, cstime: the last two hold children that have exited.
    total = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            child = proc_stat(entry.name)
            if int(child[1]) == root:
                total += int(child[11]) + int(child[12])
    return total / TICKS


def machine_busy_s() -> float:
    """CPU seconds every core spent busy (not idle, not waiting for I/O) since boot."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(cpu) - cpu[3] - cpu[4]) / TICKS


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far of named process trees and of the whole machine."""

    wall: float
    processes: dict[str, float]
    machine_busy_s: float


def cpu_sample(watched: Mapping[str, int]) -> CpuSample | None:
    """Read /proc; None where there is none (not Linux) or a process is gone."""
    try:
        processes = {name: process_tree_cpu_s(pid) for name, pid in watched.items()}
        return CpuSample(time.monotonic(), processes, machine_busy_s())
    except (OSError, ValueError, IndexError):
        return None


def cpu_cores(
    before: CpuSample | None, after: CpuSample | None, client_s: float
) -> dict[str, float] | None:
    """Average cores used by each watched process tree, the client and everything else."""
    if before is None or after is None:
        return None
    wall = after.wall - before.wall
    cores = {
        name: (after.processes[name] - before.processes[name]) / wall for name in before.processes
    }
    cores["client"] = client_s / wall
    machine = (after.machine_busy_s - before.machine_busy_s) / wall
    cores["other"] = max(0.0, machine - sum(cores.values()))
    cores["machine"] = machine
    cores["wall_s"] = wall
    return cores


def server_cpu_ms(cpu: Mapping[str, float] | None, count: int) -> float:
    """Server CPU milliseconds per request (or event) over a measured window."""
    if cpu is None or count == 0:
        return math.nan
    return cpu["server"] * cpu["wall_s"] / count * 1000


def cores_text(cpu: Mapping[str, float] | None, names: tuple[str, ...]) -> str:
    """``server 0.71 client 0.04 other 0.20`` for the ``names`` measured; ``n/a`` without /proc."""
    if cpu is None:
        return "n/a"
    return " ".join(f"{name} {cpu[name]:.2f}" for name in names if name in cpu)


def background_load(seconds: float = 2.0) -> float:
    """Cores busy over ``seconds`` while this benchmark runs nothing."""
    try:
        before = machine_busy_s()
        time.sleep(seconds)
        return (machine_busy_s() - before) / seconds
    except (OSError, ValueError, IndexError):
        return math.nan


def wait_for_quiet(max_wait_s: float) -> float:
    """Wait (bounded) until other work on the machine uses under QUIET_CORES; the last load."""
    deadline = time.monotonic() + max_wait_s
    load = background_load()
    while not load < QUIET_CORES and time.monotonic() < deadline:
        load = background_load()
    return load


def child_pids(root: int) -> list[int]:
    """The live direct children of ``root`` (a server's worker processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(proc_stat(entry.name)[1]) == root:
                    found.append(int(entry.name))
    return found


def thread_ticks(pid: int) -> dict[str, tuple[str, int]]:
    """Each thread of ``pid`` and of its live direct children (the workers of ``recloop
    serve --workers``): its name and CPU ticks (user+sys) so far."""
    out: dict[str, tuple[str, int]] = {}
    for process in (pid, *child_pids(pid)):
        tasks: list[Path] = []
        with contextlib.suppress(OSError):  # a process that exited in between
            tasks = list(Path(f"/proc/{process}/task").iterdir())
        for task in tasks:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = proc_stat(f"{process}/task/{task.name}")
                name = (task / "comm").read_text().strip()
                out[task.name] = (name, int(fields[11]) + int(fields[12]))
    return out


def thread_cores(
    before: Mapping[str, tuple[str, int]], after: Mapping[str, tuple[str, int]], wall_s: float
) -> list[dict[str, Any]]:
    """The threads that used CPU between two samples, busiest first.

    Python's threads are not named at the OS level: request threads, source threads and
    refreshers all show the process's name, as do native worker threads (OpenBLAS, OpenMP).
    """
    rows = []
    for tid, (name, ticks) in after.items():
        cores = (ticks - before.get(tid, (name, 0))[1]) / TICKS / wall_s
        if cores > 0:
            rows.append((cores, {"tid": int(tid), "name": name, "cores": cores}))
    return [row for _, row in sorted(rows, key=lambda r: -r[0])]

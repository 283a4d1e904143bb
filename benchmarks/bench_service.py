"""End-to-end benchmark of the recloop service over HTTP, on SQLite and on PostgreSQL.

For each backend it starts ``recloop serve`` as a separate process with default settings,
loads a catalog, and then measures from separate client processes:

1. durable ingestion throughput: batched (``{"events": [...]}``, 500 per request) and one
   event per POST. A 202 means the events are committed: SQLite runs with
   ``synchronous=FULL``; PostgreSQL runs in a cluster started here with ``fsync=on`` and
   ``synchronous_commit=on`` (``--pg-fsync off`` to compare);
2. ``GET /api/recommendations`` latency at a fixed request rate, open loop: sends are
   scheduled at fixed times and latency is measured from the scheduled time, so that a
   server that falls behind shows it as latency instead of as fewer requests;
3. for reference, the recommendation throughput of one connection in a closed loop.

The clients are asyncio (uvloop when installed) over raw HTTP/1.1 keep-alive connections,
with every request encoded before the clock starts, so that they take as little as possible
of the machine's CPU from the server. CPU is accounted per process (server, PostgreSQL,
clients, everything else) from /proc, because the machine may be shared.

Prints a table per backend and a summary, and writes ``benchmarks/results/service-<backend>.json``.

    .venv/bin/python benchmarks/bench_service.py                  # full size, both backends
    .venv/bin/python benchmarks/bench_service.py --quick          # about a minute
    .venv/bin/python benchmarks/bench_service.py --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import http.client
import importlib.metadata
import itertools
import math
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any

import orjson

HOST = "127.0.0.1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

TARGET_BATCHED_EPS = 20_000.0
TARGET_SINGLE_EPS = 2_000.0
TARGET_REC_P99_MS = 20.0
TARGET_REC_RATE = 200.0

EVENT_TYPES = ("view", "click", "like")
EVENT_TYPE_WEIGHTS = (6, 3, 1)
ZIPF_EXPONENT = 1.0
EVENT_AGE_MAX_S = 7 * 24 * 3600

INGEST_REQUEST_TIMEOUT_S = 60.0
REC_REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 20.0
CLIENT_READY_TIMEOUT_S = 180.0
QUIET_CORES = 0.25  # background load above this makes the figures suspect


class BenchError(RuntimeError):
    """The benchmark could not run or its setup failed."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Sizes:
    """How much work each phase does."""

    items: int = 10_000
    categories: int = 20
    users: int = 5_000
    batched_events: int = 200_000
    batch_size: int = 500
    batch_conns: int = 4
    single_events: int = 20_000
    single_conns: int = 32
    client_procs: int = 1
    settle_s: float = 2.0
    rec_rate: float = TARGET_REC_RATE
    rec_seconds: float = 25.0
    rec_warmup_s: float = 2.0
    rec_limit: int = 20
    rec_unknown_share: float = 0.1
    rec_max_conns: int = 128
    probe_requests: int = 1_000


FULL = Sizes()
QUICK = Sizes(
    items=2_000,
    users=1_000,
    batched_events=40_000,
    single_events=4_000,
    rec_seconds=8.0,
    rec_warmup_s=1.0,
    probe_requests=300,
)


@dataclass(frozen=True)
class Target:
    """Where the service listens and the API key to send."""

    host: str
    port: int
    key: str


@dataclass(frozen=True)
class IngestJob:
    """One client process's share of an ingestion phase (a closed loop)."""

    target: Target
    prefix: str
    events: int
    batch_size: int  # 1: one bare event object per POST
    conns: int
    n_items: int
    n_users: int
    seed: int


@dataclass(frozen=True)
class ProbeJob:
    """Recommendation requests sent back to back on ``conns`` connections (a closed loop)."""

    target: Target
    requests: int
    conns: int
    limit: int
    users: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class RecJob:
    """The open-loop recommendation phase, run by one client process."""

    target: Target
    rate: float
    seconds: float
    warmup_s: float
    limit: int
    known_users: tuple[str, ...]
    unknown_share: float
    max_conns: int
    seed: int


Job = IngestJob | ProbeJob | RecJob


@dataclass
class ClosedLoopOutcome:
    """What one closed-loop client saw."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # 0: connection error or timeout
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    started: float = 0.0  # time.monotonic(): one clock for every process on Linux
    finished: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    users: list[int] = field(default_factory=list)


@dataclass
class RecOutcome:
    """What the open-loop recommendation client saw (warm-up requests excluded)."""

    warmup_requests: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latency_s: list[float] = field(default_factory=list)  # from the scheduled send time
    service_s: list[float] = field(default_factory=list)  # from the actual send
    send_delay_s: list[float] = field(default_factory=list)  # actual send - scheduled send
    known_ok: int = 0
    unknown_ok: int = 0
    known_fallback: int = 0
    unknown_fallback: int = 0
    short_lists: int = 0
    first_scheduled: float = 0.0
    last_done: float = 0.0
    client_cpu_s: float = 0.0


@dataclass(frozen=True)
class ChildFailure:
    """A client process failed; its traceback."""

    where: str
    text: str


# --------------------------------------------------------------------------- a minimal client


def build_request(target: Target, method: str, path: str, body: bytes | None = None) -> bytes:
    """One complete HTTP/1.1 request, ready to write to a keep-alive connection."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        f"Authorization: Bearer {target.key}",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.reusable = True

    @classmethod
    async def open(cls, target: Target) -> HttpConnection:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write a pre-encoded request; the response's status and body."""
        self._writer.write(request)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length: int | None = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self._reader.readexactly(length)
        else:
            self.reusable = False
            body = await self._reader.read()
        return status, body

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        self.reusable = False
        self._writer.close()


_NETWORK_ERRORS = (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, ValueError)


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


# --------------------------------------------------------------------------- client processes


def item_id(index: int) -> str:
    return f"item-{index:05d}"


def _events(job: IngestJob, rng: random.Random) -> tuple[list[dict[str, Any]], set[int]]:
    """Events on Zipf-popular items by uniformly drawn users, all in the past week."""
    cum_weights = list(
        itertools.accumulate(1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(job.n_items))
    )
    items = rng.choices(range(job.n_items), cum_weights=cum_weights, k=job.events)
    types = rng.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS, k=job.events)
    users = [rng.randrange(job.n_users) for _ in range(job.events)]
    now = datetime.now(UTC)
    events = [
        {
            "eventId": f"{job.prefix}-{n}",
            "userId": f"u{users[n]}",
            "itemId": item_id(items[n]),
            "eventType": types[n],
            "eventTs": (now - timedelta(seconds=rng.uniform(60, EVENT_AGE_MAX_S))).isoformat(),
        }
        for n in range(job.events)
    ]
    return events, set(users)


def _ingest_payloads(job: IngestJob) -> tuple[list[bytes], set[int]]:
    events, users = _events(job, random.Random(job.seed))
    if job.batch_size == 1:
        bodies = [orjson.dumps(event) for event in events]
    else:
        bodies = [
            orjson.dumps({"events": events[start : start + job.batch_size]})
            for start in range(0, len(events), job.batch_size)
        ]
    return [build_request(job.target, "POST", "/api/events", body) for body in bodies], users


def _recommendation_path(user: str, limit: int) -> str:
    return f"/api/recommendations?userId={user}&limit={limit}"


async def _closed_loop(
    target: Target, payloads: Sequence[bytes], conns: int, out: ClosedLoopOutcome
) -> None:
    """Send every payload over ``conns`` connections, each sending its next once answered."""
    pending = iter(payloads)

    async def connection_loop() -> None:
        conn: HttpConnection | None = None
        for payload in pending:
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(INGEST_REQUEST_TIMEOUT_S):
                    if conn is None:
                        conn = await HttpConnection.open(target)
                    status, body = await conn.send(payload)
            except _NETWORK_ERRORS:
                status, body = 0, b""
                if conn is not None:
                    conn.close()
                    conn = None
            out.latencies_s.append(time.monotonic() - t0)
            out.requests += 1
            out.statuses[status] = out.statuses.get(status, 0) + 1
            if status in (202, 422) and body:
                answer = orjson.loads(body)
                out.accepted += answer.get("accepted", 0)
                out.duplicates += answer.get("duplicates", 0)
                out.rejected += len(answer.get("rejected", ()))
            if conn is not None and not conn.reusable:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    out.started = time.monotonic()
    await asyncio.gather(*(connection_loop() for _ in range(conns)))
    out.finished = time.monotonic()


def _open_loop_requests(job: RecJob) -> list[tuple[bytes, bool]]:
    rng = random.Random(job.seed)
    total = math.ceil((job.warmup_s + job.seconds) * job.rate)
    requests: list[tuple[bytes, bool]] = []
    for n in range(total):
        known = rng.random() >= job.unknown_share
        user = rng.choice(job.known_users) if known else f"unknown-{n}"
        requests.append(
            (build_request(job.target, "GET", _recommendation_path(user, job.limit)), known)
        )
    return requests


async def _open_loop(job: RecJob, requests: Sequence[tuple[bytes, bool]], out: RecOutcome) -> None:
    """Send request n at ``start + n / rate`` whatever became of the earlier ones."""
    idle: list[HttpConnection] = []
    slots = asyncio.Semaphore(job.max_conns)
    warmup = int(job.warmup_s * job.rate)
    start = time.monotonic() + 0.05
    out.warmup_requests = warmup
    out.first_scheduled = start + warmup / job.rate

    async def one(n: int, request: bytes, known: bool, scheduled: float) -> None:
        # The timeout covers waiting for a free connection too: every request ends
        # within REC_REQUEST_TIMEOUT_S of its scheduled time, answered or counted as failed.
        sent: float | None = None
        try:
            async with asyncio.timeout(REC_REQUEST_TIMEOUT_S), slots:
                conn = idle.pop() if idle else None
                sent = time.monotonic()
                try:
                    if conn is None:
                        conn = await HttpConnection.open(job.target)
                    status, body = await conn.send(request)
                except BaseException:
                    if conn is not None:
                        conn.close()
                    raise
                if conn.reusable:
                    idle.append(conn)
                else:
                    conn.close()
        except _NETWORK_ERRORS:
            status, body = 0, b""
        done = time.monotonic()
        sent = done if sent is None else sent
        if n < warmup:
            return
        out.requests += 1
        out.statuses[status] = out.statuses.get(status, 0) + 1
        out.latency_s.append(done - scheduled)
        out.service_s.append(done - sent)
        out.send_delay_s.append(sent - scheduled)
        out.last_done = max(out.last_done, done)
        if status != 200:
            return
        answer = orjson.loads(body)
        fallback = bool(answer.get("fallback"))
        if known:
            out.known_ok += 1
            out.known_fallback += fallback
        else:
            out.unknown_ok += 1
            out.unknown_fallback += fallback
        out.short_lists += len(answer.get("items", ())) < job.limit

    tasks: list[asyncio.Task[None]] = []
    for n, (request, known) in enumerate(requests):
        scheduled = start + n / job.rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, request, known, scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()


def client_main(job: Job, ready: Any, go: Any, results: Any) -> None:
    """A client process: prepare every request, say so, wait for the start, run, report."""
    where = f"client {os.getpid()}"
    try:
        users: set[int] = set()
        payloads: list[bytes] = []
        requests: list[tuple[bytes, bool]] = []
        if isinstance(job, IngestJob):
            payloads, users = _ingest_payloads(job)
        elif isinstance(job, ProbeJob):
            rng = random.Random(job.seed)
            paths = [
                _recommendation_path(rng.choice(job.users), job.limit) for _ in range(job.requests)
            ]
            payloads = [build_request(job.target, "GET", path) for path in paths]
        else:
            requests = _open_loop_requests(job)
    except BaseException:
        ready.put(ChildFailure(where, traceback.format_exc()))
        return
    ready.put(where)
    if not go.wait(CLIENT_READY_TIMEOUT_S):
        return
    try:
        cpu0 = time.process_time()
        outcome: ClosedLoopOutcome | RecOutcome
        if isinstance(job, RecJob):
            outcome = RecOutcome()
            _run_async(_open_loop(job, requests, outcome))
        else:
            outcome = ClosedLoopOutcome(users=sorted(users))
            _run_async(_closed_loop(job.target, payloads, job.conns, outcome))
        outcome.client_cpu_s = time.process_time() - cpu0
        results.put(outcome)
    except BaseException:
        results.put(ChildFailure(where, traceback.format_exc()))


# --------------------------------------------------------------------------- measuring CPU

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds of a process, its reaped children, and its live direct children."""
    fields = _proc_stat(root)
    # utime, stime, cutime, cstime: the last two hold children that have exited.
    total = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            child = _proc_stat(entry.name)
            if int(child[1]) == root:
                total += int(child[11]) + int(child[12])
    return total / _TICKS


def machine_busy_s() -> float:
    """CPU seconds every core spent busy (not idle, not waiting for I/O) since boot."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(cpu) - cpu[3] - cpu[4]) / _TICKS


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
    """Average cores used by each watched process tree, the clients and everything else."""
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


def _receive(queue: Any, procs: Sequence[Any], deadline: float) -> Any:
    """The next message from a client, failing fast when a client process died."""
    while True:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"a client process died (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise BenchError("the clients did not answer in time") from None


def run_clients(
    jobs: Sequence[Job], watched: Mapping[str, int], timeout_s: float
) -> tuple[list[Any], dict[str, float] | None]:
    """Start one process per job, start them together once all are ready, gather outcomes."""
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    results: Any = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=client_main, args=(job, ready, go, results)) for job in jobs]
    outcomes: list[Any] = []
    try:
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + CLIENT_READY_TIMEOUT_S
        for _ in procs:
            message = _receive(ready, procs, deadline)
            if isinstance(message, ChildFailure):
                raise BenchError(f"{message.where} failed to prepare:\n{message.text}")
        before = cpu_sample(watched)
        go.set()
        deadline = time.monotonic() + timeout_s
        for _ in procs:
            outcome = _receive(results, procs, deadline)
            if isinstance(outcome, ChildFailure):
                raise BenchError(f"{outcome.where} failed:\n{outcome.text}")
            outcomes.append(outcome)
        after = cpu_sample(watched)
    finally:
        go.set()
        for proc in procs:
            if proc.pid is None:
                continue
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    return outcomes, cpu_cores(before, after, sum(o.client_cpu_s for o in outcomes))


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def recloop_command() -> list[str]:
    script = Path(sys.executable).with_name("recloop")
    if script.exists():
        return [str(script)]
    found = shutil.which("recloop")
    if found is None:
        raise BenchError("the `recloop` command is not installed next to this Python")
    return [found]


def service_env(data_dir: Path, store_url: str | None) -> dict[str, str]:
    """The environment of every recloop command: default settings, this store only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env["RECLOOP_DATA_DIR"] = str(data_dir)
    env["RECLOOP_CONFIG"] = str(data_dir / "no-such-recloop.toml")  # defaults, no stray toml
    if store_url is not None:
        env["RECLOOP_STORE_URL"] = store_url
    return env


def run_recloop(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run a recloop command to completion; its stdout."""
    done = subprocess.run(
        [*recloop_command(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"recloop {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_json(
    target: Target, method: str, path: str, body: Any = None, timeout: float = 60.0
) -> tuple[int, Any]:
    """One request on a fresh connection (setup and checks, not measurements)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else orjson.dumps(body), headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return response.status, data.decode(errors="replace")


@contextlib.contextmanager
def recloop_server(env: dict[str, str], workdir: Path) -> Iterator[tuple[int, int]]:
    """``recloop serve`` on a free loopback port until the context exits; (pid, port)."""
    port = free_port()
    log_path = workdir / "server.log"
    command = [*recloop_command(), "serve", "--host", HOST, "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--log-level", "warning"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        probe = Target(HOST, port, "")
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise BenchError(f"recloop serve exited ({proc.returncode}):\n{_tail(log_path)}")
            with contextlib.suppress(OSError):
                if http_json(probe, "GET", "/healthz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"recloop serve did not answer /healthz:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield proc.pid, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _postgres_bin() -> Path:
    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise BenchError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(initdb).parent


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster."""

    admin_url: str  # its ``postgres`` database, user ``app``
    postmaster_pid: int


@contextlib.contextmanager
def postgres_cluster(fsync: bool) -> Iterator[PostgresCluster]:
    """A throwaway cluster on 127.0.0.1 (``fsync`` on or off), removed on exit."""
    bin_dir = _postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="recloop-bench-pg-"))
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        port = free_port()
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "app", "--auth=trust"]
        subprocess.run(
            _as_postgres([*initdb, "-E", "UTF8"]), check=True, capture_output=True, timeout=120
        )
        options = (
            f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={data} "
            f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit=on "
            "-c max_connections=200"
        )
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log")]
        subprocess.run(
            _as_postgres([*pg_ctl, "-w", "-o", options, "start"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = True
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        yield PostgresCluster(f"postgresql+psycopg://app@{HOST}:{port}/postgres", pid)
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(data, ignore_errors=True)


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(_plain_pg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def postgres_settings(url: str) -> dict[str, str]:
    import psycopg

    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
    )
    settings: dict[str, str] = {}
    with psycopg.connect(_plain_pg_url(url)) as conn:
        for name in names:
            row = conn.execute(f"SHOW {name}").fetchone()
            settings[name] = "?" if row is None else str(row[0])
    return settings


def stored_events(data_dir: Path, store_url: str | None) -> int:
    """How many events the store holds, read directly from the database."""
    query = "SELECT count(*) FROM events"
    if store_url is None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(data_dir / "recloop.db", timeout=30)) as conn:
            return int(conn.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(_plain_pg_url(store_url)) as pg:
        row = pg.execute(query).fetchone()
        return -1 if row is None else int(row[0])


def filesystem_of(path: Path) -> str:
    """The file system type and device ``path`` lives on, from /proc/mounts."""
    best = ("", "?", "?")
    resolved = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, kind, device)
    return f"{best[1]} on {best[2]}"


def fdatasync_ms(directory: Path, rounds: int = 100) -> float:
    """Median time to append 4 KiB to a file and fdatasync it: the floor of one commit."""
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"x" * 4096
        for _ in range(rounds):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return percentile(times, 0.5) * 1000


# --------------------------------------------------------------------------- phases


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50) * 1000,
        "p95": percentile(values, 0.95) * 1000,
        "p99": percentile(values, 0.99) * 1000,
        "max": max(values, default=math.nan) * 1000,
    }


def _split(total: int, parts: int, multiple: int) -> list[int]:
    """``total`` in at most ``parts`` shares, each a multiple of ``multiple`` but the last."""
    share = math.ceil(total / parts / multiple) * multiple
    shares: list[int] = []
    left = total
    while left > 0 and len(shares) < parts:
        shares.append(min(share, left))
        left -= shares[-1]
    return shares


def _server_cpu_ms(cpu: Mapping[str, float] | None, count: int) -> float:
    """Server CPU milliseconds per request (or event) over the measured window."""
    if cpu is None or count == 0:
        return math.nan
    return cpu["server"] * cpu["wall_s"] / count * 1000


def _merge_statuses(outcomes: Sequence[Any]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for outcome in outcomes:
        for status, count in outcome.statuses.items():
            merged[status] = merged.get(status, 0) + count
    return merged


def load_catalog(target: Target, sizes: Sizes) -> dict[str, Any]:
    t0 = time.monotonic()
    upserted = 0
    requests = 0
    for start in range(0, sizes.items, 1000):
        items = [
            {
                "itemId": item_id(i),
                "category": f"cat-{i % sizes.categories:02d}",
                "title": f"Item {i}",
                "creatorId": f"creator-{i % 500}",
            }
            for i in range(start, min(start + 1000, sizes.items))
        ]
        status, answer = http_json(target, "POST", "/api/items", {"items": items})
        requests += 1
        if status != 200 or answer.get("upserted") != len(items):
            raise BenchError(f"POST /api/items answered {status}: {str(answer)[:500]}")
        upserted += answer["upserted"]
    seconds = time.monotonic() - t0
    return {
        "items": upserted,
        "requests": requests,
        "seconds": seconds,
        "items_per_s": upserted / seconds,
    }


def ingest_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, kind: str, seed: int
) -> tuple[dict[str, Any], set[int]]:
    batched = kind == "batched"
    total = sizes.batched_events if batched else sizes.single_events
    batch = sizes.batch_size if batched else 1
    conns = sizes.batch_conns if batched else sizes.single_conns
    shares = _split(total, sizes.client_procs, batch)
    conns_each = _split(max(conns, len(shares)), len(shares), 1)
    jobs = [
        IngestJob(
            target=target,
            prefix=f"{kind[0]}{n}",
            events=events,
            batch_size=batch,
            conns=conns_each[n],
            n_items=sizes.items,
            n_users=sizes.users,
            seed=seed * 1000 + n + (0 if batched else 500),
        )
        for n, events in enumerate(shares)
    ]
    outcomes, cpu = run_clients(jobs, watched, timeout_s=900)
    seconds = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    statuses = _merge_statuses(outcomes)
    latencies = [v for o in outcomes for v in o.latencies_s]
    accepted = sum(o.accepted for o in outcomes)
    requests = sum(o.requests for o in outcomes)
    figures = {
        "events_sent": total,
        "events_per_request": batch,
        "connections": sum(j.conns for j in jobs),
        "client_processes": len(jobs),
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_202": requests - statuses.get(202, 0),
        "accepted": accepted,
        "duplicates": sum(o.duplicates for o in outcomes),
        "rejected": sum(o.rejected for o in outcomes),
        "seconds": seconds,
        "events_per_s": accepted / seconds,
        "request_ms": _ms(latencies),
        "cpu_cores": cpu,
        "server_cpu_us_per_event": _server_cpu_ms(cpu, accepted) * 1000,
    }
    return figures, {u for o in outcomes for u in o.users}


def recommendation_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, users: Sequence[str], seed: int
) -> dict[str, Any]:
    job = RecJob(
        target=target,
        rate=sizes.rec_rate,
        seconds=sizes.rec_seconds,
        warmup_s=sizes.rec_warmup_s,
        limit=sizes.rec_limit,
        known_users=tuple(users),
        unknown_share=sizes.rec_unknown_share,
        max_conns=sizes.rec_max_conns,
        seed=seed,
    )
    timeout = sizes.rec_seconds + sizes.rec_warmup_s + REC_REQUEST_TIMEOUT_S + 60
    outcomes, cpu = run_clients([job], watched, timeout_s=timeout)
    o: RecOutcome = outcomes[0]
    ok = o.statuses.get(200, 0)
    window = o.last_done - o.first_scheduled
    return {
        "offered_per_s": sizes.rec_rate,
        "seconds": sizes.rec_seconds,
        "warmup_requests_not_counted": o.warmup_requests,
        "max_connections": sizes.rec_max_conns,
        "requests": o.requests,
        "achieved_ok_per_s": ok / window if window > 0 else math.nan,
        "statuses": {str(k): v for k, v in sorted(o.statuses.items())},
        "non_200": o.requests - ok,
        "latency_ms": _ms(o.latency_s),
        "service_ms": _ms(o.service_s),
        "send_delay_ms": _ms(o.send_delay_s),
        "fallback_share": (o.known_fallback + o.unknown_fallback) / ok if ok else math.nan,
        "fallback_share_known_users": o.known_fallback / o.known_ok if o.known_ok else math.nan,
        "fallback_share_unknown_users": (
            o.unknown_fallback / o.unknown_ok if o.unknown_ok else math.nan
        ),
        "known_user_requests_ok": o.known_ok,
        "unknown_user_requests_ok": o.unknown_ok,
        "short_lists": o.short_lists,
        "cpu_cores": cpu,
        "server_cpu_ms_per_request": _server_cpu_ms(cpu, o.requests + o.warmup_requests),
    }


def probe_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, users: Sequence[str], seed: int
) -> dict[str, Any]:
    """Recommendations back to back on one connection: the serial capacity, for reference."""
    job = ProbeJob(target, sizes.probe_requests, 1, sizes.rec_limit, tuple(users), seed)
    outcomes, cpu = run_clients([job], watched, timeout_s=300)
    o: ClosedLoopOutcome = outcomes[0]
    seconds = o.finished - o.started
    ok = o.statuses.get(200, 0)
    return {
        "requests": o.requests,
        "connections": 1,
        "non_200": o.requests - ok,
        "seconds": seconds,
        "ok_per_s": ok / seconds,
        "latency_ms": _ms(o.latencies_s),
        "cpu_cores": cpu,
        "server_cpu_ms_per_request": _server_cpu_ms(cpu, o.requests),
    }


def run_backend(backend: str, sizes: Sizes, pg_fsync: bool, seed: int) -> dict[str, Any]:
    """Every phase against one backend; the figures."""
    result: dict[str, Any] = {"backend": backend, "started_at": datetime.now(UTC).isoformat()}
    work = Path(tempfile.mkdtemp(prefix=f"recloop-bench-{backend}-"))
    try:
        with contextlib.ExitStack() as stack:
            store_url: str | None = None
            watched: dict[str, int] = {}
            if backend == "postgresql":
                cluster = stack.enter_context(postgres_cluster(fsync=pg_fsync))
                watched["postgres"] = cluster.postmaster_pid
                store_url = create_database(cluster.admin_url, "recloop_bench")
                pg = result["postgresql"] = postgres_settings(store_url)
                result["store"] = (
                    f"PostgreSQL {pg['server_version'].split()[0]}, fsync={pg['fsync']}, "
                    f"synchronous_commit={pg['synchronous_commit']}, "
                    f"wal_sync_method={pg['wal_sync_method']}"
                )
            else:
                result["store"] = "SQLite (embedded), WAL, synchronous=FULL"
            env = service_env(work, store_url)
            key = ""
            if store_url is not None:
                run_recloop(["db", "upgrade"], env, work)
                created = run_recloop(
                    ["keys", "create", "--app", "default", "--scopes", "ingest,serve,admin"],
                    env,
                    work,
                )
                key = created.strip().splitlines()[-1].strip()
            result["data_dir"] = str(work)
            result["filesystem"] = filesystem_of(work)
            result["fdatasync_ms_p50"] = fdatasync_ms(work)
            server_pid, port = stack.enter_context(recloop_server(env, work))
            watched = {"server": server_pid, **watched}
            if store_url is None:
                key = (work / "dev-key").read_text().strip()
            target = Target(HOST, port, key)
            result["server"] = {"pid": server_pid, "port": port, "command": "recloop serve"}
            result["catalog"] = load_catalog(target, sizes)
            result["ingest_batched"], users = ingest_phase(target, watched, sizes, "batched", seed)
            result["ingest_single"], more = ingest_phase(target, watched, sizes, "single", seed)
            known = [f"u{u}" for u in sorted(users | more)]
            time.sleep(sizes.settle_s)  # the popularity refresher folds in the last events
            result["recommendations"] = recommendation_phase(target, watched, sizes, known, seed)
            result["recommendations_closed_loop"] = probe_phase(target, watched, sizes, known, seed)
            result["stored_events"] = stored_events(work, store_url)
            result["accepted_events"] = (
                result["ingest_batched"]["accepted"] + result["ingest_single"]["accepted"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["targets"] = targets_of(result)
    return result


def targets_of(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    batched, single = result["ingest_batched"], result["ingest_single"]
    rec = result["recommendations"]
    p99 = rec["latency_ms"]["p99"]
    return {
        "batched_events_per_s": {
            "target": f">= {TARGET_BATCHED_EPS:,.0f}",
            "value": batched["events_per_s"],
            "met": batched["events_per_s"] >= TARGET_BATCHED_EPS and batched["non_202"] == 0,
        },
        "single_events_per_s": {
            "target": f">= {TARGET_SINGLE_EPS:,.0f}",
            "value": single["events_per_s"],
            "met": single["events_per_s"] >= TARGET_SINGLE_EPS and single["non_202"] == 0,
        },
        "recommendation_p99_ms": {
            "target": f"< {TARGET_REC_P99_MS:g} at {TARGET_REC_RATE:g}/s",
            "value": p99,
            "met": (
                p99 < TARGET_REC_P99_MS
                and rec["offered_per_s"] >= TARGET_REC_RATE
                and rec["non_200"] == 0
            ),
        },
    }


# --------------------------------------------------------------------------- reporting


def _cpu_text(cpu: Mapping[str, float] | None) -> str:
    if cpu is None:
        return "n/a"
    names = [n for n in ("server", "postgres", "client", "other") if n in cpu]
    return " ".join(f"{name} {cpu[name]:.2f}" for name in names)


def _verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def print_backend(result: Mapping[str, Any], sizes: Sizes) -> None:
    b, s = result["ingest_batched"], result["ingest_single"]
    rec, probe, cat = (
        result["recommendations"],
        result["recommendations_closed_loop"],
        result["catalog"],
    )
    print()
    print(f"=== {result['backend']} ===")
    print(f"store        {result['store']}")
    print(
        f"data dir     {result['filesystem']}; fdatasync of a 4 KiB append: "
        f"{result['fdatasync_ms_p50']:.2f} ms (median)"
    )
    print(
        f"background   {result['background_load_cores']:.2f} cores busy with other work "
        "before the run"
        + ("" if result["background_load_cores"] < QUIET_CORES else "  << NOT QUIET")
    )
    print(
        f"catalog      {cat['items']:,} items in {sizes.categories} categories, "
        f"{cat['requests']} x POST /api/items: {cat['seconds']:.2f} s "
        f"({cat['items_per_s']:,.0f} items/s)"
    )
    print()
    print("ingestion, POST /api/events (202 = committed durably), closed loop")
    print(
        f"  {'mode':<12}{'events':>9}{'requests':>10}{'conns':>6}{'seconds':>9}"
        f"{'events/s':>10}{'req p50':>10}{'req p99':>10}{'non-202':>8}{'srv us/ev':>10}"
    )
    for label, fig in ((f"batched x{b['events_per_request']}", b), ("single", s)):
        print(
            f"  {label:<12}{fig['accepted']:>9,}{fig['requests']:>10,}{fig['connections']:>6}"
            f"{fig['seconds']:>9.2f}{fig['events_per_s']:>10,.0f}"
            f"{fig['request_ms']['p50']:>8.1f}ms{fig['request_ms']['p99']:>8.1f}ms"
            f"{fig['non_202']:>8}{fig['server_cpu_us_per_event']:>10.0f}"
        )
    for label, fig in (("batched", b), ("single", s)):
        print(f"  CPU cores, {label + ':':<9}{_cpu_text(fig['cpu_cores'])}")
    print(
        f"  events counted in the database afterwards: {result['stored_events']:,} "
        f"(accepted: {result['accepted_events']:,})"
    )
    print()
    print(f"recommendations, GET /api/recommendations?userId=...&limit={sizes.rec_limit}")
    print(
        f"  open loop: offered {rec['offered_per_s']:g}/s for {rec['seconds']:g} s "
        f"(+{rec['warmup_requests_not_counted']} warm-up requests not counted), "
        f"<= {rec['max_connections']} connections"
    )
    print(
        f"  achieved {rec['achieved_ok_per_s']:.1f} OK/s; {rec['requests']:,} requests; "
        f"non-200: {rec['non_200']}; server CPU {rec['server_cpu_ms_per_request']:.2f} ms/request"
    )
    for label, key in (
        ("latency from scheduled send", "latency_ms"),
        ("latency from actual send   ", "service_ms"),
        ("client delay before send   ", "send_delay_ms"),
    ):
        v = rec[key]
        print(
            f"  {label}  p50 {v['p50']:8.2f}  p95 {v['p95']:8.2f}  "
            f"p99 {v['p99']:8.2f}  max {v['max']:8.2f} ms"
        )
    print(
        f"  fallback=true: {rec['fallback_share']:.1%} of 200s "
        f"(known users {rec['fallback_share_known_users']:.1%} of "
        f"{rec['known_user_requests_ok']:,}, unknown users "
        f"{rec['fallback_share_unknown_users']:.1%} of {rec['unknown_user_requests_ok']:,}); "
        f"lists shorter than {sizes.rec_limit}: {rec['short_lists']}"
    )
    print(f"  CPU cores: {_cpu_text(rec['cpu_cores'])}")
    lat = probe["latency_ms"]
    print(
        f"  closed loop, 1 connection, {probe['requests']:,} requests: "
        f"{probe['ok_per_s']:.0f} OK/s, "
        f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, non-200: {probe['non_200']}, "
        f"server CPU {probe['server_cpu_ms_per_request']:.2f} ms/request"
    )
    print()
    print("targets")
    labels = {
        "batched_events_per_s": ("batched ingest, events/s", "{:,.0f}"),
        "single_events_per_s": ("single-event ingest, events/s", "{:,.0f}"),
        "recommendation_p99_ms": ("recommendation p99, ms", "{:.2f}"),
    }
    for name, t in result["targets"].items():
        label, fmt = labels[name]
        print(
            f"  {label:<32}{fmt.format(t['value']):>10}   target {t['target']:<16}"
            f"{_verdict(t['met'])}"
        )


def print_summary(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    print()
    print("=== summary ===")
    print(
        f"{meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}, "
        f"recloop {meta['recloop']} ({meta['git']})"
    )
    print(f"  {'':<36}" + "".join(f"{r['backend']:>20}" for r in results) + f"{'target':>20}")
    rate = results[0]["recommendations"]["offered_per_s"]
    rows = (
        ("batched ingest, events/s", "batched_events_per_s", "{:,.0f}"),
        ("single-event ingest, events/s", "single_events_per_s", "{:,.0f}"),
        (f"recommendation p99 @ {rate:g}/s, ms", "recommendation_p99_ms", "{:.2f}"),
    )
    for label, key, fmt in rows:
        cells = ""
        for r in results:
            t = r["targets"][key]
            cells += f"{fmt.format(t['value']) + ' ' + _verdict(t['met']):>20}"
        print(f"  {label:<36}{cells}{results[0]['targets'][key]['target']:>20}")
    extra: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
        (
            f"recommendation p50 @ {rate:g}/s, ms",
            lambda r: f"{r['recommendations']['latency_ms']['p50']:.2f}",
        ),
        (
            f"recommendations OK/s @ {rate:g}/s offered",
            lambda r: f"{r['recommendations']['achieved_ok_per_s']:.1f}",
        ),
        (
            "recommendations OK/s, 1 conn closed",
            lambda r: f"{r['recommendations_closed_loop']['ok_per_s']:.0f}",
        ),
        (f"fallback share @ {rate:g}/s", lambda r: f"{r['recommendations']['fallback_share']:.1%}"),
        (
            "non-2xx (batched/single/recs)",
            lambda r: (
                f"{r['ingest_batched']['non_202']}/{r['ingest_single']['non_202']}"
                f"/{r['recommendations']['non_200']}"
            ),
        ),
        ("background load before, cores", lambda r: f"{r['background_load_cores']:.2f}"),
    )
    for label, cell in extra:
        print(f"  {label:<36}" + "".join(f"{cell(r):>20}" for r in results))


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    try:
        version = importlib.metadata.version("recloop")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "recloop": version,
        "git": git_revision(),
        "client": f"separate processes, {loop}, raw HTTP/1.1 keep-alive, requests pre-encoded",
    }


def save(result: Mapping[str, Any], sizes: Sizes, meta: Mapping[str, Any], quick: bool) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"service-{result['backend']}.json"
    document = {
        **result,
        "sizes": asdict(sizes),
        "quick": quick,
        "environment": meta,
        "argv": sys.argv[1:],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the recloop service over HTTP on SQLite and PostgreSQL."
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about a minute")
    parser.add_argument(
        "--pg-fsync", choices=("on", "off"), default="on", help="the PostgreSQL cluster's fsync"
    )
    parser.add_argument("--items", type=int, help="catalog size")
    parser.add_argument("--users", type=int, help="distinct users in the events")
    parser.add_argument("--batched-events", type=int, help="events posted 500 per request")
    parser.add_argument("--single-events", type=int, help="events posted one per request")
    parser.add_argument("--batch-conns", type=int, help="connections for batched posts")
    parser.add_argument("--single-conns", type=int, help="connections for single posts")
    parser.add_argument("--client-procs", type=int, help="load-generator processes for ingest")
    parser.add_argument("--rec-rate", type=float, help="recommendation requests per second")
    parser.add_argument("--rec-seconds", type=float, help="measured recommendation seconds")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait at most for other work on the machine to stop (default 60)",
    )
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    names = (
        "items",
        "users",
        "batched_events",
        "single_events",
        "batch_conns",
        "single_conns",
        "client_procs",
        "rec_rate",
        "rec_seconds",
    )
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    sizes = replace(QUICK if args.quick else FULL, **overrides)
    if min(sizes.items, sizes.users, sizes.batched_events, sizes.single_events) < 1:
        raise BenchError("sizes must be positive")
    if min(sizes.batch_conns, sizes.single_conns, sizes.client_procs) < 1:
        raise BenchError("connections and processes must be positive")
    if sizes.rec_rate <= 0 or sizes.rec_seconds <= 0:
        raise BenchError("the recommendation rate and duration must be positive")
    return sizes


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        sizes = sizes_of(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    meta = environment()
    print(
        f"recloop service benchmark: {', '.join(backends)}; "
        f"{'quick' if args.quick else 'full'} size; {meta['cpus']} CPUs\n"
        "server: `recloop serve` (one process, default settings), in its own process\n"
        f"client: {meta['client']}"
    )
    results = []
    failed = False
    for backend in backends:
        print(f"\nrunning {backend} ...", flush=True)
        load = wait_for_quiet(args.quiet_wait)
        try:
            result = run_backend(backend, sizes, args.pg_fsync == "on", args.seed)
        except (BenchError, subprocess.SubprocessError, OSError) as exc:
            print(f"error: {backend} benchmark failed: {exc}", file=sys.stderr)
            failed = True
            continue
        result["background_load_cores"] = load
        print_backend(result, sizes)
        print(f"(figures written to {save(result, sizes, meta, args.quick)})")
        results.append(result)
    if results:
        print_summary(results, meta)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

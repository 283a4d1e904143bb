"""Fixed-rate (open-loop) recommendation load from a Python process.

This answers a question wrk does not: the latency of ``GET /api/recommendations`` at a
fixed offered rate. Request n is sent at ``start + n / rate`` whatever became of the earlier
ones, and its latency runs from that scheduled time, so a server that falls behind shows
it as latency instead of as fewer requests (wrk's closed loop, paced or not, lets a slow
server lower the rate it is offered). It also reads every answer: fallbacks, short lists,
and with ``debug=true`` each stage's time.

The client is asyncio (uvloop when installed) over raw HTTP/1.1 keep-alive connections,
in its own process, with every request encoded before the clock starts.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import random
import time
import traceback
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

import orjson

from harness.cpu import cpu_cores, cpu_sample, server_cpu_ms
from harness.report import ms
from harness.server import BenchError, Target

REQUEST_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 180.0
#: A keep-alive connection idle for longer than this is not reused (uvicorn closes it at 5 s).
KEEPALIVE_REUSE_S = 4.0
_NETWORK_ERRORS = (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, ValueError)


@dataclass(frozen=True)
class OpenLoopJob:
    """Requests to send at ``rate`` per second: ``warmup_s`` not counted, then ``seconds``."""

    target: Target
    rate: float
    seconds: float
    warmup_s: float
    requests: tuple[tuple[str, bool], ...]  # (path, whether the user has history), in order
    limit: int  # a list shorter than this is counted
    max_conns: int = 256
    keep_stages: bool = False  # keep every answer's stages (for debug=true requests)


@dataclass
class OpenLoopRun:
    """What the open-loop client saw (warm-up requests excluded) and the CPU used."""

    offered_per_s: float = 0.0
    seconds: float = 0.0
    warmup_requests: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # 0: connection error or timeout
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
    connections_opened: int = 0
    idle_dropped: int = 0
    client_cpu_s: float = 0.0
    cpu_cores: dict[str, float] | None = None
    answers: list[tuple[bool, list[dict[str, Any]], int]] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """Rate, statuses, latency percentiles, fallbacks and CPU, as the JSON keeps them."""
        ok = self.statuses.get(200, 0)
        window = self.last_done - self.first_scheduled
        fallbacks = self.known_fallback + self.unknown_fallback
        return {
            "offered_per_s": self.offered_per_s,
            "seconds": self.seconds,
            "warmup_requests_not_counted": self.warmup_requests,
            "requests": self.requests,
            "achieved_ok_per_s": ok / window if window > 0 else math.nan,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_200": self.requests - ok,
            "latency_ms": ms(self.latency_s),
            "service_ms": ms(self.service_s),
            "send_delay_ms": ms(self.send_delay_s),
            "fallback_share": fallbacks / ok if ok else math.nan,
            "fallback_share_known_users": (
                self.known_fallback / self.known_ok if self.known_ok else math.nan
            ),
            "fallback_share_unknown_users": (
                self.unknown_fallback / self.unknown_ok if self.unknown_ok else math.nan
            ),
            "known_user_requests_ok": self.known_ok,
            "unknown_user_requests_ok": self.unknown_ok,
            "short_lists": self.short_lists,
            "connections_opened": self.connections_opened,
            "idle_connections_dropped": self.idle_dropped,
            "cpu_cores": self.cpu_cores,
            # the warm-up requests ran inside the CPU window too
            "server_cpu_ms_per_request": server_cpu_ms(
                self.cpu_cores, self.requests + self.warmup_requests
            ),
        }


def draw_users(
    known: Sequence[str], unknown_share: float, count: int, seed: int, unknown_prefix: str
) -> list[tuple[str, bool]]:
    """``count`` users: a known one drawn uniformly, or ``unknown_share`` of the time a new one."""
    rng = random.Random(seed)
    users = []
    for n in range(count):
        is_known = rng.random() >= unknown_share
        users.append((rng.choice(known) if is_known else f"{unknown_prefix}{n}", is_known))
    return users


def schedule_length(rate: float, seconds: float, warmup_s: float) -> int:
    """How many requests an open loop at ``rate`` sends in ``warmup_s + seconds``."""
    return math.ceil((warmup_s + seconds) * rate)


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
        """Connect to ``target``."""
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write a pre-encoded request; the response's status and body (Content-Length)."""
        self._writer.write(request)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
        return int(head[9:12]), await self._reader.readexactly(length)

    def close(self) -> None:
        """Close the connection."""
        self.reusable = False
        self._writer.close()


async def _open_loop(job: OpenLoopJob, requests: Sequence[bytes], out: OpenLoopRun) -> None:
    """Send request n at ``start + n / rate`` whatever became of the earlier ones."""
    idle: list[tuple[HttpConnection, float]] = []
    slots = asyncio.Semaphore(job.max_conns)
    warmup = int(job.warmup_s * job.rate)
    start = time.monotonic() + 0.05
    out.warmup_requests = warmup
    out.first_scheduled = start + warmup / job.rate

    def take() -> HttpConnection | None:
        while idle:
            conn, since = idle.pop()
            if time.monotonic() - since < KEEPALIVE_REUSE_S:
                return conn
            conn.close()
            out.idle_dropped += 1
        return None

    async def one(n: int, request: bytes, known: bool, scheduled: float) -> None:
        # The timeout covers waiting for a free connection too: every request ends
        # within REQUEST_TIMEOUT_S of its scheduled time, answered or counted as failed.
        sent: float | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S), slots:
                conn = take()
                sent = time.monotonic()
                try:
                    if conn is None:
                        out.connections_opened += 1
                        conn = await HttpConnection.open(job.target)
                    status, body = await conn.send(request)
                except BaseException:
                    if conn is not None:
                        conn.close()
                    raise
                if conn.reusable:
                    idle.append((conn, time.monotonic()))
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
        if job.keep_stages:
            out.answers.append((known, answer["stages"], len(answer["items"])))

    tasks = []
    for n, (request, (_, known)) in enumerate(zip(requests, job.requests, strict=True)):
        scheduled = start + n / job.rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, request, known, scheduled)))
    await asyncio.gather(*tasks)
    for conn, _ in idle:
        conn.close()


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def _client(job: OpenLoopJob, ready: Any, go: Any, results: Any) -> None:
    """The client process: encode every request, say so, wait for the start, run, report."""
    where = f"client {os.getpid()}"
    try:
        requests = [build_request(job.target, "GET", path) for path, _ in job.requests]
    except BaseException:
        ready.put((where, traceback.format_exc()))
        return
    ready.put(None)
    if not go.wait(READY_TIMEOUT_S):
        return
    try:
        cpu0 = time.process_time()
        outcome = OpenLoopRun()
        _run_async(_open_loop(job, requests, outcome))
        outcome.client_cpu_s = time.process_time() - cpu0
        results.put(outcome)
    except BaseException:
        results.put((where, traceback.format_exc()))


def _receive(queue: Any, proc: Any, deadline: float) -> Any:
    """The client's next message, failing fast when its process died."""
    while True:
        try:
            message = queue.get(timeout=0.5)
        except Empty:
            if proc.exitcode not in (None, 0):
                raise BenchError(f"the client process died (exit code {proc.exitcode})") from None
            if time.monotonic() > deadline:
                raise BenchError("the client did not answer in time") from None
            continue
        if isinstance(message, tuple):
            where, text = message
            raise BenchError(f"{where} failed:\n{text}")
        return message


def open_loop(job: OpenLoopJob, watched: Mapping[str, int]) -> OpenLoopRun:
    """Run ``job`` in its own process, started once its requests are encoded.

    CPU is measured over the run (warm-up included) for each process tree in ``watched``
    (name -> PID), the client and everything else.
    """
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    results: Any = ctx.Queue()
    go = ctx.Event()
    proc = ctx.Process(target=_client, args=(job, ready, go, results))
    try:
        proc.start()
        _receive(ready, proc, time.monotonic() + READY_TIMEOUT_S)
        before = cpu_sample(watched)
        go.set()
        deadline = time.monotonic() + job.warmup_s + job.seconds + REQUEST_TIMEOUT_S + 60
        run: OpenLoopRun = _receive(results, proc, deadline)
        after = cpu_sample(watched)
    finally:
        go.set()
        if proc.pid is not None:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    run.offered_per_s = job.rate
    run.seconds = job.seconds
    run.cpu_cores = cpu_cores(before, after, run.client_cpu_s)
    return run

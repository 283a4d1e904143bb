"""One writer thread for the high-volume writes: events (acknowledged) and served lists.

Events from concurrent requests are committed together (group commit): one durable
transaction per loop instead of one per request, which is what lets single-event posts
reach thousands per second on SQLite with ``synchronous=FULL``. A caller waits until its
events are on disk. Served lists are fire-and-forget: queued, written in batches, and
counted when they have to be dropped; they never block a response. Shadow lists (computed,
never shown) are written the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from recloop.domain import Event, RecommendationRecord, ShadowRecord
from recloop.errors import StoreError, StoreUnavailable
from recloop.store.protocols import EventLog, RecommendationLog, ShadowLog

log = logging.getLogger(__name__)
R = TypeVar("R", RecommendationRecord, ShadowRecord)


@dataclass(frozen=True, slots=True)
class EventAck:
    """What happened to one submission's events."""

    accepted: int
    duplicates: int
    # Positions (in the submission) of the events whose id was already stored.
    duplicate_positions: tuple[int, ...] = ()


@dataclass(slots=True)
class _EventJob:
    events: Sequence[Event]
    done: Future[EventAck] = field(default_factory=Future)


@dataclass(slots=True)
class _FlushJob:
    done: Future[None] = field(default_factory=Future)


_Job = _EventJob | RecommendationRecord | ShadowRecord | _FlushJob


@dataclass
class WriterStats:
    """Counters a monitoring endpoint exposes."""

    event_commits: int = 0
    events_written: int = 0
    logs_written: int = 0
    logs_dropped: int = 0
    shadows_written: int = 0
    shadows_dropped: int = 0
    # When event commits began to fail (time.monotonic()), None after any that succeeded,
    # and when the last one failed.
    failing_since: float | None = None
    last_failure: float | None = None


class StoreWriter:
    """Owns the event and recommendation-log writes of one process.

    Args:
        events: where events are appended.
        rec_log: where served lists are appended.
        max_rows: most rows one transaction takes.
        log_queue_size: served and shadow lists that may wait; past that, new ones are dropped.
        shadow_log: where shadow lists are appended (none: they are dropped and counted).
    """

    def __init__(
        self,
        events: EventLog,
        rec_log: RecommendationLog,
        *,
        max_rows: int = 5000,
        log_queue_size: int = 50_000,
        shadow_log: ShadowLog | None = None,
    ) -> None:
        self._events = events
        self._rec_log = rec_log
        self._shadow_log = shadow_log
        self._max_rows = max_rows
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._log_budget = threading.BoundedSemaphore(log_queue_size)
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recloop-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def append_events(self, events: Sequence[Event], timeout: float) -> EventAck:
        """Store events durably and return once they are committed.

        Raises:
            StoreUnavailable: the store failed or did not confirm within ``timeout``; the
                events may or may not be stored, so the client retries with the same ids.
        """
        if not events:
            return EventAck(0, 0)
        done = self.submit_events(events)
        try:
            return done.result(timeout)
        except FutureTimeout as exc:
            raise StoreUnavailable(f"events not confirmed within {timeout:g} s") from exc

    def submit_events(self, events: Sequence[Event]) -> Future[EventAck]:
        """Queue events for the next group commit; the future resolves once they are durable.

        Raises:
            StoreUnavailable: the writer is not running.
        """
        if self._thread is None:
            raise StoreUnavailable("the event writer is not running")
        job = _EventJob(events)
        self._queue.put(job)
        return job.done

    def log_recommendation(self, record: RecommendationRecord) -> bool:
        """Queue a served list for the log; False (and counted) when the queue is full."""
        if self._thread is None or not self._log_budget.acquire(blocking=False):
            self.stats.logs_dropped += 1
            return False
        self._queue.put(record)
        return True

    def log_shadow(self, record: ShadowRecord) -> bool:
        """Queue a shadow list; False (and counted) when the queue is full."""
        if (
            self._thread is None
            or self._shadow_log is None
            or not self._log_budget.acquire(blocking=False)
        ):
            self.stats.shadows_dropped += 1
            return False
        self._queue.put(record)
        return True

    @property
    def running(self) -> bool:
        """Whether the writer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def queued(self) -> int:
        """Writes waiting for the writer thread."""
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued before this call is written."""
        if self._thread is None:
            return
        job = _FlushJob()
        self._queue.put(job)
        job.done.result(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            jobs: list[_Job] = []
            rows = 0
            if first is None:
                stopping = True
            else:
                jobs.append(first)
                rows += _rows(first)
            # Take whatever else is already waiting: that is the group in group commit.
            while rows < self._max_rows:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    continue
                jobs.append(job)
                rows += _rows(job)
            try:
                self._write(jobs)
            except Exception as exc:
                # The thread must outlive any one group: without it nothing is ever written.
                log.exception("the store writer failed a group of %d jobs", len(jobs))
                for job in jobs:
                    if isinstance(job, _EventJob | _FlushJob):
                        _settle(job.done, error=StoreError(f"write failed: {exc}"))

    def _write(self, jobs: list[_Job]) -> None:
        event_jobs = [j for j in jobs if isinstance(j, _EventJob)]
        records = [j for j in jobs if isinstance(j, RecommendationRecord)]
        shadows = [j for j in jobs if isinstance(j, ShadowRecord)]
        if event_jobs:
            self._commit_events(event_jobs)
        if records:
            self._commit_logs(records)
        if shadows:
            self._commit_shadows(shadows)
        for job in jobs:
            if isinstance(job, _FlushJob):
                _settle(job.done, None)

    def _commit_events(self, jobs: list[_EventJob]) -> None:
        merged = [event for job in jobs for event in job.events]
        try:
            result = self._events.append(merged)
        except Exception as exc:
            if len(jobs) > 1 and not isinstance(exc, StoreUnavailable):
                # One submission's bad data must not fail the others: retry them one by one.
                for job in jobs:
                    self._commit_events([job])
                return
            if isinstance(exc, StoreUnavailable):
                self.stats.last_failure = time.monotonic()
                if self.stats.failing_since is None:
                    self.stats.failing_since = self.stats.last_failure
            error = (
                exc if isinstance(exc, StoreError) else StoreError(f"event append failed: {exc}")
            )
            for job in jobs:
                _settle(job.done, error=error)
            return
        self.stats.failing_since = None
        self.stats.event_commits += 1
        self.stats.events_written += result.inserted
        claimed: set[tuple[str, str]] = set()
        for job in jobs:
            accepted = 0
            repeated: list[int] = []
            for position, event in enumerate(job.events):
                key = (event.app_id, event.event_id)
                if key in result.inserted_keys and key not in claimed:
                    claimed.add(key)
                    accepted += 1
                else:
                    repeated.append(position)
            _settle(job.done, EventAck(accepted, len(job.events) - accepted, tuple(repeated)))

    def _commit_logs(self, records: list[RecommendationRecord]) -> None:
        written = _append_apart(self._rec_log.append, records, "recommendation log")
        self.stats.logs_written += written
        self.stats.logs_dropped += len(records) - written
        for _ in records:
            self._log_budget.release()

    def _commit_shadows(self, records: list[ShadowRecord]) -> None:
        assert self._shadow_log is not None
        written = _append_apart(self._shadow_log.append, records, "shadow log")
        self.stats.shadows_written += written
        self.stats.shadows_dropped += len(records) - written
        for _ in records:
            self._log_budget.release()


def _append_apart(append: Callable[[Sequence[R]], None], records: Sequence[R], what: str) -> int:
    """Append ``records`` in one transaction, retried; how many were written.

    While the store is unavailable the batch is retried as a whole and then dropped. A
    batch the store refuses for its data is halved until the records it refuses stand
    alone: one bad row costs itself, not the lists of everyone served beside it.
    """
    for attempt in range(3):
        try:
            append(records)
        except StoreUnavailable:
            log.warning("%s write failed (attempt %d): store unavailable", what, attempt + 1)
            continue
        except Exception:
            if len(records) == 1:
                log.warning("%s: a record the store refuses was dropped", what, exc_info=True)
                return 0
            half = len(records) // 2
            return _append_apart(append, records[:half], what) + _append_apart(
                append, records[half:], what
            )
        return len(records)
    return 0


def _settle(
    done: Future[Any], result: object = None, *, error: BaseException | None = None
) -> None:
    """Resolve a submission's future, unless its caller already gave up on it (a cancelled
    future: the request timed out); setting one would raise and end the writer thread."""
    try:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)
    except InvalidStateError:
        log.info("a submission was answered after its caller gave up on it")


def _rows(job: _Job) -> int:
    return len(job.events) if isinstance(job, _EventJob) else 1

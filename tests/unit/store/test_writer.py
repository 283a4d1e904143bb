"""StoreWriter: group commit of events, fire-and-forget served lists, on a real SQLite store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from recloop.domain import Event, RecommendationRecord
from recloop.errors import StoreError, StoreUnavailable
from recloop.store import AppendResult, EventLog, RecommendationLog, Store, open_store, schema
from recloop.store.migrate import upgrade
from recloop.store.writer import EventAck, StoreWriter
from tests.factories import APP, T0, make_event, make_record

POISON = "poison"
WAIT_S = 10.0


class Gate:
    """Holds the writer thread inside a store call until released."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.opened = threading.Event()

    def pass_through(self) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.opened.wait(WAIT_S), "gate never opened"

    def open(self) -> None:
        self.opened.set()


class FakeEventLog:
    """The real event log, with a gate, a record of each batch, and poison that fails it."""

    def __init__(self, inner: EventLog) -> None:
        self.inner = inner
        self.gate = Gate()
        self.batches: list[list[str]] = []
        self.down = False

    def append(self, events: Sequence[Event]) -> AppendResult:
        self.gate.pass_through()
        self.batches.append([e.event_id for e in events])
        if self.down:
            raise StoreUnavailable("the store is down")
        if any(e.user_id == POISON for e in events):
            raise ValueError("poison event in the batch")
        return self.inner.append(events)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class FakeRecLog:
    """The real recommendation log behind a gate; a batch holding poison fails, as does
    every batch while ``down``."""

    def __init__(self, inner: RecommendationLog) -> None:
        self.inner = inner
        self.gate = Gate()
        self.down = False
        self.batches = 0

    def append(self, records: Sequence[RecommendationRecord]) -> None:
        self.gate.pass_through()
        self.batches += 1
        if self.down:
            raise StoreUnavailable("the store is down")
        if any(r.user_id == POISON for r in records):
            raise ValueError("poison list in the batch")
        self.inner.append(records)

    def get(self, app_id: str, request_id: str) -> RecommendationRecord | None:
        return self.inner.get(app_id, request_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'writer.db'}")
    upgrade(opened.engine)
    opened.tenancy.create_app(APP, "App", T0)
    yield opened
    opened.close()


@pytest.fixture
def fake_events(store: Store) -> FakeEventLog:
    return FakeEventLog(store.events)


@pytest.fixture
def fake_rec_log(store: Store) -> FakeRecLog:
    return FakeRecLog(store.rec_log)


@pytest.fixture
def make_writer(
    fake_events: FakeEventLog, fake_rec_log: FakeRecLog
) -> Iterator[Callable[..., StoreWriter]]:
    made: list[StoreWriter] = []

    def make(**kwargs: int) -> StoreWriter:
        writer = StoreWriter(fake_events, fake_rec_log, **kwargs)
        made.append(writer)
        return writer

    yield make
    fake_events.gate.open()
    fake_rec_log.gate.open()
    for writer in made:
        writer.close()


@pytest.fixture
def writer(make_writer: Callable[..., StoreWriter]) -> StoreWriter:
    started = make_writer()
    started.start()
    return started


def stored_event_ids(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(schema.events.c.event_id)).scalars())


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.002)


def hold_writer(
    writer: StoreWriter, fake_events: FakeEventLog, pool: ThreadPoolExecutor
) -> Future[EventAck]:
    """Park the writer thread inside an append so that what is sent next queues up."""
    fake_events.gate.armed = True
    held = pool.submit(writer.append_events, [make_event("blocker")], WAIT_S)
    assert fake_events.gate.entered.wait(WAIT_S)
    return held


def wait_queued(writer: StoreWriter, jobs: int) -> None:
    # The only way to see that submissions are waiting is the writer's own queue.
    wait_until(lambda: writer._queue.qsize() == jobs, f"{jobs} jobs are queued")


def test_concurrent_submissions_each_get_their_own_ack(writer: StoreWriter, store: Store) -> None:
    threads = 16
    store.events.append([make_event(f"pre-{n}") for n in range(threads)])
    barrier = threading.Barrier(threads)

    def submit(n: int) -> EventAck:
        fresh = [make_event(f"t{n}-{k}") for k in range(5)]
        # Five new events, one stored earlier, and one repeated within the submission.
        batch = [*fresh, make_event(f"pre-{n}"), make_event(f"t{n}-0")]
        barrier.wait(WAIT_S)
        return writer.append_events(batch, timeout=WAIT_S)

    with ThreadPoolExecutor(threads) as pool:
        acks = list(pool.map(submit, range(threads)))

    assert acks == [EventAck(accepted=5, duplicates=2, duplicate_positions=(5, 6))] * threads
    assert store.events.count(APP) == threads * 6
    expected = {f"pre-{n}" for n in range(threads)} | {
        f"t{n}-{k}" for n in range(threads) for k in range(5)
    }
    ids = stored_event_ids(store)
    assert len(ids) == len(expected)
    assert set(ids) == expected
    assert writer.stats.events_written == threads * 5


def test_one_id_sent_by_two_submissions_of_a_group_is_accepted_once(
    writer: StoreWriter, store: Store, fake_events: FakeEventLog
) -> None:
    with ThreadPoolExecutor(3) as pool:
        held = hold_writer(writer, fake_events, pool)
        first = pool.submit(writer.append_events, [make_event("dup"), make_event("b")], WAIT_S)
        wait_queued(writer, 1)
        second = pool.submit(writer.append_events, [make_event("dup"), make_event("c")], WAIT_S)
        wait_queued(writer, 2)
        fake_events.gate.open()
        acks = [first.result(WAIT_S), second.result(WAIT_S)]
        assert held.result(WAIT_S) == EventAck(1, 0)

    # Both submissions went to the store as one merged batch.
    assert fake_events.batches[1] == ["dup", "b", "dup", "c"]
    assert acks == [EventAck(2, 0), EventAck(accepted=1, duplicates=1, duplicate_positions=(0,))]
    assert stored_event_ids(store) == ["b", "blocker", "c", "dup"]


def test_a_failing_submission_does_not_fail_the_others_of_its_group(
    writer: StoreWriter, store: Store, fake_events: FakeEventLog
) -> None:
    with ThreadPoolExecutor(4) as pool:
        held = hold_writer(writer, fake_events, pool)
        good_one = pool.submit(writer.append_events, [make_event("g1")], WAIT_S)
        wait_queued(writer, 1)
        bad = pool.submit(writer.append_events, [make_event("x", user_id=POISON)], WAIT_S)
        wait_queued(writer, 2)
        good_two = pool.submit(writer.append_events, [make_event("g2"), make_event("g3")], WAIT_S)
        wait_queued(writer, 3)
        fake_events.gate.open()

        assert good_one.result(WAIT_S) == EventAck(1, 0)
        assert good_two.result(WAIT_S) == EventAck(2, 0)
        with pytest.raises(StoreError, match="poison"):
            bad.result(WAIT_S)
        held.result(WAIT_S)

    assert fake_events.batches[1] == ["g1", "x", "g2", "g3"]  # the merged try failed
    assert stored_event_ids(store) == ["blocker", "g1", "g2", "g3"]


def test_logged_recommendation_is_written_by_flush(writer: StoreWriter, store: Store) -> None:
    assert writer.log_recommendation(make_record("r1")) is True
    writer.flush()
    assert store.rec_log.get(APP, "r1") == make_record("r1")
    assert writer.stats.logs_written == 1
    assert writer.stats.logs_dropped == 0


def test_close_writes_what_was_queued(
    make_writer: Callable[..., StoreWriter], store: Store
) -> None:
    writer = make_writer()
    writer.start()
    for n in range(20):
        assert writer.log_recommendation(make_record(f"r{n}"))
    writer.close()
    assert all(store.rec_log.get(APP, f"r{n}") is not None for n in range(20))


def test_full_log_queue_drops_and_counts_the_recommendation(
    make_writer: Callable[..., StoreWriter], store: Store, fake_rec_log: FakeRecLog
) -> None:
    writer = make_writer(log_queue_size=1)
    writer.start()
    fake_rec_log.gate.armed = True
    assert writer.log_recommendation(make_record("r1")) is True
    assert fake_rec_log.gate.entered.wait(WAIT_S)

    assert writer.log_recommendation(make_record("r2")) is False
    assert writer.stats.logs_dropped == 1

    fake_rec_log.gate.open()
    writer.flush()
    assert writer.log_recommendation(make_record("r3")) is True  # room again once written
    writer.flush()
    assert store.rec_log.get(APP, "r1") is not None
    assert store.rec_log.get(APP, "r2") is None
    assert store.rec_log.get(APP, "r3") is not None
    assert writer.stats.logs_written == 2
    assert writer.stats.logs_dropped == 1


def _queue_behind_a_held_write(
    writer: StoreWriter, fake_rec_log: FakeRecLog, records: Sequence[RecommendationRecord]
) -> None:
    """Log ``records`` while the writer is held inside another write, so they form one batch."""
    fake_rec_log.gate.armed = True
    assert writer.log_recommendation(make_record("held"))
    assert fake_rec_log.gate.entered.wait(WAIT_S)
    for record in records:
        assert writer.log_recommendation(record)
    wait_queued(writer, len(records))
    fake_rec_log.gate.open()
    writer.flush()


def test_one_list_the_store_refuses_does_not_sink_its_batch(
    writer: StoreWriter, store: Store, fake_rec_log: FakeRecLog
) -> None:
    records = [make_record(f"r{n}", user_id=POISON if n == 6 else "u1") for n in range(10)]

    _queue_behind_a_held_write(writer, fake_rec_log, records)

    assert [store.rec_log.get(APP, f"r{n}") is not None for n in range(10)] == [
        n != 6 for n in range(10)
    ]
    assert writer.stats.logs_written == 1 + 9
    assert writer.stats.logs_dropped == 1
    assert fake_rec_log.batches < 1 + 2 * 4 + 2  # halving: a few tries, not one per list


def test_lists_are_retried_whole_and_dropped_while_the_store_is_down(
    writer: StoreWriter, store: Store, fake_rec_log: FakeRecLog
) -> None:
    fake_rec_log.down = True

    _queue_behind_a_held_write(writer, fake_rec_log, [make_record(f"r{n}") for n in range(10)])

    assert writer.stats.logs_dropped == 11
    assert fake_rec_log.batches == 3 + 3  # each batch tried three times, never split


@pytest.mark.parametrize("poisoned", [False, True], ids=["commits", "fails"])
def test_a_submission_its_caller_gave_up_on_does_not_stop_the_writer(
    writer: StoreWriter, store: Store, fake_events: FakeEventLog, poisoned: bool
) -> None:
    with ThreadPoolExecutor(2) as pool:
        held = hold_writer(writer, fake_events, pool)
        abandoned = writer.submit_events([make_event("late", user_id=POISON if poisoned else "u1")])
        wait_queued(writer, 1)
        assert abandoned.cancel()  # the request timed out and stopped waiting
        fake_events.gate.open()
        held.result(WAIT_S)

    assert writer.append_events([make_event("next")], timeout=WAIT_S) == EventAck(1, 0)
    assert writer.running
    assert ("late" in stored_event_ids(store)) is not poisoned  # committed all the same


def test_a_group_is_failed_whole_while_the_store_is_unavailable(
    writer: StoreWriter, fake_events: FakeEventLog
) -> None:
    with ThreadPoolExecutor(4) as pool:
        held = hold_writer(writer, fake_events, pool)
        waiting = [
            pool.submit(writer.append_events, [make_event(f"e{n}")], WAIT_S) for n in range(3)
        ]
        wait_queued(writer, 3)
        fake_events.down = True
        fake_events.gate.open()
        for future in [held, *waiting]:
            with pytest.raises(StoreUnavailable):
                future.result(WAIT_S)

    assert len(fake_events.batches) == 2  # the held one, then the group once, not one by one
    assert writer.stats.failing_since is not None


def test_append_before_start_raises_store_unavailable(
    make_writer: Callable[..., StoreWriter], store: Store
) -> None:
    writer = make_writer()
    with pytest.raises(StoreUnavailable, match="not running"):
        writer.append_events([make_event("e1")], timeout=1.0)
    assert store.events.count(APP) == 0
    assert writer.log_recommendation(make_record("r1")) is False
    assert writer.stats.logs_dropped == 1


def test_unconfirmed_append_raises_store_unavailable_after_the_timeout(
    writer: StoreWriter, fake_events: FakeEventLog
) -> None:
    fake_events.gate.armed = True
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="not confirmed"):
        writer.append_events([make_event("slow")], timeout=0.05)
    assert time.monotonic() - started < 5.0
    assert fake_events.gate.entered.is_set()

"""The online store's contract, run against the in-process store and a real Redis."""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.errors import ConfigError, OnlineStoreUnavailable, StoreUnavailable
from recloop.online import MemoryOnlineStore, OnlineStore, open_online_store
from recloop.online.redis import RedisOnlineStore

pytestmark = pytest.mark.integration

#: Long enough that a loaded machine does not flake the contract suite; the fail-fast
#: tests below use the production default instead.
CONTRACT_TIMEOUT_S = 1.0


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """A store under test, a way to let time pass for it, and per-test key names."""

    store: OnlineStore
    wait: Callable[[float], None]
    prefix: str = field(default_factory=lambda: f"test:{uuid.uuid4().hex[:10]}:")
    used: list[str] = field(default_factory=list)

    def key(self, name: str) -> str:
        key = self.prefix + name
        self.used.append(key)
        return key


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The same tests, once per backend: an in-process store on a fake clock, then Redis."""
    if request.param == "memory":
        clock = FakeClock()
        yield Backend(MemoryOnlineStore(clock=clock), wait=clock.advance)
        return
    url: str = request.getfixturevalue("redis_url")
    store = open_online_store(url, timeout_s=CONTRACT_TIMEOUT_S)
    assert isinstance(store, RedisOnlineStore)
    backend = Backend(store, wait=time.sleep)
    yield backend
    # A shared RECLOOP_TEST_REDIS_URL may hold other data: remove only this test's keys.
    store.delete(backend.used)
    store.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the contract, on both backends -----------------------------------------------------


def test_set_many_then_get_many_returns_the_same_bytes_in_key_order(backend: Backend) -> None:
    store, k = backend.store, backend.key
    values = {k("a"): b"alpha", k("b"): b"\x00\xff binary", k("c"): b""}
    store.set_many(values)

    assert store.get_many([k("c"), k("a"), k("b")]) == [b"", b"alpha", b"\x00\xff binary"]
    store.set_many({k("a"): b"replaced"})
    assert store.get_many([k("a")]) == [b"replaced"]


def test_missing_keys_read_as_none_empty_hash_and_empty_list(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.set_many({k("present"): b"x"})

    assert store.get_many([k("missing"), k("present")]) == [None, b"x"]
    assert store.hgetall_many([k("missing")]) == [{}]
    assert store.get_lists([k("missing")]) == [[]]


def test_empty_batches_do_nothing_and_return_empty_lists(backend: Backend) -> None:
    store = backend.store
    assert store.get_many([]) == []
    assert store.hgetall_many([]) == []
    assert store.get_lists([]) == []
    store.set_many({})
    store.hincr_many([])
    store.hdel_many([])
    store.hdel_many([(backend.key("h"), [])])
    store.push_capped(backend.key("l"), [], max_len=3)
    store.delete([])
    assert store.get_lists([backend.key("l")]) == [[]]


def test_hincr_many_accumulates_fractional_amounts_per_field(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.hincr_many([(k("h"), "a", 0.25), (k("h"), "a", 0.5), (k("h"), "b", -1.5)])
    store.hincr_many([(k("h"), "a", 0.125), (k("h"), "tenths", 0.1)])
    store.hincr_many([(k("h"), "tenths", 0.1), (k("h"), "tenths", 0.1)])

    (counts,) = store.hgetall_many([k("h")])
    assert counts.keys() == {"a", "b", "tenths"}
    assert counts["a"] == 0.875
    assert counts["b"] == -1.5
    assert counts["tenths"] == pytest.approx(0.3)


def test_hgetall_many_returns_each_hash_in_key_order(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.hincr_many([(k("x"), "clicks", 2.0), (k("y"), "views", 7.0), (k("x"), "views", 1.0)])

    assert store.hgetall_many([k("y"), k("missing"), k("x")]) == [
        {"views": 7.0},
        {},
        {"clicks": 2.0, "views": 1.0},
    ]


def test_hdel_many_removes_only_the_named_fields(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.hincr_many(
        [(k("x"), "h|1", 1.0), (k("x"), "h|2", 2.0), (k("x"), "h|3", 3.0), (k("y"), "h|1", 4.0)]
    )

    store.hdel_many([(k("x"), ["h|1", "h|2", "never-set"]), (k("missing"), ["h|1"])])

    assert store.hgetall_many([k("x"), k("y")]) == [{"h|3": 3.0}, {"h|1": 4.0}]


def test_hdel_many_of_every_field_leaves_the_hash_missing(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.hincr_many([(k("x"), "a", 1.0), (k("x"), "b", 1.0)])

    store.hdel_many([(k("x"), ["a", "b"])])

    assert store.hgetall_many([k("x")]) == [{}]
    store.hincr_many([(k("x"), "a", 1.0)])  # starts again from zero
    assert store.hgetall_many([k("x")]) == [{"a": 1.0}]


def test_push_capped_keeps_the_newest_max_len_values_oldest_first(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.push_capped(k("l"), ["a", "b", "c"], max_len=4)
    assert store.get_lists([k("l")]) == [["a", "b", "c"]]

    store.push_capped(k("l"), ["d", "e", "f"], max_len=4)
    assert store.get_lists([k("l")]) == [["c", "d", "e", "f"]]

    store.push_capped(k("m"), [str(i) for i in range(10)], max_len=3)
    assert store.get_lists([k("m"), k("l")]) == [["7", "8", "9"], ["c", "d", "e", "f"]]


def test_push_capped_round_trips_non_ascii_text(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.push_capped(k("q"), ["café", "東京", "a|b"], max_len=10)
    assert store.get_lists([k("q")]) == [["café", "東京", "a|b"]]


def test_values_hashes_and_lists_expire_after_their_ttl(backend: Backend) -> None:
    store, k = backend.store, backend.key
    ttl = timedelta(milliseconds=300)
    store.set_many({k("v"): b"soon gone"}, ttl=ttl)
    store.set_many({k("kept"): b"first"}, ttl=ttl)
    store.set_many({k("kept"): b"no ttl now"})  # a plain set clears the earlier ttl
    store.hincr_many([(k("h"), "a", 1.0)], ttl=ttl)
    store.push_capped(k("l"), ["x"], max_len=5, ttl=ttl)
    assert store.get_many([k("v")]) == [b"soon gone"]
    assert store.hgetall_many([k("h")]) == [{"a": 1.0}]
    assert store.get_lists([k("l")]) == [["x"]]

    backend.wait(0.5)

    assert store.get_many([k("v"), k("kept")]) == [None, b"no ttl now"]
    assert store.hgetall_many([k("h")]) == [{}]
    assert store.get_lists([k("l")]) == [[]]


def test_writing_a_hash_or_list_again_resets_its_ttl(backend: Backend) -> None:
    store, k = backend.store, backend.key
    ttl = timedelta(milliseconds=500)
    store.hincr_many([(k("h"), "a", 1.0)], ttl=ttl)
    store.push_capped(k("l"), ["x"], max_len=5, ttl=ttl)
    backend.wait(0.3)
    store.hincr_many([(k("h"), "a", 1.0)], ttl=ttl)
    store.push_capped(k("l"), ["y"], max_len=5, ttl=ttl)
    backend.wait(0.3)  # 0.6 s after the first writes, 0.3 s after the second

    assert store.hgetall_many([k("h")]) == [{"a": 2.0}]
    assert store.get_lists([k("l")]) == [["x", "y"]]

    backend.wait(0.4)

    assert store.hgetall_many([k("h")]) == [{}]
    assert store.get_lists([k("l")]) == [[]]


def test_delete_removes_values_hashes_and_lists(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.set_many({k("v"): b"1", k("other"): b"2"})
    store.hincr_many([(k("h"), "a", 1.0)])
    store.push_capped(k("l"), ["x"], max_len=5)

    store.delete([k("v"), k("h"), k("l"), k("never-set")])

    assert store.get_many([k("v"), k("other")]) == [None, b"2"]
    assert store.hgetall_many([k("h")]) == [{}]
    assert store.get_lists([k("l")]) == [[]]


def test_keys_are_isolated_from_each_other(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.set_many({k("user:1"): b"one", k("user:10"): b"ten"})
    store.hincr_many([(k("feat:1"), "clicks", 1.0), (k("feat:2"), "clicks", 5.0)])
    store.push_capped(k("sess:1"), ["a"], max_len=2)
    store.push_capped(k("sess:2"), ["b", "c", "d"], max_len=2)

    assert store.get_many([k("user:1"), k("user:10"), k("user:")]) == [b"one", b"ten", None]
    assert store.hgetall_many([k("feat:1"), k("feat:2")]) == [{"clicks": 1.0}, {"clicks": 5.0}]
    assert store.get_lists([k("sess:1"), k("sess:2")]) == [["a"], ["c", "d"]]


def test_using_a_key_as_another_kind_raises_online_store_unavailable(backend: Backend) -> None:
    store, k = backend.store, backend.key
    store.set_many({k("v"): b"bytes"})
    store.hincr_many([(k("h"), "a", 1.0)])

    assert store.get_many([k("h")]) == [None]
    with pytest.raises(OnlineStoreUnavailable, match="WRONGTYPE"):
        store.hincr_many([(k("v"), "a", 1.0)])
    with pytest.raises(OnlineStoreUnavailable, match="WRONGTYPE"):
        store.get_lists([k("h")])


def test_invalid_arguments_raise_value_error_before_writing(backend: Backend) -> None:
    store, k = backend.store, backend.key
    with pytest.raises(ValueError, match="ttl"):
        store.set_many({k("v"): b"x"}, ttl=timedelta(0))
    with pytest.raises(ValueError, match="finite"):
        store.hincr_many([(k("h"), "a", 1.0), (k("h"), "b", math.nan)])
    with pytest.raises(ValueError, match="max_len"):
        store.push_capped(k("l"), ["x"], max_len=0)

    assert store.get_many([k("v")]) == [None]
    assert store.hgetall_many([k("h")]) == [{}]
    assert store.get_lists([k("l")]) == [[]]


def test_concurrent_hincr_from_threads_loses_no_increment(backend: Backend) -> None:
    store, key = backend.store, backend.key("h")

    def work() -> None:
        for _ in range(250):
            store.hincr_many([(key, "n", 1.0)] * 10)

    threads = [threading.Thread(target=work) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that a missing lock shows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    assert store.hgetall_many([key]) == [{"n": 10000.0}]


def test_ping_answers_when_the_store_is_up(backend: Backend) -> None:
    backend.store.ping()


# -- opening by URL ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://h/db", "memcached://h:11211", "", "memory://x"])
def test_open_online_store_rejects_an_unsupported_url_naming_online_url(url: str) -> None:
    with pytest.raises(ConfigError, match="online_url"):
        open_online_store(url)


def test_open_online_store_rejects_an_unparsable_redis_url_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="online_url") as info:
        open_online_store("redis://:hunter2@localhost:notaport/0")
    assert "hunter2" not in str(info.value)


def test_open_online_store_gives_the_memory_store_for_memory_url() -> None:
    assert isinstance(open_online_store("memory://"), MemoryOnlineStore)


def test_settings_online_url_defaults_to_memory_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECLOOP_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("RECLOOP_ONLINE_URL", raising=False)
    assert Settings().online_url == "memory://"
    monkeypatch.setenv("RECLOOP_ONLINE_URL", "redis://127.0.0.1:6380/2")
    assert Settings().online_url == "redis://127.0.0.1:6380/2"


# -- Redis failing fast -----------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda store: store.get_many(["k"]), id="get_many"),
        pytest.param(lambda store: store.hincr_many([("k", "f", 1.0)]), id="hincr_many"),
        pytest.param(lambda store: store.ping(), id="ping"),
    ],
)
def test_redis_at_a_closed_port_raises_unavailable_within_a_second(
    call: Callable[[OnlineStore], object],
) -> None:
    store = open_online_store(f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable) as info:
        call(store)
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value, StoreUnavailable)
    store.close()


def test_redis_that_never_answers_times_out_as_unavailable_within_a_second() -> None:
    # The kernel accepts connections into the backlog; nothing ever reads or replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = open_online_store(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        for call in (lambda: store.get_many(["k"]), lambda: store.hincr_many([("k", "f", 1.0)])):
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable):
                call()
            assert time.monotonic() - started < 1.0
        store.close()


# -- the in-process store's own housekeeping ---------------------------------------------


def test_memory_store_sweeps_expired_keys_that_are_never_read_again() -> None:
    clock = FakeClock()
    store = MemoryOnlineStore(clock=clock)
    store.set_many({f"kept:{i}": b"k" for i in range(2000)})
    store.set_many({f"old:{i}": b"x" for i in range(100)}, ttl=timedelta(seconds=1))
    clock.advance(2)

    for i in range(3000):  # one new key per write: the store grows as fast as it is written
        store.set_many({f"new:{i}": b"y"})

    assert not any(key.startswith("old:") for key in store._data)
    assert store.get_many(["kept:0", "new:0"]) == [b"k", b"y"]

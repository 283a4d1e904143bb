"""The shadow runner: after the response, on its own thread, sampled, bounded, counted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from recloop.domain import RequestContext, ScoredItem, ShadowRecord
from recloop.monitoring.metrics import Metrics
from recloop.serving.budget import StageTrace
from recloop.serving.pipeline import ServedSlate
from recloop.serving.shadow import Shadow, ShadowRunner

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class _Writer:
    def __init__(self) -> None:
        self.records: list[ShadowRecord] = []

    def log_shadow(self, record: ShadowRecord) -> bool:
        self.records.append(record)
        return True


class _Pipeline:
    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.seen: list[str] = []

    def run(self, ctx: RequestContext, k: int) -> ServedSlate:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("broken shadow")
        self.seen.append(ctx.request_id)
        items = tuple(ScoredItem(f"x{n}", 1.0 - n / 10, "s", "r") for n in range(k))
        return ServedSlate(items, "ranker:v2", False, (StageTrace("rank", 1.0, "ok", ""),))


def _ctx(n: int, surface: str = "home") -> RequestContext:
    return RequestContext(app_id="app", request_id=f"req{n}", surface=surface, user_id="u", now=NOW)


def _runner(
    pipeline: _Pipeline, traffic: float = 1.0, queue_size: int = 100
) -> tuple[ShadowRunner, _Writer, Metrics]:
    writer, metrics = _Writer(), Metrics()
    shadow = Shadow("next", "home", traffic, pipeline)  # type: ignore[arg-type]
    runner = ShadowRunner([shadow], writer, metrics, queue_size)  # type: ignore[arg-type]
    runner.start()
    return runner, writer, metrics


def _count(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "recloop_shadow_runs_total", {"shadow": "next", "outcome": outcome}
    )
    return value or 0.0


def test_a_shadow_logs_its_list_under_the_served_request_id() -> None:
    pipeline = _Pipeline()
    runner, writer, metrics = _runner(pipeline)
    runner.submit(_ctx(1), 3)
    runner.submit(_ctx(2, surface="trending"), 3)  # not a surface this shadow follows
    assert runner.wait_idle()
    runner.close()
    (record,) = writer.records
    assert (record.request_id, record.shadow, record.surface) == ("req1", "next", "home")
    assert [i.item_id for i in record.items] == ["x0", "x1", "x2"]
    assert [i.position for i in record.items] == [0, 1, 2]
    assert record.model_version == "ranker:v2"
    assert _count(metrics, "ok") == 1


def test_traffic_picks_a_stable_share_of_requests() -> None:
    pipeline = _Pipeline()
    runner, writer, _ = _runner(pipeline, traffic=0.3, queue_size=5000)
    for n in range(2000):
        runner.submit(_ctx(n), 1)
    assert runner.wait_idle()
    runner.close()
    assert len(writer.records) / 2000 == pytest.approx(0.3, abs=0.04)
    again = _Pipeline()
    runner, writer_again, _ = _runner(again, traffic=0.3, queue_size=5000)
    for n in range(2000):
        runner.submit(_ctx(n), 1)
    assert runner.wait_idle()
    runner.close()
    assert {r.request_id for r in writer_again.records} == {r.request_id for r in writer.records}


def test_a_full_queue_skips_runs_and_counts_them_without_waiting() -> None:
    gate = threading.Event()
    runner, writer, metrics = _runner(_Pipeline(gate), queue_size=2)
    for n in range(10):
        runner.submit(_ctx(n), 1)  # returns at once though the worker is stuck
    skipped = _count(metrics, "skipped")
    gate.set()
    assert runner.wait_idle()
    runner.close()
    # One run is on the worker, two wait; the other seven are skipped.
    assert skipped >= 7
    assert len(writer.records) + skipped == 10


def test_a_failing_shadow_is_counted_and_the_worker_goes_on() -> None:
    pipeline = _Pipeline(fail=True)
    runner, writer, metrics = _runner(pipeline)
    runner.submit(_ctx(1), 2)
    assert runner.wait_idle()
    pipeline.fail = False
    runner.submit(_ctx(2), 2)
    assert runner.wait_idle()
    runner.close()
    assert _count(metrics, "error") == 1
    assert [r.request_id for r in writer.records] == ["req2"]

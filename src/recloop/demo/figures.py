"""What the demo's report shows beside the simulator's own figures, read back from the
service: the source credited with each clicked item (the served-list log joined to the
click events) and each stage's time (the service's histograms), per simulated day."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry

from recloop.analysis.histograms import histogram_quantile
from recloop.analysis.outcomes import app_events, served_lists, variant_in
from recloop.domain import EventType
from recloop.simulate.report import StageTime
from recloop.store import Store

#: Cumulative bucket counts of one histogram: series label -> upper bound (s) -> count.
Buckets = dict[str, dict[float, float]]

STAGE_HISTOGRAM = "recloop_stage_seconds"
SOURCE_HISTOGRAM = "recloop_source_seconds"


def clicks_by_source(
    store: Store,
    app_id: str,
    day_starts: Sequence[datetime],
    variant_of: Mapping[str, str],
    *,
    experiment: str | None,
    leave_out: Collection[str] = (),
) -> tuple[dict[str, list[dict[str, int]]], dict[str, list[dict[str, int]]]]:
    """Per variant and simulated day: clicked items and served items by credited source.

    ``day_starts`` are the days' first instants on the service's clock; ``variant_of``
    maps a surface to its variant when no ``experiment`` splits one surface; users in
    ``leave_out`` (bots) are not counted. An item counts once per list however many clicks
    it drew.
    """
    variants = sorted(set(variant_of.values()))
    clicks: dict[str, list[dict[str, int]]] = {v: [{} for _ in day_starts] for v in variants}
    shown: dict[str, list[dict[str, int]]] = {v: [{} for _ in day_starts] for v in variants}
    lists: dict[str, tuple[str, int, dict[str, str]]] = {}  # request -> variant, day, sources
    for record in served_lists(store.rec_log, app_id):
        if record.user_id in leave_out:
            continue
        variant = (
            variant_in(record, experiment)
            if experiment is not None
            else variant_of.get(record.surface)
        )
        day = bisect.bisect_right(day_starts, record.served_at) - 1
        if variant not in shown or day < 0:
            continue
        sources = {item.item_id: item.source for item in record.items}
        for source in sources.values():
            shown[variant][day][source] = shown[variant][day].get(source, 0) + 1
        lists[record.request_id] = (variant, day, sources)
    counted: set[tuple[str, str]] = set()
    for event in app_events(store.events, app_id):
        if event.event_type is not EventType.CLICK or event.request_id is None:
            continue
        served = lists.get(event.request_id)
        if served is None or event.item_id is None or event.item_id not in served[2]:
            continue
        if (event.request_id, event.item_id) in counted:
            continue
        counted.add((event.request_id, event.item_id))
        variant, day, sources = served
        source = sources[event.item_id]
        clicks[variant][day][source] = clicks[variant][day].get(source, 0) + 1
    return clicks, shown


def histogram_buckets(registry: CollectorRegistry, family: str, label: str) -> Buckets:
    """The cumulative bucket counts of each series of a histogram, by ``label`` (other
    labels summed)."""
    out: Buckets = {}
    for metric in registry.collect():
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name != f"{family}_bucket":
                continue
            series = out.setdefault(sample.labels.get(label, ""), {})
            bound = float(sample.labels["le"])
            series[bound] = series.get(bound, 0.0) + sample.value
    return out


def difference(later: Buckets, earlier: Buckets) -> Buckets:
    """What was observed between two snapshots of a histogram's buckets."""
    return {
        name: {bound: count - earlier.get(name, {}).get(bound, 0.0) for bound, count in b.items()}
        for name, b in later.items()
    }


def quantile_ms(cumulative: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile in ms of a histogram in seconds (``histogram_quantile``)."""
    value = histogram_quantile(cumulative, q)
    return None if value is None else value * 1000


def stage_times(buckets: Buckets) -> list[StageTime]:
    """p50 and p99 of each series, slowest p99 first."""
    times = [
        StageTime(
            name,
            int(max(b.values(), default=0.0)),
            quantile_ms(b, 0.5),
            quantile_ms(b, 0.99),
            resolution_ms=min(b) * 1000,
        )
        for name, b in buckets.items()
        if max(b.values(), default=0.0) > 0
    ]
    return sorted(times, key=lambda t: (-(t.p99_ms or 0.0), t.name))


def p99_by_day(snapshots: Sequence[Buckets]) -> dict[str, list[float]]:
    """Each series' p99 (ms) per day, from cumulative snapshots taken at the start of the
    run and after each day; NaN for a day it was not timed."""
    names = sorted({name for s in snapshots for name in s})
    out: dict[str, list[float]] = {name: [] for name in names}
    for before, after in itertools.pairwise(snapshots):
        day = difference(after, before)
        for name in names:
            value = quantile_ms(day.get(name, {}), 0.99)
            out[name].append(math.nan if value is None else value)
    return out

"""How many events per second does the service commit durably, and how fast does it answer
recommendations at 200 requests per second, on SQLite and on PostgreSQL?

For each backend, ``recloop serve`` runs with default settings as its own process
(``harness.server``), gets a catalog, and then:

1. durable ingestion, closed loop from wrk (``harness.wrk``): batched (``{"events": [...]}``,
   500 per request) and one event per POST. A 202 means the events are committed: SQLite
   runs with ``synchronous=FULL``; PostgreSQL runs in a cluster started here with
   ``fsync=on`` and ``synchronous_commit=on`` (``--pg-fsync off`` to compare);
2. ``GET /api/recommendations`` at a fixed request rate, open loop (``harness.openloop``):
   latency runs from each request's scheduled send time, so a server that falls behind
   shows it as latency instead of as fewer requests;
3. for reference, recommendations back to back on one connection (wrk).

CPU is accounted per process (server, PostgreSQL, client, everything else) from /proc,
because the machine may be shared. Prints a table per backend, a summary and one JSON line,
and writes ``benchmarks/results/service-<backend>.json``.

    .venv/bin/python benchmarks/bench_service.py                  # full size, both backends
    .venv/bin/python benchmarks/bench_service.py --quick          # about a minute
    .venv/bin/python benchmarks/bench_service.py --backend sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from harness.cpu import QUIET_CORES, cores_text, server_cpu_ms, wait_for_quiet
from harness.openloop import OpenLoopJob, draw_users, open_loop, schedule_length
from harness.postgres import create_database, plain_url, postgres_cluster, postgres_settings
from harness.report import (
    RESULTS_DIR,
    environment,
    exit_on_sigterm,
    json_line,
    percentile,
    table,
    write_json,
)
from harness.server import BenchError, Target, http_json, recloop_server, run_recloop
from harness.wrk import HttpRequest, closed_loop, wrk_binary

TARGET_BATCHED_EPS = 20_000.0
TARGET_SINGLE_EPS = 2_000.0
TARGET_REC_P99_MS = 20.0
TARGET_REC_RATE = 200.0

EVENT_TYPES = ("view", "click", "like")
EVENT_TYPE_WEIGHTS = (6, 3, 1)
ZIPF_EXPONENT = 1.0
EVENT_AGE_MAX_S = 7 * 24 * 3600
CLIENT = (
    "ingestion and the closed loop: wrk; the open loop: a separate Python process "
    "(asyncio, raw HTTP/1.1 keep-alive, requests pre-encoded)"
)


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
    client_procs: int = 1  # wrk threads for ingestion
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


# --------------------------------------------------------------------------- the load


def item_id(index: int) -> str:
    return f"item-{index:05d}"


def events(
    count: int, sizes: Sizes, prefix: str, seed: int
) -> tuple[list[dict[str, Any]], set[int]]:
    """Events on Zipf-popular items by uniformly drawn users, all in the past week."""
    rng = random.Random(seed)
    cum_weights = list(
        itertools.accumulate(1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(sizes.items))
    )
    items = rng.choices(range(sizes.items), cum_weights=cum_weights, k=count)
    types = rng.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS, k=count)
    users = [rng.randrange(sizes.users) for _ in range(count)]
    now = datetime.now(UTC)
    drawn = [
        {
            "eventId": f"{prefix}-{n}",
            "userId": f"u{users[n]}",
            "itemId": item_id(items[n]),
            "eventType": types[n],
            "eventTs": (now - timedelta(seconds=rng.uniform(60, EVENT_AGE_MAX_S))).isoformat(),
        }
        for n in range(count)
    ]
    return drawn, set(users)


def recommendation_path(user: str, limit: int) -> str:
    return f"/api/recommendations?userId={user}&limit={limit}"


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


# --------------------------------------------------------------------------- phases


def ingest_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, kind: str, seed: int
) -> tuple[dict[str, Any], set[int]]:
    """POST /api/events back to back until every event is answered; events per second."""
    batched = kind == "batched"
    total = sizes.batched_events if batched else sizes.single_events
    batch = sizes.batch_size if batched else 1
    drawn, users = events(total, sizes, f"{kind[0]}0", seed * 1000 + (0 if batched else 500))
    if batched:
        bodies = [
            orjson.dumps({"events": drawn[start : start + batch]})
            for start in range(0, total, batch)
        ]
    else:
        bodies = [orjson.dumps(event) for event in drawn]
    run = closed_loop(
        target,
        [HttpRequest("POST", "/api/events", body) for body in bodies],
        connections=sizes.batch_conns if batched else sizes.single_conns,
        threads=sizes.client_procs,
        watched=watched,
        tally_events=True,
        timeout_s=900,
    )
    figures = {
        "events_sent": total,
        "events_per_request": batch,
        "connections": run.connections,
        "client_threads": run.threads,
        "requests": run.requests,
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "non_202": len(bodies) - run.ok(202),
        "socket_errors": run.errors,
        "accepted": run.accepted,
        "duplicates": run.duplicates,
        "rejected": run.rejected,
        "seconds": run.seconds,
        "events_per_s": run.accepted / run.seconds,
        "request_ms": run.latency_ms,
        "cpu_cores": run.cpu_cores,
        "server_cpu_us_per_event": server_cpu_ms(run.cpu_cores, run.accepted) * 1000,
    }
    return figures, users


def recommendation_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, users: Sequence[str], seed: int
) -> dict[str, Any]:
    """GET /api/recommendations at a fixed rate; latency from the scheduled send."""
    count = schedule_length(sizes.rec_rate, sizes.rec_seconds, sizes.rec_warmup_s)
    drawn = draw_users(users, sizes.rec_unknown_share, count, seed, "unknown-")
    job = OpenLoopJob(
        target=target,
        rate=sizes.rec_rate,
        seconds=sizes.rec_seconds,
        warmup_s=sizes.rec_warmup_s,
        requests=tuple((recommendation_path(u, sizes.rec_limit), k) for u, k in drawn),
        limit=sizes.rec_limit,
        max_conns=sizes.rec_max_conns,
    )
    return {**open_loop(job, watched).figures(), "max_connections": sizes.rec_max_conns}


def probe_phase(
    target: Target, watched: Mapping[str, int], sizes: Sizes, users: Sequence[str], seed: int
) -> dict[str, Any]:
    """Recommendations back to back on one connection: the serial capacity, for reference."""
    rng = random.Random(seed)
    requests = [
        HttpRequest("GET", recommendation_path(rng.choice(users), sizes.rec_limit))
        for _ in range(sizes.probe_requests)
    ]
    run = closed_loop(target, requests, connections=1, watched=watched, timeout_s=300)
    return {
        "requests": run.requests,
        "connections": 1,
        "non_200": len(requests) - run.ok(),
        "seconds": run.seconds,
        "ok_per_s": run.ok() / run.seconds,
        "latency_ms": run.latency_ms,
        "cpu_cores": run.cpu_cores,
        "server_cpu_ms_per_request": server_cpu_ms(run.cpu_cores, run.requests),
    }


# --------------------------------------------------------------------------- the store


@contextlib.contextmanager
def backend_store(
    backend: str, pg_fsync: bool, result: dict[str, Any]
) -> Iterator[tuple[str | None, dict[str, int]]]:
    """The store URL (None: SQLite in the data dir) and the store's processes to watch."""
    if backend != "postgresql":
        result["store"] = "SQLite (embedded), WAL, synchronous=FULL"
        yield None, {}
        return
    with postgres_cluster(fsync=pg_fsync) as cluster:
        url = create_database(cluster.admin_url, "recloop_bench")
        pg = result["postgresql"] = postgres_settings(url)
        result["store"] = (
            f"PostgreSQL {pg['server_version'].split()[0]}, fsync={pg['fsync']}, "
            f"synchronous_commit={pg['synchronous_commit']}, "
            f"wal_sync_method={pg['wal_sync_method']}"
        )
        yield url, {"postgres": cluster.postmaster_pid}


def stored_events(data_dir: Path, store_url: str | None) -> int:
    """How many events the store holds, read directly from the database."""
    query = "SELECT count(*) FROM events"
    if store_url is None:
        with contextlib.closing(sqlite3.connect(data_dir / "recloop.db", timeout=30)) as conn:
            return int(conn.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(plain_url(store_url)) as pg:
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


def run_backend(
    backend: str, sizes: Sizes, pg_fsync: bool, seed: int, workers: int = 1
) -> dict[str, Any]:
    """Every phase against one backend (``recloop serve --workers workers``); the figures."""
    result: dict[str, Any] = {"backend": backend, "started_at": datetime.now(UTC).isoformat()}
    work = Path(tempfile.mkdtemp(prefix=f"recloop-bench-{backend}-"))
    try:
        with backend_store(backend, pg_fsync, result) as (store_url, store_pids):
            key = None
            if store_url is not None:
                run_recloop(["db", "upgrade"], work, store_url)
                scopes = ["--app", "default", "--scopes", "ingest,serve,admin"]
                created = run_recloop(["keys", "create", *scopes], work, store_url)
                key = created.strip().splitlines()[-1].strip()
            result["data_dir"] = str(work)
            result["filesystem"] = filesystem_of(work)
            result["fdatasync_ms_p50"] = fdatasync_ms(work)
            with recloop_server(work, store_url=store_url, key=key, workers=workers) as server:
                target, watched = server.target, {"server": server.pid, **store_pids}
                result["server"] = {
                    "pid": server.pid,
                    "port": target.port,
                    "command": f"recloop serve --workers {workers}",
                    "workers": workers,
                }
                result["catalog"] = load_catalog(target, sizes)
                batched, users = ingest_phase(target, watched, sizes, "batched", seed)
                single, more = ingest_phase(target, watched, sizes, "single", seed)
                result["ingest_batched"], result["ingest_single"] = batched, single
                known = [f"u{u}" for u in sorted(users | more)]
                time.sleep(sizes.settle_s)  # the popularity refresher folds in the last events
                result["recommendations"] = recommendation_phase(
                    target, watched, sizes, known, seed
                )
                result["recommendations_closed_loop"] = probe_phase(
                    target, watched, sizes, known, seed
                )
                result["stored_events"] = stored_events(work, store_url)
                result["accepted_events"] = batched["accepted"] + single["accepted"]
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

CPU_NAMES = ("server", "postgres", "client", "other")
INGEST_HEADER: tuple[str, ...] = ("mode", "events", "requests", "conns", "seconds", "events/s")
INGEST_HEADER += ("req p50 ms", "req p99 ms", "non-202", "srv us/ev", "CPU cores")
TARGET_ROWS = (
    ("batched ingest, events/s", "batched_events_per_s", "{:,.0f}"),
    ("single-event ingest, events/s", "single_events_per_s", "{:,.0f}"),
    ("recommendation p99, ms", "recommendation_p99_ms", "{:.2f}"),
)
LATENCY_ROWS = (
    ("from scheduled send", "latency_ms"),
    ("from actual send", "service_ms"),
    ("client delay before send", "send_delay_ms"),
)


def _verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def _ingest_row(label: str, fig: Mapping[str, Any]) -> list[Any]:
    return [
        label,
        f"{fig['accepted']:,}",
        f"{fig['requests']:,}",
        fig["connections"],
        f"{fig['seconds']:.2f}",
        f"{fig['events_per_s']:,.0f}",
        f"{fig['request_ms']['p50']:.1f}",
        f"{fig['request_ms']['p99']:.1f}",
        fig["non_202"],
        f"{fig['server_cpu_us_per_event']:.0f}",
        cores_text(fig["cpu_cores"], CPU_NAMES),
    ]


def print_backend(result: Mapping[str, Any], sizes: Sizes) -> None:
    b, s, cat = result["ingest_batched"], result["ingest_single"], result["catalog"]
    rec, probe = result["recommendations"], result["recommendations_closed_loop"]
    quiet = result["background_load_cores"] < QUIET_CORES
    print(f"\n=== {result['backend']} ===")
    print(f"store        {result['store']}")
    print(
        f"data dir     {result['filesystem']}; fdatasync of a 4 KiB append: "
        f"{result['fdatasync_ms_p50']:.2f} ms (median)"
    )
    print(
        f"background   {result['background_load_cores']:.2f} cores busy with other work "
        "before the run" + ("" if quiet else "  << NOT QUIET")
    )
    print(
        f"catalog      {cat['items']:,} items in {sizes.categories} categories, "
        f"{cat['requests']} x POST /api/items: {cat['seconds']:.2f} s "
        f"({cat['items_per_s']:,.0f} items/s)\n"
    )
    table(
        "ingestion, POST /api/events (202 = committed durably), closed loop (wrk)",
        INGEST_HEADER,
        [_ingest_row(f"batched x{b['events_per_request']}", b), _ingest_row("single", s)],
        note=f"events counted in the database afterwards: {result['stored_events']:,} "
        f"(accepted: {result['accepted_events']:,})",
    )
    print(f"\nrecommendations, GET /api/recommendations?userId=...&limit={sizes.rec_limit}")
    print(
        f"  open loop: offered {rec['offered_per_s']:g}/s for {rec['seconds']:g} s "
        f"(+{rec['warmup_requests_not_counted']} warm-up requests not counted), "
        f"<= {rec['max_connections']} connections"
    )
    print(
        f"  achieved {rec['achieved_ok_per_s']:.1f} OK/s; {rec['requests']:,} requests; "
        f"non-200: {rec['non_200']}; server CPU {rec['server_cpu_ms_per_request']:.2f} ms/request"
    )
    print(
        f"  fallback=true: {rec['fallback_share']:.1%} of 200s "
        f"(known users {rec['fallback_share_known_users']:.1%} of "
        f"{rec['known_user_requests_ok']:,}, unknown users "
        f"{rec['fallback_share_unknown_users']:.1%} of {rec['unknown_user_requests_ok']:,}); "
        f"lists shorter than {sizes.rec_limit}: {rec['short_lists']}"
    )
    print(f"  CPU cores: {cores_text(rec['cpu_cores'], CPU_NAMES)}")
    lat = probe["latency_ms"]
    print(
        f"  closed loop (wrk), 1 connection, {probe['requests']:,} requests: "
        f"{probe['ok_per_s']:.0f} OK/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
        f"non-200: {probe['non_200']}, "
        f"server CPU {probe['server_cpu_ms_per_request']:.2f} ms/request\n"
    )
    table(
        "open-loop latency, ms",
        ("", "p50", "p95", "p99", "max"),
        [
            [label, *(f"{rec[key][q]:.2f}" for q in ("p50", "p95", "p99", "max"))]
            for label, key in LATENCY_ROWS
        ],
    )
    rows = []
    for label, key, fmt in TARGET_ROWS:
        t = result["targets"][key]
        rows.append([label, fmt.format(t["value"]), t["target"], _verdict(t["met"])])
    table("targets", ("", "value", "target", ""), rows)


def print_summary(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    rate = results[0]["recommendations"]["offered_per_s"]
    rows = []
    for label, key, fmt in TARGET_ROWS:
        verdicts = [r["targets"][key] for r in results]
        cells = [f"{fmt.format(t['value'])} {_verdict(t['met'])}" for t in verdicts]
        rows.append([label.replace("p99,", f"p99 @ {rate:g}/s,"), *cells, verdicts[0]["target"]])
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
    rows += [[label, *(cell(r) for r in results), ""] for label, cell in extra]
    print("\n=== summary ===")
    print(
        f"{meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}, "
        f"recloop {meta['recloop']} ({meta['git']})"
    )
    table("", ("", *(r["backend"] for r in results), "target"), rows)


def headline(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of the JSON line: per backend, the three targets' values and verdicts."""
    return {
        r["backend"]: {
            **{key: t["value"] for key, t in r["targets"].items()},
            "targets_met": [key for key, t in r["targets"].items() if t["met"]],
            "background_load_cores": r["background_load_cores"],
        }
        for r in results
    }


def save(result: Mapping[str, Any], sizes: Sizes, meta: Mapping[str, Any], quick: bool) -> Path:
    document = {
        **result,
        "sizes": asdict(sizes),
        "quick": quick,
        "environment": meta,
        "argv": sys.argv[1:],
    }
    return write_json(document, RESULTS_DIR / f"service-{result['backend']}.json")


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
    parser.add_argument(
        "--client-procs", type=int, help="load-generator (wrk) threads for ingest (default 1)"
    )
    parser.add_argument("--rec-rate", type=float, help="recommendation requests per second")
    parser.add_argument("--rec-seconds", type=float, help="measured recommendation seconds")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait at most for other work on the machine to stop (default 60)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workers", type=int, default=1, help="recloop serve --workers (default 1)"
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        sizes = sizes_of(args)
        wrk_binary()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    meta = environment(CLIENT)
    print(
        f"recloop service benchmark: {', '.join(backends)}; "
        f"{'quick' if args.quick else 'full'} size; {meta['cpus']} CPUs\n"
        f"server: `recloop serve --workers {args.workers}` (default settings), in its own "
        "process tree\n"
        f"client: {meta['client']}"
    )
    results = []
    failed = False
    for backend in backends:
        print(f"\nrunning {backend} ...", flush=True)
        load = wait_for_quiet(args.quiet_wait)
        try:
            result = run_backend(backend, sizes, args.pg_fsync == "on", args.seed, args.workers)
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
        json_line("service", {"quick": args.quick, **headline(results)})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Cleaning of a snapshot's events with DuckDB: duplicates, repeats, bots, dwell outliers, lag."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import pyarrow as pa

from recloop.config import CleaningConfig
from recloop.errors import InvalidInput

#: Columns ``clean_events`` reads; any others are carried through unchanged.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "seq",
    "app_id",
    "event_id",
    "user_id",
    "item_id",
    "event_type",
    "value",
    "session_id",
    "event_ts",
    "server_ts",
)


@dataclass(frozen=True)
class CleaningStep:
    """What one step did: the rows it saw, dropped or changed, and why."""

    name: str
    rows_in: int
    rows_dropped: int
    rows_changed: int
    reason: str

    @property
    def rows_out(self) -> int:
        """The rows the step passed on."""
        return self.rows_in - self.rows_dropped


@dataclass(frozen=True)
class BotUser:
    """A user whose every event was dropped as a bot's, with the evidence."""

    app_id: str
    user_id: str
    peak_events_per_minute: int
    clicks: int
    impressions: int
    reason: str


@dataclass(frozen=True)
class LagStats:
    """How late events arrive: server_ts minus the client's event_ts in seconds, over the
    cleaned events (a wrong clock shows here as lag; ``ClockStats`` tells them apart).

    Every value is None when there were no events.
    """

    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    late_share: float | None
    late_after_s: float


@dataclass(frozen=True)
class ClockStats:
    """How far clients' clocks were from the server's: per session (or per user, for events
    without a session), the least ``server_ts - event_ts`` of its events, in seconds.

    The least delay a session shows is its clock's offset plus the network's latency; a
    session whose offset is beyond the tolerance has its events moved onto the server's
    timeline by that offset. Every quantile is None when there were no events.
    """

    sessions: int
    corrected_sessions: int
    corrected_events: int
    offset_p50_s: float | None
    offset_p05_s: float | None
    offset_p95_s: float | None
    max_abs_offset_s: float | None
    tolerance_s: float


@dataclass(frozen=True)
class CleaningReport:
    """Every cleaning step with its counts, the bots dropped, the clients' clock offsets,
    and the lag of the kept events."""

    rows_in: int
    rows_out: int
    steps: tuple[CleaningStep, ...]
    bot_users: tuple[BotUser, ...]
    lag: LagStats
    clock: ClockStats

    def step(self, name: str) -> CleaningStep:
        """One step by name."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data."""
        return asdict(self)

    def render(self, max_bots: int = 10) -> str:
        """The report as a plain-text table, for a terminal or a log."""
        header = ("step", "rows in", "dropped", "changed", "reason")
        rows = [header] + [
            (s.name, f"{s.rows_in:,}", f"{s.rows_dropped:,}", f"{s.rows_changed:,}", s.reason)
            for s in self.steps
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = []
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)]
            lines.append("  ".join([*cells, row[4]]).rstrip())
        lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
        lines.append(f"rows in {self.rows_in:,}, rows out {self.rows_out:,}")
        clock = self.clock
        if clock.offset_p50_s is not None:
            lines.append(
                f"client clocks (server_ts - event_ts, least per session): p5 "
                f"{clock.offset_p05_s:.1f} s, p50 {clock.offset_p50_s:.1f} s, p95 "
                f"{clock.offset_p95_s:.1f} s, largest {clock.max_abs_offset_s:.0f} s; "
                f"{clock.corrected_sessions:,} of {clock.sessions:,} sessions "
                f"({clock.corrected_events:,} events) beyond {clock.tolerance_s:g} s moved onto "
                "the server's timeline"
            )
        lag = self.lag
        if lag.p50_s is None:
            lines.append("event lag (server_ts - event_ts): no events")
        else:
            assert lag.late_share is not None
            lines.append(
                f"event lag (server_ts - event_ts): p50 {lag.p50_s:.1f} s, p95 {lag.p95_s:.1f} s, "
                f"p99 {lag.p99_s:.1f} s, max {lag.max_s:.1f} s; "
                f"{lag.late_share:.2%} later than {lag.late_after_s:g} s"
            )
        if self.bot_users:
            shown = ", ".join(f"{b.user_id} ({b.reason})" for b in self.bot_users[:max_bots])
            more = len(self.bot_users) - max_bots
            suffix = f", +{more} more" if more > 0 else ""
            lines.append(f"bot users ({len(self.bot_users)}): {shown}{suffix}")
        return "\n".join(lines)


def clean_events(
    events: pa.Table, config: CleaningConfig | None = None
) -> tuple[pa.Table, CleaningReport]:
    """Clean a table of events (a snapshot's ``events``) and say what each step did.

    In order: (a) drop repeated (app_id, event_id), keeping the lowest seq; (b) drop repeats of
    (user, item, type, session) at most ``repeat_window_s`` after the previous one (events
    without an item, such as searches, are left alone); (c) drop every event of bots, users
    whose peak events in one calendar minute exceed ``max_events_per_minute`` or who have at
    least ``bot_min_clicks`` clicks at a click-through rate above ``bot_max_ctr``; (d) cap each
    ``view``'s value at ``dwell_cap_multiple`` times its item's median view value (items with a
    median of zero are left alone); (e) put every event on the server's timeline: a session
    whose clock is off by more than ``clock_tolerance_s`` (its least ``server_ts - event_ts``)
    has its events moved by that offset, which keeps their order within the session; (f)
    measure how late events arrived and sort by event_ts, then seq.

    The result has the input's schema plus ``client_ts``, the time the client stamped;
    ``event_ts`` is on the server's timeline. Steps (c) and (d) look at the events left by
    the steps before them.

    Raises:
        InvalidInput: the table lacks one of :data:`REQUIRED_COLUMNS`.
    """
    config = config or CleaningConfig()
    missing = [name for name in REQUIRED_COLUMNS if name not in events.schema.names]
    if missing:
        raise InvalidInput("events", f"missing columns: {', '.join(missing)}")
    columns = ", ".join(_quote(name) for name in events.schema.names)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw", events)
        steps: list[CleaningStep] = []
        rows_in = events.num_rows

        con.execute(
            f"""CREATE TEMP TABLE s1 AS SELECT {columns} FROM raw
            QUALIFY row_number() OVER (PARTITION BY app_id, event_id ORDER BY seq) = 1"""
        )
        n1 = _count(con, "s1")
        steps.append(
            CleaningStep(
                "dedupe_event_id",
                rows_in,
                rows_in - n1,
                0,
                "repeated (app_id, event_id): kept the lowest seq",
            )
        )

        window_us = round(config.repeat_window_s * 1_000_000)
        con.execute(
            f"""CREATE TEMP TABLE s2 AS SELECT {columns} FROM s1
            QUALIFY item_id IS NULL OR coalesce(
                date_diff('microsecond',
                    lag(event_ts) OVER (
                        PARTITION BY app_id, user_id, item_id, event_type, session_id
                        ORDER BY event_ts, seq),
                    event_ts) > ?,
                true)""",
            [window_us],
        )
        n2 = _count(con, "s2")
        con.execute("DROP TABLE s1")  # every step copies the table: keep one copy at a time
        steps.append(
            CleaningStep(
                "dedupe_repeats",
                n1,
                n1 - n2,
                0,
                f"same user, item, type and session within {config.repeat_window_s:g} s "
                "of the previous: kept the first",
            )
        )

        con.execute(
            """CREATE TEMP TABLE bots AS
            WITH per_minute AS (
                SELECT app_id, user_id, count(*) AS n FROM s2
                GROUP BY app_id, user_id, date_trunc('minute', event_ts)
            ), peaks AS (
                SELECT app_id, user_id, max(n) AS peak FROM per_minute GROUP BY app_id, user_id
            ), clicks AS (
                SELECT app_id, user_id,
                    count(*) FILTER (WHERE event_type = 'click') AS clicks,
                    count(*) FILTER (WHERE event_type = 'impression') AS impressions
                FROM s2 GROUP BY app_id, user_id
            ), judged AS (
                SELECT app_id, user_id, peak, clicks, impressions,
                    peak > ? AS too_fast,
                    clicks >= ? AND clicks > ? * impressions AS too_clicky
                FROM peaks JOIN clicks USING (app_id, user_id)
            )
            SELECT app_id, user_id, peak, clicks, impressions,
                CASE WHEN too_fast AND too_clicky THEN 'rate+ctr'
                     WHEN too_fast THEN 'rate' ELSE 'ctr' END AS reason
            FROM judged WHERE too_fast OR too_clicky""",
            [config.max_events_per_minute, config.bot_min_clicks, config.bot_max_ctr],
        )
        bot_rows = con.execute(
            "SELECT app_id, user_id, peak, clicks, impressions, reason FROM bots "
            "ORDER BY app_id, user_id"
        ).fetchall()
        bots = tuple(
            BotUser(str(a), str(u), int(p), int(c), int(i), str(r)) for a, u, p, c, i, r in bot_rows
        )
        con.execute(
            f"""CREATE TEMP TABLE s3 AS SELECT {columns} FROM s2
            WHERE NOT EXISTS (
                SELECT 1 FROM bots b WHERE b.app_id = s2.app_id AND b.user_id = s2.user_id)"""
        )
        n3 = _count(con, "s3")
        con.execute("DROP TABLE s2")
        steps.append(
            CleaningStep(
                "bot_filter",
                n2,
                n2 - n3,
                0,
                f"every event of {len(bots)} bot user(s): over "
                f"{config.max_events_per_minute} events in a minute, or at least "
                f"{config.bot_min_clicks} clicks at a CTR above {config.bot_max_ctr:g}",
            )
        )

        con.execute(
            """CREATE TEMP TABLE medians AS
            SELECT app_id, item_id, median(value) AS med FROM s3
            WHERE event_type = 'view' AND value IS NOT NULL AND item_id IS NOT NULL
            GROUP BY app_id, item_id"""
        )
        capped_expr = "(s3.event_type = 'view' AND m.med > 0 AND s3.value > ? * m.med)"
        n_capped = _scalar(
            con,
            f"""SELECT count(*) FROM s3 JOIN medians m
            ON m.app_id = s3.app_id AND m.item_id = s3.item_id WHERE {capped_expr}""",
            [config.dwell_cap_multiple],
        )
        select_capped = ", ".join(
            f"CASE WHEN {capped_expr} THEN ? * m.med ELSE s3.value END AS value"
            if name == "value"
            else f"s3.{_quote(name)}"
            for name in events.schema.names
        )
        con.execute(
            f"""CREATE TEMP TABLE s4 AS SELECT {select_capped} FROM s3
            LEFT JOIN medians m ON m.app_id = s3.app_id AND m.item_id = s3.item_id""",
            [config.dwell_cap_multiple, config.dwell_cap_multiple],
        )
        con.execute("DROP TABLE s3")
        steps.append(
            CleaningStep(
                "dwell_cap",
                n3,
                0,
                n_capped,
                f"view value above {config.dwell_cap_multiple:g} x the item's median view "
                "value: capped there",
            )
        )

        tolerance_us = round(config.clock_tolerance_s * 1_000_000)
        # Sessions are keyed by their id; events without one, by user.
        con.execute(
            """CREATE TEMP TABLE offsets AS
            SELECT app_id, user_id, coalesce(session_id, '') AS session_key,
                min(date_diff('microsecond', event_ts, server_ts)) AS offset_us,
                count(*) AS n
            FROM s4 GROUP BY app_id, user_id, coalesce(session_id, '')"""
        )
        clock_row = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE abs(offset_us) > ?),
                coalesce(sum(n) FILTER (WHERE abs(offset_us) > ?), 0),
                quantile_cont(offset_us, 0.5) / 1e6, quantile_cont(offset_us, 0.05) / 1e6,
                quantile_cont(offset_us, 0.95) / 1e6, max(abs(offset_us)) / 1e6
            FROM offsets""",
            [tolerance_us, tolerance_us],
        ).fetchall()[0]
        p50_off, p05_off, p95_off, max_off = (
            None if v is None else float(v) for v in clock_row[3:]
        )
        clock = ClockStats(
            int(clock_row[0]),
            int(clock_row[1]),
            int(clock_row[2]),
            p50_off,
            p05_off,
            p95_off,
            max_off,
            config.clock_tolerance_s,
        )
        aligned = ", ".join(
            "CASE WHEN abs(o.offset_us) > ? THEN s4.event_ts + to_microseconds(o.offset_us) "
            "ELSE s4.event_ts END AS event_ts"
            if name == "event_ts"
            else f"s4.{_quote(name)}"
            for name in events.schema.names
        )
        con.execute(
            f"""CREATE TEMP TABLE s5 AS SELECT {aligned}, s4.event_ts AS client_ts FROM s4
            JOIN offsets o ON o.app_id = s4.app_id AND o.user_id = s4.user_id
                AND o.session_key = coalesce(s4.session_id, '')""",
            [tolerance_us],
        )
        con.execute("DROP TABLE s4")
        steps.append(
            CleaningStep(
                "align_clocks",
                n3,
                0,
                clock.corrected_events,
                f"events of {clock.corrected_sessions:,} session(s) whose clock was more than "
                f"{config.clock_tolerance_s:g} s off the server's: moved onto its timeline",
            )
        )

        lag_row = con.execute(
            """SELECT quantile_cont(lag, 0.5), quantile_cont(lag, 0.95),
                quantile_cont(lag, 0.99), max(lag), avg(CASE WHEN lag > ? THEN 1.0 ELSE 0.0 END)
            FROM (SELECT date_diff('microsecond', client_ts, server_ts) / 1e6 AS lag FROM s5)""",
            [config.late_after_s],
        ).fetchall()[0]
        p50, p95, p99, worst, share = (None if v is None else float(v) for v in lag_row)
        lag = LagStats(p50, p95, p99, worst, share, config.late_after_s)
        n_late = _scalar(
            con,
            "SELECT count(*) FROM s5 "
            "WHERE date_diff('microsecond', client_ts, server_ts) / 1e6 > ?",
            [config.late_after_s],
        )
        steps.append(
            CleaningStep(
                "late_events",
                n3,
                0,
                0,
                f"{n_late:,} arrived over {config.late_after_s:g} s late: kept, sorted by event_ts",
            )
        )
        cleaned = con.sql(
            f"SELECT {columns}, client_ts FROM s5 ORDER BY event_ts, seq"
        ).to_arrow_table()
    finally:
        con.close()
    cleaned = cleaned.cast(
        events.schema.append(pa.field("client_ts", events.schema.field("event_ts").type))
    )
    report = CleaningReport(rows_in, cleaned.num_rows, tuple(steps), bots, lag, clock)
    return cleaned, report


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return _scalar(con, f"SELECT count(*) FROM {table}", [])


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> int:
    # fetchall, not fetchone: DuckDB 2.0 refuses new work while a result is not drained.
    return int(con.execute(sql, params).fetchall()[0][0])

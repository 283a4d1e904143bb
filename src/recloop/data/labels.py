"""Labels: engagement attributed to the impression it came from, by rules per surface.

An event is attributed to an impression by its ``requestId`` (and item), whatever the
client's clock says, within the attribution window after the first event that names the
request; or, when it has none, to the latest impression of the same user and item within
the attribution window before it on the server's timeline (a DuckDB ASOF join over the
cleaned events, whose ``event_ts`` is on that timeline). Each impression then gets:
- ``label_click``: 1 if it was clicked, else 0;
- ``label``: 1 if a positive rule fired (purchase, like, share, a long enough view), 0 if a
  negative one did (skip, hide, not interested, report) or nothing happened at all (an
  exposure negative), and null when it is ambiguous (a click with a short view): such a
  row is a click, but says nothing either way about satisfaction.
An impression is labelled once the label delay has passed since it was served, on the
server's clock, or once its user has been active for the label delay after it on their own
clock (a replay of history, or a client whose clock runs fast, reaches that before the
server's clock does). Younger impressions are left out: their late conversions may not have
arrived yet, so they cannot be labelled honestly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from recloop.config import LabelConfig


@dataclass(frozen=True)
class LabelReport:
    """Counts of what labelling did."""

    impressions: int
    too_recent: int
    attributed_by_request: int
    attributed_by_window: int
    positives: int
    negatives: int
    ambiguous: int
    mature_by_server_clock: int = 0
    mature_by_user_clock: int = 0
    label_delay_s: float = 0.0
    clicks: int = 0

    def as_dict(self) -> Mapping[str, int]:
        """As plain numbers."""
        return dict(self.__dict__)


def label_impressions(
    impressions: pa.Table, events: pa.Table, config: LabelConfig
) -> tuple[pa.Table, LabelReport]:
    """Label every impression old enough to be labelled.

    Args:
        impressions: one row per served item (``Snapshot.impressions()``).
        events: cleaned events (``clean_events``).
        config: attribution window, label delay and rules.

    Returns:
        The labelled impressions with ``label`` (null when ambiguous) and
        ``label_click``, and counts of what happened.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("impressions_raw", impressions)
    # Events from ``clean_events`` carry the client's own time beside the server's timeline;
    # others (already on one clock) stand in for both.
    con.register("events_raw", events)
    extra = [
        f"event_ts AS {name}"
        for name in ("client_ts", "server_ts")
        if name not in events.column_names
    ]
    con.execute(f"CREATE VIEW events AS SELECT {', '.join(['*', *extra])} FROM events_raw")
    window = f"INTERVAL '{config.attribution_window_s} seconds'"
    delay_s = config.label_delay_s
    # Each session's clock offset (server timeline minus the client's own), and each user's
    # latest time on their own clock: an impression's time on that clock is its serving
    # time minus the offset of the session it was served in (or the user's latest offset).
    con.execute(
        """
        CREATE TABLE offsets AS
        SELECT user_id, session_id,
               max(date_diff('microsecond', client_ts, event_ts)) / 1e6 AS offset_s
        FROM events GROUP BY user_id, session_id
        """
    )
    con.execute(
        """
        CREATE TABLE user_clock AS
        SELECT user_id, max(client_ts) AS last_client_ts,
               arg_max(date_diff('microsecond', client_ts, event_ts), event_ts) / 1e6
                   AS latest_offset_s
        FROM events GROUP BY user_id
        """
    )
    con.execute(
        f"""
        CREATE TABLE imp_all AS
        SELECT r.*, row_number() OVER () AS imp_id,
               r.served_at <= (
                   SELECT greatest(
                       (SELECT max(server_ts) FROM events),
                       (SELECT max(served_at) FROM impressions_raw))
               ) - to_microseconds({round(delay_s * 1e6)}) AS by_server,
               coalesce(
                   c.last_client_ts >= r.served_at
                       - to_microseconds(CAST(round(coalesce(o.offset_s, c.latest_offset_s)
                           * 1e6) AS BIGINT))
                       + to_microseconds({round(delay_s * 1e6)}),
                   false) AS by_user
        FROM impressions_raw r
        LEFT JOIN offsets o
          ON o.user_id = r.user_id AND o.session_id IS NOT DISTINCT FROM r.session_id
        LEFT JOIN user_clock c ON c.user_id = r.user_id
        """
    )
    con.execute(
        "CREATE TABLE imp AS SELECT * EXCLUDE (by_server, by_user) FROM imp_all "
        "WHERE by_server OR by_user"
    )
    # Direct attribution: the event names the request it came from. Its clock does not
    # matter; the window runs from the first event that names the request.
    con.execute(
        f"""
        CREATE TABLE by_request AS
        WITH first AS (
            SELECT request_id, min(event_ts) AS first_ts FROM events
            WHERE request_id IS NOT NULL GROUP BY request_id
        )
        SELECT i.imp_id, e.event_type, e.value
        FROM imp i JOIN events e
          ON e.request_id = i.request_id AND e.item_id = i.item_id
        JOIN first f ON f.request_id = e.request_id
        WHERE e.event_ts < f.first_ts + {window}
        """
    )
    # Events with no request id: the latest earlier impression of that user and item.
    con.execute(
        f"""
        CREATE TABLE by_window AS
        SELECT i.imp_id, e.event_type, e.value
        FROM (SELECT * FROM events WHERE request_id IS NULL AND item_id IS NOT NULL) e
        ASOF JOIN imp i
          ON e.user_id = i.user_id AND e.item_id = i.item_id AND e.event_ts >= i.served_at
        WHERE e.event_ts < i.served_at + {window}
        """
    )
    rules_rows = [
        (
            surface,
            list(rules.positive_events),
            rules.view_positive_min_ms,
            list(rules.negative_events),
        )
        for surface, rules in config.surface_rules.items()
    ]
    default = config.default_rules
    con.execute(
        "CREATE TABLE rules "
        "(surface VARCHAR, positive VARCHAR[], view_min DOUBLE, negative VARCHAR[])"
    )
    if rules_rows:
        con.executemany("INSERT INTO rules VALUES (?, ?, ?, ?)", rules_rows)
    con.execute(
        """
        CREATE TABLE labelled AS
        WITH attributed AS (
            SELECT * FROM by_request UNION ALL SELECT * FROM by_window
        ),
        flags AS (
            SELECT i.imp_id,
                   coalesce(r.positive, ?::VARCHAR[]) AS positive,
                   coalesce(r.view_min, ?) AS view_min,
                   coalesce(r.negative, ?::VARCHAR[]) AS negative
            FROM imp i LEFT JOIN rules r ON r.surface = i.surface
        ),
        per_imp AS (
            SELECT f.imp_id,
                   coalesce(bool_or(a.event_type = 'click'), false) AS clicked,
                   coalesce(bool_or(list_contains(f.positive, a.event_type)
                       OR (a.event_type = 'view' AND a.value >= f.view_min)), false) AS positive,
                   coalesce(bool_or(list_contains(f.negative, a.event_type)), false) AS negative,
                   count(a.event_type) AS engagements
            FROM flags f LEFT JOIN attributed a ON a.imp_id = f.imp_id
            GROUP BY f.imp_id
        )
        SELECT i.* EXCLUDE (imp_id),
               CASE WHEN p.positive THEN 1
                    WHEN p.negative OR NOT p.clicked THEN 0
                    ELSE NULL END AS label,
               CAST(p.clicked AS INTEGER) AS label_click
        FROM imp i JOIN per_imp p ON p.imp_id = i.imp_id
        ORDER BY i.served_at, i.request_id, i.position
        """,
        [
            list(default.positive_events),
            default.view_positive_min_ms,
            list(default.negative_events),
        ],
    )
    counts = con.execute(
        """
        SELECT (SELECT count(*) FROM impressions_raw),
               (SELECT count(*) FROM imp),
               (SELECT count(DISTINCT imp_id) FROM by_request),
               (SELECT count(DISTINCT imp_id) FROM by_window),
               count(*) FILTER (WHERE label = 1),
               count(*) FILTER (WHERE label = 0),
               count(*) FILTER (WHERE label IS NULL),
               (SELECT count(*) FROM imp_all WHERE by_server),
               (SELECT count(*) FROM imp_all WHERE by_user AND NOT by_server),
               count(*) FILTER (WHERE label_click = 1)
        FROM labelled
        """
    ).fetchall()[0]
    table = con.sql("SELECT * FROM labelled").to_arrow_table()
    con.close()
    (total, kept, by_request, by_window, positives, negatives, ambiguous) = counts[:7]
    by_server, by_user, clicks = counts[7:]
    report = LabelReport(
        impressions=total,
        too_recent=total - kept,
        attributed_by_request=by_request,
        attributed_by_window=by_window,
        positives=positives,
        negatives=negatives,
        ambiguous=ambiguous,
        mature_by_server_clock=by_server,
        mature_by_user_clock=by_user,
        label_delay_s=config.label_delay_s,
        clicks=clicks,
    )
    return table, report

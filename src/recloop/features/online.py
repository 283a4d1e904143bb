"""The online path: the event log folded into the online store, and features read from it.

``FeatureMaterializer`` follows the event log and the catalog (like the popularity
refresher) and writes, with ``definitions.updates_for``, each user's and item's bucketed
counters, each session's recent items, and each item's catalog attributes.
``OnlineFeatures`` reads them back at request time and computes rows with the same
``FeatureSet`` as the offline replay, so the two paths agree by construction; a test
checks that they do.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from recloop.errors import OnlineStoreUnavailable
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import (
    FEATURE_NAMES,
    SESSION_LENGTH,
    FeatureSet,
    ItemMeta,
    SessionEntry,
    feature_time,
    joins_session,
    updates_for,
)
from recloop.features.state import RETENTION_DAYS, Counters, increments
from recloop.online.protocols import OnlineStore
from recloop.store.protocols import Catalog, CatalogCursor, EventLog

log = logging.getLogger(__name__)

COUNTER_TTL = timedelta(days=RETENTION_DAYS + 1)
SESSION_TTL = timedelta(hours=12)
_PAGE = 20_000
#: Where the materializer records the last event ``seq`` it folded in, beside what it wrote.
POSITION_KEY = "p:materializer"
#: Present while the materializer rebuilds an emptied online store: its counts are partial.
REBUILDING_KEY = "p:rebuilding"


def counters_key(app_id: str, entity: str, entity_id: str) -> str:
    """Where an entity's counters live: ``c:{app}:{u|i}:{id}``."""
    return f"c:{app_id}:{entity}:{entity_id}"


def session_key(app_id: str, session_id: str) -> str:
    """Where a session's recent items live."""
    return f"s:{app_id}:{session_id}"


def meta_key(app_id: str, item_id: str) -> str:
    """Where an item's catalog attributes live."""
    return f"m:{app_id}:{item_id}"


def _encode_meta(meta: ItemMeta) -> bytes:
    return orjson.dumps(
        [meta.category, meta.creator_id, meta.created_at.isoformat() if meta.created_at else None]
    )


def _decode_meta(raw: bytes | None) -> ItemMeta | None:
    if raw is None:
        return None
    category, creator, created = orjson.loads(raw)
    return ItemMeta(category, creator, datetime.fromisoformat(created) if created else None)


def _encode_session(entry: SessionEntry) -> str:
    return f"{entry.item_id}\t{entry.category or ''}"


def _decode_session(raw: str) -> SessionEntry:
    item_id, _, category = raw.partition("\t")
    return SessionEntry(item_id, category or None)


class FeatureMaterializer:
    """Folds new events and catalog changes into the online store.

    Where it stands in the log (the last ``seq`` applied) is kept in the online store itself,
    written after each page's counts and read before each step: a restarted process, or
    another process taking over a shared store, goes on from there instead of counting the
    log again (a crash between a page's counts and its position counts that page twice; an
    emptied store starts again from the log's beginning). One materializer per deployment
    writes a shared online store (two at once would count twice).
    """

    def __init__(self, events: EventLog, catalog: Catalog, online: OnlineStore) -> None:
        self._events = events
        self._catalog = catalog
        self._online = online
        self._last_seq = 0
        self._cursor: CatalogCursor | None = None
        self._meta: dict[tuple[str, str], ItemMeta] = {}
        self._lock = threading.Lock()
        self.rebuilds = 0  # times the online store was found emptied and rebuilt
        self._rebuilding = False

    def step(self) -> int:
        """Apply what is new; returns how many events were folded in."""
        with self._lock:
            stored = self._online.get_many([POSITION_KEY])[0]
            if stored is None and self._cursor is not None:
                # The position is written on every step, so the store was emptied (a Redis
                # restart that kept nothing): write the catalog's entries again too, and
                # count the log again from its beginning.
                log.warning("the online store lost its contents; rebuilding it")
                self._cursor = None
                self.rebuilds += 1
                self._online.set_many({REBUILDING_KEY: b"1"})
                self._rebuilding = True
            self._follow_catalog()
            self._last_seq = int(stored) if stored else 0
            if stored is None:
                self._online.set_many({POSITION_KEY: str(self._last_seq).encode()})
            applied = 0
            while True:
                batch = self._events.scan(self._last_seq, _PAGE)
                if not batch:
                    break
                increments_: list[tuple[str, str, float]] = []
                sessions: dict[str, list[str]] = {}
                for seq, event in batch:
                    self._last_seq = seq
                    meta = self._meta.get((event.app_id, event.item_id or ""))
                    ts = feature_time(event.event_ts.timestamp(), event.server_ts.timestamp())
                    for update in updates_for(
                        event.user_id,
                        event.item_id,
                        event.event_type.value,
                        event.value,
                        event.device,
                        ts,
                        meta,
                    ):
                        key = counters_key(event.app_id, update.entity, update.entity_id)
                        fields = increments(update.counter, update.ts)
                        for name in fields if update.hourly else fields[1:]:
                            increments_.append((key, name, update.amount))
                    if event.session_id and event.item_id and joins_session(event.event_type):
                        entry = SessionEntry(event.item_id, meta.category if meta else None)
                        sessions.setdefault(session_key(event.app_id, event.session_id), []).append(
                            _encode_session(entry)
                        )
                self._online.hincr_many(increments_, ttl=COUNTER_TTL)
                for key, values in sessions.items():
                    self._online.push_capped(key, values, SESSION_LENGTH, ttl=SESSION_TTL)
                self._online.set_many({POSITION_KEY: str(self._last_seq).encode()})
                applied += len(batch)
                if len(batch) < _PAGE:
                    break
            if self._rebuilding:
                # Caught up with the log: the counts are whole again.
                self._online.delete([REBUILDING_KEY])
                self._rebuilding = False
                log.warning("the online store is rebuilt")
            return applied

    def _follow_catalog(self) -> None:
        while True:
            changes = self._catalog.changes_since(self._cursor, _PAGE)
            if not changes:
                return
            metas: dict[str, bytes] = {}
            for change in changes:
                meta = ItemMeta(change.category, change.creator_id, change.created_at)
                self._meta[(change.app_id, change.item_id)] = meta
                metas[meta_key(change.app_id, change.item_id)] = _encode_meta(meta)
            self._online.set_many(metas)
            self._cursor = changes[-1].cursor
            if len(changes) < _PAGE:
                return


@dataclass(frozen=True, slots=True)
class _ItemEntry:
    computed_at: float
    meta: ItemMeta | None
    values: tuple[float, ...]  # the item part, in ``ITEM_FEATURES`` order


class OnlineFeatures:
    """Reads features for a request from the online store.

    Args:
        online: the online store the materializer writes.
        item_ttl_s: how long an item's own features (its counts, CTR, dwell) are reused in
            this process before they are read again. Items recur across requests, and their
            aggregates move slowly; user, session and context features are always read
            fresh. 0 reads everything on every request.
        max_items: the most item entries kept; the oldest half is dropped beyond it.
        state_check_s: how often it asks whether the store is being rebuilt from the log
            (then requests fall back to default features, flagged).
    """

    def __init__(
        self,
        online: OnlineStore,
        *,
        item_ttl_s: float = 0.0,
        max_items: int = 200_000,
        state_check_s: float = 1.0,
    ) -> None:
        self._online = online
        self._state_check_s = state_check_s
        self._state_checked = -math.inf
        self._partial = False
        self._features = FeatureSet()
        self._item_ttl_s = item_ttl_s
        self._max_items = max_items
        self._items: dict[tuple[str, str], _ItemEntry] = {}

    def _check_whole(self) -> None:
        """Raise while the materializer rebuilds an emptied store (asked at most every
        ``state_check_s``): partial counts would rank as if they were the truth."""
        clock = time.monotonic()
        if clock - self._state_checked >= self._state_check_s:
            self._partial = self._online.get_many([REBUILDING_KEY])[0] is not None
            self._state_checked = clock
        if self._partial:
            raise OnlineStoreUnavailable("the online store is being rebuilt from the log")

    def _item_parts(
        self, app_id: str, item_ids: Sequence[str], ts: float
    ) -> tuple[list[ItemMeta | None], list[tuple[float, ...]]]:
        """Each item's meta and own feature values, from the cache where fresh enough."""
        ttl = self._item_ttl_s
        cache: dict[tuple[str, str], _ItemEntry] = self._items if ttl > 0 else {}
        entries = [cache.get((app_id, item_id)) for item_id in item_ids]
        # Fresh means computed within the TTL of this request's time, either side: a
        # simulated clock may move back between overlapping sessions.
        missing = [i for i, e in enumerate(entries) if e is None or abs(ts - e.computed_at) > ttl]
        if missing:
            wanted = [item_ids[i] for i in missing]
            hashes = self._online.hgetall_many([counters_key(app_id, "i", i) for i in wanted])
            metas = self._online.get_many([meta_key(app_id, i) for i in wanted])
            if ttl > 0 and len(self._items) + len(missing) > self._max_items:
                keep = sorted(self._items.items(), key=lambda kv: kv[1].computed_at)
                self._items = dict(keep[len(keep) // 2 :])
            for i, item_hash, raw_meta in zip(missing, hashes, metas, strict=True):
                meta = _decode_meta(raw_meta)
                part = self._features.item_part(Counters.from_fields(item_hash), meta, ts)
                entry = _ItemEntry(ts, meta, FeatureSet.item_values(part))
                entries[i] = entry
                if ttl > 0:
                    self._items[(app_id, item_ids[i])] = entry
        present = [e for e in entries if e is not None]
        assert len(present) == len(entries)
        return [e.meta for e in present], [e.values for e in present]

    def matrix(
        self,
        app_id: str,
        user_id: str,
        item_ids: Sequence[str],
        *,
        session_id: str | None,
        device: str | None,
        surface: str | None,
        now: datetime,
    ) -> FeatureMatrix:
        """One row per item, in ``FEATURE_NAMES`` order, as of ``now``.

        Raises:
            OnlineStoreUnavailable: the online store failed; the caller falls back.
        """
        self._check_whole()
        ts = now.timestamp()
        user_hash = self._online.hgetall_many([counters_key(app_id, "u", user_id)])[0]
        metas, item_values = self._item_parts(app_id, item_ids, ts)
        session: list[SessionEntry] = []
        if session_id:
            raw = self._online.get_lists([session_key(app_id, session_id)])[0]
            session = [_decode_session(entry) for entry in raw]
        user = Counters.from_fields(user_hash)
        # The user and context parts once per request; per candidate only what pairs the
        # candidate with them (``FeatureSet.rows`` equals ``row(named(...))`` per candidate).
        values = self._features.rows(
            user_part=self._features.user_part(user, ts),
            item_values=item_values,
            context_part=FeatureSet.context_part(ts, device, surface),
            user=user,
            item_ids=item_ids,
            metas=metas,
            session=session,
            now=ts,
        )
        return FeatureMatrix(tuple(item_ids), FEATURE_NAMES, values)

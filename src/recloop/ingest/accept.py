"""Accepting a batch of raw events: validate each, store the good ones, list the rejected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recloop.domain import Event
from recloop.ingest.validate import Rejection, validate_event
from recloop.store.writer import EventAck, StoreWriter


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of one batch: stored, already stored, and refused (by index)."""

    accepted: int
    duplicates: int
    rejected: tuple[Rejection, ...]


class EventIngestor:
    """Validates events and hands the good ones to the writer, waiting until they are durable.

    Args:
        writer: the process's store writer (group commit).
        max_future_skew: how far ahead of the server a client's ``eventTs`` may be.
        ack_timeout_s: how long to wait for the commit before answering 503.
    """

    def __init__(
        self, writer: StoreWriter, *, max_future_skew: timedelta, ack_timeout_s: float
    ) -> None:
        self._writer = writer
        self._max_future_skew = max_future_skew
        self._ack_timeout_s = ack_timeout_s

    def ingest(self, app_id: str, raw_events: Sequence[Any], now: datetime) -> IngestResult:
        """Validate and durably store a batch.

        Raises:
            StoreUnavailable: the store did not confirm; nothing may be assumed stored.
        """
        good: list[Event] = []
        rejected: list[Rejection] = []
        for index, raw in enumerate(raw_events):
            outcome = validate_event(
                raw, app_id=app_id, now=now, max_future_skew=self._max_future_skew, index=index
            )
            if isinstance(outcome, Rejection):
                rejected.append(outcome)
            else:
                good.append(outcome)
        ack = (
            self._writer.append_events(good, timeout=self._ack_timeout_s)
            if good
            else EventAck(0, 0)
        )
        return IngestResult(ack.accepted, ack.duplicates, tuple(rejected))

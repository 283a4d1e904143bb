"""What the service answers, as typed values (camelCase on the wire, snake_case here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    """One recommended item, with the reason a person can read and the source credited."""

    item_id: str
    score: float
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class Recommendations:
    """A served list; send its ``request_id`` (and each item's position) with the events."""

    request_id: str
    items: list[RecommendedItem]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool
    cold: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Recommendations:
        """From the service's JSON."""
        return cls(
            request_id=body["requestId"],
            items=[
                RecommendedItem(i["itemId"], float(i["score"]), i["reason"], i["source"])
                for i in body["items"]
            ],
            model_version=body["modelVersion"],
            experiment=body.get("experiment"),
            variant=body.get("variant", "default"),
            fallback=bool(body["fallback"]),
            cold=bool(body.get("cold", False)),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggested query."""

    query: str
    score: float
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class Suggestions:
    """A served list of queries; a search from one carries its ``request_id`` and position."""

    request_id: str
    suggestions: list[Suggestion]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool
    cold: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Suggestions:
        """From the service's JSON."""
        return cls(
            request_id=body["requestId"],
            suggestions=[
                Suggestion(s["query"], float(s["score"]), s["reason"], s["source"])
                for s in body["suggestions"]
            ],
            model_version=body["modelVersion"],
            experiment=body.get("experiment"),
            variant=body.get("variant", "default"),
            fallback=bool(body["fallback"]),
            cold=bool(body.get("cold", False)),
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event refused, by its index in what ``send_events`` was given."""

    index: int
    field: str
    reason: str


@dataclass(slots=True)
class EventsResult:
    """What became of the events of one ``send_events`` call, summed over its batches."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    conflicts: list[Rejected] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)  # as sent, in the order given

    def add(self, body: dict[str, Any], offset: int) -> None:
        """Fold one batch's answer in (its indexes moved by ``offset``)."""
        self.accepted += int(body.get("accepted", 0))
        self.duplicates += int(body.get("duplicates", 0))
        for name, into in (("rejected", self.rejected), ("conflicts", self.conflicts)):
            into.extend(
                Rejected(int(r["index"]) + offset, str(r["field"]), str(r["reason"]))
                for r in body.get(name, [])
            )

"""An item's neighbours per source: what each of the serving pipelines' sources recalls
when that item is the seed (the ``similar`` surface's anchor), for the item inspector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from recloop.domain import Candidate, RequestContext
from recloop.retrieval.protocols import CandidateSource, SourceNotLoaded
from recloop.serving.pipeline import Pipeline

#: Neighbours shown per source.
SHOWN = 10


@dataclass(frozen=True, slots=True)
class SourceNeighbours:
    """One source's answer for a seed item: its nearest items with its own scores."""

    source: str
    surfaces: tuple[str, ...]
    items: tuple[Candidate, ...] = ()
    note: str = ""  # why there are none: not loaded, failed


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Every source that answers for a seed item, those whose answer ignores it and those
    that recall nothing for it."""

    seeded: tuple[SourceNeighbours, ...]
    unseeded: tuple[str, ...] = field(default_factory=tuple)
    empty: tuple[str, ...] = field(default_factory=tuple)


def item_neighbours(
    pipelines: Mapping[str, Pipeline], app_id: str, item_id: str, now: datetime
) -> Neighbours:
    """Ask each distinct source of ``pipelines`` for the items nearest ``item_id``.

    A source that recalls the same list with and without the seed (popularity, a user's
    history) has no neighbours to show; it is named among ``unseeded``, and one that recalls
    nothing for the seed among ``empty``. The anchor item
    itself is never its own neighbour.
    """
    sources: dict[str, CandidateSource] = {}
    surfaces: dict[str, list[str]] = {}
    for surface, pipeline in sorted(pipelines.items()):
        for slot in pipeline.sources:
            sources.setdefault(slot.source.name, slot.source)
            surfaces.setdefault(slot.source.name, []).append(surface)
    seeded: list[SourceNeighbours] = []
    unseeded: list[str] = []
    empty: list[str] = []
    for name, source in sources.items():
        on = tuple(surfaces[name])

        def ask(anchor: str | None, source: CandidateSource = source) -> list[Candidate]:
            ctx = RequestContext(
                app_id=app_id,
                request_id="item-inspector",
                surface="similar",
                user_id="",
                now=now,
                anchor_item_id=anchor,
                excluded_item_ids=frozenset({item_id}),
            )
            found = source.retrieve(ctx, SHOWN + 1)
            return [c for c in found if c.item_id != item_id][:SHOWN]

        try:
            with_seed = ask(item_id)
            if not with_seed:
                empty.append(name)
                continue
            if [c.item_id for c in with_seed] == [c.item_id for c in ask(None)]:
                unseeded.append(name)
                continue
            seeded.append(SourceNeighbours(name, on, tuple(with_seed)))
        except SourceNotLoaded as exc:
            seeded.append(SourceNeighbours(name, on, note=f"not loaded: {exc}"))
        except Exception as exc:
            # One broken source must not cost the page the others' answers.
            seeded.append(SourceNeighbours(name, on, note=f"failed: {type(exc).__name__}"))
    return Neighbours(tuple(seeded), tuple(unseeded), tuple(empty))

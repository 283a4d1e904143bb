"""Round-robin over labelled ranked lists: how segment and interest sources share slots."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence


def round_robin(
    lists: Sequence[tuple[str, Sequence[str]]], skip: Collection[str], k: int
) -> Iterator[tuple[str, str]]:
    """(item, label) pairs: each list offers its next item not skipped or already taken, in
    turn, until ``k`` items are out or every list is spent.

    An excluded head item does not hand its list's turn to the next list.
    """
    taken = set(skip)
    cursors = [0] * len(lists)
    out = 0
    while out < k:
        progressed = False
        for j, (label, items) in enumerate(lists):
            while cursors[j] < len(items) and items[cursors[j]] in taken:
                cursors[j] += 1
            if cursors[j] < len(items):
                item_id = items[cursors[j]]
                taken.add(item_id)
                out += 1
                progressed = True
                yield item_id, label
                if out >= k:
                    return
        if not progressed:
            return

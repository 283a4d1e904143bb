"""Dump or compare the lists a seeded demo served, to check a change kept behaviour.

    python scripts/served_lists.py dump  DATA_DIR OUT.json   # after `recloop demo` in DATA_DIR
    python scripts/served_lists.py diff  A.json B.json       # exit 1 when any list differs

A seeded in-process demo (`RECLOOP_DATA_DIR=DIR recloop demo --transport inprocess --seed S`)
serves the same requests in the same order, with request ids from a seeded sequence, so two
checkouts that behave the same serve the same items at the same positions. Scores are
compared to 1e-6 (a refactor must not change them either, but float printing may).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path


def dump(data_dir: Path, out: Path) -> None:
    """Write every served list of the demo's store, by request id, to ``out``."""
    db = data_dir / "demo" / "recloop.db"
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select request_id, user_id, surface, variant, model_version, fallback, items "
            "from recommendation_log order by request_id"
        ).fetchall()
    lists = {
        r[0]: {
            "user": r[1],
            "surface": r[2],
            "variant": r[3],
            "model": re.sub(r"-[0-9a-f]{6}$", "", r[4]),  # a version's random tag
            "fallback": bool(r[5]),
            "items": [[i["itemId"], round(float(i["score"]), 6)] for i in json.loads(r[6])],
        }
        for r in rows
    }
    out.write_text(json.dumps(lists, sort_keys=True))
    print(f"{len(lists)} lists from {db}")


def diff(a: Path, b: Path) -> int:
    """Print how two dumps differ; 0 when every list is the same."""
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    only = set(left) ^ set(right)
    changed = [k for k in set(left) & set(right) if left[k] != right[k]]
    print(f"{len(left)} and {len(right)} lists; {len(only)} in one only; {len(changed)} differ")
    for k in sorted(changed)[:5]:
        print(k, left[k], right[k], sep="\n  ")
    return 1 if only or changed else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "dump":
        dump(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        sys.exit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)

"""The record of every scheduled training run: why it started, what data it read, what it
decided.

One JSON file per run under ``MODEL_DIR/runs/<app>/``, beside the model versions every
replica reads: written when the run starts (outcome ``running``) and replaced, atomically,
when it ends. A run's id begins with its start time, so names sort by time.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

#: The folder of the run records, under the model directory.
RUNS_DIR = "runs"
#: What a run came to: a version served, a version its gates blocked, or no version.
OUTCOMES = ("running", "promoted", "blocked", "failed", "abandoned")


@dataclass(frozen=True)
class RunRecord:
    """One training run.

    ``data`` is what it read (the store's event and item counts at its start, the snapshot,
    engagements, users, items, the snapshot's time and validation cut-off); ``gates`` each
    promotion gate's name, verdict and reason.
    """

    run_id: str
    app_id: str
    job: str
    trigger: str
    reason: str
    started_at: datetime
    outcome: str = "running"
    ended_at: datetime | None = None
    version: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    gates: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    host: str = ""
    pid: int | None = None  # the training process's, while it runs

    @property
    def seconds(self) -> float | None:
        """How long it ran (None while it runs)."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def blocked_by(self) -> list[str]:
        """The gates that blocked its version, as ``name: reason``."""
        return [
            f"{g.get('name')}: {g.get('detail', '')}" for g in self.gates if not g.get("passed")
        ]

    def ended(self, when: datetime, outcome: str, **changes: Any) -> RunRecord:
        """This run ended at ``when`` with ``outcome`` (and ``changes`` to its fields)."""
        return replace(self, ended_at=when, outcome=outcome, pid=None, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat() if self.ended_at is not None else None
        out["gates"] = list(self.gates)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunRecord:
        """A record read back from ``as_dict``."""
        ended = raw.get("ended_at")
        return cls(
            run_id=str(raw["run_id"]),
            app_id=str(raw["app_id"]),
            job=str(raw["job"]),
            trigger=str(raw["trigger"]),
            reason=str(raw.get("reason", "")),
            started_at=datetime.fromisoformat(raw["started_at"]),
            outcome=str(raw.get("outcome", "running")),
            ended_at=datetime.fromisoformat(ended) if ended else None,
            version=raw.get("version"),
            data=dict(raw.get("data") or {}),
            gates=tuple(raw.get("gates") or ()),
            error=raw.get("error"),
            host=str(raw.get("host", "")),
            pid=raw.get("pid"),
        )


def new_run_id(started_at: datetime) -> str:
    """A run id: its start time to the second, then a random suffix."""
    return started_at.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class RunLog:
    """The run records of every app under ``model_dir``."""

    def __init__(self, model_dir: Path) -> None:
        self.root = model_dir / RUNS_DIR

    def _path(self, app_id: str, run_id: str) -> Path:
        return self.root / app_id / f"{run_id}.json"

    def write(self, record: RunRecord) -> None:
        """Write (or replace) ``record``; a reader sees the old file or the new, never half."""
        path = self._path(record.app_id, record.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record.as_dict(), indent=1, sort_keys=True))
        os.replace(temporary, path)

    def get(self, app_id: str, run_id: str) -> RunRecord | None:
        """One run's record, or None."""
        try:
            return RunRecord.from_dict(json.loads(self._path(app_id, run_id).read_text()))
        except FileNotFoundError:
            return None

    def recent(self, app_id: str, limit: int | None = None) -> list[RunRecord]:
        """The app's runs, newest first (a damaged file is skipped)."""
        folder = self.root / app_id
        if not folder.is_dir():
            return []
        names = sorted(
            (
                p.name
                for p in folder.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".")
            ),
            reverse=True,
        )
        records: list[RunRecord] = []
        for name in names:
            if limit is not None and len(records) >= limit:
                break
            try:
                records.append(RunRecord.from_dict(json.loads((folder / name).read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return records

    def apps(self) -> list[str]:
        """Apps with run records."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def prune(self, app_id: str, keep: int) -> int:
        """Remove all but the newest ``keep`` records of finished runs; how many went."""
        folder = self.root / app_id
        if not folder.is_dir():
            return 0
        names = sorted(
            (
                p.name
                for p in folder.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".")
            ),
            reverse=True,
        )
        removed = 0
        for name in names[keep:]:
            record = self.get(app_id, name.removesuffix(".json"))
            if record is not None and record.outcome == "running":
                continue
            (folder / name).unlink(missing_ok=True)
            removed += 1
        return removed


def _names(folder: Path) -> list[str]:
    """The record files in ``folder``, newest first (a temporary file is not one)."""
    files = (p.name for p in folder.iterdir() if p.suffix == ".json" and p.name[0] != ".")
    return sorted(files, reverse=True)

"""``recloop purge``: a deleted user's rows and vectors leave the snapshots, the training
sets and the saved model versions, checked by opening the files themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.data.snapshots import list_snapshots
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.factors import ALSModel
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.store import open_store
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

USERS = ["u1", "u2", "u3"]


def _user_ids_in(data_dir: Path) -> dict[str, set[str]]:
    """Every Parquet file under the data directory with rows and a user_id column, and its
    users."""
    found = {}
    for path in data_dir.rglob("*.parquet"):
        table = pq.read_table(path)
        if "user_id" in table.column_names and table.num_rows:
            found[str(path.relative_to(data_dir))] = set(table.column("user_id").to_pylist())
    return found


def test_purge_removes_a_deleted_user_from_every_file(data_dir: Path, tmp_path: Path) -> None:
    events = [
        {"eventId": f"e{n}", "userId": u, "itemId": f"i{n % 4}", "eventType": "click",
         "sessionId": f"s-{u}"}
        for n, u in enumerate(USERS * 4)
    ]  # fmt: skip
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    assert run_cli("import", str(source), "--kind", "events").exit_code == 0
    assert run_cli("snapshot").exit_code == 0
    (snapshot,) = list_snapshots(data_dir / "snapshots")
    # A training set as `recloop dataset build` names it: it has user ids but no app column.
    dataset = data_dir / "datasets" / f"{snapshot.version}-0123abcd"
    dataset.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": USERS, "label": [1, 0, 1]}), dataset / "train.parquet")
    registry = ModelRegistry(data_dir / "models")
    data = TrainingData(
        Interactions.from_records(USERS * 2, ["a", "b", "c", "b", "c", "a"], [0.0] * 6)
    )
    with registry.writing("default", "v1") as directory:
        (directory / "als").mkdir()
        ALSModel(factors=4, iterations=2).fit(data).save(directory / "als")
        registry.write_manifest(
            directory,
            VersionManifest(
                "v1", "default", datetime.now(UTC), None, (ModelEntry("als", "als", {}),)
            ),
        )
    assert all("u1" in users for users in _user_ids_in(data_dir).values())

    store = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    try:
        assert store.users.forget_user("default", "u1", "key-1", datetime.now(UTC)) is not None
    finally:
        store.close()
    result = run_cli("purge")

    assert result.exit_code == 0, result.output
    assert "1 deleted users" in result.stdout
    files = _user_ids_in(data_dir)
    assert files  # the snapshot's events and the training set at least
    assert all(users == {"u2", "u3"} for users in files.values()), files
    ids = json.loads((registry.path("default", "v1") / "als" / "ids.json").read_text())
    assert ids["users"] == ["u2", "u3"]
    assert registry.damaged("default", "v1") == {}  # rewritten with fresh checksums
    assert ALSModel.load(registry.path("default", "v1") / "als").user_ids_ == ("u2", "u3")

    again = run_cli("purge")
    assert "0 rows removed from 0 files, 0 models rewritten" in again.stdout

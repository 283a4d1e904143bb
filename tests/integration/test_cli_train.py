"""`recloop train` and `recloop models` from the command line, on an embedded store."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import orjson
import pytest
from typer.testing import Result

from tests.integration.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOURCES = json.dumps(
    [
        {"name": "covisitation"},
        {"name": "als", "params": {"factors": 8, "iterations": 3}},
        {"name": "content", "params": {"embedder": "hashing"}},
    ]
)


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECLOOP_TRAIN__SOURCES", SOURCES)
    return data_dir


def flat(text: str) -> str:
    """Text with box-drawing characters and runs of whitespace collapsed to one space."""
    return " ".join(re.sub(r"[│┃╭╮╰╯─━┌┐└┘├┤┬┴┼╇┡┩┏┓┗┛┳┻╋]", " ", text).split())


def run(*args: str) -> Result:
    return run_cli(*args)


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def _load(tmp_path: Path) -> None:
    rng = random.Random(3)
    genres = ["jazz", "rock", "folk", "opera"]
    items = [
        {"itemId": f"{g}-{i}", "title": f"{g.title()} record {i}", "category": g, "tags": [g]}
        for g in genres
        for i in range(15)
    ]
    events = []
    for u in range(80):
        genre = genres[u % 4]
        for step in range(8):
            events.append(
                {
                    "eventId": f"e{u}-{step}",
                    "userId": f"u{u}",
                    "itemId": f"{genre}-{rng.randrange(15)}",
                    "eventType": "click",
                    "eventTs": f"2026-01-{1 + step:02d}T10:{u % 60:02d}:00Z",
                }
            )
    assert run("import", "--kind", "items", str(_jsonl(tmp_path / "i.jsonl", items))).exit_code == 0
    result = run("import", "--kind", "events", str(_jsonl(tmp_path / "e.jsonl", events)))
    assert result.exit_code == 0, result.output


def test_train_prints_validation_per_source_and_promotes(data_dir: Path, tmp_path: Path) -> None:
    _load(tmp_path)
    result = run("train")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "promoted" in out
    for source in ("covisitation", "als", "content"):
        # name, fit seconds, then four metrics between 0 and 1
        assert re.search(rf"{source} \d+\.\d( [01]\.\d{{4}}){{4}}", out), out
    listed = run("models", "list")
    assert listed.exit_code == 0
    assert listed.stdout.count("*") == 1
    assert "covisitation" in listed.stdout


def test_an_older_version_can_be_promoted_again(data_dir: Path, tmp_path: Path) -> None:
    _load(tmp_path)
    assert run("train").exit_code == 0
    assert run("train").exit_code == 0
    versions = sorted(p.name for p in (data_dir / "models" / "default").iterdir() if p.is_dir())
    assert len(versions) == 2
    result = run("models", "promote", versions[0])
    assert result.exit_code == 0
    assert (data_dir / "models" / "default" / "CURRENT").read_text().strip() == versions[0]
    unknown = run("models", "promote", "no-such-version")
    assert unknown.exit_code == 1
    assert "no model version 'no-such-version'" in unknown.stderr


def test_train_on_an_empty_store_fails_with_a_reason(data_dir: Path) -> None:
    result = run("train")
    assert result.exit_code == 1
    assert "error" in result.stderr


def test_one_event_posted_today_into_an_old_history_leaves_validation_whole(
    data_dir: Path, tmp_path: Path
) -> None:
    """The README's curl example posted into January's data: the cut-off stays in January."""
    _load(tmp_path)
    stray = {"eventId": "e-1", "userId": "u-new", "itemId": "jazz-1", "eventType": "click"}
    assert (
        run("import", "--kind", "events", str(_jsonl(tmp_path / "s.jsonl", [stray]))).exit_code == 0
    )
    result = run("train")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    validated = re.search(r"validated on (\d+) users \(split time", out)
    assert validated, out
    assert int(validated.group(1)) >= 50  # of 80 users; none without it (the bug: 0, NaN)
    for source in ("covisitation", "als", "content"):
        assert re.search(rf"{source} \d+\.\d( [01]\.\d{{4}}){{4}}", out), out
    assert "gate validated: pass" in out
    assert "(promoted: running services load it)" in out


def test_a_blocked_version_is_kept_unserved_and_promote_force_serves_it_audited(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recloop.cli.common import load_settings
    from recloop.store.bootstrap import prepare_store

    _load(tmp_path)
    assert run("train").exit_code == 0
    models = data_dir / "models" / "default"
    served = (models / "CURRENT").read_text().strip()
    # The same data asks more validation users than it has: the version is not validated.
    monkeypatch.setenv("RECLOOP_TRAIN__PROMOTION__MIN_VALIDATION_USERS", "1000")
    trained = run("train")
    assert trained.exit_code == 0, trained.output
    out = flat(trained.stdout)
    assert "gate validated: BLOCK" in out
    assert "(at least 1000 users each, train.promotion.min_validation_users)" in out
    assert "not promoted: blocked by validated" in out
    blocked = max(p.name for p in models.iterdir() if p.is_dir())
    assert blocked != served
    assert (models / "CURRENT").read_text().strip() == served
    manifest = json.loads((models / blocked / "manifest.json").read_text())
    assert manifest["extra"]["promotion"]["passed"] is False
    assert any(n.startswith("blocked by validated:") for n in manifest["notes"])

    listed = flat(run("models", "list").stdout)
    assert f"{blocked} " in listed
    assert "blocked: validated" in listed
    assert f"{blocked} validated: " in listed  # the reason, below the table

    refused = run("models", "promote", blocked)
    assert refused.exit_code == 1
    assert "blocked by its promotion gates (validated:" in flat(refused.stderr)
    assert (models / "CURRENT").read_text().strip() == served

    forced = run("models", "promote", blocked, "--force")
    assert forced.exit_code == 0, forced.output
    assert "which validated blocked (forced; audited)" in flat(forced.stdout)
    assert (models / "CURRENT").read_text().strip() == blocked
    # Back to the version served before is one command.
    rolled = run("models", "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert f"now serves model version {served} again (was {blocked})" in flat(rolled.stdout)
    assert (models / "CURRENT").read_text().strip() == served

    store = prepare_store(load_settings(None))
    try:
        entries = [(e.action, e.subject, dict(e.detail)) for e in store.audit.since(0, 100)]
    finally:
        store.close()
    forced_entries = [e for e in entries if e[0] == "model.promote.force"]
    assert [(a, s) for a, s, _ in forced_entries] == [("model.promote.force", blocked)]
    assert "validated" in forced_entries[0][2]["blocked_by"]
    assert ("model.rollback", served, {"from": blocked}) in entries

"""The ``recloop`` command driven in-process, on an embedded store in a temporary directory."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import Result

from recloop.domain import Scope
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.store import Store, open_store
from recloop.store.keys import key_id_of, verify_key
from recloop.store.migrate import head_revision
from tests.factories import T0
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

# typer.testing.CliRunner here keeps the streams apart: result.stdout is stdout only,
# result.stderr is stderr only, and result.output is both interleaved.


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    """The embedded store the command used (open it after the command ran)."""
    opened = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    yield opened
    opened.close()


def run(*args: str) -> Result:
    return run_cli(*args)


def flat(text: str) -> str:
    """Text with box-drawing characters and runs of whitespace collapsed to one space."""
    return " ".join(re.sub(r"[│┃╭╮╰╯─━┌┐└┘├┤┬┴┼╇┡┩┏┓┗┛┳┻╋]", " ", text).split())


def write_events(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


GOOD_EVENTS: list[dict[str, object]] = [
    {"eventId": "e1", "userId": "u1", "itemId": "i1", "eventType": "click"},
    {"eventId": "e2", "userId": "u2", "itemId": "i1", "eventType": "view"},
]
BAD_EVENT: dict[str, object] = {"eventId": "e3", "userId": "u1", "eventType": "purchase"}


def test_db_current_on_a_fresh_install_reports_an_empty_store(data_dir: Path) -> None:
    result = run("db", "current")
    assert result.exit_code == 0, result.output
    assert f"store: empty; code: {head_revision()}" in result.stdout


def test_db_upgrade_then_current_reports_the_head_revision(data_dir: Path) -> None:
    head = head_revision()
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema: empty -> {head}" in upgraded.stdout
    assert (data_dir / "recloop.db").is_file()

    current = run("db", "current")
    assert current.exit_code == 0, current.output
    assert f"store: {head}; code: {head}" in current.stdout

    again = run("db", "upgrade")
    assert again.exit_code == 0, again.output
    assert f"schema: {head} -> {head}" in again.stdout


def test_keys_create_prints_a_key_that_verifies_with_exactly_those_scopes(
    data_dir: Path, store: Store
) -> None:
    result = run("keys", "create", "--app", "default", "--scopes", "ingest,serve")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    record = verify_key(store.tenancy, key)
    assert record is not None
    assert record.app_id == "default"
    assert record.scopes == frozenset({Scope.INGEST, Scope.SERVE})
    assert "rl_" not in result.stderr  # the secret goes to stdout only


def test_keys_create_for_a_new_app_creates_the_app(data_dir: Path, store: Store) -> None:
    result = run("keys", "create", "--app", "shop", "--scopes", "admin", "--name", "ops")
    assert result.exit_code == 0, result.output
    assert "created app 'shop'" in result.stderr
    assert store.tenancy.app_exists("shop")
    record = verify_key(store.tenancy, result.stdout.strip().splitlines()[-1])
    assert record is not None
    assert (record.app_id, record.scopes, record.name) == ("shop", frozenset({Scope.ADMIN}), "ops")


def test_keys_create_with_an_unknown_scope_fails_and_names_the_allowed_ones(
    data_dir: Path,
) -> None:
    result = run("keys", "create", "--app", "default", "--scopes", "ingest,everything")
    assert result.exit_code != 0
    assert "scopes must be among ingest, serve, admin" in flat(result.stderr)
    assert "rl_" not in result.output


def test_keys_create_with_no_scope_fails(data_dir: Path) -> None:
    result = run("keys", "create", "--scopes", " , ")
    assert result.exit_code != 0
    assert "give at least one scope" in flat(result.stderr)
    assert "rl_" not in result.output


def test_revoked_key_no_longer_verifies(data_dir: Path, store: Store) -> None:
    created = run("keys", "create", "--scopes", "serve")
    key = created.stdout.strip().splitlines()[-1]
    key_id = key_id_of(key)
    assert key_id is not None
    revoked = run("keys", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert verify_key(store.tenancy, key) is None
    twice = run("keys", "revoke", key_id)
    assert twice.exit_code == 1
    assert f"no active key '{key_id}'" in flat(twice.stderr)


def test_keys_rotate_gives_a_successor_and_keeps_the_old_key_for_the_grace_period(
    data_dir: Path, store: Store
) -> None:
    old = run("keys", "create", "--scopes", "serve,ingest", "--name", "app").stdout.split()[-1]
    old_id = key_id_of(old)
    assert old_id is not None

    rotated = run("keys", "rotate", old_id, "--grace-hours", "1")

    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip().splitlines()[-1]
    successor = verify_key(store.tenancy, new)
    assert successor is not None
    assert (successor.scopes, successor.name) == (frozenset({Scope.SERVE, Scope.INGEST}), "app")
    assert verify_key(store.tenancy, old) is not None  # still within its grace period
    assert old_id in {record.key_id for record in store.tenancy.active_keys()}
    ended = run("keys", "rotate", key_id_of(new) or "", "--grace-hours", "0")
    assert ended.exit_code == 0, ended.output
    assert verify_key(store.tenancy, new) is None  # no grace: revoked at once
    actions = [(e.action, e.subject) for e in store.audit.since(0, 100)]
    assert ("key.rotate", old_id) in actions
    assert ("key.create", old_id) in actions


def test_import_events_prints_a_summary_and_stores_the_good_rows(
    data_dir: Path, tmp_path: Path, store: Store
) -> None:
    path = write_events(tmp_path / "events.jsonl", [*GOOD_EVENTS, BAD_EVENT])
    result = run("import", "--kind", "events", str(path))
    assert result.exit_code == 0, result.output
    summary = flat(result.stdout)
    assert "rows read 3" in summary
    assert "stored 2" in summary
    assert "duplicates (already stored) 0" in summary
    assert "rejected 1" in summary
    assert "3 itemId required for eventType 'purchase'" in summary
    assert store.events.count("default") == 2

    again = run("import", "--kind", "events", str(path))
    assert again.exit_code == 0, again.output
    assert "stored 0" in flat(again.stdout)
    assert "duplicates (already stored) 2" in flat(again.stdout)
    assert store.events.count("default") == 2


def test_an_imported_history_arrives_as_a_stream_ending_at_the_import(
    data_dir: Path, tmp_path: Path, store: Store
) -> None:
    history = [
        {"eventId": "h1", "userId": "u1", "itemId": "i1", "eventType": "click",
         "eventTs": "1998-03-01T10:00:00Z"},
        {"eventId": "h2", "userId": "u1", "itemId": "i2", "eventType": "click",
         "eventTs": "1998-03-03T10:00:00Z"},
    ]  # fmt: skip
    before = datetime.now(UTC)
    result = run("import", "--kind", "events", str(write_events(tmp_path / "h.jsonl", history)))
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    assert "the history ends at the import" in flat(result.stdout)
    stored = {e.event_id: e for _, e in store.events.scan(0, 100, app_id="default")}
    # Stamped times are kept; arrivals are a stream whose newest event arrived at the import.
    assert stored["h1"].event_ts == datetime(1998, 3, 1, 10, tzinfo=UTC)
    assert before <= stored["h2"].server_ts <= after
    assert stored["h2"].server_ts - stored["h1"].server_ts == timedelta(days=2)

    now = [{**history[0], "eventId": "k1"}]
    run(
        "import",
        "--kind",
        "events",
        "--arrivals",
        "now",
        str(write_events(tmp_path / "k.jsonl", now)),
    )
    stored = {e.event_id: e for _, e in store.events.scan(0, 100, app_id="default")}
    assert stored["k1"].server_ts >= after


def test_import_strict_exits_1_when_a_row_was_rejected(data_dir: Path, tmp_path: Path) -> None:
    bad = write_events(tmp_path / "bad.jsonl", [*GOOD_EVENTS, BAD_EVENT])
    result = run("import", "--kind", "events", "--strict", str(bad))
    assert result.exit_code == 1
    assert "rejected 1" in flat(result.stdout)


def test_import_strict_exits_0_when_every_row_was_accepted(data_dir: Path, tmp_path: Path) -> None:
    good = write_events(tmp_path / "good.jsonl", GOOD_EVENTS)
    result = run("import", "--kind", "events", "--strict", str(good))
    assert result.exit_code == 0, result.output


def test_import_into_a_missing_app_fails_with_a_clear_message(
    data_dir: Path, tmp_path: Path, store: Store
) -> None:
    path = write_events(tmp_path / "events.jsonl", GOOD_EVENTS)
    result = run("import", "--kind", "events", "--app", "nope", str(path))
    assert result.exit_code == 1
    message = flat(result.stderr)
    assert "app 'nope' does not exist" in message
    assert "recloop keys create --app nope" in message
    assert store.events.count("nope") == 0
    assert store.events.count("default") == 0


def test_import_with_an_unknown_kind_fails_on_kind(data_dir: Path, tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.jsonl", GOOD_EVENTS)
    result = run("import", "--kind", "orders", str(path))
    assert result.exit_code == 2
    assert "--kind" in flat(result.stderr)
    assert "must be items, users or events" in flat(result.stderr)


EXPERIMENT_TOML = """
[[experiments]]
name = "trending-newest"
surface = "trending"

[[experiments.variants]]
name = "control"
share = 0.5

[[experiments.variants]]
name = "newest"
share = 0.5
overrides = { sources = [{ name = "newest", quota = 50 }] }
"""


@pytest.fixture
def with_experiment(data_dir: Path) -> Path:
    """A recloop.toml in the working directory that declares one experiment."""
    config = data_dir.parent / "recloop.toml"
    config.write_text(EXPERIMENT_TOML)
    return config


def test_experiment_list_report_and_stop(with_experiment: Path, data_dir: Path) -> None:
    listed = run("experiment", "list")
    assert listed.exit_code == 0, listed.output
    assert "trending-newest" in listed.stdout
    assert "running" in listed.stdout

    # Nothing served yet: a report with no users says so instead of failing.
    report = run("experiment", "report", "trending-newest", "--json")
    assert report.exit_code == 0, report.output
    body = orjson.loads(report.stdout)
    assert body["control"] == "control"
    assert [v["users"] for v in body["variants"]] == [0, 0]
    assert body["treatments"] == []
    assert body["srm"] is None

    stopped = run("experiment", "stop", "trending-newest", "--reason", "by hand in a test")
    assert stopped.exit_code == 0, stopped.output
    again = run("experiment", "list")
    assert "stopped" in again.stdout
    assert "by hand in a test" in again.stdout
    # The stop is in the audit log, as a stop from the dashboard is.
    opened = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    try:
        entries = opened.audit.since(0, 10, action="experiment.stop")
    finally:
        opened.close()
    assert [(e.app_id, e.actor, e.subject) for e in entries] == [
        ("default", "cli", "trending-newest")
    ]
    assert entries[0].detail["reason"] == "by hand in a test"


def test_a_report_on_an_unconfigured_experiment_names_the_known_ones(with_experiment: Path) -> None:
    result = run("experiment", "report", "nope")
    assert result.exit_code == 1
    assert "no experiment 'nope'" in result.stderr
    assert "trending-newest" in result.stderr


SHADOW_TOML = """
[[shadows]]
name = "newest-shadow"
surface = "trending"
traffic = 0.5
overrides = { sources = [{ name = "newest", quota = 50 }] }
"""


def test_shadow_list_and_report(data_dir: Path) -> None:
    (data_dir.parent / "recloop.toml").write_text(SHADOW_TOML)
    listed = run("shadow", "list")
    assert listed.exit_code == 0, listed.output
    assert "newest-shadow trending 50% trending sources promoted" in flat(listed.stdout)

    report = run("shadow", "report", "newest-shadow", "--json")
    assert report.exit_code == 0, report.output
    assert orjson.loads(report.stdout)["requests"] == 0
    tables = run("shadow", "report", "newest-shadow")
    assert "no shadowed requests yet" in flat(tables.stdout)

    unknown = run("shadow", "report", "nope")
    assert unknown.exit_code == 1
    assert "no shadow 'nope' in the configuration (newest-shadow)" in flat(unknown.stderr)


def test_experiment_power_on_a_surface_with_nothing_served_says_so(data_dir: Path) -> None:
    result = run("experiment", "power", "--surface", "home", "--days", "7")
    assert result.exit_code == 1
    assert "served fewer than two users in the last 7 days" in flat(result.stderr)
    unknown = run("experiment", "power", "--surface", "nope")
    assert "no surface named 'nope'" in flat(unknown.stderr)


def test_serve_on_a_port_in_use_says_so_once_and_exits_1(data_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = run("serve", "--port", str(port))

    assert result.exit_code == 1
    assert f"port: 127.0.0.1:{port} is in use" in flat(result.stderr)
    assert "serving" not in result.output
    assert not (data_dir / "recloop.db").exists()  # refused before anything was opened


def test_models_promote_refuses_a_damaged_version_naming_the_file(data_dir: Path) -> None:
    registry = ModelRegistry(data_dir / "models")
    for version in ("v1", "v2"):
        with registry.writing("default", version) as directory:
            (directory / "als").mkdir()
            (directory / "als" / "factors.npz").write_bytes(b"factors")
            registry.write_manifest(
                directory,
                VersionManifest(version, "default", T0, None, (ModelEntry("als", "als", {}),)),
            )
    registry.promote("default", "v1")
    (registry.path("default", "v2") / "als" / "factors.npz").write_bytes(b"bit rot")

    result = run("models", "promote", "v2")

    assert result.exit_code == 1
    assert "als/factors.npz (changed)" in flat(result.stderr)
    assert registry.current("default") == "v1"

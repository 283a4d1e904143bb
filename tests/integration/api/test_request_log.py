"""Request logs: with ``[logging] format = "json"``, a request through the app writes one
JSON line (request id, hashed user, surface, variant, model version, latency), never the
raw user id; every request at debug, ``sample_info`` of them at info."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.monitoring.logs import SALT_FILE
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from tests.factories import settings_with

pytestmark = pytest.mark.integration

USER = "alice.secret-id@example.org"
SALT = "a-salt-of-at-least-16-characters"


@pytest.fixture(autouse=True)
def bare_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A root logger with no handlers: the app's format installs its own, to stderr (what
    another test left on the root must not catch the lines instead)."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


@contextmanager
def client(tmp_path: Path, level: int, **logging_settings: Any) -> Iterator[TestClient]:
    settings = settings_with(tmp_path / "data", logging={"format": "json", **logging_settings})
    store = prepare_store(settings)
    key = ensure_dev_key(store, settings.data_dir) or (settings.data_dir / "dev-key").read_text()
    store.close()
    requests_log = logging.getLogger("recloop.requests")
    before = requests_log.level
    requests_log.setLevel(level)
    try:
        with TestClient(create_app(settings)) as test_client:
            test_client.headers["Authorization"] = f"Bearer {key}"
            yield test_client
    finally:
        requests_log.setLevel(before)


def request_lines(err: str) -> list[dict[str, Any]]:
    """The request lines among what was written to stderr (each must be JSON)."""
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "recloop.requests"]


def test_a_recommendation_request_is_one_json_line_without_the_raw_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(tmp_path, logging.INFO, sample_info=1.0, user_salt=SALT) as app:
        answer = app.get("/api/recommendations", params={"userId": USER, "surface": "home"})
        assert answer.status_code == 200
        body = answer.json()
        captured = capsys.readouterr()
    [line] = request_lines(captured.err)
    assert line["level"] == "info"
    assert line["request_id"] == body["requestId"]
    assert line["route"] == "/api/recommendations"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["surface"] == "home"
    assert line["model_version"] == body["modelVersion"]
    assert "variant" in line
    assert line["variant"] == body["variant"]
    assert line["fallback"] == body["fallback"]
    assert line["items"] == len(body["items"])
    assert 0 < line["latency_ms"] < 30_000
    expected = hmac.new(SALT.encode(), f"default\x1f{USER}".encode(), hashlib.sha256)
    assert line["user"] == expected.hexdigest()[:16]
    assert USER not in captured.err
    assert USER not in captured.out


def test_a_path_holding_a_user_id_is_logged_as_its_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(tmp_path, logging.INFO, sample_info=1.0) as app:
        assert app.put(f"/api/users/{USER}", json={"attributes": {}}).status_code < 300
        assert app.get(f"/api/users/{USER}").status_code == 200
        app.get("/healthz", headers={"X-Request-ID": "probe-1"})
        captured = capsys.readouterr()
    lines = request_lines(captured.err)
    assert [(line["method"], line["route"]) for line in lines] == [
        ("PUT", "/api/users/{userId}"),
        ("GET", "/api/users/{userId}"),
        ("GET", "/healthz"),
    ]
    assert lines[-1]["request_id"] == "probe-1"  # the client's id, when it sends one
    assert USER not in captured.err


def test_sampling_at_zero_logs_nothing_at_info_and_everything_at_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(tmp_path / "info", logging.INFO, sample_info=0.0) as app:
        for _ in range(5):
            assert app.get("/api/recommendations", params={"userId": USER}).status_code == 200
        assert request_lines(capsys.readouterr().err) == []
    with client(tmp_path / "debug", logging.DEBUG, sample_info=0.0) as app:
        for _ in range(5):
            assert app.get("/api/recommendations", params={"userId": USER}).status_code == 200
        lines = request_lines(capsys.readouterr().err)
    assert len(lines) == 5
    assert {line["level"] for line in lines} == {"debug"}
    assert len({line["request_id"] for line in lines}) == 5
    assert len({line["user"] for line in lines}) == 1  # the same user, the same hash


def test_sampling_at_one_logs_every_request_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(tmp_path, logging.INFO, sample_info=1.0) as app:
        ids = [
            app.get("/api/recommendations", params={"userId": f"u{n}"}).json()["requestId"]
            for n in range(7)
        ]
        lines = request_lines(capsys.readouterr().err)
    assert [line["request_id"] for line in lines] == ids
    assert len({line["user"] for line in lines}) == 7


def test_without_a_configured_salt_the_deployment_keeps_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(tmp_path, logging.INFO, sample_info=1.0) as app:
        app.get("/api/recommendations", params={"userId": USER})
        first = request_lines(capsys.readouterr().err)[0]["user"]
    salt = tmp_path / "data" / SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    expected = hmac.new(
        bytes.fromhex(salt.read_text().strip()), f"default\x1f{USER}".encode(), "sha256"
    )
    assert first == expected.hexdigest()[:16]
    with client(tmp_path, logging.INFO, sample_info=1.0) as app:  # a restart: the same hash
        app.get("/api/recommendations", params={"userId": USER})
        assert request_lines(capsys.readouterr().err)[0]["user"] == first

"""The log formats: JSON lines carrying a record's fields, text lines with ``key=value``."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from recloop.monitoring.logs import FIELDS, JsonFormatter, TextFormatter, UserHasher

pytestmark = pytest.mark.unit


def _record(fields: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("recloop.x", logging.WARNING, __file__, 1, "did %s", ("it",), info)
    if fields is not None:
        setattr(record, FIELDS, fields)
    return record


def test_a_json_line_holds_the_message_the_fields_and_the_traceback() -> None:
    line = JsonFormatter().format(_record({"surface": "home", "variant": None}, exc=True))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning"
    assert data["logger"] == "recloop.x"
    assert data["msg"] == "did it"
    assert data["surface"] == "home"
    assert data["variant"] is None
    assert "ValueError: boom" in data["exc"]
    assert data["ts"].endswith("+00:00")


def test_a_field_cannot_overwrite_the_line_s_own_keys() -> None:
    data = json.loads(JsonFormatter().format(_record({"msg": "forged", "level": "info"})))
    assert data["msg"] == "did it"
    assert data["level"] == "warning"


def test_a_text_line_appends_the_fields_it_has() -> None:
    line = TextFormatter().format(_record({"status": 200, "variant": None}))
    assert line.endswith("WARNING recloop.x: did it status=200")


def test_users_hash_by_app_and_salt() -> None:
    hashed = UserHasher(b"salt-one-0123456789")
    assert hashed("a", "u1") == hashed("a", "u1")
    assert len(hashed("a", "u1")) == 16
    assert hashed("a", "u1") != hashed("b", "u1")
    assert hashed("a", "u1") != UserHasher(b"salt-two-0123456789")("a", "u1")

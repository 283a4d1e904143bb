"""Structured logs: one JSON object a line, and users' ids hashed before they are logged.

A record's structured fields travel in its ``fields`` attribute
(``log.info("...", extra={"fields": {...}})``); the JSON formatter writes them beside the
time, level, logger and message, so ``jq 'select(.surface == "home")'`` reads them. The
text format writes them as ``key=value`` after the message.

A user's id never reaches a log line: :class:`UserHasher` turns it into an HMAC-SHA-256
under a secret salt (the same user, the same hash, within a deployment; no way back to the
id without the salt, and no dictionary of ids to hash without it either).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

SALT_FILE = "log-salt"
#: The record's attribute holding its structured fields.
FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``msg``, the record's
    ``fields``, and ``exc`` (the traceback) when it carries one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update((k, v) for k, v in fields.items() if k not in out)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The service's usual text line, with the record's ``fields`` as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The text line, fields appended."""
        line = super().format(record)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict) and fields:
            extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            head, sep, tail = line.partition("\n")  # a traceback stays below
            line = f"{head} {extra}{sep}{tail}"
        return line


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (not when it was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


#: Loggers whose handlers get the format: the root, and uvicorn's own (which do not
#: propagate to the root).
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def install_format(fmt: Literal["text", "json"]) -> None:
    """Give the process's plain stream handlers the format (``recloop serve``'s on the
    root; with json, uvicorn's too, and one to stderr when the root has none).

    Handlers of other kinds (a test's capture, a file an operator configured) are left as
    they are.
    """
    plain = (logging.StreamHandler, _Stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        names: tuple[str, ...] = _LOGGERS
        root = logging.getLogger()
        if not any(type(h) in plain for h in root.handlers):
            root.addHandler(_Stderr())
    else:
        formatter, names = TextFormatter(), ("",)
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if type(handler) in plain:
                handler.setFormatter(formatter)


def log_salt(data_dir: Path, configured: str | None) -> bytes:
    """The salt users' ids are hashed with: the configured one, else the deployment's,
    made at first use in ``DATA_DIR/log-salt`` (0600; every process of the deployment
    reads the same)."""
    if configured:
        return configured.encode()
    path = data_dir / SALT_FILE
    while True:
        try:
            return bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            pass
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".log-salt-", dir=data_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            # Linked into place whole, and only if absent: every process reads one salt.
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: read theirs
        finally:
            os.unlink(tmp)


class UserHasher:
    """A user's id as logged: 16 hex digits of HMAC-SHA-256(salt, app and id)."""

    def __init__(self, salt: bytes) -> None:
        self._salt = salt

    def __call__(self, app_id: str, user_id: str) -> str:
        """The hash of the user (the app is part of it: ids are per app)."""
        message = f"{app_id}\x1f{user_id}".encode()
        return hmac.new(self._salt, message, hashlib.sha256).hexdigest()[:16]

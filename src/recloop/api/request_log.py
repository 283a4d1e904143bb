"""One log line per HTTP request (logger ``recloop.requests``): every one at debug, a
sample (``logging.sample_info``) at info, and every 5xx at warning.

The line carries the request id, the route (its template, never the raw path: a path may
hold a user's id), the status and the latency; a route that serves a list adds what it
knows with :func:`note`: the app, the user (hashed before it is logged), the surface, the
experiment and variant, the model version, whether a fallback served, how many items.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recloop.config.logs import LoggingSettings
from recloop.monitoring.logs import FIELDS, UserHasher, log_salt

log = logging.getLogger("recloop.requests")

_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("recloop_request_fields", default=None)
# A client's own request id is kept when it is a plain token; anything else is replaced.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (``user`` is hashed when logged)."""
    current = _FIELDS.get()
    if current is not None:
        current.update(fields)


class RequestLog:
    """ASGI middleware writing the request lines (see the module's docstring).

    Args:
        app: the application.
        settings: ``[logging]``: the info sample and the users' salt.
        data_dir: where the deployment's salt is kept when none is configured.
        draw: a uniform draw in [0, 1) (the sample's; tests pass their own).
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: LoggingSettings,
        data_dir: Path,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self._sample = settings.sample_info
        self._salt = settings.user_salt
        self._data_dir = data_dir
        self._draw = draw
        self._hasher: UserHasher | None = None

    def _hash(self, app_id: str, user_id: str) -> str:
        # Made at the first line that needs it: by then start-up has made the data directory
        # (with its own permissions) and the salt file can go in it.
        if self._hasher is None:
            self._hasher = UserHasher(log_salt(self._data_dir, self._salt))
        return self._hasher(app_id, user_id)

    def _level(self, status: int) -> int | None:
        if status >= 500:
            level = logging.WARNING
        elif log.isEnabledFor(logging.DEBUG):
            level = logging.DEBUG
        elif self._sample > 0 and self._draw() < self._sample:
            level = logging.INFO
        else:
            return None
        return level if log.isEnabledFor(level) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, then write its line when it is logged."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields: dict[str, Any] = {}
        token = _FIELDS.set(fields)
        status = 500  # what the client gets when the app raises before answering
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _FIELDS.reset(token)
            level = self._level(status)
            if level is not None:
                try:
                    self._write(level, scope, status, time.perf_counter() - start, fields)
                except Exception:
                    # The answer is sent: a line that cannot be written must not fail it.
                    logging.getLogger(__name__).exception("could not log a request")

    def _write(
        self, level: int, scope: Scope, status: int, elapsed_s: float, noted: dict[str, Any]
    ) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        request_id = noted.pop("request_id", None) or _client_id(scope) or uuid.uuid4().hex
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "latency_ms": round(elapsed_s * 1000.0, 3),
        }
        user = noted.pop("user", None)
        app_id = noted.get("app")
        if user is not None:
            fields["user"] = self._hash(str(app_id or ""), str(user))
        # Kept when None too (no experiment, no variant): every line of a route has one shape.
        fields.update(noted)
        log.log(
            level,
            "%s %s %d",
            fields["method"],
            route,
            status,
            extra={FIELDS: fields},
        )


def _client_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_ID.match(text) else None
    return None

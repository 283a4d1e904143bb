"""Who is signed in to the dashboard: a signed session token in a cookie, and the forms'
CSRF token.

Signing in checks an admin key like a bearer key; the cookie then holds a session token,
never the key: the key's id, an expiry and a random nonce, signed (HMAC-SHA256) with a
secret made once per data directory (``dashboard-secret``, mode 0600). Every worker process
of the data directory reads the same secret, so each accepts the others' cookies, with no
session table to share. Each page looks the key up by its id: a revoked key (or one that
lost the admin scope) signs its holder out on the next page. The cookie is ``HttpOnly``,
``Secure``, ``SameSite=Strict``, path ``/dashboard``; a key is never put in a URL.

The forms that change something (stop, promote) carry a token besides: the HMAC, under the
same secret, of the session's nonce. A page on another site can neither read the cookie nor
compute the token; ``SameSite=Strict`` keeps the browser from sending the cookie on its
requests in the first place, and a POST whose ``Origin`` names another host is refused
before anything is read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request, Response

from recloop.api.deadline import store_call
from recloop.api.deps import authenticate
from recloop.domain import Scope
from recloop.errors import Forbidden
from recloop.runtime.process import Runtime

#: The cookie holding the session token.
SESSION_COOKIE = "recloop_dashboard_session"
#: The file, in the data directory, holding the secret session tokens are signed with.
SECRET_FILE = "dashboard-secret"
#: Where the cookies are sent: the dashboard's pages only, never the API.
COOKIE_PATH = "/dashboard"
#: How long a sign-in lasts (the browser forgets the cookies after it).
SESSION_S = 8 * 3600


class SignInNeeded(Exception):
    """The request has no valid admin key: the dashboard answers with its sign-in page."""


@dataclass(frozen=True, slots=True)
class Admin:
    """A signed-in admin: their app, their key's id (the audit log's actor), the CSRF token."""

    app_id: str
    key_id: str
    csrf: str

    @property
    def actor(self) -> str:
        """How the audit log names this admin's actions."""
        return f"dashboard:{self.key_id}"


def signing_secret(data_dir: Path) -> bytes:
    """The data directory's session-signing secret, made on first use (mode 0600).

    Made in a private temporary file and linked into place: of worker processes starting
    together, one link wins and every process reads the same, complete secret.
    """
    return _secret(data_dir.resolve())


@functools.cache
def _secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            # Another process made it first: theirs is the one.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def _sign(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def session_token(secret: bytes, key_id: str, nonce: str, expires: int) -> str:
    """``<key id>.<expiry, unix s>.<nonce>.<signature>``: names the key, never holds it."""
    body = f"{key_id}.{expires}.{nonce}"
    return f"{body}.{_sign(secret, 'session:' + body)}"


def read_session(secret: bytes, token: str, now: float) -> tuple[str, str] | None:
    """The key id and nonce of a genuine, unexpired session token; None otherwise."""
    body, _, signature = token.rpartition(".")
    if not hmac.compare_digest(_sign(secret, "session:" + body), signature):
        return None
    key_id, expires, nonce = [*body.rsplit(".", 2), "", ""][:3]
    if not key_id or not expires.isdigit() or int(expires) <= now:
        return None
    return key_id, nonce


def csrf_token(secret: bytes, nonce: str) -> str:
    """The forms' token for a sign-in: HMAC-SHA256 of its nonce under the secret."""
    return _sign(secret, "csrf:" + nonce)


async def check_key(request: Request, runtime: Runtime, key: str) -> str:
    """The key's id when it is a valid admin key.

    Raises:
        Unauthorized: unknown or revoked.
        Forbidden: valid, without the admin scope (a serve-only key).
        TooManyRequests: this address failed too many checks lately.
    """
    address = request.client.host if request.client else None
    record = await authenticate(request.app.state, runtime, key, address)
    if Scope.ADMIN not in record.scopes:
        raise Forbidden("this key lacks the admin scope; the dashboard needs an admin key")
    return record.key_id


async def signed_in(request: Request, runtime: Runtime) -> Admin:
    """The admin whose session the request's cookie holds.

    Raises:
        SignInNeeded: no cookie, a forged or expired one, or its key is no longer an
            active admin key.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInNeeded
    secret = signing_secret(runtime.settings.data_dir)
    session = read_session(secret, token, time.time())
    if session is None:
        raise SignInNeeded
    key_id, nonce = session
    record = await store_call(
        runtime.settings.serving.store_timeout_s, runtime.store.tenancy.get_key, key_id
    )
    if (
        record is None
        or (record.revoked_at is not None and record.revoked_at <= datetime.now(UTC))
        or Scope.ADMIN not in record.scopes
    ):
        raise SignInNeeded
    return Admin(record.app_id, record.key_id, csrf_token(secret, nonce))


def sign_in(response: Response, runtime: Runtime, key_id: str) -> None:
    """Set the sign-in's session cookie on ``response``, for the key ``key_id``."""
    secret = signing_secret(runtime.settings.data_dir)
    token = session_token(secret, key_id, secrets.token_urlsafe(24), int(time.time()) + SESSION_S)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_S,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def sign_out(response: Response) -> None:
    """Clear the sign-in's cookie."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, secure=True, httponly=True)


def same_origin(request: Request) -> bool:
    """False when the request's ``Origin`` (or, without one, ``Referer``) names another host
    than the one it was sent to; True when neither is sent (the cookie's SameSite holds)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def form_token_valid(admin: Admin, sent: str | None) -> bool:
    """Whether a form's token is this sign-in's."""
    return sent is not None and hmac.compare_digest(admin.csrf, sent)

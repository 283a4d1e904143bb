"""Who is signed in to the dashboard: an admin key in a cookie, and the forms' CSRF token.

The key itself is the cookie's value (``HttpOnly``, ``Secure``, ``SameSite=Strict``, path
``/dashboard``), checked on every request through the app's key cache like a bearer key:
no session table to share between worker processes, and a revoked key signs its holder out
within the cache's revocation check. A key is never put in a URL.

The forms that change something (stop, promote) carry a token besides: the HMAC, keyed by
the admin key, of a random nonce chosen at sign-in and kept in a second cookie. A page on
another site can neither read the cookies nor compute the token; ``SameSite=Strict`` keeps
the browser from sending the cookies on its requests in the first place, and a POST whose
``Origin`` names another host is refused before anything is read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response

from recloop.api.deps import authenticate
from recloop.domain import Scope
from recloop.errors import Forbidden, Unauthorized
from recloop.runtime.process import Runtime

#: The cookie holding the admin key.
KEY_COOKIE = "recloop_dashboard_key"
#: The cookie holding the sign-in's random nonce (the CSRF token is derived from it).
NONCE_COOKIE = "recloop_dashboard_nonce"
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


def csrf_token(key: str, nonce: str) -> str:
    """The forms' token for a sign-in: HMAC-SHA256 of its nonce under the admin key."""
    return hmac.new(key.encode(), nonce.encode(), hashlib.sha256).hexdigest()


async def check_key(request: Request, runtime: Runtime, key: str) -> str:
    """The key's app when it is a valid admin key.

    Raises:
        Unauthorized: unknown or revoked.
        Forbidden: valid, without the admin scope (a serve-only key).
        TooManyRequests: this address failed too many checks lately.
    """
    address = request.client.host if request.client else None
    record = await authenticate(request.app.state, runtime, key, address)
    if Scope.ADMIN not in record.scopes:
        raise Forbidden("this key lacks the admin scope; the dashboard needs an admin key")
    return record.app_id


async def signed_in(request: Request, runtime: Runtime) -> Admin:
    """The admin whose key the request's cookie holds.

    Raises:
        SignInNeeded: no cookie, or its key is no longer a valid admin key.
    """
    key = request.cookies.get(KEY_COOKIE)
    nonce = request.cookies.get(NONCE_COOKIE)
    if not key or not nonce:
        raise SignInNeeded
    address = request.client.host if request.client else None
    try:
        record = await authenticate(request.app.state, runtime, key, address)
    except Unauthorized as exc:
        raise SignInNeeded from exc
    if Scope.ADMIN not in record.scopes:
        raise SignInNeeded
    return Admin(record.app_id, record.key_id, csrf_token(key, nonce))


def sign_in(response: Response, key: str) -> None:
    """Set the sign-in's cookies on ``response``."""
    nonce = secrets.token_urlsafe(24)
    for name, value in ((KEY_COOKIE, key), (NONCE_COOKIE, nonce)):
        response.set_cookie(
            name,
            value,
            max_age=SESSION_S,
            path=COOKIE_PATH,
            secure=True,
            httponly=True,
            samesite="strict",
        )


def sign_out(response: Response) -> None:
    """Clear the sign-in's cookies."""
    for name in (KEY_COOKIE, NONCE_COOKIE):
        response.delete_cookie(name, path=COOKIE_PATH, secure=True, httponly=True)


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

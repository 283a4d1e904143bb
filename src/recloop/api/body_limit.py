"""The caller first, then a bounded body: an ASGI guard in front of every route.

FastAPI reads and parses a route's body before its dependencies run, so a key check in a
dependency comes too late to spare the memory: a client without a key could make the
process hold a body of any size. This guard answers before the route sees the request:

1. a declared ``Content-Length`` beyond the route's limit gets 413 at once;
2. a request to ``/api/`` that carries a body must name a known key, else 401, before any
   byte of the body is read;
3. the body is then read up to the limit (a chunked body that runs past it gets 413, and
   nothing more is read) and handed to the route whole.

Either refusal closes the connection, so an unread body is not drained on the server's time.
The route's own dependency still checks the key's scopes (from the key cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recloop.api.deps import authenticate, bearer_key
from recloop.api.errors import error_response, problem
from recloop.errors import RecloopError

#: Routes whose body is a batch, and so may be larger than the others'.
BATCH_ROUTES = frozenset({("POST", "/api/events"), ("POST", "/api/items")})


@dataclass(frozen=True)
class BodyLimits:
    """The largest body, in bytes, a batch route and any other route may carry."""

    batch: int
    other: int

    def for_route(self, method: str, path: str) -> int:
        """The limit of one route."""
        return self.batch if (method, path.rstrip("/")) in BATCH_ROUTES else self.other


class BodyLimit:
    """ASGI middleware: key first, then at most the route's limit of body (see the module)."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on with its body read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is None and not chunked:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        limit = self.limits.for_route(method, path)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _refuse(problem(400, "Content-Length: must be a whole number"), scope, send)
                return
            if length == 0:
                await self.app(scope, receive, send)
                return
            if length > limit:
                await _refuse(_too_large(limit), scope, send)
                return
        if path.startswith("/api/"):
            state = scope["app"].state
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            client = scope.get("client")
            try:
                await authenticate(
                    state, state.runtime, bearer_key(authorization), client[0] if client else None
                )
            except RecloopError as exc:
                await _refuse(error_response(exc, path), scope, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _refuse(_too_large(limit), scope, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _too_large(limit: int) -> JSONResponse:
    return problem(413, f"body: at most {limit} bytes on this route")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the whole body once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(response: JSONResponse, scope: Scope, send: Send) -> None:
    """Send an error response that closes the connection; the body is never read."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await send(message)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, closing)

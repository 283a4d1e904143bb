"""What a call to the service can raise: one tree, each error naming the field and the rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: the field (``events[3].userId``) and the rule it broke."""

    field: str
    rule: str


class ClientError(Exception):
    """Base of every error the client raises."""


class ApiError(ClientError):
    """The service answered with an error status; ``detail`` and ``errors`` are its own."""

    status: int = 0

    def __init__(
        self, status: int, detail: str, errors: list[FieldError], body: Any = None
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors
        self.body = body


class InvalidRequest(ApiError):
    """400 or 422: a field broke a rule."""


class Unauthorized(ApiError):
    """401: no key, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the key lacks the scope."""


class NotFound(ApiError):
    """404: no such item, user or resource."""


class Conflict(ApiError):
    """409: an ``eventId`` was sent again with another payload."""


class PayloadTooLarge(ApiError):
    """413: too many records, or too large a body."""


class RateLimited(ApiError):
    """429: over a rate; ``retry_after_s`` says when to come back."""

    def __init__(
        self, status: int, detail: str, errors: list[FieldError], body: Any = None,
        retry_after_s: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(status, detail, errors, body)
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    """503, or no answer at all after the retries: the service or its store is away."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, body: Any, retry_after: str | None) -> ApiError:
    """The error for an error response, from its ``{detail, errors: [{field, rule}]}``."""
    detail = str(body.get("detail", "")) if isinstance(body, dict) else str(body or "")
    raw = body.get("errors", []) if isinstance(body, dict) else []
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("rule", "")))
        for e in raw
        if isinstance(e, dict)
    ]
    cls = _BY_STATUS.get(status, ApiError)
    if cls is RateLimited:
        return RateLimited(status, detail, errors, body, retry_after_seconds(retry_after))
    return cls(status, detail or f"HTTP {status}", errors, body)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """A ``Retry-After`` header in seconds (a number; anything else is ``default``)."""
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default

"""The exception tree. The HTTP layer maps each class to a status code in one place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class RecloopError(Exception):
    """Base class for all recloop errors.

    ``from_driver`` marks one translated from a database or network driver's exception:
    its text may name hosts, ports or queries, so it is logged, never sent to a client.
    """

    from_driver: bool = False


class ConfigError(RecloopError):
    """Settings or a surface config is invalid; the message names the key."""


class FieldProblem(RecloopError):
    """An error about one field of a request: carries the field and the rule or finding."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class InvalidInput(FieldProblem):
    """A request or record breaks a rule; carries the field and the rule it broke."""


class PayloadTooLarge(InvalidInput):
    """A batch holds more records than one request may carry."""


class NotFound(FieldProblem):
    """A user, item, app or model named by a field does not exist."""


class Unauthorized(RecloopError):
    """No API key, or a key that is unknown or revoked, was sent."""


class Forbidden(RecloopError):
    """The API key is valid but lacks the scope the route needs."""


class TooManyRequests(RecloopError):
    """A key or a client address is over its rate; ``retry_after_s`` says when to retry."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreError(RecloopError):
    """A durable or online store failed."""


class StoreUnavailable(StoreError):
    """The store could not be reached, or did not answer in time."""


class OnlineStoreUnavailable(StoreUnavailable):
    """The online store (Redis) failed, was unreachable, or did not answer in time."""


class SchemaOutOfDate(StoreError):
    """The durable store's schema is behind the code; run ``recloop db upgrade``."""


class ModelError(RecloopError):
    """Base for model problems."""


class NotFitted(ModelError):
    """A model was used before ``fit()`` or ``load()``."""


class StageError(RecloopError):
    """A pipeline stage failed; the pipeline fell back."""


class StageTimeout(StageError):
    """A stage exceeded its time budget."""


class SnapshotRefused(RecloopError):
    """A training-data snapshot cannot be taken or opened; the message says why."""


class SnapshotExists(SnapshotRefused):
    """A snapshot of the same data at the same second exists already (never overwritten)."""

    def __init__(self, version: str) -> None:
        super().__init__(f"snapshot {version} exists already; never overwritten")
        self.version = version


@contextmanager
def map_errors(mapping: Mapping[type[BaseException], type[RecloopError]]) -> Iterator[None]:
    """Translate a backend's exceptions into ours at the boundary, keeping the cause.

    Args:
        mapping: backend exception class -> recloop exception class; the first match wins.
    """
    try:
        yield
    except RecloopError:
        raise
    except BaseException as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                mapped = target(str(exc) or source.__name__)
                mapped.from_driver = True
                raise mapped from exc
        raise

"""Wire shapes of incoming records (events, items, users): camelCase JSON, strict rules.

The HTTP API and ``recloop import`` validate with these same models, so a row that the
API would refuse is refused by an import too, with the same field name and rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from recloop.domain import EventType, Item, ItemStatus, User

MAX_ID_LENGTH = 256
MAX_CONTEXT_BYTES = 8192
MAX_METADATA_BYTES = 65536


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text; refusing it here keeps one bad event from failing
    # a whole group commit.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _no_nul_in(values: list[str] | None) -> list[str] | None:
    return values if values is None else [_no_nul(value) for value in values]


#: For a request's path and query parameters: the same NUL rule as the bodies'.
NO_NUL = AfterValidator(lambda value: value if value is None else _no_nul(value))
NO_NUL_IN = AfterValidator(_no_nul_in)

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_no_nul)]
Label = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]


def _check_json_value(value: Any, path: str) -> None:
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            _no_nul(key)
            _check_json_value(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for inner in value:
            _check_json_value(inner, path)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")


def check_json_object(value: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Refuse NUL characters, non-finite numbers and objects larger than ``max_bytes``."""
    _check_json_value(value, "")
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # e.g. integers beyond 64 bits, or nesting deeper than JSON tools accept
        raise ValueError(f"must be plain JSON: {exc}") from exc
    if len(encoded) > max_bytes:
        raise ValueError(f"must serialise to at most {max_bytes} bytes of JSON")
    return value


#: A number given as a time is seconds since 1970-01-01 UTC, up to this (the year 2286).
MAX_EPOCH_SECONDS = 1e10


def _seconds_only(value: Any) -> Any:
    """Read a number (or numeric text) as seconds since the epoch, and refuse one too large
    to be seconds, which a lenient parser would quietly read as milliseconds."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    if isinstance(number, int | float) and not isinstance(number, bool):
        if not math.isfinite(number) or abs(number) > MAX_EPOCH_SECONDS:
            raise ValueError(
                f"a number is seconds since 1970-01-01 UTC, at most {MAX_EPOCH_SECONDS:.0e}; "
                "send milliseconds divided by 1000, or an ISO 8601 time"
            )
        return datetime.fromtimestamp(number, UTC)
    return value


Timestamp = Annotated[datetime, BeforeValidator(_seconds_only)]


def _context(value: dict[str, Any]) -> dict[str, Any]:
    return check_json_object(value, MAX_CONTEXT_BYTES)


class CamelModel(BaseModel):
    """Base of every wire model: camelCase on the wire, snake_case in Python, no extras."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class EventIn(CamelModel):
    """One event as a client sends it."""

    event_id: Id | None = Field(default=None, description="Idempotency key; made when absent.")
    user_id: Id
    item_id: Id | None = Field(default=None, description="Required for all but `search`.")
    event_type: EventType
    value: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Dwell ms, amount, rating."
    )
    surface: Label | None = None
    session_id: Id | None = None
    device: Label | None = None
    position: int | None = Field(default=None, ge=0, le=10_000, description="0 is the top.")
    request_id: Id | None = Field(default=None, description="The list this event came from.")
    event_ts: Timestamp | None = Field(
        default=None, description="Client time, ISO 8601; naive means UTC; default: arrival."
    )
    context: Annotated[dict[str, Any], AfterValidator(_context)] | None = None
    query: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_nul)] | None = (
        Field(
            default=None,
            description="A `search`'s submitted text, what query suggestions learn from (at "
            "most 200 characters after normalization; personal data is replaced by tags such "
            "as `<email>` before it is stored). With a suggestion's `requestId` and "
            "`position` when the search came from one; `context.prefix` may hold what had "
            "been typed.",
        )
    )


Token = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_\-]*$"), AfterValidator(_no_nul)
]
Text = Annotated[str, Field(max_length=10_000), AfterValidator(_no_nul)]


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    return check_json_object(value, MAX_METADATA_BYTES)


class ItemFields(CamelModel):
    """An item's fields other than its id."""

    type: Token = Field(default="item", description="video, product, song, article, query, ...")
    title: Text | None = None
    description: Text | None = None
    category: Label | None = None
    tags: list[Label] = Field(default_factory=list, max_length=64)
    creator_id: Id | None = None
    locale: Label | None = None
    status: ItemStatus = ItemStatus.ACTIVE
    created_at: Annotated[Timestamp | None, AfterValidator(_exists_in_utc)] = Field(
        default=None, description="Default: when first stored."
    )
    metadata: Annotated[dict[str, Any], AfterValidator(_metadata)] = Field(default_factory=dict)


class ItemIn(ItemFields):
    """An item in a batch (``POST /api/items``) or an import file."""

    item_id: Id


class ItemPut(ItemFields):
    """The body of ``PUT /api/items/{itemId}``; ``itemId`` may repeat the path's."""

    item_id: Id | None = None


Attributes = Annotated[dict[str, Any], AfterValidator(_context)]


class UserIn(CamelModel):
    """A user in an import file: an id and free-form attributes."""

    user_id: Id
    attributes: Attributes = Field(
        default_factory=dict,
        description="ageGroup, region, language, interests, ... (at most 8 KiB of JSON).",
    )


class UserPut(CamelModel):
    """The body of ``PUT /api/users/{userId}``; ``userId`` may repeat the path's."""

    user_id: Id | None = None
    attributes: Attributes = Field(default_factory=dict)


def to_item(fields: ItemFields, item_id: str) -> Item:
    """The domain item from validated wire fields: each of ``ItemFields`` by name."""
    values = {name: getattr(fields, name) for name in ItemFields.model_fields}
    values["tags"] = tuple(fields.tags)
    values["created_at"] = _utc(fields.created_at)
    return Item(item_id=item_id, **values)


def to_user(attributes: dict[str, Any], user_id: str) -> User:
    """The domain user from validated wire fields."""
    return User(user_id=user_id, attributes=attributes)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _exists_in_utc(value: datetime | None) -> datetime | None:
    if value is not None:
        try:
            _utc(value)
        except (OverflowError, ValueError):
            raise ValueError("must be a time that exists in UTC") from None
    return value


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The (field, rule) of a validation error's first problem, the field in camelCase."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
    return field or "body", first["msg"]


M = TypeVar("M", bound=BaseModel)


def validate_records(
    model: type[M], raws: Sequence[Any]
) -> tuple[list[M], list[tuple[int, str, str]]]:
    """Validate each raw record alone: the good ones, and (index, field, rule) for the rest."""
    good: list[M] = []
    rejected: list[tuple[int, str, str]] = []
    for index, raw in enumerate(raws):
        if not isinstance(raw, dict):
            rejected.append((index, "record", "must be a JSON object"))
            continue
        try:
            good.append(model.model_validate(raw))
        except ValidationError as exc:
            rejected.append((index, *first_error(exc)))
    return good, rejected

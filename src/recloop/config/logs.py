"""How the service writes its logs: text or one JSON object a line, and its request lines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recloop.config.section import Section


class LoggingSettings(Section):
    """The service's logs (``[logging]``); the level is ``recloop serve --log-level``."""

    format: Literal["text", "json"] = Field(
        default="text",
        description="text: one human line a record; json: one JSON object a line (time, "
        "level, logger, message and the record's fields), for jq, Loki or Elastic.",
    )
    sample_info: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of requests logged (one line each, logger recloop.requests) at "
        "level info; at debug every request is, and a 5xx always is (warning).",
    )
    user_salt: str | None = Field(
        default=None,
        min_length=16,
        description="The secret users' ids are hashed with in the logs (HMAC-SHA-256); "
        "default: one made at first start and kept in DATA_DIR/log-salt. Set it when "
        "replicas on several hosts must hash alike.",
    )

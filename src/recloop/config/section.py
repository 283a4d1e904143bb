"""The base of every settings section: frozen, and unknown keys refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A settings section: frozen, and a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

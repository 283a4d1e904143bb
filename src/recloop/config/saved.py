"""Settings written back as TOML, so that a data directory carries its configuration.

``write_settings`` writes what differs from the defaults; reading the file back (see
``Settings``) gives the same settings. TOML has no null: an unset optional value is left
out, which reads back as its default of None.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from recloop.config.settings import Settings

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def write_settings(
    settings: Settings, path: Path, *, header: str = "", exclude: set[str] | None = None
) -> None:
    """Write ``settings`` (less the top-level keys in ``exclude``) to ``path`` as TOML."""
    body = settings.model_dump(mode="json", exclude_defaults=True, exclude=exclude)
    comments = [f"# {line}".rstrip() for line in header.splitlines()]
    tables = "\n".join(_table(_without_nulls(body), [])).strip("\n")
    text = "\n\n".join(part for part in ("\n".join(comments), tables) if part)
    path.write_text(text + "\n", encoding="utf-8")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _table(table: dict[str, Any], path: list[str]) -> list[str]:
    # A table's own keys come right after its header, before any sub-table's header.
    lines = [
        f"{_key(k)} = {_inline(v)}"
        for k, v in table.items()
        if not isinstance(v, dict) and not _is_table_array(v)
    ]
    for k, v in table.items():
        if isinstance(v, dict):
            sub = [*path, k]
            lines += ["", f"[{'.'.join(_key(p) for p in sub)}]", *_table(v, sub)]
        elif _is_table_array(v):
            sub = [*path, k]
            for item in v:
                lines += ["", f"[[{'.'.join(_key(p) for p in sub)}]]", *_table(item, sub)]
    return lines


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are a subset of TOML's basic-string escapes; TOML also
        # wants DEL escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")

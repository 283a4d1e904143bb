"""``recloop keys``: API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from recloop.cli.common import DataDir, app, console, err_console, fail, load_settings
from recloop.domain import Scope
from recloop.errors import RecloopError

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _scopes(value: str) -> list[Scope]:
    try:
        return [Scope(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"scopes must be among {', '.join(s.value for s in Scope)}", param_hint="--scopes"
        ) from exc


@keys_app.command("create")
def keys_create(
    app_id: Annotated[
        str, typer.Option("--app", help="The app (tenant); created if new.")
    ] = "default",
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: ingest, serve, admin.")
    ] = "ingest,serve",
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print it on the last line (it cannot be shown again)."""
    from recloop.store.bootstrap import prepare_store
    from recloop.store.keys import issue_key, key_id_of

    parsed = _scopes(scopes)
    if not parsed:
        raise typer.BadParameter("give at least one scope", param_hint="--scopes")
    settings = load_settings(data_dir)
    now = datetime.now(UTC)
    try:
        store = prepare_store(settings)
        if store.tenancy.create_app(app_id, app_id, now):
            err_console.print(f"created app {app_id!r}")
        key = issue_key(store.tenancy, app_id, parsed, now, name=name)
        store.audit.record(
            app_id, "cli", "key.create", key_id_of(key) or "", now, {"scopes": sorted(parsed)}
        )
    except RecloopError as exc:
        raise fail(exc) from exc
    store.close()
    err_console.print(f"key for app {app_id!r} with scopes {', '.join(s.value for s in parsed)}:")
    print(key)


@keys_app.command("list")
def keys_list(
    app_id: Annotated[str, typer.Option("--app")] = "default",
    data_dir: DataDir = None,
) -> None:
    """List an app's keys (ids and scopes, never secrets)."""
    from recloop.store.bootstrap import prepare_store

    store = prepare_store(load_settings(data_dir))
    table = Table("key id", "scopes", "name", "created", "revoked")
    for record in store.tenancy.list_keys(app_id):
        table.add_row(
            record.key_id,
            ",".join(sorted(record.scopes)),
            record.name or "",
            f"{record.created_at:%Y-%m-%d %H:%M}",
            f"{record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "",
        )
    console.print(table)
    store.close()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key id, as recloop keys list shows it.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key; running servers stop accepting it within seconds."""
    from recloop.store.bootstrap import prepare_store

    store = prepare_store(load_settings(data_dir))
    now = datetime.now(UTC)
    record = store.tenancy.get_key(key_id)
    revoked = store.tenancy.revoke_key(key_id, now)
    if revoked and record is not None:
        store.audit.record(record.app_id, "cli", "key.revoke", key_id, now)
    store.close()
    if not revoked:
        raise fail(RecloopError(f"no active key {key_id!r}"))
    console.print(f"revoked {key_id}; running servers refuse it within seconds")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key id, as recloop keys list shows it.")
    ],
    grace_hours: Annotated[
        float, typer.Option(min=0, help="How long the old key keeps working.")
    ] = 24.0,
    data_dir: DataDir = None,
) -> None:
    """Replace a key; the new one is printed on the last line.

    The new key has the same app, scopes and name; the old one keeps working for the grace
    period, then is revoked.
    """
    from recloop.store.bootstrap import prepare_store
    from recloop.store.keys import issue_key, key_id_of

    store = prepare_store(load_settings(data_dir))
    try:
        now = datetime.now(UTC)
        record = store.tenancy.get_key(key_id)
        if record is None or (record.revoked_at is not None and record.revoked_at <= now):
            raise RecloopError(f"no active key {key_id!r}")
        key = issue_key(store.tenancy, record.app_id, record.scopes, now, name=record.name)
        ends = now + timedelta(hours=grace_hours)
        store.tenancy.revoke_key(key_id, ends)
        store.audit.record(
            record.app_id,
            "cli",
            "key.rotate",
            key_id,
            now,
            {"new_key_id": key_id_of(key) or "", "old_key_valid_until": ends.isoformat()},
        )
    except RecloopError as exc:
        raise fail(exc) from exc
    finally:
        store.close()
    err_console.print(f"{key_id} keeps working until {ends:%Y-%m-%d %H:%M} UTC; its successor:")
    print(key)

"""``facepipe keys create|list|revoke``: the application keys of the HTTP API.

A new key's secret is printed once (with ``--json``: ``{"key_id", "secret", "appid"}``) and then
only kept hashed and encrypted under FACEPIPE_SECRET_KEY. ``--groups g1,g2`` limits a key to those
groups, ``--read-only`` to calls that change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.errors import FacepipeError, error_dict

keys_app = typer.Typer(
    help="Application keys of the HTTP API (/v1 Bearer, YouTu, IAI, Baidu).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def _transaction(as_json: bool) -> Iterator[object]:
    from pipeline.store.db import Database

    try:
        db = Database.from_settings(get_settings())
        try:
            with db.transaction() as conn:
                yield conn
        finally:
            db.close()
    except FacepipeError as exc:
        if as_json:
            typer.echo(json.dumps({"error": error_dict(exc)}))
        else:
            typer.echo(f"error {exc.numeric_code} {exc.code.value}: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (1-64 characters).")],
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="Limit the key to these groups (comma-separated): its calls may name, and "
            "reach through persons and faces, only them. Default: every group.",
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Only calls that change nothing: detect, compare, verify, identify, reads of "
            "the library and of jobs.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its id, secret and appid (the secret is shown only now)."""
    from pipeline.apikeys import KeyScope, SecretCipher, parse_scope_groups
    from pipeline.store.apikeys import create_key

    with _transaction(as_json) as conn:
        scope = KeyScope(parse_scope_groups(groups), read_only)
        cipher = SecretCipher(get_settings().secret_key)
        key = create_key(conn, name, cipher, scope)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(key.to_dict()))
        return
    typer.echo(f"key_id  {key.key_id}")
    typer.echo(f"secret  {key.secret}")
    typer.echo(f"appid   {key.appid}")
    typer.echo(f"scope   {key.scope.describe()}")
    typer.echo(
        "The secret is not shown again. It is the /v1 Bearer token, the Tencent SecretKey "
        "and the Baidu Secret Key; key_id is the SecretId / API Key."
    )


@keys_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every key (never its secret), oldest first, with when it was revoked and its scope."""
    from pipeline.store.apikeys import list_keys

    with _transaction(as_json) as conn:
        keys = list_keys(conn)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps({"keys": [k.to_dict() for k in keys]}))
        return
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.appid}  {state:<24}  {k.scope.describe():<32}  {k.name}")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key to revoke.")], as_json: JsonOpt = False
) -> None:
    """Revoke a key: its secret, signatures and access tokens are refused from now on."""
    from pipeline.store.apikeys import revoke_key

    with _transaction(as_json) as conn:
        key = revoke_key(conn, key_id)  # type: ignore[arg-type]
    typer.echo(json.dumps(key.to_dict()) if as_json else f"revoked {key.key_id}")

"""The application keys' tables (``api_keys``, ``api_tokens``): create, list, revoke, look up
keys, and the Baidu access tokens issued to them (stored as hashes)."""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pipeline.apikeys import (
    UNLIMITED,
    ApiKey,
    KeyScope,
    NewKey,
    SecretCipher,
    check_key_name,
    sha256_hex,
)
from pipeline.errors import ErrorCode, FacepipeError

_ALNUM = string.ascii_letters + string.digits

_COLUMNS = "key_id, name, appid, created_at, revoked_at, group_ids, read_only"
_N_COLUMNS = len(_COLUMNS.split(", "))


def _key(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, appid, created_at, revoked_at, groups, read_only = row
    scope = KeyScope(frozenset(groups) if groups is not None else None, bool(read_only))
    return ApiKey(key_id, name, appid, created_at, revoked_at, scope)


def create_key(
    conn: psycopg.Connection, name: str, cipher: SecretCipher, scope: KeyScope = UNLIMITED
) -> NewKey:
    """A new active key. ``key_id`` looks like a Tencent SecretId (``AKID`` + 32), the secret
    like a SecretKey (32 characters), the appid is 10 digits. ``scope`` limits it to groups
    and/or read-only calls."""
    name = check_key_name(name)
    key_id = "AKID" + "".join(secrets.choice(_ALNUM) for _ in range(32))
    secret = "".join(secrets.choice(_ALNUM) for _ in range(32))
    appid = str(1_000_000_000 + secrets.randbelow(9_000_000_000))
    conn.execute(
        "INSERT INTO api_keys (key_id, name, appid, secret_sha256, secret_enc, group_ids,"
        " read_only) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            key_id,
            name,
            appid,
            sha256_hex(secret),
            cipher.encrypt(secret),
            sorted(scope.group_ids) if scope.group_ids is not None else None,
            scope.read_only,
        ),
    )
    return NewKey(key_id, secret, appid, name, scope)


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id").fetchall()
    return [_key(r) for r in rows]


def revoke_key(conn: psycopg.Connection, key_id: str) -> ApiKey:
    """Revoke a key (and drop its access tokens); revoking twice keeps the first time."""
    row = conn.execute(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s"
        f" RETURNING {_COLUMNS}",
        (key_id,),
    ).fetchone()
    if row is None:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"no key {key_id!r}")
    conn.execute("DELETE FROM api_tokens WHERE key_id = %s", (key_id,))
    return _key(row)


def key_by_secret(conn: psycopg.Connection, secret: str) -> ApiKey | None:
    """The active key whose secret this is (looked up by hash), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE secret_sha256 = %s AND revoked_at IS NULL",
        (sha256_hex(secret),),
    ).fetchone()
    return _key(row) if row else None


def signing_secret(
    conn: psycopg.Connection, key_id: str, cipher: SecretCipher
) -> tuple[ApiKey, str] | None:
    """An active key and its decrypted secret (to check an HMAC), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, secret_enc FROM api_keys WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    ).fetchone()
    if row is None:
        return None
    return _key(row[:_N_COLUMNS]), cipher.decrypt(bytes(row[_N_COLUMNS]))


def issue_token(conn: psycopg.Connection, key_id: str, ttl: timedelta) -> tuple[str, datetime]:
    """A new access token for an active key (stored as its hash) and its expiry."""
    token = (
        "24."
        + secrets.token_hex(16)
        + "."
        + str(int(ttl.total_seconds()))
        + "."
        + (secrets.token_hex(8))
    )
    row = conn.execute(
        "INSERT INTO api_tokens (token_sha256, key_id, expires_at)"
        " SELECT %s, key_id, now() + %s FROM api_keys WHERE key_id = %s AND revoked_at IS NULL"
        " RETURNING expires_at",
        (sha256_hex(token), ttl, key_id),
    ).fetchone()
    if row is None:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"no active key {key_id!r}")
    return token, row[0]


def key_by_token(conn: psycopg.Connection, token: str) -> ApiKey | None:
    """The active key an unexpired access token was issued to, or None."""
    row = conn.execute(
        f"SELECT {', '.join('k.' + c for c in _COLUMNS.split(', '))} FROM api_tokens t"
        " JOIN api_keys k USING (key_id)"
        " WHERE t.token_sha256 = %s AND t.expires_at > now() AND k.revoked_at IS NULL",
        (sha256_hex(token),),
    ).fetchone()
    return _key(row) if row else None

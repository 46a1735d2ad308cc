"""Application keys of the HTTP API: the key, its scope and the secrets' encryption (the
keys' table is :mod:`pipeline.store.apikeys`: create, list, revoke, look up; Baidu access tokens).

A key is a ``key_id`` (public: the Tencent SecretId, the Baidu API Key), a ``secret`` (shown
once at creation: the /v1 Bearer token, the Tencent SecretKey, the Baidu Secret Key) and an
``appid`` (the YouTu AppId). The secret is stored as its SHA-256 (bearer look-up) and encrypted
with Fernet under a key derived from ``FACEPIPE_SECRET_KEY`` (the HMAC signature checks need the
secret itself); it is never stored in plain text nor logged.

A key may be scoped: limited to some groups and/or to read-only calls (:class:`KeyScope`,
enforced per call by :mod:`pipeline.api.scope`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pipeline.errors import ErrorCode, FacepipeError


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SecretCipher:
    """Encrypts and decrypts signing secrets under the server key (Fernet: AES-128-CBC +
    HMAC-SHA256). The Fernet key is the SHA-256 of ``FACEPIPE_SECRET_KEY``, so any long random
    string serves as the setting."""

    def __init__(self, server_key: str | None) -> None:
        if not server_key:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                "FACEPIPE_SECRET_KEY is not set: it encrypts the keys' secrets at rest "
                "(set it to a long random string, the same on every API process)",
            )
        from cryptography.fernet import Fernet

        digest = hashlib.sha256(server_key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken as exc:
            raise FacepipeError(
                ErrorCode.INTERNAL,
                "a key's secret does not decrypt: FACEPIPE_SECRET_KEY changed since it was made",
            ) from exc


MAX_SCOPE_GROUPS = 1000
"""Most groups one key may be limited to."""


@dataclass(frozen=True)
class KeyScope:
    """What a key may do: ``group_ids`` None is every group, else only those groups (and the
    persons and faces in them); ``read_only`` allows no change to the library and no job."""

    group_ids: frozenset[str] | None = None
    read_only: bool = False

    @property
    def unlimited(self) -> bool:
        return self.group_ids is None and not self.read_only

    def describe(self) -> str:
        """``all groups, read-write`` / ``groups a,b, read-only`` (for ``keys list``)."""
        groups = (
            "all groups"
            if self.group_ids is None
            else ("groups " + ",".join(sorted(self.group_ids)))
        )
        return f"{groups}, {'read-only' if self.read_only else 'read-write'}"


UNLIMITED = KeyScope()


def parse_scope_groups(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """``--groups g1,g2`` (or a list) as a set of group ids; None or empty means every group.
    ILLEGAL_PARAMETER for an id that is blank or not printable, or too many of them."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    groups = frozenset(g.strip() for g in items if g.strip())
    if not groups:
        return None
    if len(groups) > MAX_SCOPE_GROUPS or not all(g.isprintable() for g in groups):
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"a key is limited to 1-{MAX_SCOPE_GROUPS} group ids of printable characters",
        )
    return groups


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (no secret)."""

    key_id: str
    name: str
    appid: str
    created_at: datetime
    revoked_at: datetime | None
    scope: KeyScope = UNLIMITED

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        groups = self.scope.group_ids
        return {
            "key_id": self.key_id,
            "name": self.name,
            "appid": self.appid,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "group_ids": sorted(groups) if groups is not None else None,
            "read_only": self.scope.read_only,
        }


@dataclass(frozen=True)
class NewKey:
    """A key just created: the only time its secret is shown."""

    key_id: str
    secret: str
    appid: str
    name: str
    scope: KeyScope = UNLIMITED

    def to_dict(self) -> dict[str, str]:
        return {"key_id": self.key_id, "secret": self.secret, "appid": self.appid}


def check_key_name(name: str) -> str:
    """A key's name, stripped: 1-64 printable characters."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "a key name is 1-64 printable characters")
    return name

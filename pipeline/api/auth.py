"""Who may call: application keys checked per protocol, per-key rate limits, and the rule that
an unauthenticated server only ever listens on loopback.

Each protocol proves a key its own way (native Bearer secret, YouTu HMAC-SHA1, IAI TC3, Baidu
access token) and answers a refusal in its own shape; what they share lives here: the look-ups
(:class:`KeyRing`), the rate limit and :func:`check_exposure`.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from starlette.responses import Response

from pipeline.apikeys import UNLIMITED, ApiKey, KeyScope, SecretCipher
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store import apikeys as key_store
from pipeline.store.db import Database


class Refused(Exception):
    """A call refused before its route runs (bad credentials, over the rate), carrying the
    answer already shaped by its protocol."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Does ``host`` (as given to ``facepipe api --host``) listen on loopback only?"""
    host = host.strip().strip("[]").lower()
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: Settings) -> None:
    """Refuse to serve beyond loopback without authentication (FACEPIPE_API_AUTH=false is a
    local trial). /docs and /openapi.json are behind the same check as the calls."""
    if not settings.api_auth and not is_loopback(host):
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"refusing to listen on {host} with FACEPIPE_API_AUTH=false: without "
            "authentication the API only serves on loopback (127.0.0.1, ::1); create keys with "
            "`facepipe keys create NAME` and leave FACEPIPE_API_AUTH on",
        )


@dataclass(frozen=True)
class Caller:
    """Who a call was authenticated as (``key`` None: the shared FACEPIPE_API_TOKEN, or auth
    is off for a local trial)."""

    key: ApiKey | None

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key else None

    @property
    def scope(self) -> KeyScope:
        """What the key may do (the shared token, or no auth: everything)."""
        return self.key.scope if self.key else UNLIMITED


ANONYMOUS = Caller(None)


class KeyRing:
    """The keys as the API sees them: look-ups by secret, by id (with the decrypted secret, for
    signatures) and by access token, and the per-key rate limit. Blocking: call in a thread."""

    def __init__(self, settings: Settings, db: Database) -> None:
        from pipeline.api.ratelimit import RateLimiter

        self.settings = settings
        self.db = db
        self.limiter = RateLimiter(settings)
        self._cipher: SecretCipher | None = None

    @property
    def cipher(self) -> SecretCipher:
        if self._cipher is None:
            self._cipher = SecretCipher(self.settings.secret_key)
        return self._cipher

    def bearer(self, secret: str) -> Caller | None:
        """A /v1 Bearer secret: an active key's secret, or the shared FACEPIPE_API_TOKEN."""
        token = self.settings.api_token
        if token and hmac.compare_digest(secret.encode(), token.encode()):
            return ANONYMOUS
        if not secret:
            return None
        with self.db.connection() as conn:
            key = key_store.key_by_secret(conn, secret)
        return Caller(key) if key else None

    def signing_secret(self, key_id: str) -> tuple[ApiKey, str] | None:
        with self.db.connection() as conn:
            return key_store.signing_secret(conn, key_id, self.cipher)

    def issue_token(self, key_id: str, ttl: timedelta) -> tuple[str, int]:
        with self.db.transaction() as conn:
            token, _expires = key_store.issue_token(conn, key_id, ttl)
        return token, int(ttl.total_seconds())

    def token(self, token: str) -> Caller | None:
        with self.db.connection() as conn:
            key = key_store.key_by_token(conn, token)
        return Caller(key) if key else None

    def allow(self, caller: Caller) -> bool:
        """One more call for this caller under its key's rate (the shared token: no limit)."""
        return caller.key is None or self.limiter.allow(caller.key.key_id)

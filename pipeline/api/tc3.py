"""Tencent Cloud API 3.0 request signatures (TC3-HMAC-SHA256), pure functions.

Authorization: ``TC3-HMAC-SHA256 Credential=<SecretId>/<date>/<service>/tc3_request,
SignedHeaders=content-type;host, Signature=<hex>``, over the canonical request (method, URI,
query string, the signed headers, SHA-256 of the body), the X-TC-Timestamp and the date.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]{64})\s*$"
)


@dataclass(frozen=True)
class Tc3Authorization:
    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> Tc3Authorization | None:
    """The parts of a TC3 Authorization header, or None when it is not one."""
    match = _AUTH_RE.match(header.strip())
    if match is None:
        return None
    parts = match["cred"].split("/")
    if len(parts) != 4 or parts[3] != "tc3_request":
        return None
    signed = tuple(h.strip().lower() for h in match["signed"].split(";") if h.strip())
    return Tc3Authorization(parts[0], parts[1], parts[2], signed, match["sig"].lower())


def date_of(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def signature(
    secret_key: str,
    *,
    method: str,
    uri: str,
    query: str,
    headers: dict[str, str],
    signed_headers: tuple[str, ...],
    payload: bytes,
    timestamp: int,
    service: str,
) -> str:
    """The hex signature of a request (``headers``: lower-case names -> values)."""
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        [
            method.upper(),
            uri,
            query,
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    date = date_of(timestamp)
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        [
            ALGORITHM,
            str(timestamp),
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )

    def _hmac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_signing = _hmac(_hmac(k_date, service), "tc3_request")
    return hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

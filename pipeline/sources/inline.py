"""Inline image sources: ``data:image/...;base64,...`` URIs and ``base64:<b64>`` strings."""

from __future__ import annotations

import base64
import binascii
import re

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

BASE64_PREFIX = "base64:"
DATA_PREFIX = "data:"
_WHITESPACE = re.compile(r"\s+")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,", re.I)


def is_inline(source: str) -> bool:
    """True for sources carrying the image itself rather than pointing at it."""
    head = source[:8].lower()
    return head.startswith(BASE64_PREFIX) or head.startswith(DATA_PREFIX)


def describe(source: str) -> str:
    """A short label for logs and errors (never the whole base64 payload)."""
    return source if len(source) <= 48 else f"{source[:40]}...({len(source)} chars)"


def decode_base64_text(text: str, source: str, settings: Settings) -> bytes:
    """Decode standard or URL-safe base64 (padding optional, whitespace ignored).

    Invalid base64 raises DECODE_FAILED (the payload is image data that cannot be decoded);
    a payload whose decoded size would exceed the byte cap raises IMAGE_TOO_LARGE before
    decoding.
    """
    payload = _WHITESPACE.sub("", text)
    if not payload:
        raise FacepipeError(ErrorCode.EMPTY_IMAGE, f"{describe(source)}: the base64 is empty")
    if len(payload) * 3 // 4 > settings.max_image_bytes + 3:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{describe(source)}: about {len(payload) * 3 // 4} bytes once decoded, above the "
            f"cap of {settings.max_image_bytes} (FACEPIPE_MAX_IMAGE_BYTES)",
        )
    payload += "=" * (-len(payload) % 4)
    altchars = b"-_" if ("-" in payload or "_" in payload) else None
    try:
        return base64.b64decode(payload, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FacepipeError(
            ErrorCode.DECODE_FAILED, f"{describe(source)}: invalid base64 ({exc})"
        ) from exc


def read_inline(source: str, settings: Settings) -> bytes:
    """The bytes of a ``data:`` URI or ``base64:`` source."""
    if source[: len(BASE64_PREFIX)].lower() == BASE64_PREFIX:
        return decode_base64_text(source[len(BASE64_PREFIX) :], source, settings)
    match = _DATA_URI.match(source)
    if match is None:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{describe(source)}: only base64 data URIs are accepted "
            "(data:image/<type>;base64,<payload>)",
        )
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise FacepipeError(
            ErrorCode.ILLEGAL_FORMAT, f"{describe(source)}: a data URI of type {mime} is no image"
        )
    return decode_base64_text(source[match.end() :], source, settings)

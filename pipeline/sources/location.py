"""Caller-given locations parsed once into typed values: the only place a source string is read.

Every image source, job source, manifest and export destination goes through
:func:`parse_location` before anything touches it, and the rest of the code dispatches on the
returned type, never on the string again. A string that looks like a URL is always a URL: it is
never reinterpreted as a local path (``http:/../../etc`` is refused, not opened as a folder
named ``http:``).

Who gave the string decides what it may name (:class:`Trust`):

* ``OPERATOR`` (the CLI, the beat schedule, configuration): local paths and ``file://`` too;
* ``CALLER`` (anyone over HTTP, S3 event payloads): only ``http(s)://`` and ``s3://``
  locations, and inline ``base64:`` / ``data:`` images. Anything else is URL_FORBIDDEN, so
  nothing a remote caller gives ever reaches the server's file system.

Malformed strings (no host, a bad bucket name, ``..`` segments, backslashes, control
characters) are ILLEGAL_PARAMETER for operators and URL_FORBIDDEN for callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from pipeline.errors import ErrorCode, FacepipeError


class Trust(StrEnum):
    """Who gave a location, hence what it may name."""

    OPERATOR = "operator"
    CALLER = "caller"


@dataclass(frozen=True)
class HttpLocation:
    """An ``http(s)://`` URL with a host (the SSRF guard checks its address when it is read)."""

    url: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (or, ending in ``/`` or empty, a key prefix)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class LocalLocation:
    """A path on this machine (only ever from an operator)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class InlineLocation:
    """An image carried in the string itself (``base64:...`` or ``data:image/...;base64,``)."""

    text: str

    def __str__(self) -> str:
        return self.text


Location = HttpLocation | S3Location | LocalLocation | InlineLocation
RemoteLocation = HttpLocation | S3Location

# Shared with pipeline/jobs/exportdest.py: what counts as a scheme, and as a control character.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# S3 bucket naming rules (lower-case letters, digits, dots and hyphens; 3-63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_INLINE_PREFIXES = ("base64:", "data:")
REMOTE_SCHEMES = frozenset({"http", "https", "s3"})


def _refuse(trust: Trust, text: str, why: str) -> FacepipeError:
    code = ErrorCode.URL_FORBIDDEN if trust is Trust.CALLER else ErrorCode.ILLEGAL_PARAMETER
    return FacepipeError(code, f"{_shown(text)}: {why}", source=_shown(text))


def _shown(text: str) -> str:
    return text if len(text) <= 120 else f"{text[:100]}...({len(text)} chars)"


def _has_dot_segment(path: str) -> bool:
    """``.`` or ``..`` as a path segment, also percent-encoded (``%2e%2E``) or doubly so."""
    decoded = path
    for _ in range(3):  # %252e -> %2e -> .
        segments = decoded.split("/")
        if any(s in (".", "..") for s in segments):
            return True
        nxt = unquote(decoded)
        if nxt == decoded:
            return False
        decoded = nxt
    return True  # still encoded after three rounds: nobody needs that


def parse_location(
    text: str,
    trust: Trust,
    *,
    remote_schemes: frozenset[str] | None = None,
    inline: bool = True,
) -> Location:
    """Parse a caller- or operator-given location once; see the module docstring.

    ``remote_schemes`` narrows the URL schemes a caller may use (``api_url_schemes``);
    ``inline=False`` refuses ``base64:`` / ``data:`` strings (e.g. for a job source).
    """
    if not isinstance(text, str) or not text.strip():
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "the location is empty")
    text = text.strip()
    head = text[:8].lower()
    if head.startswith(_INLINE_PREFIXES):
        if not inline:
            raise _refuse(trust, text, "an inline image is not a location here")
        return InlineLocation(text)
    if CONTROL_CHARS.search(text):
        raise _refuse(trust, text, "control characters are not allowed in a location")
    allowed = REMOTE_SCHEMES if remote_schemes is None else remote_schemes
    scheme_match = URL_SCHEME.match(text)
    # Anything shaped like "word:" is a scheme, never the start of a relative path (an operator
    # names a file "a:b.jpg" as ./a:b.jpg); this server never reads Windows paths either.
    if scheme_match is None:
        if trust is Trust.CALLER:
            raise _refuse(
                trust,
                text,
                "a local path is not accepted from a caller "
                f"(give {', '.join(sorted(allowed))} URLs or an inline image)",
            )
        return LocalLocation(Path(text).expanduser())
    scheme = scheme_match.group(1).lower()
    if scheme in ("http", "https", "s3") and scheme not in allowed:
        raise _refuse(
            trust, text, f"{scheme}:// is not accepted here (allowed: {', '.join(sorted(allowed))})"
        )
    if scheme in ("http", "https"):
        return _http(text, trust)
    if scheme == "s3":
        return _s3(text, trust)
    if scheme == "file" and trust is Trust.OPERATOR:
        return _file_uri(text, trust)
    raise _refuse(
        trust,
        text,
        f"the scheme {scheme!r} is not accepted "
        "(use http(s)://, s3://, base64: or data:"
        f"{', a path or file://' if trust is Trust.OPERATOR else ''})",
    )


def _http(text: str, trust: Trust) -> HttpLocation:
    if "\\" in text:
        raise _refuse(trust, text, "backslashes are not allowed in a URL")
    parts = urlsplit(text)
    if not text[len(parts.scheme) + 1 :].startswith("//") or not parts.netloc:
        raise _refuse(trust, text, "a URL needs scheme://host/...")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise _refuse(trust, text, f"invalid URL ({exc})") from exc
    if not url.host:
        raise _refuse(trust, text, "the URL has no host")
    if url.userinfo:
        raise _refuse(trust, text, "credentials in a URL are not accepted")
    return HttpLocation(str(url))


def _s3(text: str, trust: Trust) -> S3Location:
    if "\\" in text:
        raise _refuse(trust, text, "backslashes are not allowed in an s3:// location")
    if not text[3:].startswith("//"):
        raise _refuse(trust, text, "expected s3://bucket/key")
    bucket, _, key = text[5:].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise _refuse(trust, text, f"{bucket!r} is not a valid bucket name")
    if key.startswith("/") or _has_dot_segment(key):
        raise _refuse(trust, text, "'.', '..' and empty leading segments are not allowed in keys")
    return S3Location(bucket, key)


def _file_uri(text: str, trust: Trust) -> LocalLocation:
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise _refuse(trust, text, "file:// URIs name this machine only (file:///path)")
    return LocalLocation(Path(unquote(parts.path)))


def require_remote(location: Location, what: str) -> RemoteLocation:
    """The location when it is an http(s) or s3 one, else URL_FORBIDDEN naming ``what``."""
    if isinstance(location, HttpLocation | S3Location):
        return location
    raise FacepipeError(ErrorCode.URL_FORBIDDEN, f"{what} must be an http(s):// or s3:// location")

"""Sources -> bytes -> :class:`DecodedImage`: parse the source once, dispatch on its type."""

from __future__ import annotations

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.decode import decode_image
from pipeline.sources.http import read_http
from pipeline.sources.inline import describe, read_inline
from pipeline.sources.local import read_local
from pipeline.sources.location import (
    HttpLocation,
    InlineLocation,
    LocalLocation,
    Location,
    S3Location,
    Trust,
    parse_location,
)
from pipeline.sources.s3 import read_s3
from pipeline.types import DecodedImage


def source_label(source: str | Location) -> str:
    """The name an image goes by in results and errors (inline payloads are shortened)."""
    text = str(source)
    return describe(text) if text[:8].lower().startswith(("base64:", "data:")) else text


def read_location_bytes(location: Location, settings: Settings) -> bytes:
    """The encoded bytes a parsed location names."""
    match location:
        case InlineLocation(text):
            return read_inline(text, settings)
        case HttpLocation():
            return read_http(location, settings)
        case S3Location():
            return read_s3(location, settings)
        case LocalLocation(path):
            return read_local(path, settings)
    raise FacepipeError(ErrorCode.INTERNAL, f"unhandled location {location!r}")


def read_source_bytes(
    source: str | Location, settings: Settings | None = None, trust: Trust = Trust.OPERATOR
) -> bytes:
    """The encoded bytes of a path, ``file://``, http(s) URL, ``s3://`` key or base64 image.

    A string is parsed with :func:`parse_location` under ``trust`` first: a caller's string
    never names a local file. Raises :class:`FacepipeError` (SOURCE_NOT_FOUND, URL_FORBIDDEN,
    DOWNLOAD_FAILED, ...).
    """
    settings = settings or get_settings()
    location = source if not isinstance(source, str) else parse_location(source, trust)
    return read_location_bytes(location, settings)


def load_image(
    source: str | Location, settings: Settings | None = None, trust: Trust = Trust.OPERATOR
) -> DecodedImage:
    """Read and decode one image source (see :func:`read_source_bytes`, :func:`decode_image`)."""
    settings = settings or get_settings()
    data = read_source_bytes(source, settings, trust)
    return decode_image(data, source=source_label(source), settings=settings)

"""Source strings -> bytes -> :class:`DecodedImage` (dispatch on the source's form)."""

from __future__ import annotations

import re

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.decode import decode_image
from pipeline.sources.http import is_http, read_http
from pipeline.sources.inline import describe, is_inline, read_inline
from pipeline.sources.local import read_local
from pipeline.sources.s3 import is_s3, read_s3
from pipeline.types import DecodedImage

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def source_label(source: str) -> str:
    """The name an image goes by in results and errors (inline payloads are shortened)."""
    return describe(source) if is_inline(source) else source


def read_source_bytes(source: str, settings: Settings | None = None) -> bytes:
    """The encoded bytes of a local path, ``file://``, http(s) URL, ``s3://`` key or base64.

    Raises :class:`FacepipeError` (SOURCE_NOT_FOUND, URL_FORBIDDEN, DOWNLOAD_FAILED, ...).
    """
    settings = settings or get_settings()
    if not source or not source.strip():
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "the image source is empty")
    if is_inline(source):
        return read_inline(source, settings)
    if is_http(source):
        return read_http(source, settings)
    if is_s3(source):
        return read_s3(source, settings)
    scheme = _URL_SCHEME.match(source)
    if scheme and scheme.group(1).lower() != "file":
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{source}: unsupported scheme {scheme.group(1)!r} (use a path, file://, http(s)://, "
            "s3://, data: or base64:)",
            source=source,
        )
    return read_local(source, settings)


def load_image(source: str, settings: Settings | None = None) -> DecodedImage:
    """Read and decode one image source (see :func:`read_source_bytes`, :func:`decode_image`)."""
    settings = settings or get_settings()
    data = read_source_bytes(source, settings)
    return decode_image(data, source=source_label(source), settings=settings)

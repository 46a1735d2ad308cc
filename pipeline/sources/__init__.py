"""Image intake: read bytes from paths, URLs, S3 and base64; validate and decode them.

Public API: :func:`load_image`, :func:`decode_image`, :func:`read_source_bytes`,
:func:`expand_sources`. Every refusal raises :class:`pipeline.errors.FacepipeError`.
"""

from __future__ import annotations

from pipeline.sources.decode import content_sha256, decode_image
from pipeline.sources.expand import expand_sources
from pipeline.sources.formats import IMAGE_EXTENSIONS, ImageFormat, sniff_format
from pipeline.sources.reader import load_image, read_source_bytes, source_label

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFormat",
    "content_sha256",
    "decode_image",
    "expand_sources",
    "load_image",
    "read_source_bytes",
    "sniff_format",
    "source_label",
]

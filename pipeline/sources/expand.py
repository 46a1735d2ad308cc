"""Turn user-given sources into image sources: directories and S3 prefixes are listed lazily."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.config import Settings, get_settings
from pipeline.sources.http import is_http
from pipeline.sources.inline import is_inline
from pipeline.sources.local import local_path
from pipeline.sources.s3 import S3Location, is_s3, iter_s3_keys, parse_s3_uri

# Listed so refused formats (GIF, TIFF, HEIC...) are reported per file instead of silently
# skipped; decoding accepts only JPEG, PNG, BMP and WebP.
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".dib",
        ".webp",
        ".gif",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
    }
)


def has_image_extension(name: str) -> bool:
    """True when the name ends in an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_directory(root: Path) -> Iterator[str]:
    """Image files under ``root``, recursively, in sorted order, lazily.

    Entries are sorted by name within each directory and subdirectories are visited in place,
    so the order is the sorted order of path components. Hidden files and directories (names
    starting with '.') are skipped; symlinked directories are not followed (no cycles).
    """
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from iter_directory(Path(entry.path))
        elif entry.is_file() and has_image_extension(entry.name):
            yield entry.path


def _is_prefix(location: S3Location) -> bool:
    return location.key == "" or location.key.endswith("/")


def expand_sources(
    sources: Iterable[str], settings: Settings | None = None, *, s3_page_size: int = 1000
) -> Iterator[str]:
    """Expand each source lazily, in order.

    * a local directory -> its image files (recursive, sorted, by extension);
    * ``s3://bucket/prefix/`` (a key ending in '/') or ``s3://bucket`` -> the keys under it with
      an image extension, listed page by page (``s3_page_size`` keys per request);
    * anything else (files, ``s3://`` keys, URLs, base64) passes through unchanged, even when
      it does not exist: reading it later reports the error for that item.
    """
    settings = settings or get_settings()
    for source in sources:
        if not source.strip() or is_inline(source) or is_http(source):
            # an empty source is not the current directory: reading it reports EMPTY_PARAMETER
            yield source
        elif is_s3(source):
            location = parse_s3_uri(source)
            if not _is_prefix(location):
                yield source
                continue
            for key in iter_s3_keys(location, settings, page_size=s3_page_size):
                if has_image_extension(key):
                    yield f"s3://{location.bucket}/{key}"
        elif local_path(source).is_dir():
            yield from iter_directory(local_path(source))
        else:
            yield source

"""Turn user-given sources into image sources: directories and S3 prefixes are listed lazily."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.config import Settings, get_settings
from pipeline.errors import FacepipeError
from pipeline.sources.location import LocalLocation, S3Location, Trust, parse_location
from pipeline.sources.s3 import iter_s3_keys

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
        elif has_image_extension(entry.name):
            # not only regular files: a FIFO, a dangling link or a symlink loop with an image
            # name is listed, and reading it fails for that one item with its code
            yield entry.path


def expand_sources(
    sources: Iterable[str],
    settings: Settings | None = None,
    *,
    s3_page_size: int = 1000,
    trust: Trust = Trust.OPERATOR,
) -> Iterator[str]:
    """Expand each source lazily, in order.

    * a local directory -> its image files (recursive, sorted, by extension);
    * ``s3://bucket/prefix/`` (a key ending in '/') or ``s3://bucket`` -> the keys under it with
      an image extension, listed page by page (``s3_page_size`` keys per request);
    * anything else (files, ``s3://`` keys, URLs, base64) passes through unchanged, even when
      it does not exist or is refused: reading it later reports the error for that item.

    Each source is parsed under ``trust`` (:mod:`pipeline.sources.location`): a caller's
    string is never listed as a local folder.
    """
    settings = settings or get_settings()
    for source in sources:
        try:
            location = parse_location(source, trust)
        except FacepipeError:
            yield source  # reading it reports the same refusal for this item
            continue
        if isinstance(location, S3Location) and location.is_prefix:
            for key in iter_s3_keys(location, settings, page_size=s3_page_size):
                if has_image_extension(key):
                    yield f"s3://{location.bucket}/{key}"
        elif isinstance(location, LocalLocation) and location.path.is_dir():
            yield from iter_directory(location.path)
        else:
            yield source

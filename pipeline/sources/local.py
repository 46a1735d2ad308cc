"""Local files (plain paths or ``file://`` URIs)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError


def local_path(source: str) -> Path:
    """The filesystem path a plain path or ``file://`` URI names."""
    if source[:7].lower() == "file://":
        return Path(unquote(urlsplit(source).path))
    return Path(source).expanduser()


def read_local(source: str, settings: Settings) -> bytes:
    """Read a local file, refusing missing paths, directories and files above the byte cap."""
    path = local_path(source)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"{source}: no such file", source=source
        ) from exc
    except OSError as exc:
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"{source}: cannot be read ({exc.strerror})", source=source
        ) from exc
    if path.is_dir():
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{source}: is a directory, not an image file (give its files; detect/embed and the "
            "pipeline expand directories, see expand_sources)",
            source=source,
        )
    if size > settings.max_image_bytes:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: {size} bytes is above the cap of {settings.max_image_bytes} "
            "(FACEPIPE_MAX_IMAGE_BYTES)",
            source=source,
        )
    try:
        # Read one byte past the cap: a file growing between stat and read is still capped.
        with path.open("rb") as fh:
            data = fh.read(settings.max_image_bytes + 1)
    except OSError as exc:
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"{source}: cannot be read ({exc.strerror})", source=source
        ) from exc
    if len(data) > settings.max_image_bytes:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: above the cap of {settings.max_image_bytes} bytes",
            source=source,
        )
    return data

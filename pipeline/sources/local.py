"""Local files (an operator's paths only: see :mod:`pipeline.sources.location`).

Only regular files are read: a FIFO, a device or a socket named ``x.jpg`` would block a reader
forever, so the file is opened non-blocking and checked with ``fstat`` on the open descriptor
(no window between the check and the read). Symlink loops and dangling links fail alone.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError


def read_local(path: Path, settings: Settings) -> bytes:
    """Read a local image file: refuses missing paths, folders, special files and files above
    the byte cap."""
    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _open_error(exc, shown) from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"{shown}: is a directory, not an image file (give its files; detect/embed and "
                "the pipeline expand directories)",
                source=shown,
            )
        if not stat.S_ISREG(info.st_mode):
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"{shown}: not a regular file (a FIFO, socket or device is never read)",
                source=shown,
            )
        cap = settings.max_image_bytes
        if info.st_size > cap:
            raise FacepipeError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"{shown}: {info.st_size} bytes is above the cap of {cap} "
                "(FACEPIPE_MAX_IMAGE_BYTES)",
                source=shown,
            )
        try:
            # One byte past the cap: a file growing between fstat and read is still capped.
            data = _read_up_to(fd, cap + 1)
        except OSError as exc:
            raise FacepipeError(
                ErrorCode.SOURCE_NOT_FOUND,
                f"{shown}: cannot be read ({exc.strerror})",
                source=shown,
            ) from exc
    finally:
        os.close(fd)
    if len(data) > cap:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE, f"{shown}: above the cap of {cap} bytes", source=shown
        )
    return data


def _read_up_to(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _open_error(exc: OSError, shown: str) -> FacepipeError:
    if exc.errno == errno.ENOENT:
        return FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{shown}: no such file", source=shown)
    if exc.errno == errno.ELOOP:
        return FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{shown}: a symlink loop", source=shown)
    return FacepipeError(
        ErrorCode.SOURCE_NOT_FOUND, f"{shown}: cannot be read ({exc.strerror})", source=shown
    )

"""Where a job's results may be written: ``s3://bucket/key``, or a file under the export folder.

A destination is parsed once into an :class:`ExportDestination` and checked again right before
the write (a symlink may have appeared in between). Local destinations are relative names (or
absolute paths) that must stay inside ``export_dir`` (default ``<home>/exports``) once every
symlink is resolved: ``..`` segments, backslashes, control characters and URLs of other
schemes are refused, whoever gives them. Nothing outside the export folder is ever created or
overwritten by an export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import (
    CONTROL_CHARS,
    URL_SCHEME,
    S3Location,
    Trust,
    parse_location,
)


@dataclass(frozen=True)
class ExportDestination:
    """An export target: exactly one of ``s3`` and ``path`` is set; ``text`` as stored."""

    text: str
    s3: S3Location | None = None
    path: Path | None = None


def export_root(settings: Settings) -> Path:
    """The folder local exports are written under (created on first use)."""
    return (settings.export_dir or settings.home / "exports").expanduser()


def parse_export_destination(text: str, settings: Settings, trust: Trust) -> ExportDestination:
    """Parse and check an export destination (see the module docstring)."""
    code = ErrorCode.URL_FORBIDDEN if trust is Trust.CALLER else ErrorCode.ILLEGAL_PARAMETER
    if not isinstance(text, str) or not text.strip():
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "the export destination is empty")
    text = text.strip()
    if text[:5].lower() == "s3://":
        location = parse_location(text, trust, inline=False)
        if not isinstance(location, S3Location) or location.is_prefix:
            raise FacepipeError(code, f"{text}: an s3:// export names an object key")
        return ExportDestination(location.uri, s3=location)
    if URL_SCHEME.match(text):
        raise FacepipeError(
            code,
            f"{text[:120]}: exports go to s3://bucket/key or a file under the export "
            "folder (FACEPIPE_EXPORT_DIR)",
        )
    if "\\" in text or CONTROL_CHARS.search(text):
        raise FacepipeError(
            code,
            f"{text[:120]!r}: backslashes and control characters are not allowed in an export name",
        )
    if any(part in ("..", ".") for part in PurePosixPath(text).parts) or "%2e" in text.lower():
        raise FacepipeError(code, f"{text[:120]}: '.' and '..' segments are not allowed")
    path = resolve_inside(export_root(settings), text, code)
    return ExportDestination(text, path=path)


def resolve_inside(root: Path, name: str, code: ErrorCode = ErrorCode.URL_FORBIDDEN) -> Path:
    """``root / name`` with every symlink resolved, refused unless it stays inside ``root``."""
    real_root = root.resolve()
    candidate = Path(name) if os.path.isabs(name) else real_root / name
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop on the way
        raise FacepipeError(code, f"{name}: cannot be resolved ({exc})") from exc
    if not resolved.is_relative_to(real_root) or resolved == real_root:
        raise FacepipeError(
            code, f"{name}: resolves outside the export folder {real_root} (FACEPIPE_EXPORT_DIR)"
        )
    return resolved

"""Image format detection from magic bytes (never from file names or Content-Type)."""

from __future__ import annotations

import os
from enum import StrEnum

from pipeline.errors import ErrorCode, FacepipeError


class ImageFormat(StrEnum):
    """The encoded formats facepipe accepts (the value is ``DecodedImage.format``)."""

    JPEG = "jpeg"
    PNG = "png"
    BMP = "bmp"
    WEBP = "webp"


# The file name endings of each format, for listings only (decoding reads the magic bytes).
ACCEPTED_EXTENSIONS: dict[ImageFormat, tuple[str, ...]] = {
    ImageFormat.JPEG: (".jpg", ".jpeg", ".jpe", ".jfif"),
    ImageFormat.PNG: (".png",),
    ImageFormat.BMP: (".bmp", ".dib"),
    ImageFormat.WEBP: (".webp",),
}
# Photo formats the decoder recognises only to refuse them by name (see ``_REFUSED``).
REFUSED_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "GIF": (".gif",),
    "TIFF": (".tif", ".tiff"),
    "HEIC": (".heic", ".heif"),
    "AVIF": (".avif",),
}
IMAGE_EXTENSIONS = frozenset(
    ext
    for table in (ACCEPTED_EXTENSIONS, REFUSED_EXTENSIONS)
    for exts in table.values()
    for ext in exts
)
"""What folder and S3 listings yield (every listing: ``detect DIR``, enrol and re-identify
jobs). The refused photo formats are listed too, so such a file is reported per item
("GIF is not supported") instead of being skipped unseen."""


def has_image_extension(name: str) -> bool:
    """True when the name ends in one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Formats recognised only to give a precise refusal (reference: "GIF is not supported").
_REFUSED: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def _iso_bmff_brand(data: bytes) -> str | None:
    """HEIC/AVIF files are ISO-BMFF boxes: ``....ftyp<brand>``."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
    return None


def sniff_format(data: bytes) -> ImageFormat | None:
    """The accepted format whose signature ``data`` starts with, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return ImageFormat.JPEG
    if data[:8] == _PNG_MAGIC:
        return ImageFormat.PNG
    # "BM" alone is too weak a signature (text can start with it): also require the
    # reserved header fields, which every BMP writer sets to zero.
    if data[:2] == b"BM" and len(data) >= 14 and data[6:10] == b"\x00\x00\x00\x00":
        return ImageFormat.BMP
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    return None


def require_format(data: bytes, source: str) -> ImageFormat:
    """The format of ``data``; ``ILLEGAL_FORMAT`` naming the format when it is refused."""
    fmt = sniff_format(data)
    if fmt is not None:
        return fmt
    name = _iso_bmff_brand(data)
    if name is None:
        name = next((label for magic, label in _REFUSED if data.startswith(magic)), None)
    accepted = "JPEG, PNG, BMP and WebP are accepted"
    if name is not None:
        message = f"{name} is not supported ({accepted}): {source}"
    else:
        message = f"not a recognised image format ({accepted}): {source}"
    raise FacepipeError(ErrorCode.ILLEGAL_FORMAT, message, source=source, detected=name)

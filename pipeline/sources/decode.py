"""Bytes -> :class:`DecodedImage`: validation, header checks, decoding, EXIF orientation.

Order of checks (cheapest first, nothing is decoded before the header passed):
empty -> byte cap -> magic bytes -> header (Pillow, no pixel decode) -> pixel cap -> short side
-> completeness -> pixel decode (OpenCV, Pillow as fallback) -> EXIF orientation -> BGR uint8.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.ops.cvtypes import u8
from pipeline.sources.formats import ImageFormat, require_format
from pipeline.sources.orientation import apply_orientation, orientation_from_exif
from pipeline.types import DecodedImage

logger = logging.getLogger(__name__)

_PIL_FORMAT = {
    ImageFormat.JPEG: "JPEG",
    ImageFormat.PNG: "PNG",
    ImageFormat.BMP: "BMP",
    ImageFormat.WEBP: "WEBP",
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Malformed headers surface as any of these from Pillow's plugins.
_HEADER_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, read without decoding pixels."""

    format: ImageFormat
    width: int
    """Stored width (before EXIF orientation)."""
    height: int
    mode: str
    orientation: int
    """EXIF orientation 1-8 (1 when absent or invalid)."""
    has_alpha: bool
    color_key: bool = False
    """Transparency given by a colour key / palette entry (PNG tRNS), not an alpha channel."""


def _reason(exc: Exception) -> str:
    """Pillow's message without the in-memory object it names ("<_io.BytesIO object at ...>")."""
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()


def read_header(data: bytes, fmt: ImageFormat, source: str, settings: Settings) -> ImageHeader:
    """Parse size, mode, alpha and EXIF orientation with Pillow (no pixel decoding)."""
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]]) as im:
            width, height = im.size
            mode = im.mode
            color_key = mode not in _ALPHA_MODES and "transparency" in im.info
            has_alpha = mode in _ALPHA_MODES or color_key
            orientation = orientation_from_exif(im, source)
    except Image.DecompressionBombError as exc:
        # Pillow refuses outright above 2 x Image.MAX_IMAGE_PIXELS, before our own cap.
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: image dimensions are far above the pixel cap of "
            f"{settings.max_image_pixels} (FACEPIPE_MAX_IMAGE_PIXELS; {exc})",
            source=source,
        ) from exc
    except _HEADER_ERRORS as exc:
        raise FacepipeError(
            ErrorCode.DECODE_FAILED,
            f"{source}: the {fmt.value.upper()} header is damaged ({_reason(exc)})",
            source=source,
        ) from exc
    return ImageHeader(fmt, width, height, mode, orientation, has_alpha, color_key)


def check_dimensions(header: ImageHeader, source: str, settings: Settings) -> None:
    """Pixel cap (decompression bombs) and minimum short side, from the header alone."""
    pixels = header.width * header.height
    if pixels > settings.max_image_pixels:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: {header.width}x{header.height} = {pixels} pixels is above the cap of "
            f"{settings.max_image_pixels} (FACEPIPE_MAX_IMAGE_PIXELS)",
            source=source,
            width=header.width,
            height=header.height,
        )
    if header.format is not ImageFormat.JPEG and pixels > settings.max_full_decode_pixels:
        # PNG, BMP and WebP cannot be decoded at a reduced scale: their decode memory is
        # bounded by a lower cap (a 100 MP PNG would need about 600 MB).
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: {header.width}x{header.height} = {pixels} pixels is above the cap of "
            f"{settings.max_full_decode_pixels} for {header.format.value.upper()} "
            "(FACEPIPE_MAX_FULL_DECODE_PIXELS; formats decoded only at full size)",
            source=source,
            width=header.width,
            height=header.height,
        )
    if min(header.width, header.height) < settings.min_image_side:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_SMALL,
            f"{source}: {header.width}x{header.height} has a side below "
            f"{settings.min_image_side} px (FACEPIPE_MIN_IMAGE_SIDE)",
            source=source,
            width=header.width,
            height=header.height,
        )


def _to_uint8(pixels: NDArray[np.generic]) -> NDArray[np.uint8]:
    """16-bit (or wider) samples scaled to 8 bits; 8-bit passes through."""
    if pixels.dtype == np.uint8:
        return u8(pixels)
    if pixels.dtype == np.uint16:
        return np.right_shift(pixels.astype(np.uint16, copy=False), 8).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        floats = cast(NDArray[np.floating[Any]], pixels)
        scaled: NDArray[np.uint8] = np.clip(floats * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return scaled
    clipped: NDArray[np.uint8] = np.clip(pixels, 0, 255).astype(np.uint8)
    return clipped


def _composite_on_white(bgra: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Flatten BGRA onto a white background: transparent areas become white, not black.

    Fully opaque images just drop the channel; otherwise integer math, rounded:
    out = (c * a + 255 * (255 - a)) / 255.
    """
    alpha = bgra[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(bgra[:, :, :3])
    a = alpha.astype(np.uint16)[:, :, np.newaxis]
    out = bgra[:, :, :3].astype(np.uint16) * a + 255 * (255 - a) + 127
    return (out // 255).astype(np.uint8)


def to_bgr(pixels: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Any decoded array (gray, gray+alpha, BGR, BGRA; 8 or 16 bit) -> BGR uint8, 3 channels."""
    arr = _to_uint8(pixels)
    if arr.ndim == 2:
        return u8(cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR))
    channels = arr.shape[2]
    if channels == 1:
        return u8(cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR))
    if channels == 2:
        gray = u8(cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR))
        return _composite_on_white(np.dstack([gray, arr[:, :, 1]]))
    if channels == 4:
        return _composite_on_white(arr)
    return np.ascontiguousarray(arr)


def _decode_opencv(data: bytes, header: ImageHeader) -> NDArray[np.uint8] | None:
    """OpenCV decode (faster than Pillow on large JPEGs); None when OpenCV cannot decode it.

    Orientation is always ignored here and applied by :func:`apply_orientation` from the tag
    Pillow read, so every format and OpenCV version behaves the same.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if header.has_alpha:
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    else:
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if decoded is None:
        return None
    return to_bgr(decoded)


def _decode_pillow(data: bytes, header: ImageHeader, source: str) -> NDArray[np.uint8]:
    """Pillow decode: the fallback, and the strict judge of truncated files."""
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[header.format]]) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im)
                if im.mode in ("I", "F"):
                    arr = np.clip(arr, 0, 65535).astype(np.uint16)
                return to_bgr(arr)
            rgb = im.convert("RGBA" if header.has_alpha else "RGB")
            arr = np.asarray(rgb)
    except _HEADER_ERRORS as exc:
        raise FacepipeError(
            ErrorCode.DECODE_FAILED,
            f"{source}: the {header.format.value.upper()} data is truncated or corrupt ({exc})",
            source=source,
        ) from exc
    # RGB(A) -> BGR(A) channel order for OpenCV-style consumers.
    return to_bgr(arr[:, :, [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[:, :, ::-1])


def check_complete(data: bytes, fmt: ImageFormat, source: str) -> None:
    """Refuse PNG and WebP files cut short (both decoders tolerate some truncations).

    PNG must hold its IEND chunk; WebP must be as long as its RIFF header says. JPEG needs no
    check here: OpenCV refuses truncated JPEGs and Pillow, the fallback, does too.
    """
    if fmt is ImageFormat.PNG:
        complete = b"IEND" in data
    elif fmt is ImageFormat.WEBP:
        complete = len(data) >= int.from_bytes(data[4:8], "little") + 8
    else:
        return
    if not complete:
        raise FacepipeError(
            ErrorCode.DECODE_FAILED,
            f"{source}: the {fmt.value.upper()} file is truncated",
            source=source,
        )


def content_sha256(data: bytes) -> str:
    """Hex sha256 of the original encoded bytes (the image's identity in the store)."""
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes, source: str = "<bytes>", settings: Settings | None = None
) -> DecodedImage:
    """Validate and decode encoded image bytes into a :class:`DecodedImage`.

    Accepts JPEG, PNG, BMP and WebP (by magic bytes). Applies the EXIF orientation, converts
    grayscale / palette / 16-bit / alpha images to 3-channel BGR uint8 (alpha is composited on
    white). Raises :class:`FacepipeError` with EMPTY_IMAGE, IMAGE_TOO_LARGE, ILLEGAL_FORMAT,
    DECODE_FAILED or IMAGE_TOO_SMALL.
    """
    settings = settings or get_settings()
    if not data:
        raise FacepipeError(ErrorCode.EMPTY_IMAGE, f"{source}: the image is empty (0 bytes)")
    if len(data) > settings.max_image_bytes:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{source}: {len(data)} bytes is above the cap of {settings.max_image_bytes} "
            "(FACEPIPE_MAX_IMAGE_BYTES)",
            source=source,
        )
    fmt = require_format(data, source)
    header = read_header(data, fmt, source, settings)
    check_dimensions(header, source, settings)
    check_complete(data, fmt, source)
    # OpenCV ignores a grayscale/RGB colour key; Pillow applies every tRNS form.
    pixels = None if header.color_key else _decode_opencv(data, header)
    if pixels is None:
        logger.debug("OpenCV could not decode %s; trying Pillow", source)
        pixels = _decode_pillow(data, header, source)
    pixels = apply_orientation(pixels, header.orientation)
    return DecodedImage(
        source=source,
        pixels=pixels,
        content_sha256=content_sha256(data),
        format=fmt.value,
    )


# --- reduced-scale JPEG decoding (the bulk path's big photos) --------------------------------

REDUCED_FACTORS = (8, 4, 2)
"""libjpeg's DCT scalings OpenCV exposes (IMREAD_REDUCED_COLOR_8/4/2), largest first."""
_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduced_factor(width: int, height: int, min_long_side: int) -> int:
    """The largest DCT scale-down (8, 4, 2; else 1) that keeps the long side at or above
    ``min_long_side`` (libjpeg rounds a scaled side up), so the detector canvas is still filled
    at the same scale as from a full decode."""
    long_side = max(width, height)
    for factor in REDUCED_FACTORS:
        if -(-long_side // factor) >= min_long_side:
            return factor
    return 1


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(height, width) after EXIF orientation: tags 5-8 turn the image a quarter."""
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _full_pixels(data: bytes, header: ImageHeader, source: str) -> NDArray[np.uint8]:
    """The whole image at full resolution, oriented (for faces too small at the reduced scale)."""
    pixels = _decode_opencv(data, header)
    if pixels is None:
        pixels = _decode_pillow(data, header, source)
    return apply_orientation(pixels, header.orientation)


def decode_image_reduced(
    data: bytes, source: str, settings: Settings, min_long_side: int
) -> DecodedImage:
    """Like :func:`decode_image`, but a big JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg
    DCT scaling, a fraction of the full decode's cost) while its long side stays at or above
    ``min_long_side``. The result's ``full_size`` says the full (oriented) size and
    ``full_pixels()`` decodes the full image when a face needs it. Other formats, small JPEGs
    and anything OpenCV cannot decode reduced go through :func:`decode_image` unchanged.
    """
    if not data or len(data) > settings.max_image_bytes:
        return decode_image(data, source, settings)
    fmt = require_format(data, source)
    if fmt is not ImageFormat.JPEG:
        return decode_image(data, source, settings)
    header = read_header(data, fmt, source, settings)
    factor = reduced_factor(header.width, header.height, min_long_side)
    if factor == 1:
        return decode_image(data, source, settings)
    check_dimensions(header, source, settings)
    buf = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buf, _REDUCED_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if decoded is None:
        return decode_image(data, source, settings)
    pixels = apply_orientation(to_bgr(decoded), header.orientation)
    return DecodedImage(
        source=source,
        pixels=pixels,
        content_sha256=content_sha256(data),
        format=fmt.value,
        full_size=oriented_size(header.width, header.height, header.orientation),
        full_pixels=functools.partial(_full_pixels, data, header, source),
    )

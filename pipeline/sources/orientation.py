"""EXIF orientation: read the tag safely, apply it to a pixel array (Pillow's semantics)."""

from __future__ import annotations

import logging
import struct

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pipeline.ops.cvtypes import u8

logger = logging.getLogger(__name__)

EXIF_ORIENTATION_TAG = 0x0112


def orientation_from_exif(im: Image.Image, source: str) -> int:
    """The EXIF orientation 1-8 of an opened image; 1 when absent, malformed or out of range.

    A damaged EXIF block must not refuse an otherwise good photo, so parse errors only log.
    """
    try:
        value = im.getexif().get(EXIF_ORIENTATION_TAG)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error) as exc:
        logger.debug("%s: unreadable EXIF block ignored (%s)", source, exc)
        return 1
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    if value is not None:
        logger.debug("%s: invalid EXIF orientation %r ignored", source, value)
    return 1


def apply_orientation(pixels: NDArray[np.uint8], orientation: int) -> NDArray[np.uint8]:
    """Return the upright image for an EXIF orientation (same result as ImageOps.exif_transpose).

    Never modifies ``pixels``; returns a C-contiguous array.
    """
    if orientation == 2:
        out = pixels[:, ::-1]
    elif orientation == 3:
        out = u8(cv2.rotate(pixels, cv2.ROTATE_180))
    elif orientation == 4:
        out = pixels[::-1, :]
    elif orientation == 5:
        out = np.swapaxes(pixels, 0, 1)
    elif orientation == 6:
        out = u8(cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE))
    elif orientation == 7:
        out = np.swapaxes(pixels, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        out = u8(cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE))
    else:
        return pixels
    return np.ascontiguousarray(out)

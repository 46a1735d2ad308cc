"""Encoding of the aligned 112x112 face crops stored with enrolled faces."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.ops.cvtypes import u8


def encode_crop(crop: NDArray[np.uint8], fmt: str = "png") -> bytes:
    """Encode an aligned 112x112 BGR crop for storage (PNG lossless, or JPEG quality 95)."""
    if fmt == "png":
        ok, buf = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"unknown crop format {fmt!r}")
    if not ok:
        raise FacepipeError(ErrorCode.INTERNAL, "the face crop could not be encoded")
    return bytes(buf)


def decode_crop(data: bytes) -> NDArray[np.uint8]:
    """Decode a stored crop back to a BGR uint8 array."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise FacepipeError(ErrorCode.DECODE_FAILED, "the stored face crop could not be decoded")
    return u8(arr)

"""Image transforms tried by the detector (rotation, padding) and the maps back (pure)."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ops.cvtypes import u8
from pipeline.ops.scrfd import Detections

_CV2_ROTATION = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


def rotate_image(pixels: NDArray[np.uint8], degrees: int) -> NDArray[np.uint8]:
    """``pixels`` rotated clockwise by 0, 90, 180 or 270 degrees (a new array unless 0)."""
    if degrees == 0:
        return pixels
    return u8(cv2.rotate(pixels, _CV2_ROTATION[degrees]))


def unrotate_points(
    points: NDArray[np.float32], degrees: int, height: int, width: int
) -> NDArray[np.float32]:
    """Map x,y points (..., 2) found in the rotated image back to the original ``height x width``.

    Continuous pixel coordinates (the image spans [0, width] x [0, height]).
    """
    x, y = points[..., 0], points[..., 1]
    if degrees == 0:
        return points.copy()
    if degrees == 90:
        orig = (y, height - x)
    elif degrees == 180:
        orig = (width - x, height - y)
    elif degrees == 270:
        orig = (width - y, x)
    else:
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {degrees}")
    return np.stack(orig, axis=-1).astype(np.float32)


def pad_image(pixels: NDArray[np.uint8], pad: int, value: int) -> NDArray[np.uint8]:
    """``pixels`` inside a constant border of ``pad`` pixels on every side."""
    return u8(
        cv2.copyMakeBorder(
            pixels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(value, value, value)
        )
    )


def map_detections(
    dets: Detections,
    scale: float,
    offset: float = 0.0,
    degrees: int = 0,
    height: int = 0,
    width: int = 0,
) -> Detections:
    """Detections from detector-input pixels back to the original image.

    Undo in reverse order: the letterbox ``scale``, then the ``offset`` of a padding border,
    then a clockwise rotation of ``degrees`` of an original ``height x width`` image.
    """
    if len(dets) == 0:
        return dets
    corners = dets.boxes.reshape(-1, 2, 2) / scale - offset
    kps = dets.keypoints / scale - offset
    if degrees:
        corners = unrotate_points(corners, degrees, height, width)
        kps = unrotate_points(kps, degrees, height, width)
    lo = corners.min(axis=1)
    hi = corners.max(axis=1)
    boxes = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return Detections(boxes, dets.scores.copy(), kps.astype(np.float32))

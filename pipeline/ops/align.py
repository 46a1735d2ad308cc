"""Face alignment to the ArcFace 112x112 five-point template (pure)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ops.cvtypes import u8

ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # left eye (image left)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float32,
)
"""InsightFace's reference keypoints for a 112x112 ArcFace input."""


def similarity_transform(
    src: NDArray[np.floating], dst: NDArray[np.floating]
) -> NDArray[np.float64]:
    """The 2x3 least-squares similarity (rotation, uniform scale, shift) taking src to dst.

    Umeyama's closed form: exact for points related by a similarity, least squares otherwise,
    no random sampling (unlike cv2.estimateAffinePartial2D's RANSAC), so results are repeatable.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / src.shape[0]
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / src.shape[0]
    scale = float((s * d).sum() / src_var) if src_var > 0 else 1.0
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(
    pixels: NDArray[np.uint8], keypoints: NDArray[np.floating], size: int = ARCFACE_SIZE
) -> NDArray[np.uint8]:
    """The ``size x size`` crop whose five keypoints sit on the ArcFace template."""
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix = similarity_transform(keypoints, template)
    return u8(cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0))


def crop_scale(matrix: NDArray[np.floating]) -> float:
    """Crop pixels per image pixel of a 2x3 similarity (> 1: the crop upsamples the image)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2]))))


def box_crop_transform(
    box: tuple[float, float, float, float] | NDArray[np.floating],
    size: int,
    margin: float = 1.5,
    degrees: float = 0.0,
) -> NDArray[np.float64]:
    """2x3 matrix mapping a square of ``margin`` x the box's long side, centred on the box,
    to a ``size x size`` crop (InsightFace's convention for its landmark and attribute models),
    turned counter-clockwise by ``degrees`` (to undo a face's clockwise roll).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    long_side = max(x2 - x1, y2 - y1, 1e-3)
    scale = size / (long_side * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    a = math.radians(-degrees)
    linear = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shift = np.array([size / 2.0, size / 2.0]) - linear @ np.array([cx, cy])
    return np.hstack([linear, shift[:, None]])


def apply_affine(points: NDArray[np.floating], matrix: NDArray[np.floating]) -> NDArray[np.float32]:
    """Points (n, 2) through a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)
    mapped: NDArray[np.float64] = pts @ matrix[:, :2].T + matrix[:, 2]
    return mapped.astype(np.float32)

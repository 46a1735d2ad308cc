"""Faces found on a reduced-scale decode: back to full-image coordinates, and which of them
need the full-resolution pixels for their aligned crop (pure)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.ops.align import ARCFACE_SIZE, ARCFACE_TEMPLATE, similarity_transform
from pipeline.ops.scrfd import Detections


def full_scale(reduced_shape: tuple[int, ...], full_size: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy): full-image pixels per reduced pixel along x and y (libjpeg rounds each scaled
    side up, so the two may differ slightly from the nominal factor)."""
    full_h, full_w = full_size
    return full_w / reduced_shape[1], full_h / reduced_shape[0]


def scale_detections(dets: Detections, sx: float, sy: float) -> Detections:
    """``dets`` with boxes and keypoints multiplied out to full-image coordinates."""
    factors = np.array([sx, sy], dtype=np.float32)
    return Detections(
        (dets.boxes.reshape(-1, 2, 2) * factors).reshape(-1, 4).astype(np.float32),
        dets.scores,
        (dets.keypoints * factors).astype(np.float32),
    )


def crop_upscale(keypoints: NDArray[np.floating], size: int = ARCFACE_SIZE) -> float:
    """How much the aligned crop enlarges the image around these keypoints (> 1: the crop
    would be an upsampling of fewer pixels than it shows)."""
    matrix = similarity_transform(keypoints, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def needs_full_resolution(reduced_keypoints: NDArray[np.floating], limit: float = 1.0) -> bool:
    """Whether a face's aligned crop should come from the full-resolution image: at the reduced
    scale the crop would upsample it by more than ``limit`` (the face holds fewer pixels there
    than the 112x112 crop asks for), so detail the full image has would be lost."""
    return crop_upscale(reduced_keypoints) > limit

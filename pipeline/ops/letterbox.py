"""Letterboxing: resize keeping the aspect ratio into a canvas whose sides are multiples of 32."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ops.cvtypes import u8

CANVAS_MULTIPLE = 32
"""SCRFD's largest stride: canvas sides must be multiples of it for the anchor grid to fit."""


@dataclass(frozen=True)
class LetterboxPlan:
    """How an image of ``height x width`` goes into the detector canvas (top-left aligned)."""

    scale: float
    resized_height: int
    resized_width: int
    canvas_height: int
    canvas_width: int


def plan_letterbox(height: int, width: int, size: int) -> LetterboxPlan:
    """Scale the long side to ``size``; the canvas is the resized image rounded up to 32.

    A landscape 4:3 photo at size 640 gives a 640x480 canvas instead of 640x640: the detector
    does a quarter less work, and padding beyond the image only adds anchors over blank pixels.
    """
    if height <= 0 or width <= 0 or size <= 0:
        raise ValueError(f"letterbox needs positive sizes, got {height}x{width} -> {size}")
    scale = size / max(height, width)
    resized_h = max(1, min(size, round(height * scale)))
    resized_w = max(1, min(size, round(width * scale)))
    return LetterboxPlan(
        scale=scale,
        resized_height=resized_h,
        resized_width=resized_w,
        canvas_height=math.ceil(resized_h / CANVAS_MULTIPLE) * CANVAS_MULTIPLE,
        canvas_width=math.ceil(resized_w / CANVAS_MULTIPLE) * CANVAS_MULTIPLE,
    )


def plan_fixed_letterbox(height: int, width: int, canvas: tuple[int, int]) -> LetterboxPlan:
    """Fit the image into a fixed ``(canvas_height, canvas_width)`` (graphs with a static input
    shape), keeping the aspect ratio."""
    canvas_h, canvas_w = canvas
    if height <= 0 or width <= 0 or canvas_h <= 0 or canvas_w <= 0:
        raise ValueError(f"letterbox needs positive sizes, got {height}x{width} -> {canvas}")
    scale = min(canvas_h / height, canvas_w / width)
    return LetterboxPlan(
        scale=scale,
        resized_height=max(1, min(canvas_h, round(height * scale))),
        resized_width=max(1, min(canvas_w, round(width * scale))),
        canvas_height=canvas_h,
        canvas_width=canvas_w,
    )


def letterbox(pixels: NDArray[np.uint8], plan: LetterboxPlan) -> NDArray[np.uint8]:
    """A new canvas with ``pixels`` resized per ``plan`` at its top-left, zeros elsewhere."""
    canvas = np.zeros((plan.canvas_height, plan.canvas_width, 3), dtype=np.uint8)
    if (plan.resized_height, plan.resized_width) == pixels.shape[:2]:
        resized = pixels
    else:
        # Bilinear, as in SCRFD's training and InsightFace's reference pipeline: INTER_AREA
        # is smoother and shifts the scores of small faces near the threshold.
        resized = u8(
            cv2.resize(
                pixels, (plan.resized_width, plan.resized_height), interpolation=cv2.INTER_LINEAR
            )
        )
    canvas[: plan.resized_height, : plan.resized_width] = resized
    return canvas

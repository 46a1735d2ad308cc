"""InsightFace's 2d106det: 106 landmarks from a 192x192 crop around the face box."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.models.base import OnnxModel
from pipeline.models.manifest import ModelKind
from pipeline.ops.align import apply_affine, box_crop_transform, crop_scale
from pipeline.ops.cvtypes import u8

LANDMARK_MARGIN = 1.5
"""The crop is a square of 1.5 x the box's long side centred on the box (the model's training
convention)."""


class Landmark106(OnnxModel):
    """106-point 2D landmarks; outputs are in [-1, 1] of the crop, mapped back to the image."""

    kind = ModelKind.LANDMARK106

    @property
    def crop_size(self) -> int:
        return self.manifest.input_size[0] if self.manifest.input_size else 192

    def upscale(self, box: NDArray[np.floating]) -> float:
        """How much the model's crop enlarges the image around ``box`` (> 1: an upsampling)."""
        return crop_scale(box_crop_transform(box, self.crop_size, LANDMARK_MARGIN))

    def landmarks(
        self,
        pixels: NDArray[np.uint8],
        boxes: Sequence[NDArray[np.float32]],
        turns: Sequence[float] | None = None,
    ) -> list[NDArray[np.float32]]:
        """(106, 2) image-pixel landmarks for each box of one image, one batched run.

        ``turns`` (degrees clockwise per face, multiples of 90: faces found by the rotation
        search) are undone in the crop, so the model always sees an upright face.
        """
        if len(boxes) == 0:
            return []
        size = self.crop_size
        turns = turns if turns is not None else [0.0] * len(boxes)
        matrices = [
            box_crop_transform(box, size, LANDMARK_MARGIN, turn)
            for box, turn in zip(boxes, turns, strict=True)
        ]
        crops = [u8(cv2.warpAffine(pixels, m, (size, size), borderValue=0)) for m in matrices]
        raw = self.run(self.blob(crops))[0].reshape(len(crops), -1, 2)
        out = []
        for pred, matrix in zip(raw, matrices, strict=True):
            crop_pts = (pred + 1.0) * (size // 2)
            inverse: NDArray[np.float64] = np.asarray(
                cv2.invertAffineTransform(matrix), dtype=np.float64
            )
            out.append(apply_affine(crop_pts, inverse))
        return out

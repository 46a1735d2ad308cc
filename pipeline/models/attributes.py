"""InsightFace's genderage: gender and age from a 96x96 crop around the face box."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.models.base import OnnxModel
from pipeline.models.manifest import ModelKind
from pipeline.ops.align import box_crop_transform
from pipeline.types import Attributes

ATTRIBUTE_MARGIN = 1.5


class GenderAge(OnnxModel):
    """Outputs (female score, male score, age / 100) per face."""

    kind = ModelKind.ATTRIBUTES

    def attributes(
        self,
        pixels: NDArray[np.uint8],
        boxes: Sequence[NDArray[np.float32]],
        turns: Sequence[float] | None = None,
    ) -> list[Attributes]:
        """Gender and age for each box of one image, one batched run (``turns``: see
        :meth:`pipeline.models.landmarks.Landmark106.landmarks`)."""
        if len(boxes) == 0:
            return []
        size = self.manifest.input_size[0] if self.manifest.input_size else 96
        turns = turns if turns is not None else [0.0] * len(boxes)
        crops = [
            cv2.warpAffine(pixels, box_crop_transform(b, size, ATTRIBUTE_MARGIN, t), (size, size))
            for b, t in zip(boxes, turns, strict=True)
        ]
        raw = self.run(self.blob(crops))[0]
        return [
            Attributes(
                gender="male" if int(np.argmax(p[:2])) == 1 else "female",
                age=round(float(p[2]) * 100),
            )
            for p in raw
        ]

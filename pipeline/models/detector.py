"""SCRFD face detector: batched session runs plus the detection strategy around them.

Strategy per image, stopping at the first attempt that finds a face:

1. upright, letterboxed to ``det_size`` (long side), canvas rounded up to a multiple of 32;
2. padded: the image inside a constant border of :data:`PAD_FRACTION` of its long side on
   every side. Tight crops (150x150 face chips, passport photos) fill the frame; SCRFD's
   anchors need some context around a face, and the border gives it back. Only faces spanning
   at least :data:`PAD_MIN_FACE_SHARE` of the image's short side are kept from this pass: it
   exists for faces that fill the frame, and shrinking a whole scene by 2x otherwise lets the
   detector see small face-like textures (a dog's head in dlib's ``dog.jpg`` at 0.54);
3. only with rotation search on, and only when the best upright face scores under
   :data:`ROTATION_CONFIDENT_SCORE` (SCRFD-500M still finds a face turned 90 or 180 degrees,
   weakly, at 0.53-0.66, where the right orientation gives 0.83): the image turned 90, 180 and
   270 degrees clockwise (each plain, then padded); the orientation whose best face scores
   highest wins.

Every attempt is batched over the images still without a face; images whose canvases have the
same shape share a session run (up to ``det_batch_size``) when the graph has a batch axis.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.models.base import OnnxModel
from pipeline.models.manifest import ModelKind, detector_is_batched
from pipeline.ops.cvtypes import u8
from pipeline.ops.geometry import map_detections, pad_image, rotate_image
from pipeline.ops.letterbox import (
    LetterboxPlan,
    letterbox,
    plan_fixed_letterbox,
    plan_letterbox,
)
from pipeline.ops.scrfd import Detections, decode_scrfd, nms
from pipeline.types import DetectMode

log = logging.getLogger(__name__)

PAD_FRACTION = 0.5
"""Border added on each side for the tight-crop retry, as a share of the image's long side."""
PAD_VALUE = 0
"""Border colour (black) of the tight-crop retry."""
PAD_MIN_FACE_SHARE = 0.4
"""Smallest face (box short side / image short side) the tight-crop retry may return; the 94
dev photos found only by this pass have faces spanning 0.74-1.0 of the image."""
ROTATION_CONFIDENT_SCORE = 0.75
"""With rotation search on, an upright best face scoring below this still tries the turns;
the correct orientation of the rotated faces of the hard set scores about 0.83."""


@dataclass(frozen=True)
class DetectOptions:
    """What to keep: thresholds, sizes, mode and the retries allowed."""

    det_size: int = 640
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    min_face_size: float = 12.0
    max_faces: int = 64
    mode: DetectMode = DetectMode.ALL
    rotate: bool = False
    pad_retry: bool = True
    batch_size: int = 8


@dataclass(frozen=True)
class Attempt:
    """One way of presenting an image to the detector."""

    degrees: int
    padded: bool


def attempts_for(degrees: int, options: DetectOptions) -> list[Attempt]:
    """The attempts for one orientation, in the order they are tried."""
    out = [Attempt(degrees, False)]
    if options.pad_retry:
        out.append(Attempt(degrees, True))
    return out


ROTATIONS = (90, 180, 270)


class ScrfdDetector(OnnxModel):
    """SCRFD with 5 keypoints (any of scrfd_500m/2.5g/10g, det_500m/det_10g)."""

    kind = ModelKind.DETECTOR

    @property
    def batched(self) -> bool:
        """Whether N images can go in one session run (the graph's outputs have a batch axis)."""
        return detector_is_batched(self.outputs)

    @property
    def fixed_input(self) -> tuple[int, int] | None:
        """(height, width) when the graph's input shape is static, else None."""
        h, w = self.inputs[0].shape[2:4]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return h, w
        return None

    def _plan(self, height: int, width: int, det_size: int) -> LetterboxPlan:
        fixed = self.fixed_input
        if fixed is not None:
            return plan_fixed_letterbox(height, width, fixed)
        return plan_letterbox(height, width, det_size)

    def detect(
        self, images: Sequence[NDArray[np.uint8]], options: DetectOptions
    ) -> list[Detections]:
        """Faces in each image (original pixels), largest first, per ``options``."""
        results = self._detect_orientation(images, range(len(images)), 0, options)
        if not options.rotate:
            return results
        doubtful = [i for i, d in enumerate(results) if _best(d) < ROTATION_CONFIDENT_SCORE]
        for degrees in ROTATIONS:
            if not doubtful:
                break
            turned = self._detect_orientation(images, doubtful, degrees, options)
            for i in doubtful:
                if _best(turned[i]) > _best(results[i]):
                    results[i] = turned[i]
        return results

    def _detect_orientation(
        self,
        images: Sequence[NDArray[np.uint8]],
        indices: Iterable[int],
        degrees: int,
        options: DetectOptions,
    ) -> list[Detections]:
        """Faces of ``images[indices]`` turned by ``degrees``; empty for the other images."""
        results: list[Detections] = [Detections.empty() for _ in images]
        pending = list(indices)
        for attempt in attempts_for(degrees, options):
            if not pending:
                break
            found = self._detect_attempt([images[i] for i in pending], attempt, options)
            still = []
            for i, dets in zip(pending, found, strict=True):
                if len(dets):
                    results[i] = dets
                else:
                    still.append(i)
            pending = still
        return results

    def _detect_attempt(
        self, images: Sequence[NDArray[np.uint8]], attempt: Attempt, options: DetectOptions
    ) -> list[Detections]:
        prepared = [present(pixels, attempt, options.det_size) for pixels in images]
        plans = [
            self._plan(p.pixels.shape[0], p.pixels.shape[1], options.det_size) for p in prepared
        ]
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, plan in enumerate(plans):
            by_shape[(plan.canvas_height, plan.canvas_width)].append(i)
        step = max(1, options.batch_size) if self.batched else 1
        out: list[Detections] = [Detections.empty() for _ in images]
        for (canvas_h, canvas_w), members in by_shape.items():
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                canvases = [letterbox(prepared[i].pixels, plans[i]) for i in chunk]
                heads = self.run(self.blob(canvases))
                for row, i in enumerate(chunk):
                    per_image = [h[row] if self.batched else h for h in heads]
                    raw = self._decode(per_image, canvas_h, canvas_w, options)
                    height, width = images[i].shape[:2]
                    shrink = prepared[i].shrink
                    mapped = map_detections(
                        raw,
                        plans[i].scale * shrink,
                        prepared[i].pad / shrink,
                        attempt.degrees,
                        height,
                        width,
                    )
                    if attempt.padded:
                        mapped = keep_frame_filling(mapped, height, width)
                    out[i] = select_faces(mapped, options)
        return out

    def _decode(
        self, heads: list[NDArray[np.float32]], height: int, width: int, options: DetectOptions
    ) -> Detections:
        n = len(self.manifest.strides)
        dets = decode_scrfd(
            heads[:n],
            heads[n : 2 * n],
            heads[2 * n :],
            height,
            width,
            self.manifest.strides,
            self.manifest.anchors_per_cell,
            options.score_threshold,
        )
        return nms(dets, options.nms_threshold)


@dataclass(frozen=True)
class Presented:
    """An image as shown to the detector: shrunk by ``shrink``, turned, then padded by ``pad``
    pixels (of the shrunk image) on every side."""

    pixels: NDArray[np.uint8]
    shrink: float
    pad: int


def present(pixels: NDArray[np.uint8], attempt: Attempt, det_size: int) -> Presented:
    """The image for ``attempt``. The upright plain attempt is the image itself (the letterbox
    resizes it); turned or padded attempts first shrink large images to about the detector
    size, so a 49-megapixel photo is never rotated or padded at full size."""
    if attempt == Attempt(0, False):
        return Presented(pixels, 1.0, 0)
    long_side = max(pixels.shape[:2])
    target = det_size / (1.0 + 2.0 * PAD_FRACTION) if attempt.padded else det_size
    shrink = min(1.0, target / long_side)
    shown = pixels
    if shrink < 1.0:
        size = (max(1, round(pixels.shape[1] * shrink)), max(1, round(pixels.shape[0] * shrink)))
        shown = u8(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
        shrink = size[0] / pixels.shape[1]
    shown = rotate_image(shown, attempt.degrees)
    pad = round(PAD_FRACTION * max(shown.shape[:2])) if attempt.padded else 0
    if pad:
        shown = pad_image(shown, pad, PAD_VALUE)
    return Presented(shown, shrink, pad)


def _best(dets: Detections) -> float:
    return float(dets.scores.max()) if len(dets) else 0.0


def keep_frame_filling(dets: Detections, height: int, width: int) -> Detections:
    """Only faces whose box short side spans PAD_MIN_FACE_SHARE of the image's short side."""
    if len(dets) == 0:
        return dets
    short = (dets.boxes[:, 2:] - dets.boxes[:, :2]).min(axis=1)
    return dets.take(np.flatnonzero(short >= PAD_MIN_FACE_SHARE * min(height, width)))


def select_faces(dets: Detections, options: DetectOptions) -> Detections:
    """Drop faces under ``min_face_size``, sort by area descending, apply mode and max_faces."""
    if len(dets) == 0:
        return dets
    wh = dets.boxes[:, 2:] - dets.boxes[:, :2]
    keep = np.flatnonzero(wh.min(axis=1) >= options.min_face_size)
    area = wh[keep, 0] * wh[keep, 1]
    order = keep[np.argsort(-area, kind="stable")]
    limit = 1 if options.mode is DetectMode.LARGEST else max(0, options.max_faces)
    return dets.take(order[:limit])

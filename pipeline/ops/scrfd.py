"""SCRFD output decoding and non-maximum suppression (pure NumPy/OpenCV).

SCRFD predicts, for every anchor centre of every stride, a score, the distances from the centre
to the four box sides and the offsets of five keypoints, all in units of the stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Detections:
    """Candidate faces: boxes (n, 4) x1y1x2y2, scores (n,), keypoints (n, 5, 2)."""

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    keypoints: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: NDArray[np.intp] | Sequence[int]) -> Detections:
        """The detections at ``index``, in that order."""
        idx = np.asarray(index, dtype=np.intp)
        return Detections(self.boxes[idx], self.scores[idx], self.keypoints[idx])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )


@lru_cache(maxsize=64)
def anchor_centers(height: int, width: int, stride: int, per_cell: int) -> NDArray[np.float32]:
    """(cells*per_cell, 2) x,y anchor centres of a ``height x width`` input at ``stride``.

    Cached and read-only: one grid per canvas shape serves every image of that shape.
    """
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
    if per_cell > 1:
        centers = np.repeat(centers, per_cell, axis=0)
    centers.setflags(write=False)
    return centers


def distance2bbox(
    points: NDArray[np.float32], distance: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Boxes from centres and (left, top, right, bottom) distances."""
    return np.concatenate([points - distance[:, :2], points + distance[:, 2:4]], axis=1)


def distance2kps(points: NDArray[np.float32], distance: NDArray[np.float32]) -> NDArray[np.float32]:
    """Keypoints (n, k, 2) from centres and (dx, dy) offsets per keypoint."""
    offsets = distance.reshape(distance.shape[0], -1, 2)
    return points[:, None, :] + offsets


def decode_scrfd(
    scores: Sequence[NDArray[np.float32]],
    boxes: Sequence[NDArray[np.float32]],
    keypoints: Sequence[NDArray[np.float32]],
    input_height: int,
    input_width: int,
    strides: Sequence[int],
    per_cell: int,
    threshold: float,
) -> Detections:
    """Decode one image's SCRFD heads (one array per stride) into candidates above threshold.

    Coordinates are in the detector input's pixels.
    """
    out_boxes, out_scores, out_kps = [], [], []
    for stride, score, box, kps in zip(strides, scores, boxes, keypoints, strict=True):
        score = score.reshape(-1)
        keep = np.flatnonzero(score >= threshold)
        if keep.size == 0:
            continue
        centers = anchor_centers(input_height, input_width, stride, per_cell)[keep]
        out_scores.append(score[keep])
        out_boxes.append(distance2bbox(centers, box.reshape(-1, 4)[keep] * stride))
        out_kps.append(distance2kps(centers, kps.reshape(-1, 10)[keep] * stride))
    if not out_scores:
        return Detections.empty()
    return Detections(
        np.concatenate(out_boxes).astype(np.float32, copy=False),
        np.concatenate(out_scores).astype(np.float32, copy=False),
        np.concatenate(out_kps).astype(np.float32, copy=False),
    )


def nms(dets: Detections, iou_threshold: float, score_threshold: float = 0.0) -> Detections:
    """Non-maximum suppression (cv2.dnn.NMSBoxes), best score first."""
    if len(dets) == 0:
        return dets
    xywh = np.column_stack(
        [
            dets.boxes[:, 0],
            dets.boxes[:, 1],
            dets.boxes[:, 2] - dets.boxes[:, 0],
            dets.boxes[:, 3] - dets.boxes[:, 1],
        ]
    ).astype(np.float64)
    kept = cv2.dnn.NMSBoxes(
        xywh.tolist(), dets.scores.astype(np.float64).tolist(), score_threshold, iou_threshold
    )
    keep = np.asarray(kept, dtype=np.intp).reshape(-1)
    order = keep[np.argsort(-dets.scores[keep], kind="stable")]
    return dets.take(order)

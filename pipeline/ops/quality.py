"""Face quality: measurements, a 0-100 score and a QualityControl level 0-4 (pure).

Each dimension (detector score, face size, blur, illumination, completeness, pose) is graded
0 good, 1 slight problem, 2 moderate problem, 3 severe problem against three thresholds
(:class:`QualityThresholds`, configurable in settings). The level follows the reference
``QualityControl`` wording (Tencent IAI CreateFace):

* 4 very high: every dimension good, or at most one slight problem;
* 3 high: no severe problem, at most two moderate ones;
* 2 normal: no severe problem;
* 1 low: at most one severe problem (e.g. a very blurred face);
* 0 none: anything else.

A face "passes" QualityControl=q when its level >= q. Each dimension also gets a sub-score in
[0, 1] (1 good, 0.7 at the slight threshold, 0.4 at the moderate one, linear between, falling
to 0 one step beyond); the score is ``100 * sqrt(worst * geometric mean)`` of the sub-scores, so
one bad dimension pulls it down hard while the others still count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ops.cvtypes import u8
from pipeline.types import Pose, Quality

BLUR_CENTER_MARGIN = 16
"""Pixels of the 112x112 aligned crop's border left out of the blur and light measurements
(the warp's black fill and the background live there)."""
SHARP_EDGE_RATIO = 5.0
"""Edge ratio (see :func:`blur_measure`) at and above which blur is 0: sharp dev photos give
3.4-7.8, yaoming.jpg 4.8."""
BLURRED_EDGE_RATIO = 2.0
"""Edge ratio at and below which blur is 1: InsightFace's blur.jpg gives 2.65, yaoming.jpg
under a Gaussian blur of sigma 2 / 3 gives 3.1 / 2.6."""


@dataclass(frozen=True)
class Grades:
    """Thresholds between good | slight | moderate | severe, ordered from good to bad."""

    good: float
    slight: float
    moderate: float

    def grade(self, value: float) -> int:
        """0..3; works for rising (bigger is better) and falling threshold orders."""
        rising = self.good >= self.moderate
        bounds = (self.good, self.slight, self.moderate)
        for grade, bound in enumerate(bounds):
            if (value >= bound) if rising else (value <= bound):
                return grade
        return 3

    def sub_score(self, value: float) -> float:
        """1.0 at or beyond ``good``, 0.7 at ``slight``, 0.4 at ``moderate``, linear between,
        reaching 0 one more (slight - moderate) step beyond ``moderate``."""
        step = abs(self.slight - self.moderate)
        if self.good >= self.moderate:
            xs = [self.moderate - step, self.moderate, self.slight, self.good]
            ys = [0.0, 0.4, 0.7, 1.0]
        else:
            xs = [self.good, self.slight, self.moderate, self.moderate + step]
            ys = [1.0, 0.7, 0.4, 0.0]
        return float(np.interp(value, xs, ys))


@dataclass(frozen=True)
class QualityThresholds:
    """Grade thresholds of every dimension (defaults measured on the dev photos)."""

    detector_score: Grades = Grades(0.70, 0.60, 0.50)
    face_size: Grades = Grades(64.0, 40.0, 24.0)
    """Short side of the face box, px."""
    blur: Grades = Grades(0.40, 0.55, 0.70)
    """0 sharp .. 1 blurred (Baidu's convention)."""
    dark: Grades = Grades(70.0, 50.0, 30.0)
    """Mean luminance of the aligned crop, lower bounds."""
    bright: Grades = Grades(190.0, 210.0, 230.0)
    """Mean luminance of the aligned crop, upper bounds."""
    completeness: Grades = Grades(0.99, 0.90, 0.75)
    """Share of the face box inside the image."""
    pose: Grades = Grades(20.0, 35.0, 50.0)
    """max(|yaw|, |pitch|) in degrees."""


DEFAULT_THRESHOLDS = QualityThresholds()


def blur_measure(crop: NDArray[np.uint8]) -> float:
    """Blur in [0, 1] (0 sharp, 1 blurred) of an aligned face crop.

    Edge strength relative to contrast: the 95th percentile of the Sobel gradient magnitude over
    the crop's centre, divided by the intensities' standard deviation. Blur spreads edges, so
    the strongest gradients fall while the contrast stays; dividing by contrast makes dark or
    flat-lit faces comparable. (The variance of the Laplacian, tried first, is dominated by
    JPEG block noise and rated InsightFace's motion-blurred sample as sharp.) The ratio maps
    linearly from :data:`SHARP_EDGE_RATIO` (blur 0) to :data:`BLURRED_EDGE_RATIO` (blur 1).
    """
    gray = _gray_center(crop).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    edge = float(np.percentile(cv2.magnitude(gx, gy), 95))
    ratio = edge / (float(gray.std()) + 1e-3)
    blur = (SHARP_EDGE_RATIO - ratio) / (SHARP_EDGE_RATIO - BLURRED_EDGE_RATIO)
    return float(min(1.0, max(0.0, blur)))


def illumination_measure(crop: NDArray[np.uint8]) -> float:
    """Mean luminance 0-255 of the aligned crop's centre."""
    return float(_gray_center(crop).mean())


def completeness_measure(box: tuple[float, float, float, float], height: int, width: int) -> float:
    """Share of the box's area inside the ``height x width`` image (1.0 = wholly inside)."""
    x1, y1, x2, y2 = box
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    if area <= 0.0:
        return 0.0
    ix = max(0.0, min(x2, width) - max(x1, 0.0))
    iy = max(0.0, min(y2, height) - max(y1, 0.0))
    return float(min(1.0, ix * iy / area))


def _gray_center(crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
    gray = u8(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)) if crop.ndim == 3 else crop
    m = BLUR_CENTER_MARGIN * gray.shape[0] // 112
    return gray[m : gray.shape[0] - m, m : gray.shape[1] - m]


def level_from_grades(grades: list[int]) -> int:
    """QualityControl level 0-4 from per-dimension grades (see the module docstring)."""
    severe = grades.count(3)
    moderate = grades.count(2)
    slight = grades.count(1)
    if severe == 0 and moderate == 0 and slight <= 1:
        return 4
    if severe == 0 and moderate <= 2:
        return 3
    if severe == 0:
        return 2
    if severe == 1:
        return 1
    return 0


def assess_quality(
    *,
    detector_score: float,
    box: tuple[float, float, float, float],
    image_height: int,
    image_width: int,
    crop: NDArray[np.uint8],
    pose: Pose,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> Quality:
    """Measure one face and grade it."""
    x1, y1, x2, y2 = box
    face_size = float(min(x2 - x1, y2 - y1))
    blur = blur_measure(crop)
    light = illumination_measure(crop)
    completeness = completeness_measure(box, image_height, image_width)
    pose_angle = max(abs(pose.yaw), abs(pose.pitch))
    t = thresholds
    light_grades = (t.dark.grade(light), t.bright.grade(light))
    light_scores = (t.dark.sub_score(light), t.bright.sub_score(light))
    grades = [
        t.detector_score.grade(detector_score),
        t.face_size.grade(face_size),
        t.blur.grade(blur),
        max(light_grades),
        t.completeness.grade(completeness),
        t.pose.grade(pose_angle),
    ]
    subs = np.array(
        [
            t.detector_score.sub_score(detector_score),
            t.face_size.sub_score(face_size),
            t.blur.sub_score(blur),
            min(light_scores),
            t.completeness.sub_score(completeness),
            t.pose.sub_score(pose_angle),
        ]
    )
    floored = np.maximum(subs, 0.01)
    geometric_mean = float(np.exp(np.log(floored).mean()))
    score = 100.0 * math.sqrt(float(floored.min()) * geometric_mean)
    return Quality(
        score=score,
        level=level_from_grades(grades),
        detector_score=float(detector_score),
        face_size=face_size,
        blur=blur,
        illumination=light,
        completeness=completeness,
    )


def thresholds_from_settings(settings: object) -> QualityThresholds:
    """:class:`QualityThresholds` from the ``quality_*`` settings fields (3 bounds each)."""

    def grades(name: str, default: Grades) -> Grades:
        values = getattr(settings, f"quality_{name}", None)
        if values is None:
            return default
        if len(values) != 3:
            raise ValueError(f"quality_{name} needs 3 thresholds, got {values}")
        return Grades(float(values[0]), float(values[1]), float(values[2]))

    d = DEFAULT_THRESHOLDS
    return QualityThresholds(
        detector_score=grades("detector_score", d.detector_score),
        face_size=grades("face_size", d.face_size),
        blur=grades("blur", d.blur),
        dark=grades("dark", d.dark),
        bright=grades("bright", d.bright),
        completeness=grades("completeness", d.completeness),
        pose=grades("pose", d.pose),
    )

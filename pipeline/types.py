"""Typed records passed between facepipe's parts (frozen dataclasses, NumPy arrays inside).

These are the boundaries: sources produce :class:`DecodedImage`, the engine produces
:class:`ImageAnalysis` holding :class:`Face` records, the store and the pipeline consume them.
Add fields at the end with defaults; never rename or repurpose one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

Box = tuple[float, float, float, float]
"""A face box as (x1, y1, x2, y2) in pixels of the decoded (orientation-corrected) image."""


class DetectMode(StrEnum):
    """Which faces the detector keeps (reference ``mode``: 0 all faces, 1 largest face)."""

    ALL = "all"
    LARGEST = "largest"


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the models: BGR uint8 pixels, EXIF orientation already applied."""

    source: str
    pixels: NDArray[np.uint8]
    content_sha256: str
    format: str
    full_size: tuple[int, int] | None = None
    """(height, width) of the full image when ``pixels`` is a reduced-scale decode, else None."""
    full_pixels: Callable[[], NDArray[np.uint8]] | None = field(
        default=None, compare=False, repr=False
    )
    """Decodes the full-resolution image (reduced-scale decodes only)."""

    @property
    def height(self) -> int:
        """The image's height (the full one when ``pixels`` is a reduced-scale decode)."""
        return self.full_size[0] if self.full_size is not None else int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """The image's width (the full one when ``pixels`` is a reduced-scale decode)."""
        return self.full_size[1] if self.full_size is not None else int(self.pixels.shape[1])

    @property
    def reduced(self) -> bool:
        """Whether ``pixels`` is a reduced-scale decode of a bigger image."""
        return self.full_size is not None and self.full_pixels is not None


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees (yaw: left/right, pitch: up/down, roll: in-plane)."""

    yaw: float
    pitch: float
    roll: float

    def to_dict(self) -> dict[str, float]:
        return {
            "yaw": round(self.yaw, 2),
            "pitch": round(self.pitch, 2),
            "roll": round(self.roll, 2),
        }


@dataclass(frozen=True)
class Quality:
    """Per-face quality measurements, a 0-100 score and a QualityControl level 0-4."""

    score: float
    level: int
    detector_score: float
    face_size: float
    blur: float
    illumination: float
    completeness: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "score": round(self.score, 2),
            "level": self.level,
            "detector_score": round(self.detector_score, 4),
            "face_size": round(self.face_size, 1),
            "blur": round(self.blur, 2),
            "illumination": round(self.illumination, 2),
            "completeness": round(self.completeness, 4),
        }


@dataclass(frozen=True)
class Attributes:
    """Face attributes, present only when the engine has an attribute model.

    ``gender`` is ``"female"`` or ``"male"`` (apparent gender, as the model was trained);
    ``age`` whole years. The probabilities are None when the model gives none (InsightFace's
    genderage outputs raw scores): ``gender_probability`` is the model's probability of the
    stated gender, ``age_probability`` the model's probability mass within
    :data:`AGE_WINDOW_YEARS` years of ``age``.
    """

    gender: str
    age: int
    gender_probability: float | None = None
    age_probability: float | None = None
    model: str | None = None
    """The attribute model's id (file stem + sha256 prefix)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gender": self.gender, "age": self.age}
        if self.gender_probability is not None:
            out["gender_probability"] = round(self.gender_probability, 4)
        if self.age_probability is not None:
            out["age_probability"] = round(self.age_probability, 4)
        if self.model is not None:
            out["model"] = self.model
        return out


AGE_WINDOW_YEARS = 5
"""Half-width of the age window whose probability mass :attr:`Attributes.age_probability`
reports."""


@dataclass(frozen=True)
class Face:
    """One face found in an image, with everything the engine measured about it."""

    index: int
    box: Box
    score: float
    landmarks: NDArray[np.float32]
    """5 keypoints (eyes, nose, mouth corners), shape (5, 2), image pixels."""
    pose: Pose
    quality: Quality
    embedding: NDArray[np.float32] | None = None
    """L2-normalised embedding, or None when embedding was not asked for."""
    aligned_crop: NDArray[np.uint8] | None = None
    """The 112x112 BGR crop aligned to the ArcFace template (what the embedder saw)."""
    landmarks_106: NDArray[np.float32] | None = None
    attributes: Attributes | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class ImageAnalysis:
    """Everything the engine found in one image."""

    source: str
    width: int
    height: int
    content_sha256: str
    model_id: str
    faces: tuple[Face, ...] = field(default_factory=tuple)
    timings_ms: dict[str, float] = field(default_factory=dict)

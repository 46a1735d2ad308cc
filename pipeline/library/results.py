"""Result records of the face library's operations (frozen dataclasses with ``to_dict()``)
shaped like the reference APIs' responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.store.records import Candidate
from pipeline.types import Box


@dataclass(frozen=True)
class FaceRect:
    """A face box as the reference returns it (IAI FaceRect: X, Y, Width, Height)."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def from_box(cls, box: Box) -> FaceRect:
        x1, y1, x2, y2 = box
        return cls(round(x1), round(y1), round(x2 - x1), round(y2 - y1))

    def to_dict(self) -> dict[str, int]:
        return {"X": self.x, "Y": self.y, "Width": self.width, "Height": self.height}


@dataclass(frozen=True)
class AddedFace:
    """A face enrolled by :meth:`FaceLibrary.add_analyzed_face` (``created`` False when the same
    face of the same image was already enrolled: the existing id is returned)."""

    face_id: str
    person_id: str
    created: bool
    box: Box
    replaced_face_id: str | None = None
    """The person's worst face this one replaced at the cap (``CapPolicy.REPLACE_WORST``)."""


@dataclass(frozen=True)
class AddFacesResult:
    """Per-image outcome of adding images to a person, shaped like IAI CreateFace's response."""

    person_id: str
    ret_codes: tuple[int, ...]
    """One code per input image, in input order: 0 added, else the reference error code."""
    errors: tuple[dict[str, Any] | None, ...]
    """One catalogue error (code, name, message) per input image, None where it was added."""
    suc_face_ids: tuple[str, ...]
    suc_indexes: tuple[int, ...]
    suc_face_rects: tuple[FaceRect, ...]
    model_id: str

    @property
    def suc_face_num(self) -> int:
        return len(self.suc_face_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "PersonId": self.person_id,
            "SucFaceNum": self.suc_face_num,
            "SucFaceIds": list(self.suc_face_ids),
            "RetCode": list(self.ret_codes),
            "SucIndexes": list(self.suc_indexes),
            "SucFaceRects": [r.to_dict() for r in self.suc_face_rects],
            "FaceModelVersion": self.model_id,
            "Errors": list(self.errors),
        }


@dataclass(frozen=True)
class VerifyResult:
    """Is the image's face the person? (YouTu verify: confidence, ismatch)."""

    person_id: str
    confidence: float
    score: float
    is_match: bool
    face_id: str
    """The person's face that matched best."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "confidence": round(self.confidence, 2),
            "score": round(self.score, 4),
            "ismatch": self.is_match,
            "face_id": self.face_id,
        }


@dataclass(frozen=True)
class IdentifiedFace:
    """One probe face of an image and its candidates, best first."""

    face_index: int
    box: Box
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_index": self.face_index,
            "box": [round(v, 1) for v in self.box],
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class IdentifyResult:
    """Identify of one image: its largest face (or every face on request) with candidates."""

    source: str
    group_ids: tuple[str, ...]
    faces: tuple[IdentifiedFace, ...]
    model_id: str

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The candidates of the first (largest) face, as YouTu identify returns them."""
        return self.faces[0].candidates if self.faces else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "group_ids": list(self.group_ids),
            "model": self.model_id,
            "candidates": [c.to_dict() for c in self.candidates],
            "faces": [f.to_dict() for f in self.faces],
        }


@dataclass(frozen=True)
class CompareResult:
    """Similarity of the largest faces of two images (Baidu match / IAI CompareFace)."""

    similarity: float
    """0-100 confidence."""
    score: float
    """Cosine similarity."""
    is_match: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": round(self.similarity, 2),
            "score": round(self.score, 4),
            "ismatch": self.is_match,
        }

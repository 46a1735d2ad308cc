"""Frozen records the library and its repositories hand out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: ``items`` from ``offset`` on, and the ``total`` count."""

    items: tuple[T, ...]
    total: int
    offset: int
    limit: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() if hasattr(i, "to_dict") else i for i in self.items],
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class GroupInfo:
    """A group and how many persons it holds."""

    group_id: str
    person_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupDetails:
    """A group with its properties: ``explicit`` when made on purpose (IAI CreateGroup), with a
    name, a tag and the names of its persons' custom fields; implicit groups have empty ones."""

    group_id: str
    name: str
    tag: str
    ex_fields: tuple[str, ...]
    explicit: bool
    created_at: datetime
    person_count: int
    face_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "name": self.name,
            "tag": self.tag,
            "ex_fields": list(self.ex_fields),
            "explicit": self.explicit,
            "created_at": self.created_at.isoformat(),
            "person_count": self.person_count,
            "face_count": self.face_count,
        }


@dataclass(frozen=True)
class PersonSummary:
    """A person as listed in a group."""

    person_id: str
    name: str
    tag: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PersonInfo:
    """Everything about a person: name, tag, groups and face ids (reference getinfo)."""

    person_id: str
    name: str
    tag: str
    group_ids: tuple[str, ...]
    face_ids: tuple[str, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "tag": self.tag,
            "group_ids": list(self.group_ids),
            "face_ids": list(self.face_ids),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class FaceInfo:
    """An enrolled face (reference getfaceinfo), without its vector and crop bytes."""

    face_id: str
    person_id: str
    model_id: str
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    det_score: float
    quality_score: float
    quality_level: int
    source_uri: str | None
    content_sha256: str
    face_index: int
    crop_format: str | None
    created_at: datetime
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "person_id": self.person_id,
            "model_id": self.model_id,
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "det_score": round(self.det_score, 4),
            "quality": {"score": round(self.quality_score, 2), "level": self.quality_level},
            "source_uri": self.source_uri,
            "content_sha256": self.content_sha256,
            "face_index": self.face_index,
            "crop_format": self.crop_format,
            "created_at": self.created_at.isoformat(),
            "job_id": self.job_id,
        }


@dataclass(frozen=True)
class Candidate:
    """One identify candidate: a person with its best-matching face (reference IdentifyItem)."""

    person_id: str
    face_id: str
    score: float
    """Cosine similarity of the probe and the face."""
    confidence: float
    """0-100 (pipeline.similarity.confidence_from_cosine)."""
    tag: str = ""
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "face_id": self.face_id,
            "confidence": round(self.confidence, 2),
            "score": round(self.score, 4),
            "tag": self.tag,
            "name": self.name,
        }


@dataclass(frozen=True)
class FaceHit:
    """A raw search hit (repository level): face, person and cosine."""

    face_id: int
    person_id: str
    score: float


@dataclass(frozen=True)
class NewFace:
    """An enrolled face ready to be written (what the repository inserts)."""

    person_id: str
    model_id: str
    embedding: NDArray[np.float32]
    box: tuple[float, float, float, float]
    landmarks: NDArray[np.float32]
    det_score: float
    quality_score: float
    quality_level: int
    quality: dict[str, Any]
    content_sha256: str
    face_index: int
    source_uri: str | None = None
    crop: bytes | None = None
    crop_format: str | None = None
    job_id: str | None = None

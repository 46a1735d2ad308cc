"""The answers of the native ``/v1`` protocol as Pydantic models: FastAPI validates each route's
answer against its model and the OpenAPI document describes it from them.

The routes build their answers with the library's ``to_dict`` shapes; these models say what
those shapes are. ``extra="forbid"``: a field added to an answer without its model is an error
the tests see, not an undocumented field. Fields that an answer only carries sometimes (a
face's ``attributes`` and ``embedding``, the add-faces fields of a person created without an
image) default to None and are left out when absent (the routes use ``exclude_unset``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


def answers(model: type[BaseModel]) -> dict[str, Any]:
    """A route's answer settings: its model, and fields left out when the answer leaves them
    out (never filled with null)."""
    return {"response_model": model, "response_model_exclude_unset": True}


class ErrorDetail(Answer):
    code: int = Field(description="The catalogue's numeric code (pipeline/errors.py).")
    name: str = Field(description="The catalogue's symbolic name, e.g. NO_FACE.")
    message: str


class ErrorAnswer(Answer):
    """Every /v1 error: ``{"error": {"code", "name", "message"}}``."""

    error: ErrorDetail


# --- detection, comparison, verification, identification ----------------------------------------


class Pose(Answer):
    yaw: float
    pitch: float
    roll: float


class FaceQuality(Answer):
    score: float = Field(description="0-100")
    level: int = Field(description="The highest QualityControl level (0-4) the face passes.")
    detector_score: float
    face_size: float
    blur: float
    illumination: float
    completeness: float


class FaceAttributes(Answer):
    gender: str
    age: int
    gender_probability: float | None = None
    age_probability: float | None = None
    model: str | None = None


class DetectedFace(Answer):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels")
    score: float
    landmarks: list[list[float]] = Field(description="5 points: eyes, nose tip, mouth corners")
    pose: Pose
    quality: FaceQuality
    attributes: FaceAttributes | None = Field(
        default=None, description="With attributes=true; null without an attribute model."
    )
    embedding: list[float] | None = Field(default=None, description="With embed=true.")


class DetectAnswer(Answer):
    source: str
    width: int
    height: int
    model: str
    faces: list[DetectedFace]
    timings_ms: dict[str, float]


class CompareAnswer(Answer):
    similarity: float = Field(description="0-100 confidence that the two faces are one person")
    score: float = Field(description="cosine similarity")
    ismatch: bool


class VerifyAnswer(Answer):
    person_id: str
    confidence: float
    score: float
    ismatch: bool
    face_id: str = Field(description="The person's face that matched best.")


class CandidateAnswer(Answer):
    person_id: str
    face_id: str
    confidence: float
    score: float
    tag: str
    name: str


class IdentifiedFaceAnswer(Answer):
    face_index: int
    box: list[float]
    candidates: list[CandidateAnswer]


class IdentifyAnswer(Answer):
    source: str
    group_ids: list[str]
    model: str
    candidates: list[CandidateAnswer] = Field(description="Those of the largest face.")
    faces: list[IdentifiedFaceAnswer]


# --- the library ---------------------------------------------------------------------------------


class PersonAnswer(Answer):
    person_id: str
    name: str
    tag: str
    group_ids: list[str]
    face_ids: list[str]
    created_at: str


class FaceRect(Answer):
    X: int
    Y: int
    Width: int
    Height: int


class AddFacesAnswer(Answer):
    """One entry per image in ``RetCode`` and ``Errors`` (IAI CreateFace's shape)."""

    PersonId: str
    SucFaceNum: int
    SucFaceIds: list[str]
    RetCode: list[int]
    SucIndexes: list[int]
    SucFaceRects: list[FaceRect]
    FaceModelVersion: str
    Errors: list[ErrorDetail | None]


class CreatePersonAnswer(Answer):
    """The person, and with an image the add-faces fields of its first face."""

    person: PersonAnswer
    PersonId: str | None = None
    SucFaceNum: int | None = None
    SucFaceIds: list[str] | None = None
    RetCode: list[int] | None = None
    SucIndexes: list[int] | None = None
    SucFaceRects: list[FaceRect] | None = None
    FaceModelVersion: str | None = None
    Errors: list[ErrorDetail | None] | None = None


class PersonDeletedAnswer(Answer):
    person_id: str
    deleted: bool


class FacesDeletedAnswer(Answer):
    person_id: str
    deleted: list[str] = Field(description="The face ids deleted.")


class FaceIdsAnswer(Answer):
    person_id: str
    face_ids: list[str]


class FaceRecordQuality(Answer):
    score: float
    level: int


class FaceAnswer(Answer):
    face_id: str
    person_id: str
    model_id: str
    box: list[float]
    landmarks: list[list[float]]
    det_score: float
    quality: FaceRecordQuality
    source_uri: str | None
    content_sha256: str
    face_index: int
    crop_format: str | None
    created_at: str
    job_id: str | None


class GroupAnswer(Answer):
    group_id: str
    person_count: int


class GroupPage(Answer):
    items: list[GroupAnswer]
    total: int
    offset: int
    limit: int


class PersonSummaryAnswer(Answer):
    person_id: str
    name: str
    tag: str


class PersonPage(Answer):
    items: list[PersonSummaryAnswer]
    total: int
    offset: int
    limit: int


# --- jobs ----------------------------------------------------------------------------------------


class JobAnswer(Answer):
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    items: int
    done: int
    failed: int
    pending: int
    faces: int
    listing_done: bool
    images_per_s: float | None
    error: dict[str, Any] | None
    origin: str
    stalled: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobList(Answer):
    jobs: list[JobAnswer]


class JobDetail(JobAnswer):
    summary: dict[str, Any] | None = Field(
        default=None, description="A re-identification's matches and expected false matches."
    )
    errors: dict[str, int] = Field(description="Failed items per error name.")
    items_shown: list[dict[str, Any]]


class S3EventAnswer(Answer):
    jobs: list[str]
    ignored: int | None = None
    dropped: str | None = None

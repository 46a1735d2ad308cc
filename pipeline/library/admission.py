"""Whether a face joins a person: the enrolment rules as one pure decision over plain values.

The rules, in the order they apply (Tencent IAI CreateFace, YouTu addface):

1. ``QualityControl``: the face's quality level must be >= ``quality_control`` (0-4), else
   ``QUALITY_TOO_LOW`` (-1601); a face without an embedding is ``FEATURE_FAILED``;
2. the same face of the same image (same image hash, face index and model) already enrolled for
   this person: its id is returned, nothing is added;
3. the per-person cap ``max_faces_per_person``: ``TOO_MANY_FACES`` (-1309), unless the policy is
   :attr:`CapPolicy.REPLACE_WORST` and this face's quality beats the person's worst face, which
   it then replaces (the rules below are checked without that face);
4. a face with cosine >= ``near_duplicate_similarity`` to one of the person's faces of this
   model: ``NEAR_DUPLICATE_FACE`` (-1312);
5. ``FaceMatchThreshold`` (0-100 confidence; 0 disables): when the person has faces of this
   model, the best confidence against them must reach it, else ``FACE_MATCH_BELOW_THRESHOLD``
   (-1604).

:mod:`pipeline.library.faces` gathers the facts under the person's row lock and writes what
this decides (the person's existence is checked there, after rule 1 and before the others).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration import Calibration
from pipeline.errors import ErrorCode


class CapPolicy(StrEnum):
    """What a face does when its person is at the cap."""

    REFUSE = "refuse"
    """``TOO_MANY_FACES`` (the online APIs)."""
    REPLACE_WORST = "replace-worst"
    """Replace the person's worst face (lowest quality) when this one is better (bulk
    enrolment: the person ends with its best faces whatever order the images arrive in)."""


@dataclass(frozen=True)
class Rules:
    """The thresholds a face is admitted under (from the call and the settings)."""

    quality_control: int
    face_match_threshold: float
    near_duplicate_similarity: float
    max_faces: int
    cap_policy: CapPolicy = CapPolicy.REFUSE


@dataclass(frozen=True)
class Applicant:
    """The face asking to join: its quality and unit embedding (None: none was computed)."""

    quality_level: int
    quality_score: float
    embedding: NDArray[np.float32] | None


@dataclass(frozen=True)
class PersonFaces:
    """What the person holds, read under its row lock."""

    person_id: str
    existing_face_id: int | None
    """The face already stored under this face's key (image hash, face index, model), if any."""
    face_count: int
    """All the person's faces, any model."""
    worst_face: tuple[int, float] | None
    """(face id, quality score) of the lowest-quality face (the newest among equals)."""
    model_face_ids: tuple[int, ...]
    """The person's faces made by this face's model, and their unit vectors (rows)."""
    model_embeddings: NDArray[np.float32]


@dataclass(frozen=True)
class Admit:
    """Insert the face (after deleting ``replaces`` when set)."""

    replaces: int | None = None


@dataclass(frozen=True)
class AlreadyEnrolled:
    """The same face is stored already: return its id, add nothing."""

    face_id: int


@dataclass(frozen=True)
class Refuse:
    """The face is refused with this catalogue code and message."""

    code: ErrorCode
    message: str


Decision = Admit | AlreadyEnrolled | Refuse


def check_quality(face: Applicant, rules: Rules) -> Refuse | None:
    """Rule 1, which needs nothing of the person (checked before its row is locked)."""
    if face.quality_level < rules.quality_control:
        return Refuse(
            ErrorCode.QUALITY_TOO_LOW,
            f"the face's quality level {face.quality_level} is below QualityControl "
            f"{rules.quality_control}",
        )
    if face.embedding is None:
        return Refuse(ErrorCode.FEATURE_FAILED, "the face has no embedding")
    return None


def decide(
    face: Applicant, person: PersonFaces, rules: Rules, calibration: Calibration
) -> Decision:
    """Admit, already enrolled, or refuse ``face`` for ``person``; the rules and their order
    are in the module docstring."""
    refused = check_quality(face, rules)
    if refused is not None:
        return refused
    assert face.embedding is not None  # check_quality refuses a face without one
    if person.existing_face_id is not None:
        return AlreadyEnrolled(person.existing_face_id)
    replaces: int | None = None
    ids, known = person.model_face_ids, person.model_embeddings
    if person.face_count >= rules.max_faces:
        at_cap = f"person {person.person_id!r} already has {rules.max_faces} faces (the limit)"
        if rules.cap_policy is CapPolicy.REFUSE:
            return Refuse(ErrorCode.TOO_MANY_FACES, at_cap)
        worst = person.worst_face
        if worst is None or worst[1] >= face.quality_score:
            return Refuse(
                ErrorCode.TOO_MANY_FACES,
                f"{at_cap}; this face (quality {face.quality_score:.1f}) is not better than "
                "the enrolled ones",
            )
        replaces = worst[0]
        keep = [i for i, face_id in enumerate(ids) if face_id != replaces]
        ids, known = tuple(ids[i] for i in keep), known[keep] if len(ids) else known
    if ids:
        best = float(np.max(known @ face.embedding))
        if best >= rules.near_duplicate_similarity:
            return Refuse(
                ErrorCode.NEAR_DUPLICATE_FACE,
                f"cosine {best:.3f} to an enrolled face of {person.person_id!r} is at or above "
                f"{rules.near_duplicate_similarity}",
            )
        confidence = calibration.confidence(best)
        if rules.face_match_threshold > 0 and confidence < rules.face_match_threshold:
            return Refuse(
                ErrorCode.FACE_MATCH_BELOW_THRESHOLD,
                f"best confidence {confidence:.1f} to the faces of {person.person_id!r} is below "
                f"FaceMatchThreshold {rules.face_match_threshold:g}",
            )
    return Admit(replaces)

"""Library operations that more than one protocol needs as one step (blocking: run them in a
model slot). Rules stay in :class:`~pipeline.library.FaceLibrary`; this only sequences calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library import FaceLibrary
from pipeline.library.results import AddFacesResult
from pipeline.store.records import PersonInfo
from pipeline.types import DecodedImage, DetectMode, ImageAnalysis


def raise_first_error(result: AddFacesResult) -> None:
    """Turn an add-faces result whose one image failed into that image's error."""
    err = result.errors[0] if result.errors else None
    if err is not None:
        raise FacepipeError(ErrorCode(err["name"]), err["message"])


def create_person_with_face(
    library: FaceLibrary,
    person_id: str,
    group_ids: Sequence[str],
    name: str | None,
    tag: str | None,
    image: DecodedImage | FacepipeError | None,
    *,
    quality_control: int = 0,
    face_match_threshold: float | None = None,
) -> tuple[PersonInfo, AddFacesResult | None]:
    """Create a person (groups created implicitly); with an image, enrol its largest face too,
    and only keep the person if that face is accepted (YouTu newperson, IAI CreatePerson)."""
    person = library.create_person(person_id, group_ids, name, tag)
    if image is None:
        return person, None
    try:
        added = library.add_faces(
            person_id,
            [image],
            quality_control=quality_control,
            face_match_threshold=face_match_threshold,
        )
        raise_first_error(added)
    except FacepipeError:
        library.delete_person(person_id)
        raise
    return library.get_person(person_id), added


def detect_faces(engine: Any, image: DecodedImage, max_faces: int) -> ImageAnalysis:
    """The vendor detect calls' one step: the largest face when one is asked for, else up to
    ``max_faces``; no embeddings (those calls never return them); NO_FACE when none."""
    mode = DetectMode.LARGEST if max_faces == 1 else DetectMode.ALL
    analysis: ImageAnalysis = engine.analyze([image], mode=mode, max_faces=max_faces, embed=False)[
        0
    ]
    if not analysis.faces:
        raise FacepipeError(ErrorCode.NO_FACE, source=analysis.source)
    return analysis

"""Faces of the face library: enrol (with the admission rules of
:mod:`pipeline.library.admission`), replace, list and delete a person's faces."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library.admission import (
    Admit,
    AlreadyEnrolled,
    Applicant,
    CapPolicy,
    PersonFaces,
    Rules,
    check_quality,
    decide,
)
from pipeline.library.core import LibraryCore, lock_person, require_person
from pipeline.library.results import AddedFace, AddFacesResult, FaceRect
from pipeline.store import repo
from pipeline.store.crops import decode_crop, encode_crop
from pipeline.store.observations import unit_vector
from pipeline.store.records import FaceInfo, NewFace
from pipeline.types import DecodedImage, DetectMode, Face, ImageAnalysis
from pipeline.validation import (
    validate_face_id,
    validate_person_id,
    validate_quality_control,
    validate_threshold,
)

logger = logging.getLogger(__name__)


class Faces(LibraryCore):
    """The faces part of :class:`~pipeline.library.FaceLibrary`."""

    def add_analyzed_face(
        self,
        person_id: str,
        analysis: ImageAnalysis,
        face: Face,
        *,
        quality_control: int = 0,
        face_match_threshold: float | None = None,
        source_uri: str | None = None,
        job_id: str | None = None,
        cap_policy: CapPolicy = CapPolicy.REFUSE,
        conn: psycopg.Connection | None = None,
    ) -> AddedFace:
        """Enrol one already-analysed face for a person under the rules of
        :mod:`pipeline.library.admission` (QualityControl, same face already enrolled, the
        per-person cap, near-duplicates, FaceMatchThreshold); a refusal raises its code, a
        missing person ``PERSON_NOT_FOUND``. With ``cap_policy`` REPLACE_WORST a better face
        replaces the person's worst one at the cap (``AddedFace.replaced_face_id``).

        The person's row is locked (``SELECT ... FOR UPDATE``) for the checks and the writes, so
        concurrent adds to one person are serialised and never exceed the cap. With ``conn`` the
        work joins the caller's transaction (a rule refusal raises without spoiling it).
        """
        person_id = validate_person_id(person_id)
        rules = Rules(
            quality_control=validate_quality_control(quality_control),
            face_match_threshold=validate_threshold(
                self.settings.face_match_threshold
                if face_match_threshold is None
                else face_match_threshold
            ),
            near_duplicate_similarity=self.settings.near_duplicate_similarity,
            max_faces=self.settings.max_faces_per_person,
            cap_policy=cap_policy,
        )
        applicant = Applicant(
            quality_level=int(face.quality.level),
            quality_score=float(face.quality.score),
            embedding=None if face.embedding is None else unit_vector(face.embedding),
        )
        refused = check_quality(applicant, rules)  # before any database work
        if refused is not None:
            raise FacepipeError(refused.code, refused.message)
        new = self._new_face(person_id, analysis, face, applicant, source_uri, job_id)
        with self._tx(conn) as c:
            lock_person(c, person_id)
            model_ids, model_vectors = repo.person_embeddings(c, person_id, new.model_id)
            face_count, worst_face = repo.person_face_tally(c, person_id)
            facts = PersonFaces(
                person_id=person_id,
                existing_face_id=repo.find_face(
                    c, person_id, new.content_sha256, new.face_index, new.model_id
                ),
                face_count=face_count,
                worst_face=worst_face,
                model_face_ids=tuple(model_ids),
                model_embeddings=model_vectors,
            )
            decision = decide(applicant, facts, rules, self.calibration(new.model_id))
            if isinstance(decision, AlreadyEnrolled):
                return AddedFace(str(decision.face_id), person_id, False, face.box)
            if not isinstance(decision, Admit):
                raise FacepipeError(decision.code, decision.message)
            if decision.replaces is not None:
                repo.delete_faces(c, person_id, [decision.replaces])
            face_id, created = repo.insert_face(c, new)
            replaced = None if decision.replaces is None else str(decision.replaces)
            return AddedFace(str(face_id), person_id, created, face.box, replaced)

    def _new_face(
        self,
        person_id: str,
        analysis: ImageAnalysis,
        face: Face,
        applicant: Applicant,
        source_uri: str | None,
        job_id: str | None,
    ) -> NewFace:
        assert applicant.embedding is not None  # admission.check_quality refused it otherwise
        crop = None
        crop_format = None
        if face.aligned_crop is not None:
            crop_format = self.settings.face_crop_format
            crop = encode_crop(face.aligned_crop, crop_format)
        return NewFace(
            person_id=person_id,
            model_id=analysis.model_id,
            embedding=applicant.embedding,
            box=face.box,
            landmarks=np.asarray(face.landmarks, dtype=np.float32),
            det_score=float(face.score),
            quality_score=applicant.quality_score,
            quality_level=applicant.quality_level,
            quality=face.quality.to_dict(),
            content_sha256=analysis.content_sha256,
            face_index=int(face.index),
            source_uri=source_uri if source_uri is not None else analysis.source,
            crop=crop,
            crop_format=crop_format,
            job_id=job_id,
        )

    def add_faces(
        self,
        person_id: str,
        images: Sequence[str | DecodedImage | FacepipeError],
        *,
        quality_control: int = 0,
        face_match_threshold: float | None = None,
        job_id: str | None = None,
    ) -> AddFacesResult:
        """Add N images to a person: the largest face of each, with the rules of
        :meth:`add_analyzed_face`; one result code per image (IAI CreateFace ``RetCode``).

        A bad image, no face or a rule refusal is that image's code; an unknown person or an
        illegal argument raises for the whole call.
        """
        return self._add_images(
            person_id, images, quality_control, face_match_threshold, job_id, replace=False
        )

    def replace_faces(
        self,
        person_id: str,
        images: Sequence[str | DecodedImage | FacepipeError],
        *,
        quality_control: int = 0,
        face_match_threshold: float | None = None,
        job_id: str | None = None,
    ) -> AddFacesResult:
        """Replace all of a person's faces by those of ``images`` (Baidu faceset ``update`` /
        ``action_type=replace``), in one transaction. FaceMatchThreshold applies among the new
        faces only. If no new face is accepted, nothing changes (the old faces stay)."""
        return self._add_images(
            person_id, images, quality_control, face_match_threshold, job_id, replace=True
        )

    def _add_images(
        self,
        person_id: str,
        images: Sequence[str | DecodedImage | FacepipeError],
        quality_control: int,
        face_match_threshold: float | None,
        job_id: str | None,
        *,
        replace: bool,
    ) -> AddFacesResult:
        person_id = validate_person_id(person_id)
        validate_quality_control(quality_control)
        if face_match_threshold is not None:
            validate_threshold(face_match_threshold)
        if not images:
            raise FacepipeError(ErrorCode.EMPTY_IMAGE, "no image given")
        engine = self._engine()
        with self.db.connection() as conn:
            require_person(conn, person_id)

        errors: list[FacepipeError | None] = [None] * len(images)
        decoded: list[tuple[int, DecodedImage]] = []
        for i, image in enumerate(images):
            try:
                decoded.append((i, self._load(image)))
            except FacepipeError as exc:
                errors[i] = exc
        analyses = engine.analyze([d for _, d in decoded], mode=DetectMode.LARGEST, embed=True)

        added: dict[int, AddedFace] = {}

        def attempt(conn: psycopg.Connection) -> None:
            for (i, _image), analysis in zip(decoded, analyses, strict=True):
                if not analysis.faces:
                    errors[i] = FacepipeError(
                        ErrorCode.NO_FACE,
                        f"{analysis.source}: no face was detected",
                        source=analysis.source,
                    )
                    continue
                try:
                    added[i] = self.add_analyzed_face(
                        person_id,
                        analysis,
                        analysis.faces[0],
                        quality_control=quality_control,
                        face_match_threshold=face_match_threshold,
                        job_id=job_id,
                        conn=conn,
                    )
                except FacepipeError as exc:
                    if exc.retryable:
                        raise
                    errors[i] = exc

        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            if replace:
                try:
                    with conn.transaction():  # a savepoint: undone when nothing is accepted
                        removed = repo.delete_all_faces(conn, person_id)
                        attempt(conn)
                        if not added:
                            raise _KeepOld
                    logger.info("replaced %d faces of %s by %d", removed, person_id, len(added))
                except _KeepOld:
                    logger.info("replace for %s accepted no face; the old faces stay", person_id)
            else:
                attempt(conn)
        return self._result(person_id, errors, added, engine.model_id)

    @staticmethod
    def _result(
        person_id: str,
        errors: Sequence[FacepipeError | None],
        added: dict[int, AddedFace],
        model_id: str,
    ) -> AddFacesResult:
        codes: list[int] = []
        errs: list[dict[str, Any] | None] = []
        for i, err in enumerate(errors):
            if i in added:
                codes.append(0)
                errs.append(None)
            else:
                exc = err or FacepipeError(ErrorCode.INTERNAL, "the image was not processed")
                codes.append(exc.numeric_code)
                errs.append(exc.to_dict())
        order = sorted(added)
        return AddFacesResult(
            person_id=person_id,
            ret_codes=tuple(codes),
            errors=tuple(errs),
            suc_face_ids=tuple(added[i].face_id for i in order),
            suc_indexes=tuple(order),
            suc_face_rects=tuple(FaceRect.from_box(added[i].box) for i in order),
            model_id=model_id,
        )

    def delete_faces(self, person_id: str, face_ids: Sequence[str | int]) -> list[str]:
        """Delete faces of a person (vector, crop and matches go with each); the ids deleted.

        ``FACE_NOT_FOUND`` (-1305) when none of the ids is a face of this person.
        """
        person_id = validate_person_id(person_id)
        ids = [validate_face_id(f) for f in face_ids]
        if not ids:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "face_ids is empty")
        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            deleted = repo.delete_faces(conn, person_id, ids)
        if not deleted:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND, f"none of the faces belongs to {person_id!r}"
            )
        return [str(f) for f in deleted]

    def list_faces(self, person_id: str) -> list[str]:
        """The face ids of a person, oldest first (YouTu getfaceids)."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            require_person(conn, person_id)
            return [str(f) for f in repo.person_face_ids(conn, person_id)]

    def get_face(self, face_id: str | int) -> FaceInfo:
        """An enrolled face's record (YouTu getfaceinfo)."""
        fid = validate_face_id(face_id)
        with self.db.connection() as conn:
            info = repo.get_face(conn, fid)
        if info is None:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND, f"face {face_id} does not exist", face_id=str(face_id)
            )
        return info

    def get_face_crop(self, face_id: str | int) -> NDArray[np.uint8]:
        """The stored aligned 112x112 crop of a face (BGR), e.g. to re-embed with a new model."""
        fid = validate_face_id(face_id)
        with self.db.connection() as conn:
            stored = repo.get_face_crop(conn, fid)
        if stored is None:
            raise FacepipeError(ErrorCode.FACE_NOT_FOUND, f"face {face_id} has no stored crop")
        return decode_crop(stored[0])


class _KeepOld(Exception):
    """Raised inside the replace savepoint to roll it back when no new face was accepted."""

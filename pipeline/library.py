"""The face library: groups, persons and faces with the reference APIs' rules, and the searches
over them (verify, identify, compare).

Semantics follow Tencent YouTu v2 (person/group/face management, identify, verify), Tencent IAI
CreateFace (per-image ``RetCode``, ``QualityControl``, ``FaceMatchThreshold``) and Baidu Face v2
(faceset ``update`` with ``action_type=replace``). Rules live here; SQL lives in
:mod:`pipeline.store.repo`. Methods taking images need a :class:`~pipeline.engine.FaceEngine`;
the engine-free ones (:meth:`FaceLibrary.add_analyzed_face`,
:meth:`FaceLibrary.identify_embeddings`, and :mod:`pipeline.store.observations`)
take faces the caller already analysed, so the batch pipeline can run the engine batched and write
a whole chunk in one transaction (pass its connection as ``conn``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from numpy.typing import NDArray

from pipeline.calibration import Calibration, calibration_for
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index import templates
from pipeline.library_results import (
    AddedFace,
    AddFacesResult,
    CompareResult,
    FaceRect,
    IdentifiedFace,
    IdentifyResult,
    VerifyResult,
)
from pipeline.observability.metrics import time_identify
from pipeline.store import repo
from pipeline.store.crops import decode_crop, encode_crop
from pipeline.store.db import Database
from pipeline.store.observations import record_matches, record_observed_faces, unit_vector
from pipeline.store.records import (
    Candidate,
    FaceHit,
    FaceInfo,
    GroupDetails,
    GroupInfo,
    NewFace,
    Page,
    PersonInfo,
    PersonSummary,
)
from pipeline.types import DecodedImage, DetectMode, Face, ImageAnalysis
from pipeline.validation import (
    MAX_GROUPS_PER_PERSON,
    validate_ex_fields,
    validate_face_id,
    validate_group_id,
    validate_group_ids,
    validate_name,
    validate_page,
    validate_person_id,
    validate_quality_control,
    validate_tag,
    validate_threshold,
    validate_top_n,
)

if TYPE_CHECKING:
    from pipeline.engine import FaceEngine
    from pipeline.sources.location import Location

logger = logging.getLogger(__name__)

HNSW_MAX_SCAN_TUPLES = 50_000
"""Upper bound of index tuples one iterative HNSW scan visits (pgvector hnsw.max_scan_tuples)."""

SCAN_TABLE_SHARE = 0.2
"""An exact search reads the whole faces table when the groups hold more than this share of
the gallery, and walks the members' faces by index otherwise (measured crossover between 10%
and 25% of a 20k gallery: README library section)."""


class _Plan(StrEnum):
    """How one identify call searches."""

    EXACT_MEMBERS = "exact-members"
    EXACT_SCAN = "exact-scan"
    HNSW = "hnsw"


_HITS_PER_PERSON = 4
"""First fetch size per wanted person; grown x4 while too few distinct persons come back."""

_MAX_HNSW_HITS = 1000
"""Largest fetch: hnsw.ef_search cannot exceed 1000."""

__all__ = ["Candidate", "FaceLibrary"]


# --- pure helpers ---


def _candidates(
    hits: Sequence[FaceHit], names: dict[str, tuple[str, str]], calibration: Calibration
) -> list[Candidate]:
    out = []
    for hit in hits:
        name, tag = names.get(hit.person_id, ("", ""))
        out.append(
            Candidate(
                person_id=hit.person_id,
                face_id=str(hit.face_id),
                score=hit.score,
                confidence=calibration.confidence(float(hit.score)),
                tag=tag,
                name=name,
            )
        )
    return out


def _best_per_person(hits: Sequence[FaceHit], top_n: int) -> list[FaceHit]:
    """Each person once with its best face, best first, at most ``top_n``."""
    seen: set[str] = set()
    out: list[FaceHit] = []
    for hit in sorted(hits, key=lambda h: (-h.score, h.face_id)):
        if hit.person_id in seen:
            continue
        seen.add(hit.person_id)
        out.append(hit)
        if len(out) == top_n:
            break
    return out


# --- the library -----------------------------------------------------------------------------


class FaceLibrary:
    """Groups, persons and faces in Postgres, with verify / identify / compare over them."""

    def __init__(
        self, db: Database, engine: FaceEngine | None = None, settings: Settings | None = None
    ) -> None:
        self.db = db
        self.engine = engine
        self.settings = settings or (engine.settings if engine is not None else get_settings())

    record_observed_faces = staticmethod(record_observed_faces)
    record_matches = staticmethod(record_matches)

    # -- plumbing --

    @contextmanager
    def _tx(self, conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
        """The caller's connection (its transaction), or a new transaction of our own."""
        if conn is not None:
            yield conn
            return
        with self.db.transaction() as own:
            yield own

    def _engine(self) -> FaceEngine:
        if self.engine is None:
            raise FacepipeError(
                ErrorCode.INTERNAL, "this operation needs a face engine (FaceLibrary(db, engine))"
            )
        return self.engine

    def _model_id(self, model_id: str | None) -> str:
        if model_id:
            return model_id
        if self.engine is not None:
            return self.engine.model_id
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "model_id is required when the library has no engine"
        )

    def calibration(self, model_id: str | None = None) -> Calibration:
        """The confidence calibration of ``model_id`` (default: the engine's recognizer)."""
        model = model_id or (self.engine.model_id if self.engine is not None else None)
        return calibration_for(model, self.settings.calibration_dir)

    def _load(self, image: str | Location | DecodedImage | FacepipeError) -> DecodedImage:
        """Decode an image given as pixels, a parsed location (a caller's, already checked), an
        operator's source string, or the error its reading already gave."""
        if isinstance(image, DecodedImage):
            return image
        if isinstance(image, FacepipeError):
            # An image whose reading already failed (the API fetches before taking a model
            # slot): it stays that image's result code, like any other unreadable image.
            raise image
        from pipeline.sources import load_image

        return load_image(image, self.settings)

    def _analyze_one(self, image: str | DecodedImage, *, all_faces: bool = False) -> ImageAnalysis:
        decoded = self._load(image)
        mode = DetectMode.ALL if all_faces else DetectMode.LARGEST
        analysis = self._engine().analyze([decoded], mode=mode, embed=True)[0]
        if not analysis.faces:
            raise FacepipeError(
                ErrorCode.NO_FACE, f"{decoded.source}: no face was detected", source=decoded.source
            )
        return analysis

    # -- persons and groups --

    def create_person(
        self,
        person_id: str,
        group_ids: Sequence[str],
        name: str | None = None,
        tag: str | None = None,
    ) -> PersonInfo:
        """Create a person in one or more groups (groups are created implicitly).

        ``PERSON_EXISTS`` (-1302) when the id is taken.
        """
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        name, tag = validate_name(name), validate_tag(tag)
        with self.db.transaction() as conn:
            if not repo.insert_person(conn, person_id, name, tag):
                raise FacepipeError(
                    ErrorCode.PERSON_EXISTS,
                    f"person {person_id!r} already exists",
                    person_id=person_id,
                )
            repo.add_memberships(conn, person_id, groups)
            return self._person_info(conn, person_id)

    def ensure_person(
        self,
        person_id: str,
        group_ids: Sequence[str],
        name: str | None = None,
        tag: str | None = None,
        *,
        conn: psycopg.Connection | None = None,
    ) -> bool:
        """Create the person if missing and make sure it is in ``group_ids`` (bulk enrolment).

        An existing person keeps its name and tag. True when the person was created here.
        """
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        name, tag = validate_name(name), validate_tag(tag)
        with self._tx(conn) as c:
            created = repo.insert_person(c, person_id, name, tag)
            repo.add_memberships(c, person_id, groups)
            return created

    def delete_person(self, person_id: str, group_id: str | None = None) -> bool:
        """Delete a person everywhere: faces (vectors and crops), memberships and matches, in
        one transaction. With ``group_id``, take it out of that group only (Baidu
        ``faceset/user/delete`` with group_id); if that was its only group, the person is deleted.

        Returns True when the person itself was deleted.
        """
        person_id = validate_person_id(person_id)
        group = validate_group_id(group_id) if group_id is not None else None
        with self.db.transaction() as conn:
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
            if group is not None:
                groups = repo.person_groups(conn, person_id)
                if group not in groups:
                    raise FacepipeError(
                        ErrorCode.GROUP_NOT_FOUND,
                        f"person {person_id!r} is not in group {group!r}",
                    )
                if len(groups) > 1:
                    repo.remove_membership(conn, person_id, group)
                    repo.delete_empty_groups(conn, [group])
                    return False
            groups = repo.delete_person(conn, person_id)
            repo.delete_empty_groups(conn, groups)
            logger.info("deleted person %s (groups %s)", person_id, groups)
            return True

    def set_person_info(
        self, person_id: str, name: str | None = None, tag: str | None = None
    ) -> PersonInfo:
        """Set a person's name and/or tag (None leaves a field unchanged)."""
        person_id = validate_person_id(person_id)
        new_name = validate_name(name) if name is not None else None
        new_tag = validate_tag(tag) if tag is not None else None
        if new_name is None and new_tag is None:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "nothing to set: give a name or a tag")
        with self.db.transaction() as conn:
            if not repo.update_person(conn, person_id, new_name, new_tag):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
            return self._person_info(conn, person_id)

    def get_person(self, person_id: str) -> PersonInfo:
        """Name, tag, groups and face ids of a person (YouTu getinfo)."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            return self._person_info(conn, person_id)

    def _person_info(self, conn: psycopg.Connection, person_id: str) -> PersonInfo:
        row = repo.get_person(conn, person_id)
        if row is None:
            raise FacepipeError(
                ErrorCode.PERSON_NOT_FOUND,
                f"person {person_id!r} does not exist",
                person_id=person_id,
            )
        return PersonInfo(
            person_id=person_id,
            name=row[0],
            tag=row[1],
            group_ids=tuple(repo.person_groups(conn, person_id)),
            face_ids=tuple(str(f) for f in repo.person_face_ids(conn, person_id)),
            created_at=row[2],
        )

    def list_persons(self, group_id: str, offset: int = 0, limit: int = 100) -> Page[PersonSummary]:
        """A page of the persons of a group, ordered by id (YouTu getpersonids)."""
        group = validate_group_id(group_id)
        offset, limit = validate_page(offset, limit)
        with self.db.connection() as conn:
            if not repo.existing_groups(conn, [group]):
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"group {group!r} does not exist", group_id=group
                )
            items, total = repo.list_group_persons(conn, group, offset, limit)
        return Page(tuple(items), total, offset, limit)

    def list_groups(self, offset: int = 0, limit: int = 100) -> Page[GroupInfo]:
        """A page of all groups, ordered by id, with person counts (YouTu getgroupids)."""
        offset, limit = validate_page(offset, limit)
        with self.db.connection() as conn:
            items, total = repo.list_groups(conn, offset, limit)
        return Page(tuple(items), total, offset, limit)

    def create_group(
        self,
        group_id: str,
        name: str | None = None,
        tag: str | None = None,
        ex_fields: Sequence[str] = (),
    ) -> GroupDetails:
        """Create an empty group on purpose (IAI CreateGroup): it keeps its name, tag and
        custom field names, and survives losing its last member. GROUP_EXISTS when the id is
        taken (implicit groups included)."""
        group = validate_group_id(group_id)
        name, tag = validate_name(name), validate_tag(tag)
        fields = validate_ex_fields(ex_fields)
        with self.db.transaction() as conn:
            if not repo.insert_group(conn, group, name, tag, fields):
                raise FacepipeError(
                    ErrorCode.GROUP_EXISTS, f"group {group!r} already exists", group_id=group
                )
            return self._group(conn, group)

    def modify_group(
        self,
        group_id: str,
        name: str | None = None,
        tag: str | None = None,
        ex_fields: Sequence[str] | None = None,
    ) -> GroupDetails:
        """Change a group's name, tag or custom field names (None: unchanged)."""
        group = validate_group_id(group_id)
        new_name = validate_name(name) if name is not None else None
        new_tag = validate_tag(tag) if tag is not None else None
        fields = validate_ex_fields(ex_fields) if ex_fields is not None else None
        with self.db.transaction() as conn:
            if not repo.update_group(conn, group, new_name, new_tag, fields):
                raise FacepipeError(ErrorCode.GROUP_NOT_FOUND, f"group {group!r} does not exist")
            return self._group(conn, group)

    def get_group(self, group_id: str) -> GroupDetails:
        """A group's properties and person count (explicit or implicit)."""
        group = validate_group_id(group_id)
        with self.db.connection() as conn:
            return self._group(conn, group)

    def delete_group(self, group_id: str) -> list[str]:
        """Delete a group; its persons that are in no other group are deleted with their faces
        (IAI DeleteGroup). Returns those persons."""
        group = validate_group_id(group_id)
        with self.db.transaction() as conn:
            self._group(conn, group)
            deleted = repo.delete_group(conn, group)
        logger.info("deleted group %s and %d persons only in it", group, len(deleted))
        return deleted

    def set_person_group_values(
        self, person_id: str, group_id: str, values: dict[int, str]
    ) -> tuple[str, ...]:
        """Set a person's values of its group's custom fields, by field index (IAI
        PersonExDescriptionInfos); the other fields keep their values. Returns all values."""
        person_id, group = validate_person_id(person_id), validate_group_id(group_id)
        with self.db.transaction() as conn:
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND, f"person {person_id!r} does not exist"
                )
            fields = self._group(conn, group).ex_fields
            current = repo.membership_values(conn, person_id)
            if group not in current:
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"person {person_id!r} is not in group {group!r}"
                )
            merged = list(current[group]) + [""] * (len(fields) - len(current[group]))
            for index, value in values.items():
                if not 0 <= index < len(fields):
                    raise FacepipeError(
                        ErrorCode.ILLEGAL_PARAMETER,
                        f"group {group!r} has {len(fields)} custom fields; no index {index}",
                    )
                merged[index] = validate_name(value)
            repo.set_membership_values(conn, person_id, group, merged[: len(fields)])
            return tuple(merged[: len(fields)])

    def person_group_values(self, person_id: str) -> dict[str, tuple[str, ...]]:
        """A person's custom field values per group it is in."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            if not repo.person_exists(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND, f"person {person_id!r} does not exist"
                )
            return repo.membership_values(conn, person_id)

    @staticmethod
    def _group(conn: psycopg.Connection, group_id: str) -> GroupDetails:
        details = repo.get_group(conn, group_id)
        if details is None:
            raise FacepipeError(ErrorCode.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
        return details

    def add_person_to_groups(self, person_id: str, group_ids: Sequence[str]) -> PersonInfo:
        """Put a person in more groups (created implicitly); already-member groups are kept."""
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        with self.db.transaction() as conn:
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
            total = len(set(repo.person_groups(conn, person_id)) | set(groups))
            if total > MAX_GROUPS_PER_PERSON:
                raise FacepipeError(
                    ErrorCode.TOO_MANY_GROUPS,
                    f"person {person_id!r} would be in {total} groups, more than "
                    f"{MAX_GROUPS_PER_PERSON}",
                )
            repo.add_memberships(conn, person_id, groups)
            return self._person_info(conn, person_id)

    def remove_person_from_group(self, person_id: str, group_id: str) -> PersonInfo:
        """Take a person out of one group. Its last group cannot be removed (``LAST_GROUP``;
        Baidu ``group/deleteuser``: "user must be in one group at least"): delete the person."""
        person_id = validate_person_id(person_id)
        group = validate_group_id(group_id)
        with self.db.transaction() as conn:
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
            groups = repo.person_groups(conn, person_id)
            if group not in groups:
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"person {person_id!r} is not in group {group!r}"
                )
            if len(groups) == 1:
                raise FacepipeError(
                    ErrorCode.LAST_GROUP,
                    f"{group!r} is the last group of person {person_id!r} (delete the person"
                    " instead)",
                    person_id=person_id,
                    group_id=group,
                )
            repo.remove_membership(conn, person_id, group)
            repo.delete_empty_groups(conn, [group])
            return self._person_info(conn, person_id)

    # -- faces --

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
        conn: psycopg.Connection | None = None,
    ) -> AddedFace:
        """Enrol one already-analysed face for a person, applying the reference rules in order:

        1. ``QualityControl``: the face's quality level must be >= ``quality_control`` (0-4),
           else ``QUALITY_TOO_LOW`` (-1601);
        2. the same face of the same image (same image hash, face index and model) already
           enrolled for this person: its id is returned (``created=False``), nothing is added;
        3. the per-person cap ``max_faces_per_person``: ``TOO_MANY_FACES`` (-1309);
        4. a face with cosine >= ``near_duplicate_similarity`` to one of the person's faces:
           ``NEAR_DUPLICATE_FACE`` (-1312);
        5. ``FaceMatchThreshold`` (0-100 confidence, default ``face_match_threshold``; 0
           disables): when the person has faces of this model, the best confidence against
           them must reach it, else ``FACE_MATCH_BELOW_THRESHOLD`` (-1604).

        The person's row is locked (``SELECT ... FOR UPDATE``) for the checks and the insert, so
        concurrent adds to one person are serialised and never exceed the cap. With ``conn`` the
        work joins the caller's transaction (a rule refusal raises without spoiling it).
        """
        person_id = validate_person_id(person_id)
        quality_control = validate_quality_control(quality_control)
        threshold = validate_threshold(
            self.settings.face_match_threshold
            if face_match_threshold is None
            else face_match_threshold
        )
        if face.quality.level < quality_control:
            raise FacepipeError(
                ErrorCode.QUALITY_TOO_LOW,
                f"the face's quality level {face.quality.level} is below QualityControl "
                f"{quality_control}",
            )
        if face.embedding is None:
            raise FacepipeError(ErrorCode.FEATURE_FAILED, "the face has no embedding")
        embedding = unit_vector(face.embedding)
        crop = None
        crop_format = None
        if face.aligned_crop is not None:
            crop_format = self.settings.face_crop_format
            crop = encode_crop(face.aligned_crop, crop_format)
        new = NewFace(
            person_id=person_id,
            model_id=analysis.model_id,
            embedding=embedding,
            box=face.box,
            landmarks=np.asarray(face.landmarks, dtype=np.float32),
            det_score=float(face.score),
            quality_score=float(face.quality.score),
            quality_level=int(face.quality.level),
            quality=face.quality.to_dict(),
            content_sha256=analysis.content_sha256,
            face_index=int(face.index),
            source_uri=source_uri if source_uri is not None else analysis.source,
            crop=crop,
            crop_format=crop_format,
            job_id=job_id,
        )
        with self._tx(conn) as c:
            if not repo.lock_person(c, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
            existing = repo.find_face(
                c, person_id, new.content_sha256, new.face_index, new.model_id
            )
            if existing is not None:
                return AddedFace(str(existing), person_id, False, face.box)
            cap = self.settings.max_faces_per_person
            if repo.count_person_faces(c, person_id) >= cap:
                raise FacepipeError(
                    ErrorCode.TOO_MANY_FACES,
                    f"person {person_id!r} already has {cap} faces (the limit)",
                )
            _ids, known = repo.person_embeddings(c, person_id, new.model_id)
            if len(_ids):
                best = float(np.max(known @ embedding))
                if best >= self.settings.near_duplicate_similarity:
                    raise FacepipeError(
                        ErrorCode.NEAR_DUPLICATE_FACE,
                        f"cosine {best:.3f} to an enrolled face of {person_id!r} is at or above "
                        f"{self.settings.near_duplicate_similarity}",
                    )
                confidence = self.calibration(new.model_id).confidence(best)
                if threshold > 0 and confidence < threshold:
                    raise FacepipeError(
                        ErrorCode.FACE_MATCH_BELOW_THRESHOLD,
                        f"best confidence {confidence:.1f} to the faces of {person_id!r} is below "
                        f"FaceMatchThreshold {threshold:g}",
                    )
            face_id, created = repo.insert_face(c, new)
            return AddedFace(str(face_id), person_id, created, face.box)

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
            if not repo.person_exists(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )

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
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
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
        codes, errs = [], []
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
            if not repo.lock_person(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
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
            if not repo.person_exists(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
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

    # -- searches --

    def identify_embeddings(
        self,
        embeddings: Sequence[NDArray[np.float32]] | NDArray[np.float32],
        group_ids: Sequence[str],
        top_n: int | None = None,
        *,
        model_id: str | None = None,
        conn: psycopg.Connection | None = None,
    ) -> list[list[Candidate]]:
        """For each probe embedding, up to ``top_n`` persons of the groups, each once with its
        best face, best first: ranked by the persons' fused templates (``score`` = the
        template's cosine; :mod:`pipeline.index.templates`) or, with
        ``identify_person_template`` = ``best-face``, by their best face.

        Groups holding at most ``exact_search_max_faces`` faces are scanned exactly; larger ones
        use the HNSW index with pgvector iterative scans (the group filter is applied during the
        walk, and the fetch grows until ``top_n`` distinct persons are found). Missing groups
        are skipped; when none exists: ``GROUP_NOT_FOUND`` / ``GROUP_LIST_NOT_FOUND``.
        """
        groups = validate_group_ids(group_ids)
        n = validate_top_n(self.settings.identify_top_n if top_n is None else top_n)
        model = self._model_id(model_id)
        arr = np.asarray(embeddings, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        probes = [unit_vector(row) for row in arr] if arr.size else []
        results: list[list[Candidate]] = []
        with self._tx(conn) as c:
            present = repo.existing_groups(c, groups)
            if not present:
                code = (
                    ErrorCode.GROUP_NOT_FOUND
                    if len(groups) == 1
                    else (ErrorCode.GROUP_LIST_NOT_FOUND)
                )
                raise FacepipeError(code, group_ids=groups)
            if not probes:
                return []
            exact_max = self.settings.exact_search_max_faces
            in_groups, in_gallery = repo.estimate_group_faces(c, present, model, exact_max)
            if in_groups > exact_max:
                plan = _Plan.HNSW
            elif in_groups > SCAN_TABLE_SHARE * in_gallery:
                plan = _Plan.EXACT_SCAN
            else:
                plan = _Plan.EXACT_MEMBERS
            by_template = self.settings.identify_person_template == templates.MEAN
            # persons are found by their faces, then ranked by their fused templates
            fetch = n * templates.CANDIDATE_FACTOR if by_template else n
            engine = "pgvector_hnsw" if plan is _Plan.HNSW else "pgvector_exact"
            with time_identify(engine, len(probes)):
                hits_per_probe = [
                    self._search_one(c, probe, present, model, fetch, plan) for probe in probes
                ]
                if by_template:
                    hits_per_probe = self._rank_by_template(c, probes, hits_per_probe, model, n)
            names = repo.person_tags(
                c, sorted({h.person_id for hits in hits_per_probe for h in hits})
            )
        cal = self.calibration(model)
        for hits in hits_per_probe:
            results.append(_candidates(hits, names, cal))
        return results

    @staticmethod
    def _rank_by_template(
        conn: psycopg.Connection,
        probes: Sequence[NDArray[np.float32]],
        hits_per_probe: list[list[FaceHit]],
        model_id: str,
        top_n: int,
    ) -> list[list[FaceHit]]:
        """Each probe's candidate persons re-ranked by their fused templates (score = the
        template's cosine; face_id = the person's best face)."""
        persons = sorted({h.person_id for hits in hits_per_probe for h in hits})
        vectors = templates.persons_vectors(conn, persons, model_id)
        out = []
        for probe, hits in zip(probes, hits_per_probe, strict=True):
            ranked = templates.rank_by_template(
                probe, [(h.person_id, h.face_id, h.score) for h in hits], vectors, top_n
            )
            out.append([FaceHit(face_id, person, score) for person, face_id, score in ranked])
        return out

    def _search_one(
        self,
        conn: psycopg.Connection,
        probe: NDArray[np.float32],
        groups: list[str],
        model_id: str,
        top_n: int,
        plan: _Plan,
    ) -> list[FaceHit]:
        """The ``top_n`` best persons: fetch the k best faces (exact or HNSW), keep each
        person's best; grow k while fewer than ``top_n`` distinct persons came back and more
        faces exist. With an exact fetch the result is exact: the first ``top_n`` distinct
        persons among the best faces are the ``top_n`` best persons."""
        exact = plan is not _Plan.HNSW
        k = top_n * _HITS_PER_PERSON
        # an exact fetch may need every face of the top_n persons; an HNSW one is bounded by
        # hnsw.ef_search's maximum
        k_max = top_n * max(self.settings.max_faces_per_person, 1) if exact else _MAX_HNSW_HITS
        while True:
            if exact:
                raw = repo.search_exact(
                    conn, probe, groups, model_id, k, scan_table=plan is _Plan.EXACT_SCAN
                )
            else:
                with conn.transaction():
                    raw = repo.search_hnsw(
                        conn,
                        probe,
                        groups,
                        model_id,
                        limit=k,
                        ef_search=max(self.settings.hnsw_ef_search, k),
                        max_scan_tuples=HNSW_MAX_SCAN_TUPLES,
                    )
            best = _best_per_person(raw, top_n)
            if len(best) >= top_n or len(raw) < k or k >= k_max:
                return best
            k = min(k * 4, k_max)

    def identify(
        self,
        image: str | DecodedImage,
        group_ids: Sequence[str],
        top_n: int | None = None,
        *,
        all_faces: bool = False,
    ) -> IdentifyResult:
        """Who is in the image? Up to ``top_n`` persons (default ``identify_top_n``) across the
        groups, each once with its best face, confidence and tag (YouTu identify). The largest
        face by default; every face with ``all_faces``."""
        groups = validate_group_ids(group_ids)
        analysis = self._analyze_one(image, all_faces=all_faces)
        faces = [f for f in analysis.faces if f.embedding is not None]
        per_face = self.identify_embeddings(
            [f.embedding for f in faces], groups, top_n, model_id=analysis.model_id
        )
        return IdentifyResult(
            source=analysis.source,
            group_ids=tuple(groups),
            faces=tuple(
                IdentifiedFace(f.index, f.box, tuple(c))
                for f, c in zip(faces, per_face, strict=True)
            ),
            model_id=analysis.model_id,
        )

    def verify(self, image: str | DecodedImage, person_id: str) -> VerifyResult:
        """Is the image's (largest) face this person? Confidence 0-100 against the person's best
        face and ``is_match`` at ``match_threshold`` (YouTu verify)."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            if not repo.person_exists(conn, person_id):
                raise FacepipeError(
                    ErrorCode.PERSON_NOT_FOUND,
                    f"person {person_id!r} does not exist",
                    person_id=person_id,
                )
        analysis = self._analyze_one(image)
        probe = unit_vector(analysis.faces[0].embedding)
        with self.db.connection() as conn:
            hit = repo.best_person_face(conn, probe, person_id, analysis.model_id)
        if hit is None:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"person {person_id!r} has no face enrolled with model {analysis.model_id}",
            )
        confidence = self.calibration(analysis.model_id).confidence(float(hit.score))
        return VerifyResult(
            person_id=person_id,
            confidence=confidence,
            score=hit.score,
            is_match=confidence >= self.settings.match_threshold,
            face_id=str(hit.face_id),
        )

    def compare(self, image_a: str | DecodedImage, image_b: str | DecodedImage) -> CompareResult:
        """Similarity 0-100 of the largest faces of two images (Baidu match)."""
        first = self._analyze_one(image_a)
        a = unit_vector(first.faces[0].embedding)
        b = unit_vector(self._analyze_one(image_b).faces[0].embedding)
        score = float(np.clip(a @ b, -1.0, 1.0))
        similarity = self.calibration(first.model_id).confidence(score)
        return CompareResult(similarity, score, similarity >= self.settings.match_threshold)


class _KeepOld(Exception):
    """Raised inside the replace savepoint to roll it back when no new face was accepted."""

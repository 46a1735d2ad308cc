"""Enrolment: the largest face of each image joins its person (created in the job's groups
when missing) under the library's admission rules (:mod:`pipeline.library.admission`):
QualityControl gate, near-duplicate refusal, FaceMatchThreshold, per-person cap.

Face cap policy: within a chunk a person's images are enrolled best quality first, and when a
person is at the cap a better face *replaces* the person's worst enrolled face (its item records
``replaced_face_id``), while a worse one is refused with TOO_MANY_FACES. The person thus ends
with the best faces by quality whatever the order the images arrive in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from psycopg import Connection

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.kinds.analysis import Prepared, analyse_items
from pipeline.jobs.kinds.outcomes import failed, job_groups
from pipeline.jobs.model import Item, ItemOutcome, ItemStatus, Job
from pipeline.jobs.runtime import Runtime
from pipeline.library import CapPolicy, FaceLibrary
from pipeline.types import DetectMode

if TYPE_CHECKING:
    from pipeline.engine import AnalysisOutcome


class Enroll:
    """The enroll kind's steps."""

    def analyse(self, rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
        return analyse_items(rt, job, items, DetectMode.LARGEST)

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        library = FaceLibrary(rt.db, None, rt.settings)
        out: dict[int, ItemOutcome] = {}
        # best quality first within each person, so the cap keeps the best faces of this chunk
        order = sorted(
            items, key=lambda it: (it.person_id or "", -_quality(prepared.outcomes.get(it.id)))
        )
        for item in order:
            out[item.id] = _enroll_one(library, conn, job, item, prepared.outcomes.get(item.id))
        return out


def _quality(outcome: AnalysisOutcome | None) -> float:
    if outcome is None or outcome.analysis is None or not outcome.analysis.faces:
        return -1.0
    return float(outcome.analysis.faces[0].quality.score)


def _enroll_one(
    library: FaceLibrary,
    conn: Connection,
    job: Job,
    item: Item,
    outcome: AnalysisOutcome | None,
) -> ItemOutcome:
    if outcome is None:
        return failed(
            item, FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{item.uri} is not an image source")
        )
    if outcome.error is not None or outcome.analysis is None:
        return failed(item, outcome.error or FacepipeError(ErrorCode.INTERNAL, "no analysis"))
    analysis = outcome.analysis
    sha = analysis.content_sha256
    if not analysis.faces:
        return failed(
            item, FacepipeError(ErrorCode.NO_FACE, f"no face was detected in {item.uri}"), sha
        )
    groups = job_groups(job, item)
    try:
        if not item.person_id:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"no person id for {item.uri}")
        if not groups:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "no group to enrol into")
        with conn.transaction():  # a savepoint: one refused face never spoils the chunk
            library.ensure_person(item.person_id, groups, name=item.person_name, conn=conn)
            added = library.add_analyzed_face(
                item.person_id,
                analysis,
                analysis.faces[0],
                quality_control=int(job.params.get("quality_control", 0)),
                face_match_threshold=job.params.get("face_match_threshold"),
                source_uri=item.uri,
                job_id=job.id,
                cap_policy=CapPolicy.REPLACE_WORST,
                conn=conn,
            )
    except FacepipeError as exc:
        return failed(item, exc, sha)
    result: dict[str, Any] = {"face_id": added.face_id, "person_id": item.person_id}
    if added.replaced_face_id is not None:
        result["replaced_face_id"] = added.replaced_face_id
    return ItemOutcome(
        item.id,
        ItemStatus.DONE,
        content_sha256=sha,
        n_faces=1,
        face_ids=(added.face_id,),
        result=result,
    )

"""What each job kind does with a chunk: the analysis step and the (transactional) write step.

* enroll: the largest face of each image joins its person (created in the job's groups when
  missing) under the library's rules: QualityControl gate, near-duplicate refusal,
  FaceMatchThreshold, per-person cap. Face cap policy: within a chunk a person's images are
  enrolled best quality first, and when a person is at the cap a better face *replaces* the
  person's worst enrolled face (its item records ``replaced_face_id``), while a worse one is
  refused with TOO_MANY_FACES. The person thus ends with the best faces by quality whatever the
  order the images arrive in.
* reidentify: every face becomes an observed face, is identified against the job's groups and
  gets its top-N candidates written as matches of this job; its best candidate is its
  ``match`` when it reaches the job's threshold (``pipeline.jobs.reid_threshold``: a confidence
  or a target false-match rate). Items ``observed:<id>`` re-identify an observed face stored
  earlier (no image is read).
* detect: every face becomes an observed face (no search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg import Connection

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.chunks import OBSERVED_PREFIX, detect_mode, failed, job_groups
from pipeline.jobs.model import Item, ItemOutcome, ItemStatus, Job, JobKind
from pipeline.jobs.runtime import Runtime


@dataclass(frozen=True)
class Prepared:
    """The analysis step's output for a chunk: engine outcomes and stored probe vectors."""

    outcomes: dict[int, Any]
    """item id -> pipeline.engine.AnalysisOutcome"""
    observed: dict[int, NDArray[np.float32]]
    """observed face id -> stored embedding (items ``observed:<id>``)"""


def observed_id_of(item: Item) -> int | None:
    if not item.uri.startswith(OBSERVED_PREFIX):
        return None
    try:
        return int(item.uri[len(OBSERVED_PREFIX) :])
    except ValueError:
        return None


def analyse(rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
    """Run the engine over the chunk's images (reading overlapped with inference)."""
    image_items = [it for it in items if observed_id_of(it) is None]
    outcomes: dict[int, Any] = {}
    if image_items:
        stream = rt.engine.analyze_stream(
            [it.uri for it in image_items],
            mode=detect_mode(job.kind),
            embed=True,
            trust=job.origin.trust,  # a caller's job never reads a local file
        )
        for item, outcome in zip(image_items, stream, strict=True):
            outcomes[item.id] = outcome
    observed_ids = [i for it in items if (i := observed_id_of(it)) is not None]
    observed: dict[int, NDArray[np.float32]] = {}
    if observed_ids:
        with rt.db.connection() as conn:
            rows = conn.execute(
                "SELECT observed_id, embedding FROM observed_faces WHERE observed_id = ANY(%s)",
                (observed_ids,),
            ).fetchall()
        from pipeline.store.repo import as_array

        observed = {int(i): as_array(e) for i, e in rows}
    return Prepared(outcomes, observed)


def write(
    rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
) -> list[ItemOutcome]:
    """Apply the job kind's rules and write its effects; outcomes in ``items`` order."""
    if job.kind == JobKind.ENROLL:
        by_id = _enroll(rt, conn, job, items, prepared)
    elif job.kind in (JobKind.REIDENTIFY, JobKind.DETECT):
        by_id = _observe(rt, conn, job, items, prepared, search=job.kind == JobKind.REIDENTIFY)
    else:
        err = FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"job kind {job.kind.value} has no chunk processing"
        )
        by_id = {it.id: failed(it, err) for it in items}
    return [by_id[it.id] for it in items]


def _quality(outcome: Any) -> float:
    if outcome.analysis is None or not outcome.analysis.faces:
        return -1.0
    return float(outcome.analysis.faces[0].quality.score)


def _enroll(
    rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
) -> dict[int, ItemOutcome]:
    from pipeline.library import FaceLibrary

    library = FaceLibrary(rt.db, None, rt.settings)
    params = job.params
    out: dict[int, ItemOutcome] = {}
    # best quality first within each person, so the cap keeps the best faces of this chunk
    order = sorted(
        items, key=lambda it: (it.person_id or "", -_quality(prepared.outcomes.get(it.id)))
    )
    for item in order:
        outcome = prepared.outcomes.get(item.id)
        if outcome is None:
            out[item.id] = failed(item, FacepipeError(ErrorCode.ILLEGAL_PARAMETER,
                                                      f"{item.uri} is not an image source"))
            continue
        if outcome.error is not None:
            out[item.id] = failed(item, outcome.error)
            continue
        analysis = outcome.analysis
        sha = analysis.content_sha256
        if not analysis.faces:
            err = FacepipeError(ErrorCode.NO_FACE, f"no face was detected in {item.uri}")
            out[item.id] = failed(item, err, sha)
            continue
        groups = job_groups(job, item)
        try:
            if not item.person_id:
                raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"no person id for {item.uri}")
            if not groups:
                raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "no group to enrol into")
            with conn.transaction():  # a savepoint: one refused face never spoils the chunk
                face_id, replaced = _add_with_cap(
                    library, conn, job, item, analysis, analysis.faces[0], groups, params
                )
        except FacepipeError as exc:
            out[item.id] = failed(item, exc, sha)
            continue
        result: dict[str, Any] = {"face_id": face_id, "person_id": item.person_id}
        if replaced is not None:
            result["replaced_face_id"] = replaced
        out[item.id] = ItemOutcome(
            item.id, ItemStatus.DONE, content_sha256=sha, n_faces=1, face_ids=(face_id,),
            result=result,
        )
    return out


def _add_with_cap(
    library: Any,
    conn: Connection,
    job: Job,
    item: Item,
    analysis: Any,
    face: Any,
    groups: Sequence[str],
    params: dict[str, Any],
) -> tuple[str, str | None]:
    """Enrol the face; at the cap, replace the person's worst face if this one is better."""
    from pipeline.store import repo

    library.ensure_person(item.person_id, groups, name=item.person_name, conn=conn)
    kwargs = {
        "quality_control": int(params.get("quality_control", 0)),
        "face_match_threshold": params.get("face_match_threshold"),
        "source_uri": item.uri,
        "job_id": job.id,
        "conn": conn,
    }
    try:
        added = library.add_analyzed_face(item.person_id, analysis, face, **kwargs)
        return added.face_id, None
    except FacepipeError as exc:
        if exc.code != ErrorCode.TOO_MANY_FACES:
            raise
        worst = conn.execute(
            "SELECT face_id, quality_score FROM faces WHERE person_id = %s "
            "ORDER BY quality_score ASC, face_id DESC LIMIT 1",
            (item.person_id,),
        ).fetchone()
        if worst is None or float(worst[1]) >= float(face.quality.score):
            raise FacepipeError(
                ErrorCode.TOO_MANY_FACES,
                f"{exc.message}; this face (quality {face.quality.score:.1f}) is not better "
                "than the enrolled ones",
            ) from exc
        repo.delete_faces(conn, item.person_id, [int(worst[0])])
        added = library.add_analyzed_face(item.person_id, analysis, face, **kwargs)
        return added.face_id, str(worst[0])


def _observe(
    rt: Runtime,
    conn: Connection,
    job: Job,
    items: Sequence[Item],
    prepared: Prepared,
    *,
    search: bool,
) -> dict[int, ItemOutcome]:
    from pipeline.jobs.reid_threshold import gallery_comparisons, job_threshold
    from pipeline.library import FaceLibrary
    from pipeline.store.observations import record_matches, record_observed_faces

    out: dict[int, ItemOutcome] = {}
    probes: list[tuple[Item, int, NDArray[np.float32], str]] = []
    faces_of: dict[int, list[int]] = {}
    sha_of: dict[int, str] = {}
    for item in items:
        oid = observed_id_of(item)
        if oid is not None:
            vec = prepared.observed.get(oid)
            if vec is None:
                out[item.id] = failed(
                    item, FacepipeError(ErrorCode.FACE_NOT_FOUND, f"no observed face {oid}")
                )
                continue
            faces_of[item.id] = [oid]
            probes.append((item, oid, vec, rt.engine.model_id))
            continue
        outcome = prepared.outcomes[item.id]
        if outcome.error is not None:
            out[item.id] = failed(item, outcome.error)
            continue
        analysis = outcome.analysis
        sha_of[item.id] = analysis.content_sha256
        ids = record_observed_faces(conn, analysis, source_uri=item.uri, job_id=job.id)
        faces_of[item.id] = ids
        embedded = [f for f in analysis.faces if f.embedding is not None]
        for oid, face in zip(ids, embedded, strict=True):
            probes.append((item, oid, face.embedding, analysis.model_id))
    matches: dict[int, list[dict[str, Any]]] = {}
    matched: dict[int, str | None] = {}
    if search and probes:
        library = FaceLibrary(rt.db, None, rt.settings)
        top_n = int(job.params.get("top_n") or rt.settings.identify_top_n)
        try:
            by_model: dict[str, list[int]] = {}
            for i, (_, _, _, model) in enumerate(probes):
                by_model.setdefault(model, []).append(i)
            for model, idxs in by_model.items():
                # items of one job share groups unless a manifest set them per item
                for gkey, sub in _group_split(job, [probes[i] for i in idxs]).items():
                    cands = library.identify_embeddings(
                        np.stack([p[2] for p in sub]), list(gkey), top_n, model_id=model,
                        conn=conn,
                    )
                    # a target false-match rate needs the gallery's size; a threshold does not
                    size = (
                        gallery_comparisons(conn, list(gkey), model, rt.settings)
                        if job.params.get("false_match_rate") is not None
                        else 0
                    )
                    limit = job_threshold(job.params, size, rt.settings).confidence
                    for (_, oid, _, _), cand in zip(sub, cands, strict=True):
                        record_matches(conn, oid, cand, job_id=job.id)
                        matches[oid] = [c.to_dict() for c in cand[:3]]
                        hit = cand[0] if cand and cand[0].confidence >= limit else None
                        matched[oid] = hit.person_id if hit is not None else None
        except FacepipeError as exc:
            for item in items:
                if item.id not in out:
                    out[item.id] = failed(item, exc, sha_of.get(item.id))
            return out
    for item in items:
        if item.id in out:
            continue
        ids = faces_of.get(item.id, [])
        result: dict[str, Any] = {
            "faces": [{"observed_id": i, "top": matches.get(i, [])} for i in ids]
        }
        if search:
            for face in result["faces"]:
                face["match"] = matched.get(face["observed_id"])
        out[item.id] = ItemOutcome(
            item.id, ItemStatus.DONE, content_sha256=sha_of.get(item.id), n_faces=len(ids),
            observed_ids=tuple(str(i) for i in ids), result=result,
        )
    return out


def _group_split(
    job: Job, probes: Sequence[tuple[Item, int, NDArray[np.float32], str]]
) -> dict[tuple[str, ...], list[tuple[Item, int, NDArray[np.float32], str]]]:
    out: dict[tuple[str, ...], list[tuple[Item, int, NDArray[np.float32], str]]] = {}
    for p in probes:
        out.setdefault(job_groups(job, p[0]), []).append(p)
    return out

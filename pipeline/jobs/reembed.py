"""Model upgrade as a job: re-embed a scope's enrolled faces from their stored aligned crops.

``facepipe reembed --pack DIR [--group G]`` creates a ``reembed`` job; its task (or ``--inline``)
runs :func:`run_reembed`:

1. the job's scope is one group or every enrolled face; its source model is the scope's active
   model (see :func:`pipeline.store.reembed.active_model`) unless given;
2. faces of the source model in the scope that have no twin of the target model yet (same
   person, image hash and face index) are read in face-id order, ``batch`` at a time; their
   stored 112x112 crops go through the target pack's recognizer, and each new vector is
   inserted as a new ``faces`` row *beside* the old one (same box, landmarks, quality, crop;
   the target model id). The old vectors stay searchable by the old model throughout;
3. progress is the job row's ``n_done`` / ``n_items``; a killed run is resumed by running the
   job again (``facepipe reembed --resume JOB``, or the task re-sent): faces that already
   have their twin are skipped, and inserts are idempotent on the faces key. A run holds the
   job's lease (:func:`pipeline.store.jobs.claim_job_lease`) and renews it while it works; when
   its process dies the renewals stop, and the watchdog re-sends the task once the lease has
   run out (:mod:`pipeline.jobs.watchdog`), so a killed reembed resumes on its own. A second
   delivery while a live run holds the lease does nothing;
4. when every face of the scope has its twin, the scope is switched: ``scope_models`` records
   the target as the scope's active model (reindex and identify-batch without ``--model`` use
   it). Faces without a stored crop cannot be re-embedded: they are counted in ``n_failed``
   and the scope is not switched (re-enrol them from their images, or delete them).

The old vectors are left in place: rolling back is switching back (a reembed job the other
way finds every twin present and only switches). Deleting them is left to the operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg import Connection

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.lease import holding_job_lease, new_owner
from pipeline.jobs.model import Job, JobKind
from pipeline.store import jobs as job_store
from pipeline.store import reembed as reembed_store
from pipeline.store.crops import decode_crop
from pipeline.store.db import Database
from pipeline.store.reembed import PendingFace, ReembedScope, scope_key

log = logging.getLogger(__name__)

DEFAULT_BATCH = 64
"""Faces read, embedded and written per step (one transaction each)."""
MAX_BATCH = 4096
MAX_LISTED_FAILURES = 100
"""Face ids without a crop listed on the job's error (the count is always exact)."""


@dataclass(frozen=True)
class ReembedParams:
    """A reembed job's parameters, checked once."""

    group: str | None
    source_model: str
    target_model: str
    pack_dir: str
    batch: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if self.source_model == self.target_model:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"the pack's recognizer is {self.target_model}, the model the scope already "
                "uses: nothing to re-embed",
            )
        if not 1 <= self.batch <= MAX_BATCH:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER, f"batch must be 1..{MAX_BATCH}, got {self.batch}"
            )

    @property
    def scope(self) -> ReembedScope:
        """The faces the job moves."""
        return ReembedScope(self.group, self.source_model, self.target_model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "source_model": self.source_model,
            "target_model": self.target_model,
            "pack_dir": self.pack_dir,
            "batch": self.batch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReembedParams:
        try:
            return cls(
                group=data.get("group"),
                source_model=str(data["source_model"]),
                target_model=str(data["target_model"]),
                pack_dir=str(data["pack_dir"]),
                batch=int(data.get("batch", DEFAULT_BATCH)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER, f"not a reembed job's parameters: {exc}"
            ) from exc


@dataclass(frozen=True)
class ReembedResult:
    """What a run did (this run only: ``embedded``; the job row holds the totals)."""

    job_id: str
    embedded: int
    total: int
    done: int
    without_crop: int
    switched: bool
    seconds: float
    held_elsewhere: bool = False
    """A live run of the job held its lease: this run did nothing."""

    @property
    def faces_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "embedded": self.embedded,
            "total": self.total,
            "done": self.done,
            "without_crop": self.without_crop,
            "switched": self.switched,
            "seconds": round(self.seconds, 3),
            "faces_per_s": round(self.faces_per_s, 2),
            "held_elsewhere": self.held_elsewhere,
        }


# --- the scope's source model -----------------------------------------------------------------


def source_model_of(conn: Connection, group: str | None) -> str:
    """The scope's active model, else the model of most of its faces."""
    model = reembed_store.scope_model(conn, group)
    if model is None:
        raise FacepipeError(
            ErrorCode.FACE_NOT_FOUND,
            "no enrolled faces" + ("" if group is None else f" in group {group!r}"),
        )
    return model


# --- the job ---------------------------------------------------------------------------------


def create_reembed_job(
    db: Database, params: ReembedParams, idempotency_key: str | None = None
) -> Job:
    """The job row of a reembed (pending), with ``n_items`` = the scope's faces to move."""
    with db.transaction() as conn:
        count = reembed_store.count_scope(conn, params.scope)
        if count.total == 0:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"no faces of model {params.source_model} in scope {scope_key(params.group)}",
            )
        job, created = job_store.create_job(
            conn, JobKind.REEMBED, params.to_dict(), idempotency_key=idempotency_key
        )
        if created:
            job_store.set_listed_totals(conn, job.id, count.total, count.with_twin)
        return job_store.get_job(conn, job.id)


def load_recognizer(pack_dir: Path, settings: Settings) -> Any:
    """The recognizer of the pack in ``pack_dir`` (only it: the crops are already aligned)."""
    from pipeline.models.pack import resolve_pack
    from pipeline.models.recognizer import ArcFaceRecognizer

    pack = resolve_pack(settings.model_copy(update={"model_dir": pack_dir}))
    return ArcFaceRecognizer.load(pack.recognizer, settings)


def recognizer_model_id(pack_dir: Path, settings: Settings) -> str:
    """The model id the pack's recognizer gives its vectors (no session is built)."""
    from pipeline.models.pack import resolve_pack

    return resolve_pack(settings.model_copy(update={"model_dir": pack_dir})).recognizer.model_id


def _embed_faces(
    faces: list[PendingFace], recognizer: Any, embed_batch: int
) -> tuple[list[PendingFace], NDArray[np.float32], list[int]]:
    """(faces whose crop decoded, their new vectors, face ids whose crop did not decode)."""
    kept, crops, broken = [], [], []
    for face in faces:
        try:
            crops.append(decode_crop(face.crop))
            kept.append(face)
        except FacepipeError:
            broken.append(face.face_id)
    vectors = recognizer.embed(crops, embed_batch) if crops else np.zeros((0, 512), np.float32)
    return kept, vectors, broken


def run_reembed(
    db: Database,
    job_id: str,
    settings: Settings,
    *,
    recognizer: Any = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReembedResult:
    """Run (or resume) the reembed job ``job_id`` to the end; see the module docstring.

    A :class:`FacepipeError` of the run (the pack changed, ...) fails the job; any other
    exception leaves it running without a lease, for the watchdog to re-send."""
    started = time.perf_counter()
    owner = new_owner()
    with db.transaction() as conn:
        job = job_store.get_job(conn, job_id)
        if job.kind != JobKind.REEMBED:
            raise FacepipeError(ErrorCode.JOB_STATE, f"job {job_id} is a {job.kind.value} job")
        if job.status.finished and job.status.value != "failed":
            raise FacepipeError(
                ErrorCode.JOB_STATE, f"job {job_id} is already {job.status.value}", job_id=job_id
            )
        params = ReembedParams.from_dict(job.params)
        if not job_store.claim_job_lease(conn, job_id, owner, settings.lease_s):
            log.info("reembed %s: a live run holds the job; this delivery does nothing", job_id)
            return ReembedResult(job_id, 0, job.n_items, job.n_done, 0, False, 0.0, True)
        count = reembed_store.count_scope(conn, params.scope)
        total, done = count.total, count.with_twin
        job_store.start_job_run(conn, job_id, total, done)
    with holding_job_lease(db, job_id, owner, settings.lease_s):
        try:
            return _run(db, job_id, params, settings, recognizer, on_progress, done, total, started)
        except FacepipeError as exc:  # failed while still holding the lease: never re-sent
            with db.transaction() as conn:
                job_store.fail_job(conn, job_id, exc.to_dict())
            raise


def _run(
    db: Database,
    job_id: str,
    params: ReembedParams,
    settings: Settings,
    recognizer: Any,
    on_progress: Callable[[int, int], None] | None,
    done: int,
    total: int,
    started: float,
) -> ReembedResult:
    if recognizer is None:
        recognizer = load_recognizer(Path(params.pack_dir), settings)
    if recognizer.model_id != params.target_model:
        raise FacepipeError(
            ErrorCode.MODEL_MISMATCH,
            f"the pack in {params.pack_dir} now holds {recognizer.model_id}, the job was made "
            f"for {params.target_model}",
        )
    after, embedded, broken_ids = 0, 0, []
    embed_batch = max(1, min(settings.embed_batch_size, params.batch))
    while True:
        with db.connection() as conn:
            if job_store.get_job(conn, job_id).status.value == "cancelled":
                break
            faces = reembed_store.pending_faces(conn, params.scope, after, params.batch)
        if not faces:
            break
        after = faces[-1].face_id
        kept, vectors, broken = _embed_faces(faces, recognizer, embed_batch)
        broken_ids.extend(broken)
        with db.transaction() as conn:
            # counted by rows really inserted: a run that lost its lease to another (its
            # renewals failed for longer than the lease) cannot count a face twice
            inserted = reembed_store.insert_twins(conn, kept, vectors, params.target_model, job_id)
            job_store.add_job_run_progress(conn, job_id, done=inserted, failed=len(broken))
        embedded += inserted
        if on_progress is not None:
            on_progress(done + embedded, total)
    return _finish(db, job_id, params, embedded, broken_ids, time.perf_counter() - started)


def _finish(
    db: Database,
    job_id: str,
    params: ReembedParams,
    embedded: int,
    broken: list[int],
    seconds: float,
) -> ReembedResult:
    """Count again; switch the scope when every face has its twin, else fail with the count."""
    with db.transaction() as conn:
        job = job_store.get_job(conn, job_id)
        count = reembed_store.count_scope(conn, params.scope)
        total, done, without_crop = count.total, count.with_twin, count.without_crop
        missing = total - done
        switched = False
        if job.status.value == "cancelled":
            pass
        elif missing == 0:
            reembed_store.switch_scope(conn, params.group, params.target_model, job_id)
            job_store.finish_job_run(conn, job_id, total, done)
            switched = True
        else:
            listed = reembed_store.unmovable_face_ids(conn, params.scope, MAX_LISTED_FAILURES)
            error = FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"{missing} of {total} faces could not be re-embedded ({without_crop} have no "
                "stored crop, the others an unreadable one): re-enrol them from their images or "
                "delete them, then resume this job; the scope was not switched",
            )
            face_ids = listed + broken[: MAX_LISTED_FAILURES - len(listed)]
            job_store.set_job_counts(conn, job_id, total, done, missing)
            job_store.fail_job(conn, job_id, {**error.to_dict(), "face_ids": face_ids})
    log.info(
        "reembed %s: %d embedded this run, %d/%d done, switched=%s",
        job_id,
        embedded,
        done,
        total,
        switched,
    )
    return ReembedResult(job_id, embedded, total, done, missing, switched, seconds)

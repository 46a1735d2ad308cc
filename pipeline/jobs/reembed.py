"""Model upgrade as a job: re-embed a scope's enrolled faces from their stored aligned crops.

``facepipe reembed --pack DIR [--group G]`` creates a ``reembed`` job; its task (or ``--inline``)
runs :func:`run_reembed`:

1. the job's scope is one group or every enrolled face; its source model is the scope's active
   model (see :func:`active_model`) unless given;
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
from pipeline.jobs.lease import LeaseKeeper, new_owner
from pipeline.jobs.model import Job, JobKind
from pipeline.store import jobs as job_store
from pipeline.store.crops import decode_crop
from pipeline.store.db import Database

log = logging.getLogger(__name__)

DEFAULT_BATCH = 64
"""Faces read, embedded and written per step (one transaction each)."""
MAX_BATCH = 4096
MAX_LISTED_FAILURES = 100
"""Face ids without a crop listed on the job's error (the count is always exact)."""
ALL_SCOPE = "all"


def scope_key(group: str | None) -> str:
    """``all`` or ``group=<id>``, as index snapshots name their scopes."""
    return ALL_SCOPE if group is None else f"group={group}"


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


# --- the scope's active model ----------------------------------------------------------------


def active_model(conn: Connection, group: str | None) -> str | None:
    """The model a scope was switched to by a finished reembed job, or None (never switched)."""
    row = conn.execute(
        "SELECT model_id FROM scope_models WHERE scope = %s", (scope_key(group),)
    ).fetchone()
    return None if row is None else str(row[0])


def _scope_sql(group: str | None, alias: str = "f") -> str:
    if group is None:
        return "TRUE"
    return f"{alias}.person_id IN (SELECT person_id FROM memberships WHERE group_id = %(group)s)"


def source_model_of(conn: Connection, group: str | None) -> str:
    """The scope's active model, else the model of most of its faces."""
    switched = active_model(conn, group)
    if switched is not None:
        return switched
    row = conn.execute(
        f"SELECT model_id FROM faces f WHERE {_scope_sql(group)} GROUP BY model_id "
        "ORDER BY count(*) DESC, model_id LIMIT 1",
        {"group": group},
    ).fetchone()
    if row is None:
        raise FacepipeError(
            ErrorCode.FACE_NOT_FOUND,
            "no enrolled faces" + ("" if group is None else f" in group {group!r}"),
        )
    return str(row[0])


_TWIN = (
    "EXISTS (SELECT 1 FROM faces t WHERE t.person_id = f.person_id "
    "AND t.content_sha256 = f.content_sha256 AND t.face_index = f.face_index "
    "AND t.model_id = %(target)s)"
)


def count_scope(conn: Connection, params: ReembedParams) -> tuple[int, int, int]:
    """(faces of the source model in the scope, those with a target twin, those without crop
    and without twin)."""
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {_TWIN}), "
        f"count(*) FILTER (WHERE f.crop IS NULL AND NOT {_TWIN}) "
        f"FROM faces f WHERE f.model_id = %(source)s AND {_scope_sql(params.group)}",
        {"source": params.source_model, "target": params.target_model, "group": params.group},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# --- the job ---------------------------------------------------------------------------------


def create_reembed_job(
    db: Database, params: ReembedParams, idempotency_key: str | None = None
) -> Job:
    """The job row of a reembed (pending), with ``n_items`` = the scope's faces to move."""
    with db.transaction() as conn:
        total, done, _ = count_scope(conn, params)
        if total == 0:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"no faces of model {params.source_model} in scope {scope_key(params.group)}",
            )
        job, created = job_store.create_job(
            conn, JobKind.REEMBED, params.to_dict(), idempotency_key=idempotency_key
        )
        if created:
            conn.execute(
                "UPDATE jobs SET n_items = %s, n_done = %s, listing_done = true WHERE id = %s",
                (total, done, job.id),
            )
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


_PENDING = (
    "SELECT f.face_id, f.person_id, f.box, f.landmarks, f.det_score, f.quality_score, "
    "f.quality_level, f.quality, f.source_uri, f.content_sha256, f.face_index, f.crop, "
    "f.crop_format, f.job_id FROM faces f "
    "WHERE f.model_id = %(source)s AND f.face_id > %(after)s AND f.crop IS NOT NULL "
    "AND {scope} AND NOT {twin} ORDER BY f.face_id LIMIT %(limit)s"
)


def _embed_rows(
    rows: list[tuple[Any, ...]], recognizer: Any, embed_batch: int
) -> tuple[list[tuple[Any, ...]], NDArray[np.float32], list[int]]:
    """(rows whose crop decoded, their new vectors, face ids whose crop did not decode)."""
    kept, crops, broken = [], [], []
    for row in rows:
        try:
            crops.append(decode_crop(bytes(row[11])))
            kept.append(row)
        except FacepipeError:
            broken.append(int(row[0]))
    vectors = recognizer.embed(crops, embed_batch) if crops else np.zeros((0, 512), np.float32)
    return kept, vectors, broken


def _insert_twins(
    conn: Connection,
    rows: list[tuple[Any, ...]],
    vectors: NDArray[np.float32],
    target: str,
    job_id: str,
) -> int:
    """The new rows beside the old ones; a twin already there (a redelivered run) is kept."""
    from psycopg.types.json import Jsonb

    inserted = 0
    with conn.cursor() as cur:
        for row, vector in zip(rows, vectors, strict=True):
            cur.execute(
                "INSERT INTO faces (person_id, model_id, embedding_dim, embedding, box, "
                "landmarks, det_score, quality_score, quality_level, quality, source_uri, "
                "content_sha256, face_index, crop, crop_format, job_id) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT ON CONSTRAINT faces_key DO NOTHING",
                (
                    row[1],
                    target,
                    int(vector.shape[0]),
                    np.asarray(vector, np.float32),
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    Jsonb(row[7]),
                    row[8],
                    row[9],
                    row[10],
                    row[11],
                    row[12],
                    job_id,
                ),
            )
            inserted += cur.rowcount
    return inserted


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
        total, done, _ = count_scope(conn, params)
        conn.execute(
            "UPDATE jobs SET status = 'running', error = NULL, finished_at = NULL, "
            "started_at = coalesce(started_at, now()), progress_at = now(), stalled = NULL, "
            "n_items = %s, n_done = %s, n_failed = 0 WHERE id = %s",
            (total, done, job_id),
        )
    try:
        with LeaseKeeper(db, owner, settings.lease_s, renew=job_store.renew_job_lease):
            return _run(db, job_id, params, settings, recognizer, on_progress, done, total, started)
    except FacepipeError as exc:
        with db.transaction() as conn:
            job_store.fail_job(conn, job_id, exc.to_dict())
        raise
    finally:
        try:
            with db.transaction() as conn:
                job_store.release_job_lease(conn, job_id, owner)
        except Exception as exc:  # the lease then runs out on its own
            log.warning("releasing the lease of reembed %s failed: %s", job_id, exc)


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
    sql = _PENDING.format(scope=_scope_sql(params.group), twin=_TWIN)
    after, embedded, broken_ids = 0, 0, []
    embed_batch = max(1, min(settings.embed_batch_size, params.batch))
    while True:
        with db.connection() as conn:
            if job_store.get_job(conn, job_id).status.value == "cancelled":
                break
            rows = conn.execute(
                sql,
                {
                    "source": params.source_model,
                    "after": after,
                    "target": params.target_model,
                    "group": params.group,
                    "limit": params.batch,
                },
            ).fetchall()
        if not rows:
            break
        after = int(rows[-1][0])
        kept, vectors, broken = _embed_rows(rows, recognizer, embed_batch)
        broken_ids.extend(broken)
        with db.transaction() as conn:
            # counted by rows really inserted: a run that lost its lease to another (its
            # renewals failed for longer than the lease) cannot count a face twice
            inserted = _insert_twins(conn, kept, vectors, params.target_model, job_id)
            conn.execute(
                "UPDATE jobs SET n_done = n_done + %s, n_failed = n_failed + %s, "
                "n_faces = n_faces + %s, progress_at = now(), stalled = NULL WHERE id = %s",
                (inserted, len(broken), inserted, job_id),
            )
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
        total, done, without_crop = count_scope(conn, params)
        missing = total - done
        switched = False
        if job.status.value == "cancelled":
            pass
        elif missing == 0:
            conn.execute(
                "INSERT INTO scope_models (scope, model_id, job_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (scope) DO UPDATE SET model_id = excluded.model_id, "
                "job_id = excluded.job_id, switched_at = now()",
                (scope_key(params.group), params.target_model, job_id),
            )
            conn.execute(
                "UPDATE jobs SET status = 'done', finished_at = now(), n_items = %s, "
                "n_done = %s, n_failed = 0 WHERE id = %s",
                (total, done, job_id),
            )
            switched = True
        else:
            listed = _unmovable_ids(conn, params)
            error = FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"{missing} of {total} faces could not be re-embedded ({without_crop} have no "
                "stored crop, the others an unreadable one): re-enrol them from their images or "
                "delete them, then resume this job; the scope was not switched",
            )
            face_ids = listed + broken[: MAX_LISTED_FAILURES - len(listed)]
            conn.execute(
                "UPDATE jobs SET n_items = %s, n_done = %s, n_failed = %s WHERE id = %s",
                (total, done, missing, job_id),
            )
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


def _unmovable_ids(conn: Connection, params: ReembedParams) -> list[int]:
    rows = conn.execute(
        f"SELECT f.face_id FROM faces f WHERE f.model_id = %(source)s AND f.crop IS NULL "
        f"AND {_scope_sql(params.group)} AND NOT {_TWIN} ORDER BY f.face_id LIMIT %(n)s",
        {
            "source": params.source_model,
            "target": params.target_model,
            "group": params.group,
            "n": MAX_LISTED_FAILURES,
        },
    ).fetchall()
    return [int(r[0]) for r in rows]

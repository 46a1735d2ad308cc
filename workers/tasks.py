"""The pipeline's Celery tasks: thin wrappers over ``pipeline.jobs`` taking ids, never bytes."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task

from pipeline.errors import FacepipeError, error_dict
from pipeline.index.batch_params import run_params, task_kwargs
from pipeline.index.planner import Plan, SearchEngine
from pipeline.jobs.chunks import process_chunk
from pipeline.jobs.dispatch import TaskName
from pipeline.jobs.export import export_matches
from pipeline.jobs.listing import list_step
from pipeline.jobs.model import JobKind, Origin
from pipeline.jobs.runtime import Runtime, get_runtime
from pipeline.jobs.submit import submit_job
from pipeline.store import jobs as store
from workers.base import backoff_s, facepipe_task, is_transient
from workers.locks import acquire_slot

log = logging.getLogger(__name__)


@facepipe_task(TaskName.LIST_SOURCE)
def list_source_task(
    self: Task, job_id: str, token: str | None = None, next_seq: int = 0
) -> dict[str, Any]:
    """List a job's source (one S3 page per run), enqueue its chunks, continue if needed."""
    rt = get_runtime()
    with rt.db.connection() as conn:
        job = store.get_job(conn, job_id)
    if job.status.finished:
        return {"job_id": job_id, "skipped": f"job is {job.status.value}"}
    send = rt.dispatcher
    try:
        step = list_step(
            rt, job, lambda lo, hi: send.send_chunk(job_id, lo, hi), token=token, next_seq=next_seq
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        with rt.db.transaction() as conn:
            store.fail_job(conn, job_id, error_dict(exc))
        raise
    if not step.finished:
        send.send_listing(job_id, step.next_token, step.next_seq)
    return {"job_id": job_id, "listed": step.listed, "next_seq": step.next_seq}


@facepipe_task(TaskName.PROCESS_CHUNK)
def process_chunk_task(self: Task, job_id: str, seq_lo: int, seq_hi: int) -> dict[str, Any]:
    """Process items ``seq_lo..seq_hi``; items with transient errors are retried later.

    Its soft and hard time limits come with the message (sized from the chunk's item count,
    see workers.dispatch); at the soft limit the run gives its items back before it ends.
    """
    rt = get_runtime()
    result = process_chunk(rt, job_id, seq_lo, seq_hi)
    if result.job_finished:
        _on_job_finished(job_id)
    if result.retry_later:
        # a new task, not self.retry(): this run's results are committed and final
        rt.dispatcher.send_chunk(job_id, seq_lo, seq_hi, countdown=backoff_s(self.request.retries))
    return result.to_dict()


def _on_job_finished(job_id: str) -> None:
    rt = get_runtime()
    with rt.db.connection() as conn:
        job = store.get_job(conn, job_id)
    log.info(
        "job %s finished: %d done, %d failed, %d faces",
        job_id,
        job.n_done,
        job.n_failed,
        job.n_faces,
    )
    if job.params.get("export"):
        rt.dispatcher.send_export(job_id, job.params["export"])


@facepipe_task(TaskName.EXPORT)
def export_task(self: Task, job_id: str, dest: str) -> dict[str, Any]:
    """Export a finished job's observed faces and matches as JSON Lines."""
    count = export_matches(get_runtime(), job_id, dest)
    return {"job_id": job_id, "dest": dest, "records": count}


def _slot(seconds: float) -> str:
    return str(int(time.time() // max(1.0, seconds)))


@facepipe_task(NIGHTLY := TaskName.NIGHTLY_REIDENTIFY)
def nightly_reidentify_task(self: Task) -> dict[str, Any]:
    """Re-identify observed faces stored in the last ``nightly_reidentify_hours`` (once a day)."""
    rt = get_runtime()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    if not acquire_slot(rt.settings, NIGHTLY, day, 23 * 3600):
        return {"skipped": "another beat instance ran it"}
    since = datetime.now(UTC) - timedelta(hours=rt.settings.nightly_reidentify_hours)
    return run_nightly(rt, day, since)


def run_nightly(rt: Runtime, day: str, since: datetime) -> dict[str, Any]:
    """Re-identify the faces observed since ``since`` against ``reidentify_groups``.

    When the planner picks FAISS for them (a large gallery with a fresh snapshot, a batch of
    probes) the night's work is one ``identify-batch`` run on the ``search`` queue; otherwise a
    ``reidentify`` job (chunks of ``observed:<id>`` items on ``infer``, searched in pgvector).
    Both are idempotent per day, and both match at ``nightly_false_match_rate`` when it is set
    (the threshold then follows the gallery's size), else at ``identify_match_threshold``.
    """
    groups = list(rt.settings.reidentify_groups)
    rate = rt.settings.nightly_false_match_rate
    plan = _nightly_plan(rt, groups, since)
    if plan is not None and plan.engine == SearchEngine.FAISS:
        params = {
            **run_params(groups, since=since, false_match_rate=rate),
            "plan": plan.to_dict(),
        }
        with rt.db.transaction() as conn:
            job, created = store.create_job(
                conn,
                JobKind.IDENTIFY_BATCH,
                params,
                idempotency_key=f"nightly-identify-batch:{day}",
                origin=Origin.SCHEDULE,
            )
        if created:
            rt.dispatcher.send(TaskName.IDENTIFY_BATCH, task_kwargs(params, job.id))
        return {"job_id": job.id, "kind": JobKind.IDENTIFY_BATCH.value}
    job = submit_job(
        JobKind.REIDENTIFY,
        None,
        groups=groups,
        since=since,
        idempotency_key=f"nightly-reidentify:{day}",
        rt=rt,
        origin=Origin.SCHEDULE,
        false_match_rate=rate,
    )
    return {"job_id": job.id, "kind": JobKind.REIDENTIFY.value}


def _nightly_plan(rt: Runtime, groups: list[str], since: datetime) -> Plan | None:
    """The planner's choice for the night's probes (None: no probe or no enrolled face)."""
    from pipeline.index.planner import plan_identify
    from pipeline.index.reindex import default_model
    from pipeline.store import repo

    with rt.db.connection() as conn:
        probes = repo.count_observed_since(conn, since)
    if not probes or not groups:
        return None
    try:
        model = default_model(rt.db)
    except FacepipeError:
        return None
    return plan_identify(rt.db, groups, model, probes, rt.settings)


@facepipe_task(REINDEX := TaskName.SCHEDULED_REINDEX)
def scheduled_reindex_task(self: Task) -> dict[str, Any]:
    """Forward to the FAISS reindex task once per interval."""
    rt = get_runtime()
    interval = rt.settings.reindex_interval_s
    if not acquire_slot(rt.settings, REINDEX, _slot(interval), int(interval)):
        return {"skipped": "another beat instance ran it"}
    sent = rt.dispatcher.send(TaskName.REINDEX, {})
    return {"sent": TaskName.REINDEX.value, "task_id": sent.id}


@facepipe_task(CLEANUP := TaskName.CLEANUP)
def cleanup_task(self: Task) -> dict[str, Any]:
    """Delete the items of jobs finished before the retention period (once a day)."""
    rt = get_runtime()
    if not acquire_slot(rt.settings, CLEANUP, _slot(86400), 23 * 3600):
        return {"skipped": "another beat instance ran it"}
    with rt.db.transaction() as conn:
        deleted = store.cleanup_items(conn, rt.settings.job_retention_days)
    return {"deleted_items": deleted}

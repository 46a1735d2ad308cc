"""Submitting work: create the job row, then enqueue its listing (or its chunks).

Used by the CLI, the S3 listener, the HTTP API and the beat tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs import store
from pipeline.jobs.model import ItemSpec, Job, JobKind
from pipeline.jobs.producers import source_type
from pipeline.jobs.reid_threshold import reid_params
from pipeline.jobs.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)


def submit_job(
    kind: JobKind,
    source: str | None,
    *,
    groups: Sequence[str] = (),
    manifest: str | None = None,
    export: str | None = None,
    since: datetime | None = None,
    top_n: int | None = None,
    person_id: str | None = None,
    chunk_size: int | None = None,
    page_size: int | None = None,
    idempotency_key: str | None = None,
    match_threshold: float | None = None,
    false_match_rate: float | None = None,
    rt: Runtime | None = None,
) -> Job:
    """Create a job over ``source`` (or observed faces ``since``) and enqueue its listing.

    With an ``idempotency_key`` already used, the existing job is returned and nothing is sent.
    """
    from workers.tasks import list_source_task

    rt = rt or get_runtime()
    params: dict[str, Any] = {"groups": list(groups)}
    if source is not None:
        source_type(source)  # a missing local path is refused now, not by the worker later
        params["source"] = source
    if manifest:
        params["manifest"] = manifest
    if export:
        params["export"] = export
    if since is not None:
        params["since"] = since.isoformat()
    if top_n:
        params["top_n"] = top_n
    if person_id:
        params["person_id"] = person_id
    if chunk_size:
        params["chunk_size"] = chunk_size
    if page_size:
        params["page_size"] = page_size
    # reidentify: a match threshold or a target false-match rate (pipeline.jobs.reid_threshold)
    params.update(reid_params(match_threshold, false_match_rate))
    with rt.db.transaction() as conn:
        if kind == JobKind.REIDENTIFY and groups:
            _require_a_group(conn, groups)
        job, created = store.create_job(conn, kind, params, idempotency_key=idempotency_key)
    if created:
        list_source_task.apply_async(args=(job.id,))
        log.info("job %s (%s) submitted: %s", job.id, kind.value, params)
    return job


def _require_a_group(conn: Any, groups: Sequence[str]) -> None:
    """Refuse a re-identification against groups of which none exists, before any work.

    Otherwise every image would be analysed and stored as observed faces, and then every item
    would fail on the search. Missing groups among existing ones are skipped, as in identify.
    """
    from pipeline.store import repo

    if repo.existing_groups(conn, list(groups)):
        return
    code = ErrorCode.GROUP_NOT_FOUND if len(groups) == 1 else ErrorCode.GROUP_LIST_NOT_FOUND
    raise FacepipeError(code, f"no group of {list(groups)} exists", group_ids=list(groups))


def submit_items(
    kind: JobKind,
    specs: Sequence[ItemSpec],
    *,
    groups: Sequence[str],
    idempotency_key: str,
    params: dict[str, Any] | None = None,
    rt: Runtime | None = None,
) -> Job:
    """Create a job with these items already listed and enqueue its chunks.

    Idempotent on ``idempotency_key``: a repeated call (e.g. a redelivered SQS message) finds
    the job and re-enqueues only its unfinished items, which is harmless.
    """
    from workers.tasks import enqueue_chunk

    rt = rt or get_runtime()
    job_params = {"groups": list(groups), **(params or {})}
    with rt.db.transaction() as conn:
        job, created = store.create_job(conn, kind, job_params, idempotency_key=idempotency_key)
        if created:
            store.add_items(conn, job.id, list(specs), 0)
            store.mark_listing_done(conn, job.id)
        seqs = store.unfinished_seqs(conn, job.id)
    for lo, hi in store.seq_ranges(seqs, rt.settings.chunk_size):
        enqueue_chunk(job.id, lo, hi)
    return job


def resume_job(job_id: str, *, rt: Runtime | None = None) -> int:
    """Re-enqueue a job's unfinished items (and its listing if it never finished).

    Returns the number of chunks sent. Safe at any time: done items are skipped.
    """
    from workers.tasks import enqueue_chunk, list_source_task

    rt = rt or get_runtime()
    with rt.db.connection() as conn:
        job = store.get_job(conn, job_id)
        seqs = store.unfinished_seqs(conn, job.id)
    if not job.listing_done and not job.status.finished:
        list_source_task.apply_async(args=(job.id,))
    ranges = store.seq_ranges(seqs, rt.settings.chunk_size)
    for lo, hi in ranges:
        enqueue_chunk(job.id, lo, hi)
    return len(ranges)


def retry_failed(job_id: str, *, rt: Runtime | None = None) -> int:
    """Put a finished job's failed items back to pending and enqueue them; returns the count."""
    from workers.tasks import enqueue_chunk

    rt = rt or get_runtime()
    with rt.db.transaction() as conn:
        seqs = store.reset_failed_items(conn, job_id)
    for lo, hi in store.seq_ranges(seqs, rt.settings.chunk_size):
        enqueue_chunk(job_id, lo, hi)
    return len(seqs)

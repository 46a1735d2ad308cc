"""Submitting work: create the job row, then hand its listing (or its chunks) to the queues.

Celery-free: the queues are reached through a :class:`~pipeline.jobs.dispatch.Dispatcher`
(the runtime's, loaded by name from the installed implementations, unless one is given).
Every caller-given location is parsed once here, under the trust of who submits
(:class:`~pipeline.jobs.model.Origin`): a job that comes in over HTTP can only name remote
sources, and its export goes to s3:// or under the export folder.

If the broker cannot take the first message, the job row is removed again and the caller gets
BROKER_UNAVAILABLE at once: no job sits ``pending`` with nothing to run it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import Dispatcher
from pipeline.jobs.exportdest import parse_export_destination
from pipeline.jobs.model import ItemSpec, Job, JobKind, Origin
from pipeline.jobs.producers import source_type
from pipeline.jobs.reid_threshold import reid_params
from pipeline.jobs.runtime import Runtime, get_runtime
from pipeline.sources.location import parse_location
from pipeline.store import jobs as store

log = logging.getLogger(__name__)


def submit_job(
    kind: JobKind,
    source: str | None,
    *,
    rt: Runtime | None = None,
    dispatcher: Dispatcher | None = None,
    groups: Sequence[str] = (),
    manifest: str | None = None,
    export: str | None = None,
    since: datetime | None = None,
    top_n: int | None = None,
    person_id: str | None = None,
    chunk_size: int | None = None,
    page_size: int | None = None,
    idempotency_key: str | None = None,
    origin: Origin = Origin.CLI,
    match_threshold: float | None = None,
    false_match_rate: float | None = None,
) -> Job:
    """Create a job over ``source`` (or observed faces ``since``) and enqueue its listing.

    With an ``idempotency_key`` already used, the existing job is returned and nothing is sent.
    A re-identification takes a match threshold or a target false-match rate
    (:mod:`pipeline.jobs.reid_threshold`).
    """
    rt = rt or get_runtime()
    send_to = dispatcher or rt.dispatcher
    trust = origin.trust
    params: dict[str, Any] = {"groups": list(groups)}
    if source is not None:
        location = parse_location(source, trust, inline=False)
        source_type(location, trust)  # a missing local path is refused now, not later
        params["source"] = str(location)
    if manifest:
        params["manifest"] = str(parse_location(manifest, trust, inline=False))
    if export:
        # checked now (a bad destination is the caller's error) and again when written
        params["export"] = parse_export_destination(export, rt.settings, trust).text
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
    params.update(reid_params(match_threshold, false_match_rate))

    def check(conn: Connection) -> None:
        if kind == JobKind.REIDENTIFY and groups:
            _require_a_group(conn, groups)

    return _create_and_send(
        rt,
        kind,
        params,
        idempotency_key,
        origin,
        check,
        lambda job: send_to.send_listing(job.id),
    )


def _create_and_send(
    rt: Runtime,
    kind: JobKind,
    params: dict[str, Any],
    idempotency_key: str | None,
    origin: Origin,
    check: Callable[[Connection], None],
    send: Callable[[Job], None],
) -> Job:
    with rt.db.transaction() as conn:
        check(conn)
        job, created = store.create_job(
            conn, kind, params, idempotency_key=idempotency_key, origin=origin
        )
    if not created:
        return job
    try:
        send(job)
    except FacepipeError as exc:
        if exc.code is ErrorCode.BROKER_UNAVAILABLE:
            with rt.db.transaction() as conn:
                store.delete_job(conn, job.id)
        raise
    log.info(
        "job %s (%s, from %s) submitted: %s",
        job.id,
        kind.value,
        origin.value,
        params,
        extra={"job_id": job.id},  # a field of its own in JSON logs, beside the request id
    )
    return job


def _require_a_group(conn: Connection, groups: Sequence[str]) -> None:
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
    origin: Origin = Origin.S3_EVENT,
    rt: Runtime | None = None,
    dispatcher: Dispatcher | None = None,
) -> Job:
    """Create a job with these items already listed and enqueue its chunks.

    Idempotent on ``idempotency_key``: a repeated call (e.g. a redelivered SQS message) finds
    the job and re-enqueues only its unfinished items, which is harmless.
    """
    rt = rt or get_runtime()
    dispatcher = dispatcher or rt.dispatcher
    job_params = {"groups": list(groups), **(params or {})}
    with rt.db.transaction() as conn:
        job, created = store.create_job(
            conn, kind, job_params, idempotency_key=idempotency_key, origin=origin
        )
        if created:
            store.add_items(conn, job.id, list(specs), 0)
            store.mark_listing_done(conn, job.id)
        seqs = store.unfinished_seqs(conn, job.id)
    try:
        for lo, hi in store.seq_ranges(seqs, rt.settings.chunk_size):
            dispatcher.send_chunk(job.id, lo, hi)
    except FacepipeError as exc:
        if created and exc.code is ErrorCode.BROKER_UNAVAILABLE:
            with rt.db.transaction() as conn:
                store.delete_job(conn, job.id)
        raise
    return job


def resume_job(
    job_id: str, *, rt: Runtime | None = None, dispatcher: Dispatcher | None = None
) -> int:
    """Re-enqueue a job's unfinished items (and its listing if it never finished).

    Returns the number of chunks sent. Safe at any time: done items and items held by a live
    run are skipped. The watchdog does this on its own; the command is for the impatient.
    """
    rt = rt or get_runtime()
    dispatcher = dispatcher or rt.dispatcher
    with rt.db.connection() as conn:
        job = store.get_job(conn, job_id)
        seqs = store.unfinished_seqs(conn, job.id)
    if not job.listing_done and not job.status.finished:
        dispatcher.send_listing(job.id, job.listing_token, job.listing_next_seq)
    ranges = store.seq_ranges(seqs, rt.settings.chunk_size)
    for lo, hi in ranges:
        dispatcher.send_chunk(job.id, lo, hi)
    return len(ranges)


def retry_failed(
    job_id: str, *, rt: Runtime | None = None, dispatcher: Dispatcher | None = None
) -> int:
    """Put a finished job's failed items back to pending and enqueue them; returns the count."""
    rt = rt or get_runtime()
    dispatcher = dispatcher or rt.dispatcher
    with rt.db.transaction() as conn:
        seqs = store.reset_failed_items(conn, job_id)
    for lo, hi in store.seq_ranges(seqs, rt.settings.chunk_size):
        dispatcher.send_chunk(job_id, lo, hi)
    return len(seqs)

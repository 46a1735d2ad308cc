"""Job submission bound to the Celery app: :mod:`pipeline.jobs.submit` with its dispatcher.

Used by the CLI, the S3 listener, the HTTP API and the beat tasks; the logic itself lives in
``pipeline/jobs/submit.py`` (Celery-free).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline.jobs import submit as jobs_submit
from pipeline.jobs.model import ItemSpec, Job, JobKind, Origin
from pipeline.jobs.runtime import Runtime, get_runtime
from workers.app import QUEUES, app
from workers.dispatch import CeleryDispatcher


def dispatcher(rt: Runtime | None = None) -> CeleryDispatcher:
    """The Celery dispatcher for this process's settings."""
    return CeleryDispatcher(app, (rt or get_runtime()).settings, QUEUES)


def submit_job(
    kind: JobKind,
    source: str | None,
    *,
    rt: Runtime | None = None,
    origin: Origin = Origin.CLI,
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
) -> Job:
    """See :func:`pipeline.jobs.submit.submit_job`."""
    rt = rt or get_runtime()
    return jobs_submit.submit_job(
        rt, dispatcher(rt), kind, source, groups=groups, manifest=manifest, export=export,
        since=since, top_n=top_n, person_id=person_id, chunk_size=chunk_size,
        page_size=page_size, idempotency_key=idempotency_key, origin=origin,
        match_threshold=match_threshold, false_match_rate=false_match_rate,
    )


def submit_items(
    kind: JobKind,
    specs: Sequence[ItemSpec],
    *,
    groups: Sequence[str],
    idempotency_key: str,
    params: dict[str, Any] | None = None,
    origin: Origin = Origin.S3_EVENT,
    rt: Runtime | None = None,
) -> Job:
    """See :func:`pipeline.jobs.submit.submit_items`."""
    rt = rt or get_runtime()
    return jobs_submit.submit_items(
        rt, dispatcher(rt), kind, specs, groups=groups, idempotency_key=idempotency_key,
        params=params, origin=origin,
    )


def resume_job(job_id: str, *, rt: Runtime | None = None) -> int:
    """See :func:`pipeline.jobs.submit.resume_job`."""
    rt = rt or get_runtime()
    return jobs_submit.resume_job(rt, dispatcher(rt), job_id)


def retry_failed(job_id: str, *, rt: Runtime | None = None) -> int:
    """See :func:`pipeline.jobs.submit.retry_failed`."""
    rt = rt or get_runtime()
    return jobs_submit.retry_failed(rt, dispatcher(rt), job_id)

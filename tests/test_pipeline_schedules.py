"""The scheduled tasks, run in-process as beat would have Celery run them (real Redis + db)."""

from __future__ import annotations

from typing import Any

from pipeline.jobs.model import JobKind, JobStatus
from pipeline.jobs.runtime import get_runtime
from pipeline.store import jobs as store


def test_scheduled_tasks_run_once_per_slot(
    pipeline_env: Any, clean_database: Any, pipeline_redis: Any
) -> None:
    from pipeline.library import FaceLibrary
    from workers.tasks import cleanup_task, nightly_reidentify_task, scheduled_reindex_task

    rt = get_runtime()
    FaceLibrary(rt.db, None, rt.settings).ensure_person("nightly", ["s3group"])
    first = nightly_reidentify_task()
    second = nightly_reidentify_task()  # a second beat instance firing the same night
    assert "job_id" in first and second == {"skipped": "another beat instance ran it"}
    with get_runtime().db.connection() as conn:
        job = store.get_job(conn, first["job_id"])
    assert job.kind == JobKind.REIDENTIFY and job.status == JobStatus.PENDING
    assert job.params["groups"] == ["s3group"] and "since" in job.params
    assert pipeline_redis.llen("ingest") == 1  # its listing waits for a worker

    sent = scheduled_reindex_task()
    assert sent["sent"] == "facepipe.index.reindex"
    assert scheduled_reindex_task() == {"skipped": "another beat instance ran it"}
    assert pipeline_redis.llen("index") == 1

    assert cleanup_task() == {"deleted_items": 0}
    assert "skipped" in cleanup_task()

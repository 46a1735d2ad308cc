"""FAISS tasks: ``facepipe.index.reindex`` (queue ``index``) and ``facepipe.search.identify_batch``
(queue ``search``), thin wrappers over :mod:`pipeline.index`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import Task

from pipeline.errors import FacepipeError
from pipeline.index.identify_batch import identify_batch
from pipeline.index.planner import SearchEngine
from pipeline.index.reindex import default_model, due_scopes, reindex
from pipeline.index.snapshot import Scope
from pipeline.index.spec import IndexKind
from pipeline.jobs.dispatch import TaskName
from pipeline.jobs.runtime import get_runtime
from workers.base import facepipe_task

log = logging.getLogger(__name__)

REINDEX = TaskName.REINDEX
IDENTIFY_BATCH = TaskName.IDENTIFY_BATCH


@facepipe_task(REINDEX)
def reindex_task(
    self: Task,
    group: str | None = None,
    all_faces: bool = False,
    model_id: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Rebuild the FAISS snapshot of one group (``group``), of all faces (``all_faces``), or,
    with neither (the beat schedule), of every scope that is due."""
    rt = get_runtime()
    if group is None and not all_faces:
        scopes = due_scopes(rt.db, rt.settings)
    else:
        model = model_id or default_model(rt.db, group)
        scopes = [Scope(model_id=model, group=None if all_faces else group)]
    built, failed = [], []
    for scope in scopes:
        try:
            rec = reindex(rt.db, scope, rt.settings, kind=IndexKind(kind) if kind else None)
        except FacepipeError as exc:
            if exc.retryable or len(scopes) == 1:
                raise
            log.warning("reindex of %s failed: %s", scope.key, exc)
            failed.append({"scope": scope.key, **exc.to_dict()})
            continue
        built.append(rec.to_dict())
    return {"snapshots": built, "failed": failed}


@facepipe_task(IDENTIFY_BATCH, acks_late=True)
def identify_batch_task(
    self: Task,
    groups: list[str],
    job: str | None = None,
    since: str | None = None,
    sources: list[str] | None = None,
    top_n: int | None = None,
    export: str | None = None,
    run_job_id: str | None = None,
    engine: str | None = None,
    match_threshold: float | None = None,
    false_match_rate: float | None = None,
) -> dict[str, Any]:
    """Identify a batch of probes (observed faces of ``job``, stored ``since`` an ISO time, or
    the faces of ``sources``) against ``groups``; matches go to Postgres (``run_job_id`` is the
    run's jobs row, created by the caller or here); ``match_threshold`` or ``false_match_rate``
    decide which count as matches in its summary. A redelivered run rewrites the same
    matches."""
    rt = get_runtime()
    result = identify_batch(
        rt.db,
        groups,
        probe_job=job,
        since=datetime.fromisoformat(since) if since else None,
        sources=tuple(sources or ()),
        top_n=top_n,
        export=export,
        engine=rt.engine if sources else None,
        settings=rt.settings,
        job_id=run_job_id,
        force_engine=SearchEngine(engine) if engine else None,
        match_threshold=match_threshold,
        false_match_rate=false_match_rate,
    )
    return result.to_dict()

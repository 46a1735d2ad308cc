"""The reembed task (``facepipe.infer.reembed``, queue ``infer``): a thin wrapper over
:func:`pipeline.jobs.reembed.run_reembed`.

``acks_late``: a worker lost mid-run has its task redelivered, and the run resumes where the
database says it stopped (faces with their new twin are skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Task

from pipeline.jobs.dispatch import TaskName
from pipeline.jobs.reembed import load_recognizer, run_reembed
from pipeline.jobs.runtime import get_runtime
from workers.base import facepipe_task

REEMBED = TaskName.REEMBED

_recognizers: dict[str, Any] = {}
"""Recognizer sessions of the packs this worker re-embedded with, loaded once per pack."""


@facepipe_task(REEMBED, acks_late=True)
def reembed_task(self: Task, job_id: str) -> dict[str, Any]:
    """Run (or resume) the reembed job ``job_id`` to its end."""
    rt = get_runtime()
    from pipeline.jobs.reembed import ReembedParams
    from pipeline.store import jobs as job_store

    with rt.db.connection() as conn:
        params = ReembedParams.from_dict(job_store.get_job(conn, job_id).params)
    recognizer = _recognizers.get(params.pack_dir)
    if recognizer is None:
        recognizer = load_recognizer(Path(params.pack_dir), rt.settings)
        _recognizers[params.pack_dir] = recognizer
    return run_reembed(rt.db, job_id, rt.settings, recognizer=recognizer).to_dict()

"""An identify-batch run's parameters, as its ``jobs`` row keeps them, and the task message
that runs it.

One home for both, because four places meet here: the CLI and the nightly schedule create a
run and send its task, the task's function stores what it was asked for, and the watchdog
re-sends the task of a run that died from nothing but the stored row. A parameter stored in
one shape and sent in another (the forced engine once was not stored at all) makes a re-sent
run differ from the one that was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.index.planner import SearchEngine
from pipeline.jobs.reid_threshold import reid_params


def run_params(
    groups: Sequence[str],
    *,
    probe_job: str | None = None,
    since: datetime | None = None,
    sources: Sequence[str] = (),
    top_n: int | None = None,
    export: str | None = None,
    force_engine: SearchEngine | None = None,
    match_threshold: float | None = None,
    false_match_rate: float | None = None,
) -> dict[str, Any]:
    """The parameters a run's ``jobs`` row keeps (JSON); ILLEGAL_PARAMETER for a threshold and
    a false-match rate both given."""
    return {
        "groups": list(groups),
        "probe_job": probe_job,
        "since": since.isoformat() if since else None,
        "sources": list(sources),
        "top_n": top_n,
        "export": export,
        "engine": force_engine.value if force_engine else None,
        **reid_params(match_threshold, false_match_rate),
    }


def task_kwargs(params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The ``facepipe.search.identify_batch`` message of the run ``run_id`` with these stored
    parameters (:func:`run_params`)."""
    return {
        "groups": list(params.get("groups") or ()),
        "job": params.get("probe_job"),
        "since": params.get("since"),
        "sources": list(params.get("sources") or ()) or None,
        "top_n": params.get("top_n"),
        "export": params.get("export"),
        "run_job_id": run_id,
        "engine": params.get("engine"),
        "match_threshold": params.get("match_threshold"),
        "false_match_rate": params.get("false_match_rate"),
    }

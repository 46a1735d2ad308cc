"""The workers' side of observability, wired through Celery signals (no task code changes).

* **Metrics**: with ``FACEPIPE_WORKER_METRICS_PORT`` set, the worker's main process serves
  ``/metrics`` on that port. Tasks run in the prefork pool's child processes, so their values
  reach the main process through prometheus-client's multiprocess mode: each child writes its
  values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and the main process adds them
  up on each scrape. One port per worker host (container) rather than one per pool process:
  Prometheus needs no discovery of pool processes that come and go, and a recycled process's
  counts are not lost. The main process empties the directory when it starts.
* **Task outcomes**: ``facepipe_tasks_total{task,outcome}`` and ``facepipe_task_duration_seconds``
  from task_prerun / task_postrun / task_retry.
* **Logs**: Celery hands logging to :func:`pipeline.observability.logging.configure_logging`
  (``FACEPIPE_LOG_FORMAT``), and every task run binds ``task``, ``task_id``, ``job_id``,
  ``chunk`` and the API ``request_id`` that caused it (sent as a message header).
* **Events**: task arguments are shown by name (``kwargsrepr``) in task-sent / task-received
  events, so Flower and ``celery events`` show ``job_id=..., seq_lo=0, seq_hi=31`` rather than
  a bare tuple.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)
from celery.utils.saferepr import saferepr

from pipeline.config import get_settings
from pipeline.observability import logging as obs_logging
from pipeline.observability import metrics
from workers.errors import PermanentTaskError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "facepipe_request_id"
"""Message header carrying the API request id into the task it caused."""

_running: dict[str, tuple[float, Any]] = {}
"""task id -> (start time, log-context token) of the task runs in progress in this process."""
_outcomes: dict[str, str] = {}
"""task id -> outcome decided before task_postrun (a retry)."""


def named_args(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's call arguments by parameter name (``self`` of a bound task left out)."""
    try:
        params = [
            p
            for p in inspect.signature(task.run).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return dict(kwargs)
    if params and params[0].name == "self":
        params = params[1:]
    named = {p.name: value for p, value in zip(params, args, strict=False)}
    extra = args[len(params) :]
    if extra:
        named["args"] = extra
    return {**named, **kwargs}


def log_ids(task_name: str, task_id: str | None, named: dict[str, Any]) -> dict[str, Any]:
    """The log-context ids of a task run."""
    ids: dict[str, Any] = {"task": task_name, "task_id": task_id}
    if "job_id" in named:
        ids["job_id"] = named["job_id"]
    elif "run_job_id" in named:
        ids["job_id"] = named["run_job_id"]
    if "seq_lo" in named and "seq_hi" in named:
        ids["chunk"] = f"{named['seq_lo']}-{named['seq_hi']}"
    return ids


def install(app: Celery) -> None:
    """Connect the hooks (idempotent: each has a dispatch uid)."""

    @before_task_publish.connect(weak=False, dispatch_uid="facepipe-publish")
    def _on_publish(
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        body: Any = None,
        **_: Any,
    ) -> None:
        if headers is None:
            return
        request_id = obs_logging.current_ids().get("request_id")
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        task = app.tasks.get(sender or headers.get("task", ""))
        if task is None or not isinstance(body, tuple | list) or len(body) < 2:
            return
        args, kwargs = body[0], body[1]
        named = named_args(task, tuple(args), dict(kwargs))
        headers["argsrepr"] = "()"
        # bounded as Celery bounds its own reprs (an id list must not bloat every event)
        headers["kwargsrepr"] = saferepr(named, app.amqp.kwargsrepr_maxsize)

    @setup_logging.connect(weak=False, dispatch_uid="facepipe-logging")
    def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
        obs_logging.configure_logging(get_settings(), level=loglevel)

    @worker_init.connect(weak=False, dispatch_uid="facepipe-worker-metrics")
    def _on_worker_init(**_: Any) -> None:
        port = get_settings().worker_metrics_port
        if not port:
            return
        from prometheus_client import start_http_server

        if metrics.multiprocess_dir() is None:
            log.warning(
                "FACEPIPE_WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: only "
                "this process's metrics are served (right for -P solo or threads; with the "
                "prefork pool the pool processes' metrics are missing)"
            )
        else:
            metrics.clear_multiprocess_dir()
        start_http_server(port, "0.0.0.0", registry=metrics.scrape_registry())
        log.info("worker metrics on :%d/metrics", port)

    @worker_process_shutdown.connect(weak=False, dispatch_uid="facepipe-process-dead")
    def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
        metrics.mark_process_dead(pid or os.getpid())

    @task_prerun.connect(weak=False, dispatch_uid="facepipe-prerun")
    def _on_prerun(
        task_id: str | None = None,
        task: Any = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        if task is None or task_id is None:
            return
        named = named_args(task, tuple(args or ()), dict(kwargs or {}))
        ids = log_ids(task.name, task_id, named)
        ids["request_id"] = getattr(task.request, REQUEST_ID_HEADER, None)
        _running[task_id] = (time.perf_counter(), obs_logging.bind(**ids))

    @task_retry.connect(weak=False, dispatch_uid="facepipe-retry")
    def _on_retry(request: Any = None, **_: Any) -> None:
        if request is not None and getattr(request, "id", None):
            _outcomes[request.id] = "retry"

    @task_postrun.connect(weak=False, dispatch_uid="facepipe-postrun")
    def _on_postrun(
        task_id: str | None = None,
        task: Any = None,
        retval: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if task is None or task_id is None:
            return
        started, token = _running.pop(task_id, (None, None))
        outcome = _outcomes.pop(task_id, None) or task_outcome(state, retval)
        if started is not None:
            metrics.observe_task(task.name, outcome, time.perf_counter() - started)
        if token is not None:
            # ValueError: bound in another context (should not happen); the run is over anyway
            with contextlib.suppress(ValueError):
                obs_logging.unbind(token)


def task_outcome(state: str | None, retval: Any) -> str:
    """done, failed (a permanent error: :class:`~workers.base.PermanentTaskError`), retry or
    crashed (anything else that ended the task)."""
    if state == "RETRY":
        return "retry"
    if state == "FAILURE":
        return "failed" if isinstance(retval, PermanentTaskError) else "crashed"
    return "done"

"""The watchdog as a Celery task (beat) and as a loop inside every worker.

Both paths call :func:`run_once`, which takes a Redis slot lock first, so however many workers
and beat instances there are, the watchdog runs once per ``watchdog_interval_s``. The loop runs
in each worker's main process (started on ``worker_ready``), so a fleet heals itself with no
beat process at all, and the first pass happens as soon as a worker comes up: a worker started
after a crash re-sends the crashed worker's work.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown

from pipeline.config import get_settings
from pipeline.errors import FacepipeError
from pipeline.jobs.dispatch import TaskName
from pipeline.jobs.runtime import Runtime, get_runtime
from pipeline.jobs.watchdog import run_watchdog
from workers.base import facepipe_task
from workers.locks import acquire_slot

log = logging.getLogger(__name__)

_stop = threading.Event()


def run_once(rt: Runtime) -> dict[str, Any]:
    """One watchdog pass, unless another process ran it in this interval."""
    interval = max(1.0, rt.settings.watchdog_interval_s)
    slot = str(int(time.time() // interval))
    if not acquire_slot(rt.settings, "watchdog", slot, int(interval)):
        return {"skipped": "another process ran the watchdog in this interval"}
    return run_watchdog(rt, rt.dispatcher).to_dict()


@facepipe_task(TaskName.WATCHDOG)
def watchdog_task(self: Task) -> dict[str, Any]:
    """Re-send work lost by dead workers or a broker that lost its queues."""
    return run_once(get_runtime())


def _loop() -> None:
    # A runtime of its own: this thread lives in the worker's parent process, which forks pool
    # children; the process-wide runtime (and its lock) must stay untouched by it.
    rt = Runtime(get_settings())
    interval = max(1.0, rt.settings.watchdog_interval_s)
    while not _stop.is_set():
        try:
            run_once(rt)
        except FacepipeError as exc:  # database or broker away: try again next interval
            log.warning("watchdog pass failed: %s", exc)
        except Exception:  # never let the loop die: it is what heals the fleet
            log.exception("watchdog pass crashed")
        _stop.wait(interval)


@worker_ready.connect
def _start_loop(**_: object) -> None:
    _stop.clear()
    threading.Thread(target=_loop, name="facepipe-watchdog", daemon=True).start()


@worker_shutdown.connect
def _stop_loop(**_: object) -> None:
    _stop.set()

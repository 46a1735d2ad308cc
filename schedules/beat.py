"""The Celery beat schedule: nightly re-identification, periodic reindex, clean-up, watchdog.

Every entry sends a ``facepipe.schedule.*`` task; that task first takes a Redis lock for its
time slot (:mod:`workers.locks`), so two beat instances never run the same job twice. The
reindex entry forwards to ``facepipe.index.reindex`` on the ``index`` queue (written with the
FAISS index) once the lock is held.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import TaskName


def parse_cron(expr: str) -> crontab:
    """``"m h dom mon dow"`` -> a Celery crontab (interpreted in the app's timezone)."""
    fields = expr.split()
    if len(fields) != 5:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"cron {expr!r} needs 5 fields: m h dom mon dow"
        )
    minute, hour, dom, month, dow = fields
    return crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule for these settings."""
    return {
        "nightly-reidentify": {
            "task": TaskName.NIGHTLY_REIDENTIFY.value,
            "schedule": parse_cron(settings.nightly_reidentify_cron),
            "options": {"queue": "ingest"},
        },
        "periodic-reindex": {
            "task": TaskName.SCHEDULED_REINDEX.value,
            "schedule": timedelta(seconds=settings.reindex_interval_s),
            "options": {"queue": "ingest"},
        },
        "cleanup-job-items": {
            "task": TaskName.CLEANUP.value,
            "schedule": crontab(minute="30", hour="3"),
            "options": {"queue": "ingest"},
        },
        # Workers run the watchdog too (workers/watchdog.py); the beat entry keeps it running
        # when every worker is busy, and the slot lock makes it run once per interval.
        "watchdog": {
            "task": TaskName.WATCHDOG.value,
            "schedule": timedelta(seconds=settings.watchdog_interval_s),
            "options": {"queue": "ingest", "expires": settings.watchdog_interval_s},
        },
    }

"""One decorator for every facepipe task: logging, timing and the retry policy.

Retry policy: a :class:`FacepipeError` whose code is retryable (database, broker, object store,
download) and plain connection errors are retried with capped exponential backoff
(``retry_backoff_s * 2**n``, at most ``retry_backoff_max_s``, ``task_max_retries`` times);
permanent errors (bad input, job not found...) are logged and end the task as FAILURE with a
:class:`PermanentTaskError` carrying the catalogue error, never retried: a failed task reads as
failed in the result backend, Flower and the metrics, not as a success holding an error.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline.config import get_settings
from pipeline.errors import FacepipeError
from workers.app import app
from workers.errors import PermanentTaskError

log = logging.getLogger(__name__)

TRANSIENT = (ConnectionError, TimeoutError, RedisConnectionError, KombuOperationalError)


def backoff_s(retries: int) -> float:
    """Delay before retry number ``retries`` (0-based): doubling, capped, with 10% jitter."""
    settings = get_settings()
    delay = min(settings.retry_backoff_max_s, settings.retry_backoff_s * (2**retries))
    return delay * random.uniform(0.9, 1.1)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying."""
    if isinstance(exc, FacepipeError):
        return exc.retryable
    if isinstance(exc, TRANSIENT):
        return True
    try:
        import psycopg
    except ImportError:  # psycopg is a dependency; guard only keeps this module importable
        return False
    return isinstance(exc, psycopg.OperationalError)


def facepipe_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Task]:
    """Register ``fn`` as the Celery task ``name`` with logging, timing and retries.

    The wrapped function receives the task as its first argument (``bind=True``).
    """

    def decorate(fn: Callable[..., Any]) -> Task:
        @functools.wraps(fn)
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            req = self.request
            log.info("task %s[%s] start args=%s retries=%s", name, req.id, args, req.retries)
            try:
                result = fn(self, *args, **kwargs)
            except FacepipeError as exc:
                if exc.retryable:
                    _retry(self, exc)
                log.warning("task %s[%s] failed permanently: %s", name, req.id, exc)
                raise PermanentTaskError.of(exc) from exc
            except Exception as exc:
                if is_transient(exc):
                    _retry(self, exc)
                log.exception("task %s[%s] crashed", name, req.id)
                raise PermanentTaskError.of(exc) from exc
            log.info(
                "task %s[%s] done in %.0f ms", name, req.id, (time.perf_counter() - started) * 1e3
            )
            return result

        return app.task(name=name, bind=True, **options)(run)

    return decorate


def _retry(task: Task, exc: BaseException) -> None:
    retries = task.request.retries
    max_retries = get_settings().task_max_retries
    if retries >= max_retries:
        log.error("task %s gave up after %d retries: %s", task.name, retries, exc)
        raise exc
    delay = backoff_s(retries)
    log.warning("task %s retry %d in %.1f s: %s", task.name, retries + 1, delay, exc)
    raise task.retry(exc=exc, countdown=delay, max_retries=max_retries)

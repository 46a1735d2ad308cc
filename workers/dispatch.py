"""The Celery side of :class:`pipeline.jobs.dispatch.Dispatcher`: ``send_task`` by name.

Sending fails fast: a broker that does not answer within ``submit_timeout_s`` is
BROKER_UNAVAILABLE (-1906) for the caller, instead of a traceback after kombu's default retries.
That holds for a broker that refuses connections and for one that accepts them and never
answers (a frozen Redis, a connection left half-open by a failover): kombu and the Redis result
backend would wait on such a socket forever, so every send runs in a small pool of sender
threads and the caller waits for it at most ``submit_timeout_s``. A send given up on this way
is not cancelled: it ends when the broker answers or its socket times out
(``BROKER_SOCKET_TIMEOUT_S``, set on the app in workers.app) and may still deliver its message
late, which is harmless (a listing or chunk of a job that was removed finds no job; one of a
job that exists is a duplicate, and duplicates skip finished and leased items).

The broker's state for the watchdog (Redis brokers only; others answer "unknown"): the length of
every facepipe queue plus the messages workers hold unacknowledged, and a canary key. The canary
is written after each watchdog pass that handled it and never expires; when it is gone, the
broker lost its data (a restart without persistence, a flush), and with it every message it
held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import BrokerState, TaskName
from pipeline.observability.queues import queue_depths
from pipeline.threadpool import ProcessThreadPool
from workers.errors import PermanentTaskError

log = logging.getLogger(__name__)

CANARY_KEY = "facepipe:broker-canary"
LISTING_SOFT_LIMIT_S = 600.0
_SENDERS = ProcessThreadPool(4, "facepipe-send")
"""Sends in flight at once per process (more wait their turn, within the same deadline);
long-lived threads, so Celery's per-thread result backends stay few."""


def celery_dispatcher(settings: Settings) -> CeleryDispatcher:
    """The ``celery`` entry point of ``facepipe.dispatchers``: the worker's Celery app."""
    from workers.app import QUEUES, app

    return CeleryDispatcher(app, settings, QUEUES)


class CelerySentTask:
    """A task sent through Celery; its result comes from the result backend."""

    def __init__(self, result: AsyncResult) -> None:
        self._result = result

    @property
    def id(self) -> str:
        return str(self._result.id)

    def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        try:
            value = self._result.get(timeout=timeout_s, propagate=False)
        except CeleryTimeoutError as exc:
            raise FacepipeError(
                ErrorCode.SERVICE_BUSY, f"task {self.id} did not finish within {timeout_s} s"
            ) from exc
        if isinstance(value, PermanentTaskError):
            raise FacepipeError.from_dict(value.error)
        if isinstance(value, BaseException):
            raise FacepipeError(ErrorCode.INTERNAL, f"task {self.id}: {value!r}")
        return dict(value or {})


class CeleryDispatcher:
    """Sends facepipe tasks by name through a Celery app."""

    def __init__(self, app: Celery, settings: Settings, queues: tuple[str, ...]) -> None:
        self.app = app
        self.settings = settings
        self.queues = queues

    def send(self, name: TaskName, kwargs: Mapping[str, Any]) -> CelerySentTask:
        return CelerySentTask(self._send(name, kwargs=dict(kwargs)))

    def _send(self, name: TaskName, args: tuple[Any, ...] = (), **options: Any) -> AsyncResult:
        timeout = max(0.5, self.settings.submit_timeout_s)
        policy = {
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": timeout / 6,
            "interval_max": timeout / 3,
        }
        sending = _SENDERS.submit(
            self.app.send_task, str(name), args=args, retry=True, retry_policy=policy, **options
        )
        try:
            return sending.result(timeout=timeout)
        except FutureTimeout as exc:
            sending.cancel()  # not started yet (every sender busy): never sent
            raise FacepipeError(
                ErrorCode.BROKER_UNAVAILABLE,
                f"the message broker did not answer within {timeout:g} s while taking {name}",
            ) from exc
        except (KombuOperationalError, RedisError, OSError) as exc:
            raise FacepipeError(
                ErrorCode.BROKER_UNAVAILABLE,
                f"the message broker did not take {name} within {timeout:.0f} s: {exc}",
            ) from exc

    def send_listing(self, job_id: str, token: str | None = None, next_seq: int = 0) -> None:
        kwargs = {"token": token, "next_seq": next_seq} if token or next_seq else {}
        # one listing page (10 000 files or 1 000 keys) takes seconds; a run past these limits
        # is stuck on the file system or the object store, and the watchdog resumes it
        self._send(
            TaskName.LIST_SOURCE,
            (job_id,),
            kwargs=kwargs,
            soft_time_limit=LISTING_SOFT_LIMIT_S,
            time_limit=LISTING_SOFT_LIMIT_S + 30,
        )

    def send_chunk(
        self, job_id: str, seq_lo: int, seq_hi: int, *, countdown: float | None = None
    ) -> None:
        soft, hard = chunk_time_limits(self.settings, seq_hi - seq_lo + 1)
        self._send(
            TaskName.PROCESS_CHUNK,
            (job_id, seq_lo, seq_hi),
            countdown=countdown,
            soft_time_limit=soft,
            time_limit=hard,
        )

    def send_export(self, job_id: str, dest: str) -> None:
        self._send(TaskName.EXPORT, (job_id, dest))

    def send_reembed(self, job_id: str) -> None:
        self._send(TaskName.REEMBED, (job_id,))

    def broker_state(self) -> BrokerState:
        with self._redis("broker state") as client:
            if client is None:
                return BrokerState(queued=None, lost=False)
            canary = client.exists(CANARY_KEY)
        # waiting in every queue (all priority lists) plus delivered but unacknowledged
        depths = queue_depths(str(self.app.conf.broker_url), self.queues)
        return BrokerState(queued=sum(depths.values()), lost=not canary)

    def broker_state_handled(self) -> None:
        # Written back only after a watchdog pass re-sent everything: a pass that fails half
        # way (the database is away too) leaves the loss to be noticed again.
        with self._redis("broker canary") as client:
            if client is not None:
                client.set(CANARY_KEY, "1")

    @contextmanager
    def _redis(self, what: str) -> Iterator[redis.Redis | None]:
        """A client of the broker the messages really go to (None: not a Redis broker); its
        errors become BROKER_UNAVAILABLE."""
        url = str(self.app.conf.broker_url)
        if not url.startswith(("redis://", "rediss://", "unix://")):
            yield None
            return
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            yield client
        except RedisError as exc:
            raise FacepipeError(ErrorCode.BROKER_UNAVAILABLE, f"{what}: {exc}") from exc
        finally:
            client.close()


def chunk_time_limits(settings: Settings, n_items: int) -> tuple[float, float]:
    """(soft, hard) time limits of a chunk task of ``n_items`` items."""
    soft = max(1, n_items) * settings.task_item_budget_s + 60.0
    return soft, soft + 30.0

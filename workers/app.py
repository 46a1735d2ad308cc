"""The Celery application: Redis broker, queues, routing and the delivery guarantees.

Queues: ``ingest`` (list sources, fan out chunks, exports, scheduled jobs), ``infer`` (chunks:
fetch + decode + detect + embed + write), ``index`` (FAISS reindex) and ``search`` (large
identify jobs). Tasks are acknowledged after they finish (``acks_late``) and requeued when the
worker process dies (``task_reject_on_worker_lost``); a task whose worker vanished entirely is
redelivered by Redis after ``visibility_timeout_s``, which must exceed the longest chunk.
Redelivery is safe: every write a task makes is idempotent (see ``pipeline/jobs``).
"""

from __future__ import annotations

import importlib.util
import logging
import threading

from celery import Celery
from celery.signals import worker_process_init
from kombu import Exchange, Queue

from pipeline.config import Settings, get_settings
from pipeline.jobs.dispatch import QUEUES
from pipeline.jobs.runtime import reset_runtime
from workers import observability

log = logging.getLogger(__name__)

BROKER_SOCKET_TIMEOUT_S = 30.0
"""Longest wait for one reply of the broker or the result backend (Redis answers in
milliseconds; kombu's blocking pop returns every second). Without it a connection whose peer
vanished without closing it (a failover, a NAT timeout, a frozen Redis) blocks its caller
forever; with it the call fails and kombu reconnects."""

ROUTES = {
    "facepipe.ingest.*": {"queue": "ingest"},
    "facepipe.schedule.*": {"queue": "ingest"},
    "facepipe.infer.*": {"queue": "infer"},
    "facepipe.index.*": {"queue": "index"},
    "facepipe.search.*": {"queue": "search"},
}
# Task modules (the watchdog module also starts the watchdog loop in each worker).
TASK_MODULES = [
    m
    for m in ("workers.tasks", "workers.index_tasks", "workers.watchdog", "workers.reembed_tasks")
    if importlib.util.find_spec(m) is not None
]


def create_app() -> Celery:
    """Build the Celery app from the process settings."""
    celery = Celery("facepipe")
    configure(celery, get_settings())
    return celery


def configure(celery: Celery, settings: Settings) -> None:
    """Apply settings to the app (again after the settings changed, e.g. in tests)."""
    celery.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        include=TASK_MODULES,
        # one direct exchange per queue, bound by its own name: a task routed to a queue lands
        # in that queue only
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES
        ],
        task_default_queue="ingest",
        task_default_exchange="ingest",
        task_default_routing_key="ingest",
        task_routes=ROUTES,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One unacknowledged chunk per worker process: a chunk is long, and prefetching more
        # would pin them to a busy process while another one idles.
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # a producer (the CLI, the API) gives up on an unreachable broker quickly; the caller
        # gets BROKER_UNAVAILABLE (workers.dispatch) instead of a hang
        broker_connection_timeout=max(1.0, settings.submit_timeout_s),
        broker_transport_options={
            "socket_connect_timeout": max(1.0, settings.submit_timeout_s),
            "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
            "visibility_timeout": settings.visibility_timeout_s,
            # sweep for abandoned (unacknowledged) messages at least this often
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
            # a worker killed while holding the restore mutex must not block restores for long
            "unacked_mutex_expire": max(10, min(300, settings.visibility_timeout_s)),
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        redis_socket_timeout=BROKER_SOCKET_TIMEOUT_S,
        redis_socket_connect_timeout=max(1.0, settings.submit_timeout_s),
        timezone=settings.timezone,
        enable_utc=True,
        worker_hijack_root_logger=False,
        # Celery events on (issue 14): Flower and `celery events` see every task sent, started
        # and finished, with its arguments by name (workers/observability.py)
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    from schedules.beat import build_schedule

    celery.conf.beat_schedule = build_schedule(settings)
    _forget_connections(celery)


def _forget_connections(celery: Celery) -> None:
    """Drop the broker pools and result backends built with the previous settings.

    Celery builds them lazily and keeps them: the broker connection pool (``_pool``), the
    producer pool (``amqp._producer_pool``) and the result backend (``_backend_cache`` when
    thread-safe, else one per thread in ``_local``). Without this, a process whose settings
    changed (tests switching Redis databases, ``pipeline_env``) would keep sending tasks to the
    old broker. A fresh ``threading.local`` forgets the backends of every thread, not only the
    caller's (the HTTP API sends from a thread pool).
    """
    celery._pool = None
    amqp = celery.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    celery._backend_cache = None
    celery._local = threading.local()


app = create_app()
observability.install(app)


@worker_process_init.connect
def _fresh_runtime_in_child(**_: object) -> None:
    # A forked child must not reuse the parent's database pool or ONNX sessions.
    reset_runtime()
    consumed = set(getattr(app.amqp.queues, "consume_from", None) or ())
    if "infer" in consumed:
        # load the models now, once per pool process, rather than in the first chunk
        from pipeline.errors import FacepipeError
        from pipeline.jobs.runtime import get_runtime

        try:
            get_runtime().engine  # noqa: B018  (the property loads the models)
        except FacepipeError:  # the first chunk will report it; the process still starts
            log.exception("could not load the models at process start")

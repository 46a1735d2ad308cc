"""Celery queue depths read from the Redis broker and published to CloudWatch.

The GPU worker fleet scales on these numbers (infra/terraform/autoscaling.tf): namespace
``facepipe``, metric ``QueueDepth``, dimension ``Queue`` = the queue name, plus
``Queue=unacked`` for messages delivered to a worker and not yet acknowledged.

Celery's Redis transport (kombu) keeps each queue as Redis lists: the queue's own name for
priority 0 and ``<queue>\\x06\\x16<p>`` for the other priority steps, and the messages in flight
in one hash, ``unacked``. A queue's depth is the sum of its lists' lengths.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
import redis
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError

logger = logging.getLogger(__name__)

QUEUES: tuple[str, ...] = ("ingest", "infer", "index", "search")
"""The Celery queues facepipe routes tasks to."""
UNACKED = "unacked"
"""The pseudo-queue name under which messages in flight are reported."""
NAMESPACE = "facepipe"
METRIC_NAME = "QueueDepth"
DIMENSION = "Queue"

# kombu.transport.redis defaults: separator and priority steps of the per-priority lists,
# and the name of the hash holding delivered-but-unacknowledged messages.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
# CloudWatch accepts at most this many data points per PutMetricData call.
MAX_DATA_PER_CALL = 1000


def queue_keys(queue: str, key_prefix: str = "") -> list[str]:
    """The Redis list keys that hold ``queue``'s waiting messages, one per priority step."""
    return [
        f"{key_prefix}{queue}{PRIORITY_SEPARATOR}{step}" if step else f"{key_prefix}{queue}"
        for step in PRIORITY_STEPS
    ]


def queue_depths(
    broker_url: str,
    queues: Sequence[str] = QUEUES,
    *,
    include_unacked: bool = True,
    key_prefix: str = "",
) -> dict[str, int]:
    """Messages waiting on each Celery queue of a Redis broker (and in flight, as ``unacked``).

    ``key_prefix`` is the transport's ``global_keyprefix`` when the Celery app sets one.
    Raises ``BROKER_UNAVAILABLE`` (retryable) when Redis cannot be reached.
    """
    client = redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=10)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for key in queue_keys(queue, key_prefix):
                pipe.llen(key)
        if include_unacked:
            pipe.hlen(f"{key_prefix}{UNACKED_KEY}")
        lengths = [int(n) for n in pipe.execute()]
    except redis.RedisError as exc:
        raise FacepipeError(
            ErrorCode.BROKER_UNAVAILABLE, f"cannot read queue lengths from the broker: {exc}"
        ) from exc
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    depths = {
        queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)
    }
    if include_unacked:
        depths[UNACKED] = lengths[-1]
    return depths


def metric_data(
    depths: Mapping[str, int], timestamp: datetime | None = None
) -> list[dict[str, Any]]:
    """The CloudWatch ``MetricData`` entries for ``depths`` (one per queue, unit Count)."""
    when = timestamp or datetime.now(UTC)
    return [
        {
            "MetricName": METRIC_NAME,
            "Dimensions": [{"Name": DIMENSION, "Value": queue}],
            "Timestamp": when,
            "Value": float(depth),
            "Unit": "Count",
        }
        for queue, depth in sorted(depths.items())
    ]


def put_queue_depths(
    depths: Mapping[str, int],
    cloudwatch: Any,
    *,
    namespace: str = NAMESPACE,
    timestamp: datetime | None = None,
) -> None:
    """Put ``depths`` to CloudWatch with a boto3 ``cloudwatch`` client.

    Raises ``STORAGE_FAILED`` (retryable) when CloudWatch refuses or cannot be reached.
    """
    data = metric_data(depths, timestamp)
    try:
        for start in range(0, len(data), MAX_DATA_PER_CALL):
            cloudwatch.put_metric_data(
                Namespace=namespace, MetricData=data[start : start + MAX_DATA_PER_CALL]
            )
    except (BotoCoreError, ClientError) as exc:
        raise FacepipeError(
            ErrorCode.STORAGE_FAILED, f"CloudWatch refused the queue depths: {exc}"
        ) from exc


def cloudwatch_client(settings: Settings | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 CloudWatch client in the configured region (credentials from the usual chain)."""
    settings = settings or get_settings()
    return boto3.client("cloudwatch", region_name=settings.s3_region, endpoint_url=endpoint_url)


def publish_queue_depths(
    broker_url: str | None = None,
    *,
    queues: Sequence[str] = QUEUES,
    cloudwatch: Any | None = None,
    settings: Settings | None = None,
    namespace: str = NAMESPACE,
    key_prefix: str = "",
) -> dict[str, int]:
    """Read the broker's queue depths and put them to CloudWatch; returns what was published.

    ``broker_url`` defaults to ``settings.broker_url``; ``cloudwatch`` to a client in
    ``settings.s3_region``. Suitable for a Celery beat task or the ``queue-metrics`` command.
    """
    settings = settings or get_settings()
    depths = queue_depths(broker_url or settings.broker_url, queues, key_prefix=key_prefix)
    put_queue_depths(depths, cloudwatch or cloudwatch_client(settings), namespace=namespace)
    logger.debug("published queue depths %s", depths)
    return depths


def run_publisher(
    interval_s: float,
    *,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
    cloudwatch: Any | None = None,
    queues: Sequence[str] = QUEUES,
) -> None:
    """Publish the queue depths every ``interval_s`` seconds until ``stop`` is set.

    Transient failures (broker or CloudWatch unreachable) are logged and the loop goes on:
    a missed data point only delays scaling, a dead publisher would stop it.
    """
    settings = settings or get_settings()
    stop = stop or threading.Event()
    client = cloudwatch or cloudwatch_client(settings)
    while not stop.is_set():
        started = time.monotonic()
        try:
            depths = publish_queue_depths(
                settings.broker_url, queues=queues, cloudwatch=client, settings=settings
            )
            logger.info("queue depths %s", depths)
        except FacepipeError as exc:
            if not exc.retryable:
                raise
            logger.warning("queue depths not published: %s", exc)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

"""Celery queue depths published to CloudWatch (the autoscaling metric).

The GPU worker fleet scales on these numbers (infra/terraform/autoscaling.tf): namespace
``facepipe``, metric ``QueueDepth``, dimension ``Queue`` = the queue name, plus
``Queue=unacked`` for messages delivered to a worker and not yet acknowledged.

The depths are read by :mod:`pipeline.observability.queues`, the same reader the Prometheus
exporter uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws import cloudwatch_client
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import QUEUES
from pipeline.observability.queues import queue_depths

logger = logging.getLogger(__name__)

NAMESPACE = "facepipe"
METRIC_NAME = "QueueDepth"
DIMENSION = "Queue"
# CloudWatch accepts at most this many data points per PutMetricData call.
MAX_DATA_PER_CALL = 1000


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

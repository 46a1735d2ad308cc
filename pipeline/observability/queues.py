"""Celery queue depths read from the Redis broker: the one reader behind both the CloudWatch
autoscaling metric (:mod:`pipeline.observability.cloudwatch`) and the Prometheus exporter
(:mod:`pipeline.observability.exporter`).

Celery's Redis transport (kombu) keeps each queue as Redis lists: the queue's own name for
priority 0 and ``<queue>\\x06\\x16<p>`` for the other priority steps, and the messages in flight
in one hash, ``unacked``. A queue's depth is the sum of its lists' lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import QUEUES

UNACKED = "unacked"
"""The pseudo-queue name under which messages in flight are reported."""

# kombu.transport.redis defaults: separator and priority steps of the per-priority lists,
# and the name of the hash holding delivered-but-unacknowledged messages.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
UNACKED_KEY = "unacked"


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
    depths = {queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)}
    if include_unacked:
        depths[UNACKED] = lengths[-1]
    return depths

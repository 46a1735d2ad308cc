"""A Redis "run once per slot" lock (SET NX EX) for scheduled jobs.

Two beat instances (a second one started by mistake, or a rolling deploy) both send the
nightly job; the task that runs first takes the slot's key and the other skips. The key
expires on its own, so no one has to release it.
"""

from __future__ import annotations

import redis

from pipeline.config import Settings

LOCK_PREFIX = "facepipe:schedule-lock:"


def acquire_slot(settings: Settings, name: str, slot: str, ttl_s: int) -> bool:
    """True if this caller is the first to claim ``name`` for ``slot`` within ``ttl_s``."""
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return bool(client.set(f"{LOCK_PREFIX}{name}:{slot}", "1", nx=True, ex=max(1, ttl_s)))
    finally:
        client.close()

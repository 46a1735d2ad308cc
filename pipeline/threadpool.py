"""A thread pool that belongs to one process: made again in a forked child.

Threads do not survive ``fork``: a child inherits a ``ThreadPoolExecutor`` that believes its
threads are alive (and idle) and never runs what it is given. Celery's prefork workers fork
after the module-level pools exist, so every pool the pipeline keeps is one of these.

Work runs in a copy of the submitter's context variables, as ``asyncio.to_thread`` does: the
log context (request, job, chunk ids) goes with it, so a message published from a sender
thread still carries the API request that caused it.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ProcessThreadPool:
    """``submit`` as on a ``ThreadPoolExecutor`` of ``max_workers`` threads, made lazily in each
    process that uses it."""

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._pool is None:  # first use in this process (the fork hook forgets the pool)
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
            pool = self._pool
        context = contextvars.copy_context()
        return pool.submit(lambda: context.run(fn, *args, **kwargs))

    def _forget(self) -> None:
        # the parent's threads are gone; a lock held by one of them at the fork stays held
        self._pool = None
        self._lock = threading.Lock()
